"""The contract every model keeps, so training, evaluation and serving never special-case a model.

- `histories`: [B, L] item ids, right-aligned, left-padded with 0 (L <= max_len).
- `score(histories)` -> [B, n_items]; column j scores item id j + 1 (id 0 is padding, never ranked).
- `encode(histories)` -> [B, d], the user representation the scores are built from.
- `loss(batch)` -> scalar training loss; `batch` holds `inputs`, `targets` ([B, L]) and, when
  `needs_negatives`, `negatives` ([B, L] items the user never interacted with).
- `prepare(train)` runs once before the first epoch (counting, cluster initialisation, ...);
  `start_epoch(train)` before every epoch (ICLRec's k-means E-step).
Models read their settings from the run's Config (`self.config`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from ..data import TrainSet


class SequentialRecommender(nn.Module):
    needs_negatives = False

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

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
