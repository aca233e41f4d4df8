"""BERT4Rec (Sun et al., 2019): a bidirectional transformer trained on the Cloze task. Training masks
a share (`cloze_prob`) of the items of items[:-2] with a [MASK] token and predicts them with softmax
cross-entropy over all items; every row gets at least one masked item (its last, when the draw masks
none). To score, [MASK] is appended to the history and its output ranks the items."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..distributed import batch_mean
from .base import Batch, SequentialRecommender, trim_padding
from .engine import EnginePlan
from .transformer import TransformerEncoder

if TYPE_CHECKING:
    from ..config import Config


def cloze(batch: Batch, prob: float, maskable: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The Cloze task on the last max_len items of items[:-2] (the inputs shifted by one, then the last target):
    (sequence [B, L], masked [B, L]): each `maskable` position (default: every item) is masked with
    probability `prob`, and a row with none masked gets its last item masked."""
    sequence = torch.cat([batch.inputs[:, 1:], batch.targets[:, -1:]], 1)
    maskable = sequence > 0 if maskable is None else maskable
    masked = (torch.rand(sequence.shape, device=sequence.device) < prob) & maskable
    masked[:, -1] |= ~masked.any(1)
    return sequence, masked


def append_mask_token(histories: torch.Tensor, token: int, max_len: int) -> torch.Tensor:
    """Histories with [MASK] after their last item, whose output predicts the next item (the last max_len)."""
    mask = torch.full((len(histories), 1), token, dtype=histories.dtype, device=histories.device)
    return torch.cat([histories, mask], 1)[:, -max_len:]


class BERT4Rec(SequentialRecommender):
    def __init__(self, n_items: int, config: Config) -> None:
        super().__init__()
        self.config = config
        self.plan = EnginePlan.of(config)  # the loss reads masked item positions only
        self.n_items = n_items
        self.mask_token = n_items + 1
        self.encoder = TransformerEncoder(
            n_items,
            config.hidden_size,
            config.num_layers,
            config.num_heads,
            config.max_len,
            config.dropout,
            config.attn_dropout,
            causal=False,
            extra_tokens=1,
            fast_dropout=self.plan.fast,
        )

    @property
    def item_table(self) -> torch.Tensor:
        return self.encoder.item_embeddings.weight[: self.n_items + 1]

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        sequence, masked = cloze(batch, self.config.cloze_prob)
        sequence = trim_padding(sequence)
        masked = masked[:, -sequence.shape[1] :]
        h = self.plan.outputs(self.encoder, sequence.masked_fill(masked, self.mask_token))
        return {
            "rec": batch_mean(
                F.cross_entropy(h[masked] @ self.item_table[1:].T, sequence[masked] - 1, reduction="none")
            )
        }

    def encode(self, histories: torch.Tensor) -> torch.Tensor:
        return self.encoder(trim_padding(append_mask_token(histories, self.mask_token, self.config.max_len)))[:, -1]

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        return self.encode(histories) @ self.item_table[1:].T
