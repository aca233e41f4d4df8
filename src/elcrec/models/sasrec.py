"""SASRec (Kang & McAuley, 2018) on the reference backbone: the last position's output scores items by
dot product with their embeddings (tied input/output table). Losses: see NextItemRecommender."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .base import NextItemRecommender
from .engine import EnginePlan
from .transformer import TransformerEncoder

if TYPE_CHECKING:
    from ..config import Config


class SASRec(NextItemRecommender):
    reads_padding = False  # the loss reads outputs at item positions only

    def __init__(self, n_items: int, config: Config) -> None:
        super().__init__(config)
        self.plan = EnginePlan.of(config, self.reads_padding)
        self.encoder = TransformerEncoder(
            n_items,
            config.hidden_size,
            config.num_layers,
            config.num_heads,
            config.max_len,
            config.dropout,
            config.attn_dropout,
            fast_dropout=self.plan.fast,
        )

    @property
    def item_table(self) -> torch.Tensor:
        return self.encoder.item_embeddings.weight

    def sequence_output(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.plan.outputs(self.encoder, inputs)

    def last_output(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.encoder(inputs, last_only=True)
