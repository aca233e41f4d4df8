"""Long-tail groups for evaluation, by either rule of `long_tail`:

  share       the 80/20 (Pareto) split LLM-ESR's paper reports. Head items: the `head_share` (20%) most
              popular items, popularity counted over every user's training part (items[:-2]) so held-out
              items do not count; tail items: the rest. Head users: the head_share of users with the longest
              histories before the predicted item (ties broken by user order); tail users: the rest.
  thresholds  LLM-ESR's code (utils.py metric_pop_report and metric_len_report, generator.py get_item_pop):
              a tail item has fewer than `tail_item` distinct users over all the data, held-out items
              included; a tail (short) user has fewer than `short_user` items in the evaluation input (the
              last max_len before the target). The public scripts pair it with 100 sampled negatives
              (sampled_negatives=100) and set the thresholds per dataset (see the llmesr presets).
A user falls in the group of the item being predicted. `evaluate(model, split, groups=...)` adds each group's
metrics as "<group>/<metric>" (e.g. tail_items/NDCG@10) beside the overall ones, in full-ranking and sampled mode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..data import EvalSet, SequenceData

if TYPE_CHECKING:
    from ..config import Config

GROUPS = ("head_items", "tail_items", "head_users", "tail_users")


def item_popularity(data: SequenceData) -> np.ndarray:
    """Interactions of each item id (index 0 = padding) in the users' training parts, items[:-2]."""
    position = np.arange(data.n_interactions) - np.repeat(data.offsets[:-1], data.lengths)
    in_training = position < np.repeat(data.lengths - 2, data.lengths)
    return np.bincount(data.items[in_training], minlength=data.n_items + 1)


def item_users(data: SequenceData) -> np.ndarray:
    """Distinct users of each item id (index 0 = padding) over all the data."""
    users = np.repeat(np.arange(data.n_users), data.lengths)
    pairs = np.unique(users * (data.n_items + 1) + data.items)
    return np.bincount(pairs % (data.n_items + 1), minlength=data.n_items + 1)


def long_tail_groups(data: SequenceData, split: EvalSet, head_share: float = 0.2) -> dict[str, np.ndarray]:
    """A boolean mask over the split's users for each of GROUPS, by the share rule."""
    if not 0 < head_share < 1:
        raise ValueError(f"head_share={head_share}: must lie between 0 and 1")
    popularity = item_popularity(data)
    by_popularity = np.argsort(-popularity[1:], kind="stable") + 1
    head_item = np.zeros(data.n_items + 1, dtype=bool)
    head_item[by_popularity[: round(head_share * data.n_items)]] = True
    lengths = np.diff(split.history_offsets)
    head_user = np.zeros(len(lengths), dtype=bool)
    head_user[np.argsort(-lengths, kind="stable")[: round(head_share * len(lengths))]] = True
    return _groups(head_item[split.targets], head_user)


def threshold_groups(data: SequenceData, split: EvalSet, tail_item: int, short_user: int) -> dict[str, np.ndarray]:
    """A boolean mask over the split's users for each of GROUPS, by LLM-ESR's thresholds."""
    head_item = item_users(data) >= tail_item
    return _groups(head_item[split.targets], (split.inputs > 0).sum(1) >= short_user)


def groups_of(config: Config, data: SequenceData, split: EvalSet) -> dict[str, np.ndarray]:
    """The groups config.long_tail names (thresholds: config.tail_item_threshold, short_user_threshold)."""
    if config.long_tail == "thresholds":
        return threshold_groups(data, split, config.tail_item_threshold, config.short_user_threshold)
    return long_tail_groups(data, split)


def _groups(target_head: np.ndarray, head_user: np.ndarray) -> dict[str, np.ndarray]:
    return {"head_items": target_head, "tail_items": ~target_head, "head_users": head_user, "tail_users": ~head_user}
