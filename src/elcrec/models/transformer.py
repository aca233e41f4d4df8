"""The shared sequence encoder of SASRec, ICLRec and ELCRec, exactly as the reference builds it:

    h0 = Dropout(LayerNorm(E_item[x] + E_pos))
    a  = LayerNorm(h + Dropout(W_o · MultiHeadAttention(h, mask)))       (post-LN block)
    h' = LayerNorm(a + Dropout(W_2 · GELU(W_1 · a)))

The mask lets position i attend to positions j <= i that hold an item; blocked pairs get -10000 added
to their logits (not -inf), as in the reference, so rows of pure padding stay finite (those rows
spread attention over every position, future ones included; nothing ever reads them).
Inputs are right-aligned and left-padded with 0; a batch narrower than max_len takes the last
positions of the position table, so trimming leading padding never changes an output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LAYER_NORM_EPS = 1e-12
BLOCKED = -10000.0


class Block(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, dropout: float, attn_dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.attn_dropout = attn_dropout
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.attn_norm = nn.LayerNorm(hidden_size, eps=LAYER_NORM_EPS)
        self.dense_1 = nn.Linear(hidden_size, 4 * hidden_size)
        self.dense_2 = nn.Linear(4 * hidden_size, hidden_size)
        self.ffn_norm = nn.LayerNorm(hidden_size, eps=LAYER_NORM_EPS)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, L, d = h.shape
        heads = lambda x: x.view(B, L, self.num_heads, d // self.num_heads).transpose(1, 2)  # noqa: E731
        attended = F.scaled_dot_product_attention(
            heads(self.query(h)), heads(self.key(h)), heads(self.value(h)),
            attn_mask=mask, dropout_p=self.attn_dropout if self.training else 0.0)
        attended = attended.transpose(1, 2).reshape(B, L, d)
        a = self.attn_norm(h + self.dropout(self.dense(attended)))
        return self.ffn_norm(a + self.dropout(self.dense_2(F.gelu(self.dense_1(a)))))


class TransformerEncoder(nn.Module):
    def __init__(self, n_items: int, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 2,
                 max_len: int = 50, dropout: float = 0.5, attn_dropout: float = 0.5, causal: bool = True,
                 extra_tokens: int = 0) -> None:
        super().__init__()
        self.max_len = max_len
        self.causal = causal  # False: bidirectional (BERT4Rec), every item position reads every other
        # row 0 = padding, rows 1..n items, then `extra_tokens` special rows (BERT4Rec's mask token)
        self.item_embeddings = nn.Embedding(n_items + 1 + extra_tokens, hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(max_len, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=LAYER_NORM_EPS)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(hidden_size, num_heads, dropout, attn_dropout) for _ in range(num_layers))
        self.apply(_init_weights)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """[B, L] item ids (L <= max_len, right-aligned) -> [B, L, d] output at every position."""
        L = inputs.shape[1]
        if L > self.max_len:
            raise ValueError(f"sequences of width {L} exceed max_len={self.max_len}; keep the last {self.max_len} items")
        positions = self.position_embeddings.weight[self.max_len - L :]
        h = self.dropout(self.norm(self.item_embeddings(inputs) + positions))
        allowed = (inputs > 0)[:, None, None, :]  # [B, 1, 1 or L, L]: query i may read key j
        if self.causal:
            allowed = allowed & torch.ones(L, L, dtype=torch.bool, device=inputs.device).tril()
        mask = torch.zeros(allowed.shape, dtype=h.dtype, device=h.device).masked_fill_(~allowed, BLOCKED)
        for block in self.blocks:
            h = block(h, mask)
        return h


def _init_weights(module: nn.Module) -> None:
    """Reference init: normal(0, 0.02) weights (embeddings too, padding row included), zero biases."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)

