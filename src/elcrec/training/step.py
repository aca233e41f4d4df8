"""One batch, one step: `make_batch` builds a step's Batch from the training set, `Step` runs the loss under
autocast, backward and the optimiser. The trainer and the benchmarks use both, so benchmarks time what
training runs."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .. import distributed
from ..config import Config
from ..data import TrainSet
from ..models import Batch, SequentialRecommender
from ..runtime import has_native
from .negatives import NegativeSampler

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # amp setting -> autocast dtype


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The dtype the amp setting runs autocast in on `device`, None for none. auto is bf16 where the device
    computes it in hardware and none elsewhere, where emulated bf16 is many times slower than float32; under
    torch.distributed, bf16 only where every process's device does, so that all train in one precision."""
    if amp == "auto":
        native = torch.tensor(int(has_native(torch.bfloat16, device)), device=device)
        return torch.bfloat16 if distributed.all_min(native).item() else None
    return AMP_DTYPES.get(amp)


def amp_name(dtype: torch.dtype | None) -> str:
    """The amp setting that runs autocast in `dtype` (none for None)."""
    return next((name for name, found in AMP_DTYPES.items() if found == dtype), "none")


@dataclass
class TrainTensors:
    """A training set as CPU tensors (rows are gathered from them every step)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    users: torch.Tensor

    @classmethod
    def of(cls, train: TrainSet) -> TrainTensors:
        return cls(torch.from_numpy(train.inputs), torch.from_numpy(train.targets), torch.from_numpy(train.users))

    def __len__(self) -> int:
        return len(self.inputs)


def make_batch(
    train: TrainTensors, rows: torch.Tensor, device: torch.device, sampler: NegativeSampler | None = None
) -> Batch:
    """This process's share of the global batch `rows`. Negatives are drawn for the global batch in every
    process (one stream, as in a single process), then sharded."""
    local = distributed.shard(rows)
    targets = train.targets[rows].to(device)
    negatives = None
    if sampler is not None:
        negatives = distributed.shard(sampler.sample(train.users[rows].to(device), targets))
    return Batch(
        inputs=train.inputs[local].to(device),
        targets=distributed.shard(targets),
        rows=local.to(device),
        negatives=negatives,
    )


def lr_factor(config: Config, steps_per_epoch: int) -> Callable[[int], float]:
    """The learning rate of step n as a share of config.lr: a linear warm-up over warmup_epochs, then constant or
    a cosine decay to 0 at the end of the last epoch."""
    warmup = round(config.warmup_epochs * steps_per_epoch)
    total = config.epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.lr_schedule == "constant":
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * min((step - warmup) / max(total - warmup, 1), 1.0)))

    return factor


class Step:
    """loss -> backward -> Adam (its learning rate on the config's schedule), under autocast when config.amp
    asks for it on `device` (fp16 with loss scaling). Under torch.distributed the loss runs inside
    DistributedDataParallel, which averages the gradients; `sync_buffers` gives every process rank 0's
    buffers."""

    def __init__(
        self, model: SequentialRecommender, config: Config, device: torch.device, steps_per_epoch: int = 1
    ) -> None:
        self.model = model
        self.device_type = device.type
        self.amp_dtype = autocast_dtype(config.amp, device)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor(config, steps_per_epoch))
        # fp16 gradients underflow: the loss is scaled
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.loss_terms = model.loss_terms
        if distributed.world_size() > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.loss_terms = DistributedDataParallel(
                distributed.LossModule(model), device_ids=[device.index] if device.type == "cuda" else None
            )
            # buffers synced when built, then by sync_buffers, not before every step: LLM-ESR's frozen text
            # table alone is tens of MB
            self.loss_terms.broadcast_buffers = False

    def __call__(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One optimiser step on `batch`; returns the loss's named terms (not detached)."""
        with torch.autocast(self.device_type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            terms = self.loss_terms(batch)
            loss = sum(terms.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.step()
        return terms

    def sync_buffers(self) -> None:
        """Rank 0's buffers (running statistics) on every process, as the weights are after each step."""
        for buffer in self.model.buffers():
            distributed.broadcast(buffer)

    def finite(self) -> torch.Tensor:
        """Two bools in a tensor (no host sync): whether every trainable weight is finite, and whether the optimiser's
        state is (Adam's moments: an infinite exp_avg_sq makes every later update 0, a NaN one NaN)."""
        weights = torch.stack([p.detach().isfinite().all() for p in self.model.parameters() if p.requires_grad]).all()
        moments = [
            value.isfinite().all()
            for state in self.optimizer.state.values()
            for name, value in state.items()
            if name != "step"  # a count, kept on the CPU
        ]
        return torch.stack([weights, torch.stack(moments).all() if moments else weights])

    def state_dict(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "schedule": self.schedule.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if "schedule" in state:  # states saved before schedules existed trained at a constant rate
            self.schedule.load_state_dict(state["schedule"])
