"""Multi-process training on torch.distributed, launched by torchrun (`torchrun --nproc_per_node N -m elcrec
train ...`): gloo on CPU, nccl on CUDA. Without torchrun's environment everything here is a no-op.

Semantics: `batch_size` stays the global batch. Every process draws the same permutation, takes an equal
shard of each global batch, and the losses are written so that DistributedDataParallel's gradient average
equals the gradient of the single-process loss on the whole batch:
  - per-target means (the recommendation losses) divide the shard's sum by the global count (`batch_mean`);
  - the contrastive losses see every process's rows (`gather_rows`, differentiable), so in-batch
    negatives are the global batch's, as in a single process;
  - per-row means (cluster loss) need nothing, the shards being equal.
What still differs from one process is randomness: each process has its own dropout and augmentation
stream (tests/test_distributed.py checks equality with randomness switched off).
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if world_size() > 1 else 0


def is_main() -> bool:
    return rank() == 0


def launched() -> bool:
    """Started by torchrun (or another launcher that sets WORLD_SIZE) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launched_rank() -> int:
    """This process's rank as its launcher set it (RANK; 0 when not launched), known before the group is joined."""
    return int(os.environ.get("RANK", "0"))


def setup(device: torch.device) -> torch.device:
    """Join the process group torchrun describes; on CUDA each process takes the GPU of its LOCAL_RANK."""
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Every process's x (equal shapes) stacked in rank order; gradients flow back to each process's rows."""
    return _GatherRows.apply(x) if world_size() > 1 else x


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(_all_gather(x))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every process's loss reaches these rows
        return grad.chunk(world_size())[rank()]


def batch_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over the global batch, scaled so that DDP's gradient average gives its gradient."""
    if world_size() == 1:
        return values.mean()
    count = torch.tensor(float(values.numel()), device=values.device)
    dist.all_reduce(count)
    return values.sum() * world_size() / count


def all_sum(x: torch.Tensor) -> torch.Tensor:
    if world_size() > 1:
        dist.all_reduce(x)
    return x


def all_max(x: torch.Tensor) -> torch.Tensor:
    if world_size() > 1:
        dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return x


def all_min(x: torch.Tensor) -> torch.Tensor:
    if world_size() > 1:
        dist.all_reduce(x, op=dist.ReduceOp.MIN)
    return x


def broadcast(x: torch.Tensor) -> torch.Tensor:
    """Rank 0's x on every process (in place)."""
    if world_size() > 1:
        dist.broadcast(x, 0)
    return x


def gather_objects(value: Any) -> list[Any]:
    """[value of rank 0, value of rank 1, ...] on every process."""
    if world_size() == 1:
        return [value]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def gather_to_main(x: torch.Tensor) -> torch.Tensor | None:
    """Every process's x (rows may differ in number) concatenated in rank order on rank 0, None elsewhere.
    An all_gather (gloo and nccl both have it): each process receives the parts, rank 0 keeps them."""
    if world_size() == 1:
        return x
    sizes = [int(size) for size in _all_gather(torch.tensor([len(x)], device=x.device))]
    padded = torch.zeros((max(sizes), *x.shape[1:]), dtype=x.dtype, device=x.device)  # all_gather needs equal shapes
    padded[: len(x)] = x
    parts = _all_gather(padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)]) if is_main() else None


def _all_gather(x: torch.Tensor) -> list[torch.Tensor]:
    out = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(out, x.contiguous())
    return out


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def leave(after_error: bool = False) -> None:
    """Leave the process group: together (gloo aborts a process whose peer leaves first, hence the barrier), or
    after an error at once (the others may be inside another collective, where a barrier would wait for this
    process until gloo's 30-minute timeout; they fail when it exits, and torchrun ends the rest). gloo's worker
    thread frees the last work after waking us, which drops tensors of earlier collectives and needs the GIL for
    that: the pause hands it over, or an interpreter already finalising aborts the process."""
    if not after_error:
        dist.barrier()
    dist.destroy_process_group()
    time.sleep(0.1)


def shard(rows: torch.Tensor) -> torch.Tensor:
    """This process's equal, contiguous share of a global batch of rows (its length a multiple of the world)."""
    return rows.chunk(world_size())[rank()] if world_size() > 1 else rows


class LossModule(torch.nn.Module):
    """DistributedDataParallel syncs gradients for what runs in a module's forward: this forward is the loss."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.model.loss_terms(batch)
