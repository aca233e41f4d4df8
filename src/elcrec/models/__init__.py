"""Models keep one contract (see `base.py`); `build_model` makes the one a config names.

| model | what | defaults that matter |
|---|---|---|
| sasrec | transformer backbone alone (METHODS.md) | hidden 64, 2 layers, 2 heads, max_len 50, dropout 0.5, loss bce |
| pop    | most-popular baseline, no training       | none |
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import SequentialRecommender
from .popularity import Popularity
from .sasrec import SASRec
from .transformer import TransformerEncoder

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["Popularity", "SASRec", "SequentialRecommender", "TransformerEncoder", "build_model"]


def build_model(config: Config, n_items: int) -> SequentialRecommender:
    if config.model == "sasrec":
        return SASRec(n_items, config.hidden_size, config.num_layers, config.num_heads, config.max_len,
                      config.dropout, config.attn_dropout, config.loss)
    if config.model == "pop":
        return Popularity(n_items)
    raise ValueError(f"model={config.model!r} is not known")
