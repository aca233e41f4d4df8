"""SASRec (Kang & McAuley, 2018) on the reference backbone: the last position's output scores items by
dot product with their embeddings (tied input/output table).

Losses, averaged over non-padding target positions:
  bce: -log σ(h·e_pos) - log(1 - σ(h·e_neg)), one uniformly sampled unseen negative per position
       (the reference; computed with logsigmoid instead of log(σ + 1e-24), which only differs where
       the reference's epsilon clips);
  ce:  softmax cross-entropy over all items.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import SequentialRecommender
from .transformer import TransformerEncoder


class SASRec(SequentialRecommender):
    def __init__(self, n_items: int, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 2,
                 max_len: int = 50, dropout: float = 0.5, attn_dropout: float = 0.5, loss: str = "bce") -> None:
        super().__init__()
        if loss not in ("bce", "ce"):
            raise ValueError(f"loss={loss!r}: choose bce or ce")
        self.loss_type = loss
        self.needs_negatives = loss == "bce"
        self.encoder = TransformerEncoder(n_items, hidden_size, num_layers, num_heads, max_len, dropout, attn_dropout)

    @property
    def item_embeddings(self) -> torch.Tensor:
        return self.encoder.item_embeddings.weight

    def encode(self, histories: torch.Tensor) -> torch.Tensor:
        return self.encoder(histories)[:, -1]

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        return self.encode(histories) @ self.item_embeddings[1:].T

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.rec_loss(self.encoder(batch["inputs"]), batch)

    def rec_loss(self, h: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The recommendation loss from the encoder output `h` [B, L, d] (shared with the CL models)."""
        targets = batch["targets"]
        present = targets > 0
        if self.loss_type == "ce":
            logits = h[present] @ self.item_embeddings[1:].T
            return F.cross_entropy(logits, targets[present] - 1)
        pos = (h * self.item_embeddings[targets]).sum(-1)
        neg = (h * self.item_embeddings[batch["negatives"]]).sum(-1)
        per_position = -F.logsigmoid(pos) - F.logsigmoid(-neg)
        return per_position[present].mean()
