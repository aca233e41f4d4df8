"""SASRec (Kang & McAuley, 2018) on the reference backbone: the last position's output scores items by
dot product with their embeddings (tied input/output table). Losses: see NextItemRecommender."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .base import NextItemRecommender
from .transformer import TransformerEncoder, started

if TYPE_CHECKING:
    from ..config import Config


class SASRec(NextItemRecommender):
    def __init__(self, n_items: int, config: Config) -> None:
        super().__init__(config)
        self.encoder = TransformerEncoder(n_items, config.hidden_size, config.num_layers, config.num_heads,
                                          config.max_len, config.dropout, config.attn_dropout,
                                          fast_dropout=config.engine == "fast")

    @property
    def item_table(self) -> torch.Tensor:
        return self.encoder.item_embeddings.weight

    @property
    def reads_padding(self) -> bool:
        """Whether the loss reads outputs before a row's first item (SASRec's reads item positions only)."""
        return False

    @property
    def skips_padding(self) -> bool:
        """Whether computations skip the zero outputs before each row's first item (the fast engine)."""
        return self.config.engine == "fast" and not self.reads_padding

    def sequence_output(self, inputs: torch.Tensor) -> torch.Tensor:
        """Outputs at every position; before each row's first item they are zero unless the loss reads them
        there (padding_outputs=encoded in the contrastive models)."""
        if self.skips_padding:
            return self.encoder.forward_by_span(inputs)
        h = self.encoder(inputs)
        return h if self.reads_padding else h.masked_fill(~started(inputs)[..., None], 0.0)

    def last_output(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.encoder(inputs, last_only=True)
