"""Evaluation: exact full ranking over all items (or N sampled negatives), HR / NDCG / MRR at k."""

from .evaluator import evaluate, model_device
from .metrics import METRICS, RankingMetrics, pessimistic_rank

__all__ = ["METRICS", "RankingMetrics", "evaluate", "model_device", "pessimistic_rank"]
