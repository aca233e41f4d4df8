"""The shared sequence encoder of SASRec, ICLRec and ELCRec, exactly as the reference builds it:

    h0 = Dropout(LayerNorm(E_item[x] + E_pos))
    a  = LayerNorm(h + Dropout(W_o · MultiHeadAttention(h, mask)))       (post-LN block)
    h' = LayerNorm(a + Dropout(W_2 · GELU(W_1 · a)))

The mask lets position i attend to positions j <= i that hold an item; blocked pairs get -10000 added
to their logits (not -inf), as in the reference, so rows of pure padding stay finite (those rows
spread attention over every position, future ones included; only the contrastive losses read them).
Inputs are right-aligned and left-padded with 0; a batch narrower than max_len takes the last
positions of the position table, so trimming leading padding never changes an item position's output.

`forward_by_span` (padding_outputs=zero, and the fast engine of models whose loss reads item positions
only) gives zero output before each row's first item and encodes rows in groups of similar span, each
group trimmed to its widest row: on Beauty's training batches (with their augmented views) it encodes
about a tenth of the max_len positions `forward` does.

fast_dropout=True (the fast engine) draws dropout masks from a few random bits per element: torch's CPU
dropout (bernoulli_) took a third of an ELCRec training step in torch.profiler. When the drop probability
is a multiple of 1/2^b for b in 1, 2, 4 or 8 (0.5, the default: one bit), each random byte is looked up
in a table of 8/b scaled keep values; otherwise 16 bits are compared with the probability rounded to a
multiple of 1/65536. Evaluation never drops.
"""

from __future__ import annotations

import bisect
import functools
import sys

import torch
import torch.nn.functional as F
from torch import nn

LAYER_NORM_EPS = 1e-12
BLOCKED = -10000.0
GROUP_COST = 128  # a span group's fixed cost (op dispatch) in encoded positions: 0 to 256 timed alike on Beauty


def cheap_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout whose keep-mask is built from the low 56 bits of random int64 words (random_
    leaves bit 63 zero): b bits per element looked up by the byte (p a multiple of 1/2^b), else 16 bits."""
    if p == 0.0:
        return x
    n = x.numel()
    bits = next((b for b in (1, 2, 4, 8) if (p * 2**b).is_integer()), 16)
    per_word = 56 // bits if bits < 16 else 3
    words = torch.empty(-(-n // per_word), dtype=torch.int64, device=x.device).random_()
    if bits == 16:
        keep = words.view(torch.int16).view(-1, 4)[:, _LOW_LANES[2]] >= round(p * 65536) - 32768
        return x * keep.reshape(-1)[:n].view(x.shape).to(x.dtype).mul_(1 / (1 - p))
    table = _keep_table(p, bits, x.dtype, x.device)  # [256, 8 // bits]: byte -> its elements' scaled keep values
    keep = table.index_select(0, words.view(torch.uint8).view(-1, 8)[:, _LOW_LANES[1]].reshape(-1).long())
    return x * keep.view(-1)[:n].view(x.shape)


# the low 7 bytes / 3 int16 lanes of an int64 word, whatever the byte order
_LOW_LANES = {1: slice(0, 7), 2: slice(0, 3)} if sys.byteorder == "little" else {1: slice(1, 8), 2: slice(1, 4)}


@functools.cache
def _keep_table(p: float, bits: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    fields = (torch.arange(256)[:, None] >> torch.arange(0, 8, bits)) & (2**bits - 1)
    return ((fields >= p * 2**bits) / (1 - p)).to(dtype=dtype, device=device)


class Dropout(nn.Dropout):
    """nn.Dropout, or `cheap_dropout` when `cheap` (same keep probability, far cheaper masks on CPU)."""

    def __init__(self, p: float, cheap: bool = False) -> None:
        super().__init__(p)
        self.cheap = cheap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cheap_dropout(x, self.p) if self.cheap and self.training else super().forward(x)


class Block(nn.Module):
    def __init__(
        self, hidden_size: int, num_heads: int, dropout: float, attn_dropout: float, fast_dropout: bool = False
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.attn_dropout = Dropout(attn_dropout, fast_dropout)
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.attn_norm = nn.LayerNorm(hidden_size, eps=LAYER_NORM_EPS)
        self.dense_1 = nn.Linear(hidden_size, 4 * hidden_size)
        self.dense_2 = nn.Linear(4 * hidden_size, hidden_size)
        self.ffn_norm = nn.LayerNorm(hidden_size, eps=LAYER_NORM_EPS)
        self.dropout = Dropout(dropout, fast_dropout)

    def forward(self, h: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """[B, L, d] -> [B, L, d], or [B, 1, d] for the last position alone (it still reads every key)."""
        B, _, d = h.shape
        heads = lambda x: x.view(B, -1, self.num_heads, d // self.num_heads).transpose(1, 2)  # noqa: E731
        k, v = heads(self.key(h)), heads(self.value(h))
        if last_only:
            h, mask = h[:, -1:], mask[..., -1:, :]
        q = heads(self.query(h))
        drop = self.attn_dropout
        if drop.cheap and self.training and drop.p > 0:  # SDPA would draw its own (slow) mask
            attended = drop(torch.softmax(q @ k.transpose(-1, -2) / (d // self.num_heads) ** 0.5 + mask, -1)) @ v
        else:
            attended = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=drop.p if self.training else 0.0
            )
        attended = attended.transpose(1, 2).reshape(B, -1, d)
        a = self.attn_norm(h + self.dropout(self.dense(attended)))
        return self.ffn_norm(a + self.dropout(self.dense_2(F.gelu(self.dense_1(a)))))


class TransformerEncoder(nn.Module):
    def __init__(
        self,
        n_items: int,
        hidden_size: int = 64,
        num_layers: int = 2,
        num_heads: int = 2,
        max_len: int = 50,
        dropout: float = 0.5,
        attn_dropout: float = 0.5,
        causal: bool = True,
        extra_tokens: int = 0,
        fast_dropout: bool = False,
        item_table: bool = True,
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.causal = causal  # False: bidirectional (BERT4Rec), every item position reads every other
        # row 0 = padding, rows 1..n items, then `extra_tokens` special rows (BERT4Rec's mask token);
        # item_table=False: the caller passes the item vectors (LLM-ESR's two views share this backbone)
        if item_table:
            self.item_embeddings = nn.Embedding(n_items + 1 + extra_tokens, hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(max_len, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=LAYER_NORM_EPS)
        self.dropout = Dropout(dropout, fast_dropout)
        self.blocks = nn.ModuleList(
            Block(hidden_size, num_heads, dropout, attn_dropout, fast_dropout) for _ in range(num_layers)
        )
        self.apply(reference_init)

    def forward(
        self, inputs: torch.Tensor, last_only: bool = False, vectors: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[B, L] item ids (L <= max_len, right-aligned) -> [B, L, d] output at every position, or [B, d] at
        the last one (`last_only`: the final block then computes that position alone, for scoring).
        `vectors` [B, L, d]: the items' input vectors, instead of the encoder's own item table."""
        L = inputs.shape[1]
        if L > self.max_len:
            raise ValueError(
                f"sequences of width {L} exceed max_len={self.max_len}; keep the last {self.max_len} items"
            )
        positions = self.position_embeddings.weight[self.max_len - L :]
        items = self.item_embeddings(inputs) if vectors is None else vectors
        h = self.dropout(self.norm(items + positions))
        mask = attention_mask(inputs, self.causal, h.dtype)
        for i, block in enumerate(self.blocks):
            h = block(h, mask, last_only and i == len(self.blocks) - 1)
        return h[:, -1] if last_only else h

    def forward_by_span(self, inputs: torch.Tensor) -> torch.Tensor:
        """[B, L] -> [B, L, d]: `forward`'s outputs from each row's first item on, zero before it. Rows
        are encoded in groups of similar span, each trimmed to its widest row (one host sync per call)."""
        L = inputs.shape[1]
        begun = started(inputs)
        spans = begun.sum(1)
        order = spans.argsort()
        groups = span_groups(spans[order].tolist())
        outputs = []
        for rows, width in zip(order.split([size for size, _ in groups]), (width for _, width in groups)):
            h = self(inputs.index_select(0, rows)[:, L - width :])
            h = h.masked_fill(~begun.index_select(0, rows)[:, L - width :, None], 0.0)
            outputs.append(F.pad(h, (0, 0, L - width, 0)))
        return torch.cat(outputs).index_select(0, order.argsort())


