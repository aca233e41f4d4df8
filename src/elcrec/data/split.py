"""Leave-one-out split (METHODS.md): train on items[:-3] with a target at every position, validate on
items[-2] given items[:-2], test on items[-1] given items[:-1].

Inputs are right-aligned in a [N, max_len] array, left-padded with 0, keeping the most recent items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dataset import SequenceData


def pad_left(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
    """Row r holds items[starts[r]:ends[r]], its last `width` items right-aligned, 0 before them."""
    index = ends[:, None] - width + np.arange(width)[None, :]
    valid = index >= starts[:, None]
    return np.where(valid, items[np.clip(index, 0, max(len(items) - 1, 0))], 0)


@dataclass
class TrainSet:
    users: np.ndarray  # row -> user index
    inputs: np.ndarray  # [N, max_len], items[:-3], left-padded
    targets: np.ndarray  # [N, max_len], the next item at each position (0 under padding)


@dataclass
class EvalSet:
    """Rank `targets` given `inputs`; `history` (CSR by row) holds every item the user has seen before
    the target, which the evaluator masks (the input keeps only the last max_len of them)."""

    users: np.ndarray
    inputs: np.ndarray  # [N, max_len]
    targets: np.ndarray  # [N]
    history: np.ndarray  # flat item ids
    history_offsets: np.ndarray  # [N + 1]


def train_set(data: SequenceData, max_len: int) -> TrainSet:
    starts, ends = data.offsets[:-1], data.offsets[1:]
    users = np.flatnonzero(ends - starts >= 4)  # items[:-3] must hold at least one input
    starts, ends = starts[users], ends[users]
    return TrainSet(
        users=users,
        inputs=pad_left(data.items, starts, ends - 3, max_len),
        targets=pad_left(data.items, starts + 1, ends - 2, max_len),
    )


def eval_set(data: SequenceData, max_len: int, split: str) -> EvalSet:
    """split 'valid' ranks items[-2] given items[:-2]; 'test' ranks items[-1] given items[:-1]."""
    held_out = {"valid": 2, "test": 1}.get(split)
    if held_out is None:
        raise ValueError(f"split={split!r}: choose valid or test")
    starts, ends = data.offsets[:-1], data.offsets[1:] - held_out
    lengths = ends - starts
    history_offsets = np.zeros(data.n_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=history_offsets[1:])
    # gather each row's history into one flat array without a Python loop
    flat = np.repeat(starts - history_offsets[:-1], lengths) + np.arange(history_offsets[-1])
    return EvalSet(
        users=np.arange(data.n_users),
        inputs=pad_left(data.items, starts, ends, max_len),
        targets=data.items[ends],
        history=data.items[flat],
        history_offsets=history_offsets,
    )
