"""GRU4Rec (Hidasi et al., 2016), in the next-item form: a GRU reads the item embeddings and its state
after each item predicts the next one. Sequences are packed, so padding never enters the recurrence."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .base import NextItemRecommender
from .transformer import _init_weights

if TYPE_CHECKING:
    from ..config import Config


class GRU4Rec(NextItemRecommender):
    def __init__(self, n_items: int, config: Config) -> None:
        super().__init__(config)
        self.item_embeddings = nn.Embedding(n_items + 1, config.hidden_size, padding_idx=0)
        self.dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(config.hidden_size, config.hidden_size, num_layers=config.num_layers, batch_first=True)
        _init_weights(self.item_embeddings)

    @property
    def item_table(self) -> torch.Tensor:
        return self.item_embeddings.weight

    def sequence_output(self, inputs: torch.Tensor) -> torch.Tensor:
        B, L = inputs.shape
        lengths = (inputs > 0).sum(1)
        column = torch.arange(L, device=inputs.device)
        shift = (L - lengths)[:, None]
        left_aligned = inputs.gather(1, (column + shift) % L)  # items first, padding after
        packed = pack_padded_sequence(self.dropout(self.item_embeddings(left_aligned)), lengths.clamp(min=1).cpu(),
                                      batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=L)
        out = out.gather(1, ((column - shift) % L)[..., None].expand(B, L, out.shape[-1]))  # back to right-aligned
        return out * (inputs > 0)[..., None]
