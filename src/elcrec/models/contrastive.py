"""Contrastive pieces shared by CL4SRec, ICLRec and ELCRec (METHODS.md), and CL4SRec itself.

nce(a, b): symmetric NT-Xent over the 2B rows [a; b], dot-product similarity / temperature; row i of a
and row i of b are positives, every other row of both views a negative, self-similarity excluded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .augment import augment
from .sasrec import SASRec

if TYPE_CHECKING:
    from ..config import Config


def nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    rows = torch.cat([a, b])
    sim = rows @ rows.T / temperature
    sim.fill_diagonal_(float("-inf"))
    B = len(a)
    positives = torch.cat([torch.arange(B, 2 * B), torch.arange(0, B)]).to(sim.device)
    return F.cross_entropy(sim, positives)


class CL4SRec(SASRec):
    """SASRec + InfoNCE between two augmented views' flattened [L * d] outputs (weight cl_weight)."""

    def views(self, inputs: torch.Tensor) -> torch.Tensor:
        """Two augmented views of every row, stacked: [2B, L]."""
        c = self.config
        return torch.cat([augment(inputs, c.augment, c.crop_ratio, c.mask_ratio, c.reorder_ratio) for _ in range(2)])

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = batch["inputs"]
        h = self.encoder(inputs)
        out = self.encoder(self.views(inputs)).flatten(1)
        v1, v2 = out.chunk(2)
        return self.rec_loss(h, batch) + self.config.cl_weight * nce(v1, v2, self.config.temperature)
