"""Evaluation: exact full ranking over all items (or N sampled negatives), HR / NDCG / MRR at k, intents."""

from .evaluator import evaluate
from .metrics import METRICS, RankingMetrics, format_metrics, metrics_table, pessimistic_rank

__all__ = ["METRICS", "RankingMetrics", "evaluate", "format_metrics", "metrics_table", "pessimistic_rank"]
