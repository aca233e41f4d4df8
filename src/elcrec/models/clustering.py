"""Clustering shared by the intent models and LLM-ESR's item-cluster constraint: faiss k-means, squared
distances to centres and the nearest centre (computed in float32 under autocast: they pick a centre)."""

from __future__ import annotations

import numpy as np
import torch

from .base import in_float32


def kmeans(x: np.ndarray, k: int, iters: int, restarts: int, seed: int, gpu: bool = False) -> np.ndarray:
    """faiss k-means; returns [k, d] centroids. `gpu` (a run on CUDA): on the first visible GPU when GPU faiss is
    installed (faiss's own gpu=True takes every GPU, the other processes' of a torchrun job included)."""
    import faiss

    if len(x) < k:
        raise ValueError(f"{k} clusters exceed the {len(x)} points to cluster")
    on_gpu = 1 if gpu and hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0 else False
    model = faiss.Kmeans(x.shape[1], k, niter=iters, nredo=restarts, seed=seed, gpu=on_gpu, verbose=False)
    model.train(np.ascontiguousarray(x, dtype=np.float32))
    return model.centroids


@in_float32  # under amp too: these pick each sequence's nearest centre
def squared_distances(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """||x_i - c_k||² as x² + c² - 2x·c (the reference's form), [..., K]."""
    return (x * x).sum(-1, keepdim=True) + (c * c).sum(-1) - 2 * x @ c.T


@in_float32
def nearest_centre(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """argmin_k ||x - c_k||² for every row of x [..., d]: one addmm of c² - 2x·c (x² is the same for every k)."""
    flat = x.reshape(-1, x.shape[-1])
    return row_argmin(torch.addmm((c * c).sum(1), flat, c.T, alpha=-2)).view(x.shape[:-1])


def row_argmin(m: torch.Tensor) -> torch.Tensor:
    """m.argmin(1) for a matrix m: each row's first minimum. On CPU through numpy, whose vectorised argmin is
    several times faster than torch's there."""
    if m.device.type != "cpu":
        return m.argmin(1)
    return torch.from_numpy(m.detach().numpy().argmin(1))
