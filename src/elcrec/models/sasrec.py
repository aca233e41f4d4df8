"""SASRec (Kang & McAuley, 2018) on the reference backbone: the last position's output scores items by
dot product with their embeddings (tied input/output table).

Losses, averaged over non-padding target positions:
  bce: -log σ(h·e_pos) - log(1 - σ(h·e_neg)), one uniformly sampled unseen negative per position
       (the reference; computed with logsigmoid instead of log(σ + 1e-24), which only differs where
       the reference's epsilon clips);
  ce:  softmax cross-entropy over all items.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .base import SequentialRecommender
from .transformer import TransformerEncoder, trim_padding

if TYPE_CHECKING:
    from ..config import Config


class SASRec(SequentialRecommender):
    def __init__(self, n_items: int, config: Config) -> None:
        super().__init__()
        self.config = config
        self.needs_negatives = config.loss == "bce"
        self.encoder = TransformerEncoder(n_items, config.hidden_size, config.num_layers, config.num_heads,
                                          config.max_len, config.dropout, config.attn_dropout)

    @property
    def item_embeddings(self) -> torch.Tensor:
        return self.encoder.item_embeddings.weight

    def encode(self, histories: torch.Tensor) -> torch.Tensor:
        return self.encoder(trim_padding(histories))[:, -1]

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        return self.encode(histories) @ self.item_embeddings[1:].T

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = trim_padding(batch["inputs"])  # exact: leading padding never reaches item positions
        width = inputs.shape[1]
        return self.rec_loss(self.encoder(inputs), {k: v[:, -width:] for k, v in batch.items() if k != "users"})

    def rec_loss(self, h: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The recommendation loss from the encoder output `h` [B, L, d] (shared with the CL models)."""
        targets = batch["targets"]
        present = targets > 0
        if self.config.loss == "ce":
            logits = h[present] @ self.item_embeddings[1:].T
            return F.cross_entropy(logits, targets[present] - 1)
        pos = (h * self.item_embeddings[targets]).sum(-1)
        neg = (h * self.item_embeddings[batch["negatives"]]).sum(-1)
        per_position = -F.logsigmoid(pos) - F.logsigmoid(-neg)
        return per_position[present].mean()