def started(inputs: torch.Tensor) -> torch.Tensor:
    """[B, L] bool: True from each row's first item on (later zeros, such as masked items, included)."""
    return (inputs > 0).cumsum(1) > 0


def span_groups(spans: list[int], group_cost: int = GROUP_COST) -> list[tuple[int, int]]:
    """Consecutive groups of ascending `spans`, as (rows, width), each encoded at its widest span (at
    least 1): the grouping with the least total of rows x width + group_cost per group."""
    values = sorted(set(spans))
    ends = [bisect.bisect_right(spans, v) for v in values]  # rows with span <= values[j]
    best, cut = [0], [0]  # best[j + 1]: the cheapest grouping of the rows with span <= values[j]
    for j, v in enumerate(values):
        costs = [best[i] + (ends[j] - (ends[i - 1] if i else 0)) * max(v, 1) + group_cost for i in range(j + 1)]
        cut.append(min(range(j + 1), key=costs.__getitem__))
        best.append(costs[cut[-1]])
    groups, j = [], len(values) - 1
    while j >= 0:
        i = cut[j + 1]
        groups.append((ends[j] - (ends[i - 1] if i else 0), max(values[j], 1)))
        j = i - 1
    return groups[::-1]


def attention_mask(inputs: torch.Tensor, causal: bool, dtype: torch.dtype) -> torch.Tensor:
    """[B, 1, 1 or L, L] additive mask: query i may read key j when j holds an item (and, causal, j <= i);
    blocked pairs get BLOCKED."""
    allowed = (inputs > 0)[:, None, None, :]
    if causal:
        L = inputs.shape[1]
        allowed = allowed & torch.ones(L, L, dtype=torch.bool, device=inputs.device).tril()
    return torch.zeros(allowed.shape, dtype=dtype, device=inputs.device).masked_fill_(~allowed, BLOCKED)


def reference_init(module: nn.Module) -> None:
    """The reference code's init, for `module.apply`: normal(0, 0.02) weights (embeddings too, padding row
    included), zero biases, LayerNorm at identity."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
