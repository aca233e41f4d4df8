"""GRU4Rec (Hidasi et al., 2016), in the next-item form: a GRU reads the item embeddings and its state
after each item predicts the next one. Sequences are packed, so padding never enters the recurrence."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .base import NextItemRecommender
from .transformer import reference_init

if TYPE_CHECKING:
    from ..config import Config


class GRUEncoder(nn.Module):
    """Dropout on the item vectors, then a GRU: [B, L] right-aligned item ids and their [B, L, d] vectors ->
    [B, L, d] states (zero at padding). Shared by GRU4Rec and LLM-ESR's gru4rec backbone."""

    def __init__(self, hidden_size: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(hidden_size, hidden_size, num_layers=num_layers, batch_first=True)

    def forward(self, inputs: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        B, L = inputs.shape
        lengths = (inputs > 0).sum(1)
        column = torch.arange(L, device=inputs.device)
        shift = (L - lengths)[:, None]
        to_left = ((column + shift) % L)[..., None].expand(B, L, vectors.shape[-1])  # items first, padding after
        packed = pack_padded_sequence(
            self.dropout(vectors.gather(1, to_left)), lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=L)
        out = out.gather(1, ((column - shift) % L)[..., None].expand(B, L, out.shape[-1]))  # back to right-aligned
        return out * (inputs > 0)[..., None]


class GRU4Rec(NextItemRecommender):
    def __init__(self, n_items: int, config: Config) -> None:
        super().__init__(config)
        self.item_embeddings = nn.Embedding(n_items + 1, config.hidden_size, padding_idx=0)
        self.encoder = GRUEncoder(config.hidden_size, config.num_layers, config.dropout)
        reference_init(self.item_embeddings)

    @property
    def item_table(self) -> torch.Tensor:
        return self.item_embeddings.weight

    def sequence_output(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.encoder(inputs, self.item_embeddings(inputs))
