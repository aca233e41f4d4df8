"""The in-memory dataset: every user's item sequence, oldest first, with internal ids and the id mapping."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_SEQUENCE_LENGTH = 3  # leave-one-out needs an input item, a validation item and a test item


@dataclass
class SequenceData:
    """Users' sequences stored flat (CSR): user u's items are `items[offsets[u]:offsets[u + 1]]`.

    Internal item ids run 1..n_items (0 is padding); internal id i is the original id `item_ids[i - 1]`.
    """

    items: np.ndarray  # int64, all sequences concatenated
    offsets: np.ndarray  # int64, [n_users + 1]
    user_ids: np.ndarray  # original user id of each sequence
    item_ids: np.ndarray  # original item id of each internal id - 1
    name: str = "data"
    intents: np.ndarray | None = None  # planted intent of each interaction (synthetic data only)
    ring_positions: np.ndarray | None = None  # [n_items] position of items 1..n in their intent's ring (synthetic only)

    def __post_init__(self) -> None:
        self.items = np.asarray(self.items, dtype=np.int64)
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        self.user_ids, self.item_ids = np.asarray(self.user_ids), np.asarray(self.item_ids)
        if len(self.offsets) != len(self.user_ids) + 1 or self.offsets[0] != 0 or self.offsets[-1] != len(self.items):
            raise ValueError("offsets must have one entry per user plus one, from 0 to len(items)")
        lengths = np.diff(self.offsets)
        if (short := np.flatnonzero(lengths < MIN_SEQUENCE_LENGTH)).size:
            raise ValueError(
                f"{short.size} user(s) have fewer than {MIN_SEQUENCE_LENGTH} items (user {self.user_ids[short[0]]}: "
                f"{lengths[short[0]]}; offsets must not decrease): leave-one-out needs an input, a validation and a "
                "test item"
            )
        if len(self.items) and (self.items.min() < 1 or self.items.max() > len(self.item_ids)):
            raise ValueError("internal item ids must lie in 1..n_items")

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return len(self.items)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, user: int) -> np.ndarray:
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def summary(self) -> str:
        lengths = self.lengths
        return (
            f"{self.name}: {self.n_users:,} users, {self.n_items:,} items, {self.n_interactions:,} interactions, "
            f"avg length {lengths.mean():.1f} (min {lengths.min()}, max {lengths.max()})"
        )
