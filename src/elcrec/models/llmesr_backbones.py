"""LLM-ESR's own backbones and cross-attention, as its public code computes them (backbone_code=public; the code
of Applied-Machine-Learning-Lab/LLM-ESR, models/SASRec.py, Bert4Rec.py, GRU4Rec.py, utils.py, DualLLMSRS.py).

SASRec and BERT4Rec share one block (BERT4Rec's attends both ways). For a view's item vectors v [B, L, d]:
    x = Dropout(√d · v + P[p]) ⊙ m        p = 1, 2, ... from the oldest item in the window, 0 under padding;
                                           m = 1 at items: padded rows enter as zero vectors, and stay keys
    per block:  q = LN(x);  x = q + MHA(q, x, x)             (the residual carries LN(x), not x)
                x = LN(x);  x = (x + Drop(W2 · Drop(ReLU(W1 · x)))) ⊙ m         (d -> d -> d)
    h = LN(x)                              LayerNorm eps 1e-8; dropout on the attention probabilities too
The public code has no attention mask at all (its causal mask is commented out): a position reads every other,
padded slots included (a zero row's key and value are the projections' biases), so outputs depend on the
number of padded slots and inputs are always max_len wide. causal=True (our default for SASRec) lets position
i read positions j <= i, padding included, as pmixer's SASRec does.
GRU4Rec: h = GRU(v), bias-free, no dropout, over the whole left-padded sequence (padding included).
Cross-attention (Multi_CrossAttention): out = W_o · MHA_2(Q = W_q x, K = W_k y, V = W_v y) + b_o, bias-free Q/K/V,
no dropout, scores of padded keys set to -1e9 (causal: of later keys too).
Init: xavier_normal_ on every weight of two or more dimensions (BaseModel._init_weights); biases and LayerNorm
keep torch's defaults.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .transformer import Dropout

if TYPE_CHECKING:
    from ..config import Config

LAYER_NORM_EPS = 1e-8
BLOCKED = -1e9


def xavier_init(module: nn.Module) -> None:
    """xavier_normal_ on every parameter of two or more dimensions, as the public code's _init_weights."""
    for parameter in module.parameters():
        if parameter.dim() >= 2:
            nn.init.xavier_normal_(parameter)


def item_positions(tokens: torch.Tensor) -> torch.Tensor:
    """[B, L] -> [B, L]: 1, 2, ... from each row's first item (left-padded rows), 0 under padding."""
    present = tokens > 0
    return present.cumsum(1) * present


class FeedForward(nn.Module):
    def __init__(self, d: int, dropout: float, fast_dropout: bool) -> None:
        super().__init__()
        self.inner, self.outer = nn.Linear(d, d), nn.Linear(d, d)  # the public code's 1x1 convolutions
        self.dropout = Dropout(dropout, fast_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.outer(F.relu(self.dropout(self.inner(x)))))


