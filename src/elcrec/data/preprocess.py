"""From an interaction table to sequences: order, deduplicate, k-core filter, remap ids."""

from __future__ import annotations

import logging

import numpy as np

from .dataset import SequenceData
from .readers import DataError, Interactions

log = logging.getLogger(__name__)

MIN_SEQUENCE_LENGTH = 3  # leave-one-out needs an input item, a validation item and a test item


def build_sequences(interactions: Interactions, dedup: str = "none", kcore: int = 0, name: str = "data") -> SequenceData:
    """Chronological per-user sequences (ties keep file order), then dedup, iterated k-core, and the
    removal of users too short to split (logged with a count). Ids are remapped to 1..n in sorted order
    of the original ids, so files whose ids already run 1..n keep them."""
    user_codes, user_ids = _codes(interactions.users)
    item_codes, item_ids = _codes(interactions.items)
    order = np.lexsort((interactions.times, user_codes))  # stable: equal times keep file order
    users, items = user_codes[order], item_codes[order]

    if dedup == "all":
        _, first = np.unique(users.astype(np.int64) * len(item_ids) + items, return_index=True)
        keep = np.zeros(len(users), dtype=bool)
        keep[first] = True
        users, items = users[keep], items[keep]
    elif dedup == "consecutive":
        keep = np.ones(len(users), dtype=bool)
        keep[1:] = (users[1:] != users[:-1]) | (items[1:] != items[:-1])
        users, items = users[keep], items[keep]
    elif dedup != "none":
        raise ValueError(f"dedup={dedup!r}: choose none, all or consecutive")

    if kcore > 0:
        users, items = kcore_filter(users, items, kcore)

    lengths = np.bincount(users, minlength=len(user_ids))
    too_short = lengths < MIN_SEQUENCE_LENGTH
    n_short = int((too_short & (lengths > 0)).sum())
    if n_short:
        log.warning("%s: dropped %d user(s) with fewer than %d interactions", name, n_short, MIN_SEQUENCE_LENGTH)
    keep = ~too_short[users]
    users, items = users[keep], items[keep]
    if len(users) == 0:
        raise DataError(f"{interactions.source}: no user has {MIN_SEQUENCE_LENGTH} or more interactions after filtering")

    # remap to contiguous ids over what survived
    kept_users, users = np.unique(users, return_inverse=True)
    kept_items, items = np.unique(items, return_inverse=True)
    offsets = np.zeros(len(kept_users) + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=len(kept_users)), out=offsets[1:])
    return SequenceData(items=items + 1, offsets=offsets, user_ids=user_ids[kept_users],
                        item_ids=item_ids[kept_items], name=name)


def kcore_filter(users: np.ndarray, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop users and items with fewer than k interactions, repeatedly, until every one left has k."""
    while True:
        user_count = np.bincount(users)
        item_count = np.bincount(items)
        keep = (user_count[users] >= k) & (item_count[items] >= k)
        if keep.all():
            return users, items
        users, items = users[keep], items[keep]


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique ids and each value's index among them."""
    if values.dtype.kind == "O":
        values = values.astype(str)
    uniques, codes = np.unique(values, return_inverse=True)
    return codes.astype(np.int64), uniques
