"""Long-tail groups for evaluation, by the 80/20 (Pareto) split LLM-ESR reports:

  head items: the `head_share` (20%) most popular items, popularity counted over every user's training
              part (items[:-2]) so held-out items do not count; tail items: the rest. A user falls in the
              group of the item being predicted.
  head users: the `head_share` of users with the longest histories before the predicted item (ties broken
              by user order); tail users: the rest.

`evaluate(model, split, groups=long_tail_groups(data, split))` adds each group's metrics as
"<group>/<metric>" (e.g. tail_items/NDCG@10) beside the overall ones, in full-ranking and sampled mode.
"""

from __future__ import annotations

import numpy as np

from ..data import EvalSet, SequenceData

GROUPS = ("head_items", "tail_items", "head_users", "tail_users")


def item_popularity(data: SequenceData) -> np.ndarray:
    """Interactions of each item id (index 0 = padding) in the users' training parts, items[:-2]."""
    position = np.arange(data.n_interactions) - np.repeat(data.offsets[:-1], data.lengths)
    in_training = position < np.repeat(data.lengths - 2, data.lengths)
    return np.bincount(data.items[in_training], minlength=data.n_items + 1)


def long_tail_groups(data: SequenceData, split: EvalSet, head_share: float = 0.2) -> dict[str, np.ndarray]:
    """A boolean mask over the split's users for each of GROUPS."""
    if not 0 < head_share < 1:
        raise ValueError(f"head_share={head_share}: must lie between 0 and 1")
    popularity = item_popularity(data)
    by_popularity = np.argsort(-popularity[1:], kind="stable") + 1
    head_item = np.zeros(data.n_items + 1, dtype=bool)
    head_item[by_popularity[: round(head_share * data.n_items)]] = True
    lengths = np.diff(split.history_offsets)
    head_user = np.zeros(len(lengths), dtype=bool)
    head_user[np.argsort(-lengths, kind="stable")[: round(head_share * len(lengths))]] = True
    target_head = head_item[split.targets]
    return {"head_items": target_head, "tail_items": ~target_head, "head_users": head_user, "tail_users": ~head_user}
