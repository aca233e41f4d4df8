"""Ranking metrics with one held-out target per user.

rank = number of candidates scored strictly above the target + number of other candidates scored
exactly equal to it (ties counted pessimistically: a tied target is placed after every tie, so a
model that scores everything equal earns nothing). rank 0 is the top.
HR@k = [rank < k];  NDCG@k = [rank < k] / log2(rank + 2);  MRR@k = [rank < k] / (rank + 1).
"""

from __future__ import annotations

import torch

from ..config import METRIC_NAMES as METRICS
from ..distributed import all_sum


def pessimistic_rank(scores: torch.Tensor, target_scores: torch.Tensor) -> torch.Tensor:
    """scores [B, C] over every candidate including the target, target_scores [B] -> rank [B]."""
    return torch.count_nonzero(scores >= target_scores[:, None], dim=1) - 1  # the target itself is >= itself


class RankingMetrics:
    """Accumulates per-user metric sums in float64 over batches; `result()` gives the means."""

    def __init__(self, ks: tuple[int, ...] = (5, 10, 20)) -> None:
        self.ks = tuple(sorted(set(ks)))  # a cut-off given twice is counted once
        self.sums = {f"{m}@{k}": 0.0 for m in METRICS for k in self.ks}
        self.count = 0

    def update(self, ranks: torch.Tensor) -> None:
        ranks = ranks.double()
        for k in self.ks:
            hit = ranks < k
            self.sums[f"HR@{k}"] += hit.sum().item()
            self.sums[f"NDCG@{k}"] += (hit / torch.log2(ranks + 2)).sum().item()
            self.sums[f"MRR@{k}"] += (hit / (ranks + 1)).sum().item()
        self.count += len(ranks)

    def result(self, device: torch.device | str = "cpu") -> dict[str, float]:
        """Means over the users of every update (NaN when there were none); under torch.distributed, over
        every process's users (`device`: where the collective runs, the process's GPU with nccl)."""
        totals = all_sum(torch.tensor([*self.sums.values(), self.count], dtype=torch.float64, device=device)).tolist()
        count = totals.pop()
        return {name: total / count if count else float("nan") for name, total in zip(self.sums, totals)}


def format_metrics(metrics: dict[str, float], names: tuple[str, ...] = ("HR", "NDCG")) -> str:
    """One line: 'HR@5 0.0529  HR@20 0.1079 ...' for the metrics named `names`."""
    return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.partition("@")[0] in names)


def metrics_table(rows: dict[str, dict[str, float]], ks: tuple[int, ...], names: tuple[str, ...] = METRICS) -> str:
    """A plain-text table: one row per name in `rows`, a column per metric@k."""
    columns = [f"{m}@{k}" for m in names for k in ks]
    width = max(len(r) for r in rows) + 2
    widths = [max(9, len(n) + 2) for n in columns]  # a column at least as wide as its name
    lines = ["".ljust(width) + "".join(n.rjust(w) for n, w in zip(columns, widths))]
    lines += [
        name.ljust(width) + "".join(f"{values[n]:{w}.4f}" for n, w in zip(columns, widths))
        for name, values in rows.items()
    ]
    return "\n".join(lines)
