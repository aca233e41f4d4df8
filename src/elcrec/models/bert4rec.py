"""BERT4Rec (Sun et al., 2019): a bidirectional transformer trained on the Cloze task. Training masks
a share (`cloze_prob`) of the items of items[:-2] with a [MASK] token and predicts them with softmax
cross-entropy over all items; every row gets at least one masked item (its last, when the draw masks
none). To score, [MASK] is appended to the history and its output ranks the items."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..distributed import batch_mean
from .base import SequentialRecommender, trim_padding
from .transformer import TransformerEncoder

if TYPE_CHECKING:
    from ..config import Config


class BERT4Rec(SequentialRecommender):
    def __init__(self, n_items: int, config: Config) -> None:
        super().__init__()
        self.config = config
        self.n_items = n_items
        self.mask_token = n_items + 1
        self.encoder = TransformerEncoder(n_items, config.hidden_size, config.num_layers, config.num_heads,
                                          config.max_len, config.dropout, config.attn_dropout,
                                          causal=False, extra_tokens=1, fast_dropout=config.engine == "fast")

    @property
    def item_table(self) -> torch.Tensor:
        return self.encoder.item_embeddings.weight[: self.n_items + 1]

    def loss_terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # the last max_len items of items[:-2]: inputs shifted by one, then the last target
        sequence = torch.cat([batch["inputs"][:, 1:], batch["targets"][:, -1:]], 1)
        present = sequence > 0
        masked = (torch.rand(sequence.shape, device=sequence.device) < self.config.cloze_prob) & present
        masked[:, -1] |= ~masked.any(1)
        sequence = trim_padding(sequence)
        masked = masked[:, -sequence.shape[1]:]
        encode = self.encoder.forward_by_span if self.config.engine == "fast" else self.encoder  # loss: items only
        h = encode(sequence.masked_fill(masked, self.mask_token))
        return {"rec": batch_mean(F.cross_entropy(h[masked] @ self.item_table[1:].T, sequence[masked] - 1,
                                                  reduction="none"))}

    def encode(self, histories: torch.Tensor) -> torch.Tensor:
        mask = torch.full((len(histories), 1), self.mask_token, dtype=histories.dtype, device=histories.device)
        inputs = torch.cat([histories, mask], 1)[:, -self.config.max_len:]
        return self.encoder(trim_padding(inputs))[:, -1]

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        return self.encode(histories) @ self.item_table[1:].T
