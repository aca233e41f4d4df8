"""The contract every model keeps, so training, evaluation and serving never special-case a model.

- `histories`: [B, L] item ids, right-aligned, left-padded with 0 (L <= max_len).
- `score(histories)` -> [B, n_items]; column j scores item id j + 1 (id 0 is padding, never ranked);
  a new tensor the caller may modify in place (the evaluator masks seen items in it).
- `encode(histories)` -> [B, d], the user representation the scores are built from.
- `loss_terms(batch)` -> the training loss's weighted terms by name (rec, cl, cluster, intent_cl, ...);
  `loss(batch)` is their sum. `batch` is a `Batch`.
- `create(config, data)` makes a model to train on `data` (LLM-ESR reads its texts there);
  `from_weights(config, n_items, weights)` the model that a saved state dict fits.
- `prepare(train)` runs once before the first epoch (counting, cluster initialisation, ...);
  `start_epoch(train)` before every epoch (ICLRec's k-means E-step).
Models read their settings from the run's Config (`self.config`) and how to compute from its engine plan
(`models.engine`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import batch_mean

if TYPE_CHECKING:
    from ..config import Config
    from ..data import SequenceData, TrainSet


@dataclass
class Batch:
    """One training step's sequences (elcrec.training.make_batch builds it)."""

    inputs: torch.Tensor  # [B, L] item ids, right-aligned, left-padded with 0
    targets: torch.Tensor  # [B, L] the next item at every position, 0 under padding
    rows: torch.Tensor  # [B] each row's index in the training set (LLM-ESR finds similar users by it)
    negatives: torch.Tensor | None = None  # [B, L] items the user never saw, when the model needs_negatives

    def last(self, width: int) -> Batch:
        """The batch's last `width` positions."""
        negatives = None if self.negatives is None else self.negatives[:, -width:]
        return replace(self, inputs=self.inputs[:, -width:], targets=self.targets[:, -width:], negatives=negatives)


class SequentialRecommender(nn.Module):
    needs_negatives = False

    @classmethod
    def create(cls, config: Config, data: SequenceData) -> SequentialRecommender:
        """A new model to train on `data`."""
        return cls(data.n_items, config)

    @classmethod
    def from_weights(cls, config: Config, n_items: int, weights: dict[str, Any]) -> SequentialRecommender:
        """The model a saved state dict of these settings fits (its weights not yet loaded)."""
        return cls(n_items, config)

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def loss(self, batch: Batch) -> torch.Tensor:
        return sum(self.loss_terms(batch).values())

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, histories: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def prepare(self, train: TrainSet) -> None:
        """Nothing to prepare by default."""

    def start_epoch(self, train: TrainSet) -> None:
        """Nothing to do per epoch by default."""

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())


class NextItemRecommender(SequentialRecommender):
    """A model whose output at every position predicts the next item by dot product with a shared
    item table. Subclasses give `sequence_output` and `item_table`; scoring and the losses live here.

    Losses, averaged over non-padding target positions (`config.loss`):
      bce: -log σ(h·e_pos) - log(1 - σ(h·e_neg)), one uniformly sampled unseen negative per position
           (the reference; computed with logsigmoid instead of log(σ + 1e-24), which only differs where
           the reference's epsilon clips);
      ce:  softmax cross-entropy over all items.
    """

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.needs_negatives = config.loss == "bce"

    @property
    def item_table(self) -> torch.Tensor:
        """[n_items + 1, d] (row 0 padding)."""
        raise NotImplementedError

    def sequence_output(self, inputs: torch.Tensor) -> torch.Tensor:
        """[B, L] -> [B, L, d]; outputs at item positions must not depend on leading padding."""
        raise NotImplementedError

    def last_output(self, inputs: torch.Tensor) -> torch.Tensor:
        """[B, L] -> [B, d], the output at the last position (models may compute it alone)."""
        return self.sequence_output(inputs)[:, -1]

    def encode(self, histories: torch.Tensor) -> torch.Tensor:
        return self.last_output(trim_padding(histories))

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        return self.encode(histories) @ self.item_table[1:].T

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        inputs = trim_padding(batch.inputs)  # exact: leading padding never reaches item positions
        return {"rec": self.rec_loss(self.sequence_output(inputs), batch.last(inputs.shape[1]))}

    def rec_loss(self, h: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The recommendation loss from the output `h` [B, L, d] (shared with the CL models); under
        torch.distributed, averaged over every process's targets."""
        present = batch.targets > 0
        table = self.item_table
        if self.config.loss == "ce":
            return batch_mean(F.cross_entropy(h[present] @ table[1:].T, batch.targets[present] - 1, reduction="none"))
        pos = (h * rows(table, batch.targets)).sum(-1)
        neg = (h * rows(table, batch.negatives)).sum(-1)
        return batch_mean((-F.logsigmoid(pos) - F.logsigmoid(-neg))[present])


Fn = TypeVar("Fn", bound=Callable)
HALF = (torch.float16, torch.bfloat16)


def in_float32(fn: Fn) -> Fn:
    """Run `fn` outside autocast with its half-precision tensor arguments in float32 (under amp, for
    similarities and distances whose rounding in bf16 is not small against what they decide)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        device = next(arg.device for arg in args if isinstance(arg, torch.Tensor))
        with torch.autocast(device.type, enabled=False):
            return fn(
                *(arg.float() if isinstance(arg, torch.Tensor) and arg.dtype in HALF else arg for arg in args), **kwargs
            )

    return wrapper  # type: ignore[return-value]


def rows(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """table[ids] through index_select, whose backward (index_add) is several times faster on CPU."""
    return table.index_select(0, ids.reshape(-1)).view(*ids.shape, table.shape[1])


def trim_padding(inputs: torch.Tensor) -> torch.Tensor:
    """Drop leading columns that are padding in every row."""
    occupied = (inputs > 0).any(0).nonzero()
    first = int(occupied[0]) if len(occupied) else inputs.shape[1] - 1
    return inputs[:, first:]


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode (no dropout) for the block, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    tensor = next(model.parameters(), None)
    tensor = next(model.buffers()) if tensor is None else tensor
    return tensor.device
