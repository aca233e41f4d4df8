"""Contrastive pieces shared by CL4SRec, ICLRec and ELCRec (METHODS.md), and CL4SRec itself.

nce(a, b): symmetric NT-Xent over the 2B rows [a; b], dot-product similarity / temperature; row i of a
and row i of b are positives, every other row of both views a negative, self-similarity excluded.
The similarity matrix is a Gram matrix R Rᵀ, so its gradient is (G + Gᵀ) R: one matmul instead of the
two autograd would run (the flattened [2B, L·d] views make this a large share of a CL step). When the
views' outputs are zero before their first item (padding_outputs=zero), `gram` skips the zeros.
Under torch.distributed, a and b are this process's rows and the negatives are every process's rows
(see elcrec.distributed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..distributed import gather_rows, rank, world_size
from .augment import augment
from .base import Batch, in_float32
from .sasrec import SASRec
from .transformer import span_groups


class Gram(torch.autograd.Function):
    """rows [m, L, d] -> [m, m]: the sum over `bands` (a, lo, hi) of R Rᵀ, R = rows[:a, lo:hi] flattened,
    in the top-left a x a corner. Bands cover disjoint positions; one band over everything is the plain
    Gram matrix of the flattened rows. The backward's matmuls run in `grad_dtype` (amp's, as autocast runs
    every other matmul's backward) or the rows' own."""

    @staticmethod
    def forward(
        ctx, rows: torch.Tensor, bands: list[tuple[int, int, int]], grad_dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        ctx.save_for_backward(rows)
        ctx.bands, ctx.grad_dtype = bands, grad_dtype or rows.dtype
        m = len(rows)
        products = [(band := rows[:a, lo:hi].flatten(1)) @ band.T for a, lo, hi in bands]
        sim = products[0].new_zeros(m, m)
        for (a, _, _), product in zip(bands, products):
            sim[:a, :a] += product
        return sim

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (rows,) = ctx.saved_tensors
        grad = (grad + grad.T).to(ctx.grad_dtype)
        grad_rows = torch.zeros_like(rows)
        for a, lo, hi in ctx.bands:
            band = rows[:a, lo:hi].flatten(1).to(grad.dtype)
            grad_rows[:a, lo:hi] = (grad[:a, :a] @ band).view(a, hi - lo, -1).to(rows.dtype)
        return grad_rows, None, None


def gram(rows: torch.Tensor, spans: torch.Tensor | None = None, grad_dtype: torch.dtype | None = None) -> torch.Tensor:
    """The Gram matrix of the flattened rows [m, ...]. With `spans`, rows [m, L, d] are zero before their
    last spans[i] positions: sorted longest first, bands of positions (the span groups' widths) then run
    over only the rows reaching into them. `grad_dtype`: the backward's precision (default: the rows')."""
    if spans is None:
        return Gram.apply(rows.view(len(rows), 1, -1), [(len(rows), 0, 1)], grad_dtype)
    m, L, _ = rows.shape
    order = spans.argsort(descending=True)
    bands, active, done = [], m, 0
    for size, width in span_groups(spans[order].flip(0).tolist()):
        bands.append((active, L - width, L - done))
        active, done = active - size, width
    inverse = order.argsort()
    return Gram.apply(rows.index_select(0, order), bands, grad_dtype).index_select(0, inverse).index_select(1, inverse)


def nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 1.0, spans: torch.Tensor | None = None) -> torch.Tensor:
    """a, b: [n, D], or [n, L, d] outputs compared flattened; spans [2n] (optional): the rows of [a; b] are
    zero before their last spans positions. Under amp the similarities are float32 (flattened outputs'
    similarities reach hundreds, where bf16 rounds by 0.5 at temperature 1); the Gram matrix's gradient
    matmul runs in amp's precision, like every other matmul's backward."""
    device = a.device.type
    grad_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    return _nce(a, b, temperature, spans, grad_dtype)


@in_float32
def _nce(
    a: torch.Tensor, b: torch.Tensor, temperature: float, spans: torch.Tensor | None, grad_dtype: torch.dtype | None
) -> torch.Tensor:
    n, total = len(a), len(a) * world_size()
    rows = torch.cat([a, b])
    if world_size() == 1:
        sim = gram(rows, spans, grad_dtype) / temperature
    else:  # keys: [a of every process; b of every process]
        sim = rows.flatten(1) @ torch.cat([gather_rows(a.flatten(1)), gather_rows(b.flatten(1))]).T / temperature
    own = torch.arange(n, device=sim.device) + rank() * n  # this process's rows among the keys
    sim[torch.arange(2 * n, device=sim.device), torch.cat([own, own + total])] = float("-inf")  # no self-pairs
    return F.cross_entropy(sim, torch.cat([own + total, own]))


class CL4SRec(SASRec):
    """SASRec + InfoNCE between two augmented views' flattened [L * d] outputs (weight cl_weight)."""

    reads_padding = True  # the flattened outputs include every position (unless padding_outputs=zero)

    def views(self, inputs: torch.Tensor) -> torch.Tensor:
        """Two augmented views of every row, stacked: [2B, L]."""
        c = self.config
        return torch.cat([augment(inputs, c.augment, c.crop_ratio, c.mask_ratio, c.reorder_ratio) for _ in range(2)])

    def encode_with_views(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Outputs for the rows [B, L, d], two augmented views of each [2B, L], and the views' outputs [2B, L, d]."""
        return self.plan.rows_and_views(self.sequence_output, inputs, self.views)

    def instance_cl(self, out: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """Weighted NT-Xent between the two views' outputs out [2B, L, d'], compared flattened."""
        return self.config.cl_weight * nce(*out.chunk(2), self.config.temperature, spans=self.plan.spans(views))

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        h, views, out = self.encode_with_views(batch.inputs)
        return {"rec": self.rec_loss(h, batch), "cl": self.instance_cl(out, views)}
