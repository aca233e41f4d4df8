"""Contrastive pieces shared by CL4SRec, ICLRec and ELCRec (METHODS.md), and CL4SRec itself.

nce(a, b): symmetric NT-Xent over the 2B rows [a; b], dot-product similarity / temperature; row i of a
and row i of b are positives, every other row of both views a negative, self-similarity excluded.
The similarity matrix is a Gram matrix R Rᵀ, so its gradient is (G + Gᵀ) R: one matmul instead of the
two autograd would run (the flattened [2B, L·d] views make this a large share of a CL step).
Under torch.distributed, a and b are this process's rows and the negatives are every process's rows
(see elcrec.distributed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..distributed import gather_rows, rank, world_size
from .augment import augment
from .sasrec import SASRec


class Gram(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rows: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(rows)
        return rows @ rows.T

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (rows,) = ctx.saved_tensors
        return ((grad + grad.T) @ rows.to(grad.dtype)).to(rows.dtype)  # grad is half precision under autocast


def nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    n, total = len(a), len(a) * world_size()
    rows = torch.cat([a, b])
    if world_size() == 1:
        sim = Gram.apply(rows) / temperature
    else:  # keys: [a of every process; b of every process]
        sim = rows @ torch.cat([gather_rows(a), gather_rows(b)]).T / temperature
    own = torch.arange(n, device=sim.device) + rank() * n  # this process's rows among the keys
    sim[torch.arange(2 * n, device=sim.device), torch.cat([own, own + total])] = float("-inf")  # no self-pairs
    return F.cross_entropy(sim, torch.cat([own + total, own]))


class CL4SRec(SASRec):
    """SASRec + InfoNCE between two augmented views' flattened [L * d] outputs (weight cl_weight)."""

    def views(self, inputs: torch.Tensor) -> torch.Tensor:
        """Two augmented views of every row, stacked: [2B, L]."""
        c = self.config
        return torch.cat([augment(inputs, c.augment, c.crop_ratio, c.mask_ratio, c.reorder_ratio) for _ in range(2)])

    def encode_with_views(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Outputs for the rows [B, L, d], two augmented views of each [2B, L], and the views' outputs
        [2B, L, d]: one encoder pass over all 3B rows (engine=fast) or one pass each (engine=reference)."""
        if self.config.engine == "reference":  # the reference draws the views after encoding the rows
            h = self.encoder(inputs)
            views = self.views(inputs)
            return h, views, self.encoder(views)
        views = self.views(inputs)
        h, out = self.encoder(torch.cat([inputs, views])).split([len(inputs), len(views)])
        return h, views, out

    def loss_terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        h, _, out = self.encode_with_views(batch["inputs"])
        v1, v2 = out.flatten(1).chunk(2)
        return {"rec": self.rec_loss(h, batch), "cl": self.config.cl_weight * nce(v1, v2, self.config.temperature)}