class PublicTransformer(nn.Module):
    """The public SASRec (causal=False: exactly its unmasked code) and BERT4Rec backbone."""

    def __init__(self, config: Config, causal: bool, fast_dropout: bool = False) -> None:
        super().__init__()
        d = config.hidden_size
        self.causal = causal
        # rows 0 (padding) to max_len + 1: BERT4Rec's [MASK] after a full window of max_len items
        self.position_embeddings = nn.Embedding(config.max_len + 2, d)
        self.dropout = Dropout(config.dropout, fast_dropout)
        self.attn_norms = nn.ModuleList(nn.LayerNorm(d, eps=LAYER_NORM_EPS) for _ in range(config.num_layers))
        self.attentions = nn.ModuleList(
            nn.MultiheadAttention(d, config.num_heads, dropout=config.attn_dropout, batch_first=True)
            for _ in range(config.num_layers)
        )
        self.ffn_norms = nn.ModuleList(nn.LayerNorm(d, eps=LAYER_NORM_EPS) for _ in range(config.num_layers))
        self.ffns = nn.ModuleList(FeedForward(d, config.dropout, fast_dropout) for _ in range(config.num_layers))
        self.last_norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        xavier_init(self)

    def embed(self, vectors: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """A view's input: Dropout(√d · v + P[p]) (both views share the table and the dropout)."""
        return self.dropout(vectors * vectors.shape[-1] ** 0.5 + self.position_embeddings(positions))

    def forward(self, inputs: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """[B, L] tokens and their embedded [B, L, d] vectors -> [B, L, d]."""
        keep = (inputs > 0)[..., None].to(vectors.dtype)
        L = inputs.shape[1]
        later = torch.ones(L, L, dtype=torch.bool, device=inputs.device).triu(1) if self.causal else None
        x = vectors * keep
        for attn_norm, attention, ffn_norm, ffn in zip(self.attn_norms, self.attentions, self.ffn_norms, self.ffns):
            q = attn_norm(x)
            x = q + attention(q, x, x, attn_mask=later, need_weights=False)[0]
            x = ffn(ffn_norm(x)) * keep
        return self.last_norm(x)


class PublicGRU(nn.Module):
    """The public GRU4Rec backbone: a bias-free GRU over the padded sequence, no positions, no dropout."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.gru = nn.GRU(config.hidden_size, config.hidden_size, config.num_layers, bias=False, batch_first=True)
        xavier_init(self)

    def embed(self, vectors: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return vectors

    def forward(self, inputs: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        return self.gru(vectors)[0]


def cross_mask(inputs: torch.Tensor, causal: bool) -> torch.Tensor:
    """[B, 1, L, L], True where query i may not read key j: padded keys (the public code's mask); causal, also
    later keys, and a query before the row's first item (no item to read) reads the padding up to it."""
    item = inputs > 0
    blocked = ~item[:, None, None, :]
    if causal:
        L = inputs.shape[1]
        later = torch.ones(L, L, dtype=torch.bool, device=inputs.device).triu(1)
        blocked = (blocked & item[:, None, :, None]) | later
    return blocked


class CrossAttention(nn.Module):
    """The public Multi_CrossAttention: queries from x, keys and values from y, 2 heads."""

    def __init__(self, d: int, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = (nn.Linear(d, d, bias=False) for _ in range(3))
        self.out = nn.Linear(d, d)
        xavier_init(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
        B, L, d = x.shape
        heads = lambda t: t.view(B, L, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        scores = heads(self.query(x)) @ heads(self.key(y)).transpose(-1, -2)
        scores = scores.to(torch.promote_types(scores.dtype, torch.float32))  # under amp: BLOCKED is beyond float16
        weights = torch.softmax(scores.masked_fill(blocked, BLOCKED) / (d // self.heads) ** 0.5, -1)
        return self.out((weights @ heads(self.value(y))).transpose(1, 2).reshape(B, L, d))


def cloze_copies(
    sequence: torch.Tensor, maskable: torch.Tensor, prob: float, mask_token: int, n_items: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The public BERT4Rec's two training rows per user (BertRecTrainDatasetAllUser), stacked [2B, L]:
    (tokens, labelled). First copy: each `maskable` item of `sequence` (items[:-2]) is selected with probability
    `prob` and becomes [MASK] (80%), a uniform random item (10%) or stays (10%); no row is forced to have one.
    Second copy: the sequence with only its last item masked. Labels are the original items where `labelled`."""
    selected = (torch.rand(sequence.shape, device=sequence.device) < prob) & maskable
    kind = torch.rand(sequence.shape, device=sequence.device)
    random_items = torch.randint(1, n_items + 1, sequence.shape, device=sequence.device)
    first = torch.where(kind < 0.8, mask_token, torch.where(kind < 0.9, random_items, sequence))
    first = torch.where(selected, first, sequence)
    last = torch.zeros_like(selected)
    last[:, -1] = True
    return torch.cat([first, sequence.masked_fill(last, mask_token)]), torch.cat([selected, last])
