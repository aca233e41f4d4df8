"""Data: readers for every supported format, preprocessing, the synthetic generator and the split."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .dataset import SequenceData
from .preprocess import build_sequences, kcore_filter
from .readers import DataError, Interactions, read_interactions
from .split import EvalSet, TrainSet, eval_set, pad_left, train_set
from .synthetic import make_synthetic

if TYPE_CHECKING:
    from ..config import Config

__all__ = [
    "DataError",
    "EvalSet",
    "Interactions",
    "SequenceData",
    "TrainSet",
    "build_sequences",
    "eval_set",
    "kcore_filter",
    "load_dataset",
    "make_synthetic",
    "pad_left",
    "read_interactions",
    "train_set",
]


def load_dataset(config: Config) -> SequenceData:
    """The dataset a config names: the built-in synthetic data, or a file/folder read and preprocessed."""
    if config.data == "synthetic":
        return make_synthetic(
            config.synthetic_users, config.synthetic_items, config.synthetic_intents, seed=config.synthetic_seed
        )
    interactions = read_interactions(config.data, config.data_format, config.user_col, config.item_col, config.time_col)
    return build_sequences(interactions, dedup=config.dedup, kcore=config.kcore, name=config.data_name)
