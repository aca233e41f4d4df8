"""Most-popular baseline: every user gets the items ranked by how often they occur in training."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from .base import SequentialRecommender

if TYPE_CHECKING:
    from ..config import Config
    from ..data import TrainSet


class Popularity(SequentialRecommender):
    def __init__(self, n_items: int, config: Config) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("counts", torch.zeros(n_items, dtype=torch.float32))

    def prepare(self, train: TrainSet) -> None:
        """Count each item over the training windows: every target plus the first input item."""
        first_input = train.inputs[np.arange(len(train.inputs)), (train.inputs > 0).argmax(axis=1)]
        seen = np.concatenate([first_input, train.targets.ravel()])
        counts = np.bincount(seen, minlength=len(self.counts) + 1)[1:]
        self.counts.copy_(torch.from_numpy(counts).float())

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        return self.counts.expand(histories.shape[0], -1).clone()

    def encode(self, histories: torch.Tensor) -> torch.Tensor:
        raise TypeError("the popularity baseline has no user representation")
