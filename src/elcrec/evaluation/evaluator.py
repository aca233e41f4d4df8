"""Full-ranking (or sampled) evaluation, batched on the model's device.

History masking (`mask_history`), applied to every item the user saw before the target:
  exclude   -> score -inf: a seen item is never ranked (when the target itself was seen before, as
               in repeat consumption, it cannot be hit; that is what 'excluded' means);
  reference -> score 0, as the reference implementation does (a seen item can still outrank the target
               when the target scores below 0); reproduces the published numbers;
  none      -> scores untouched.
Sampled mode ranks the target among N negatives drawn uniformly without replacement from the items
the user has not seen (history and target excluded): the N unseen items with the largest keys of a hash of
(seed, user, item), so a user's negatives are the same whatever the batch, device or number of processes.
A score that is NaN or infinite ranks last: a broken model never hits.
Users are taken shortest history first, so each batch drops its leading all-padding columns.
Under torch.distributed every process ranks every world_size-th user and the metric sums are added up.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from ..config import CHOICES, INT32_MAX
from ..data import EvalSet
from ..distributed import rank, world_size
from ..models import SequentialRecommender, evaluating, model_device
from .metrics import RankingMetrics, pessimistic_rank

MASK_VALUES = {"exclude": float("-inf"), "reference": 0.0}  # the score a seen item gets (none: its own)


@torch.no_grad()
def evaluate(
    model: SequentialRecommender,
    data: EvalSet,
    ks: int | tuple[int, ...] = (5, 10, 20),
    mask_history: str = "exclude",
    sampled_negatives: int = 0,
    batch_size: int = 1024,
    seed: int = 0,
    groups: dict[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """Metrics over every user of `data`; with `groups` (name -> boolean mask over the users, e.g.
    long_tail.long_tail_groups), also each group's as "<name>/<metric>"."""
    if not isinstance(model, SequentialRecommender):
        held = isinstance(getattr(model, "model", None), SequentialRecommender)
        hint = " (a Run holds one: run.model)" if held else ""
        raise TypeError(f"evaluate scores a model, not a {type(model).__name__}{hint}")
    ks = (ks,) if isinstance(ks, numbers.Integral) else tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= INT32_MAX for k in ks):
        raise ValueError(f"ks={ks}: give one or more whole cut-offs of 1 to {INT32_MAX}")
    if not 0 <= sampled_negatives <= INT32_MAX:
        raise ValueError(f"sampled_negatives={sampled_negatives}: must be 0 (every item) to {INT32_MAX}")
    if sampled_negatives and max(ks) > sampled_negatives:  # the target ranks among sampled_negatives + 1 items
        raise ValueError(f"ks={ks}: a cut-off above sampled_negatives={sampled_negatives} counts every user a hit")
    if mask_history not in CHOICES["mask_history"]:
        raise ValueError(f"mask_history={mask_history!r}: choose one of {', '.join(CHOICES['mask_history'])}")
    with evaluating(model):
        return _evaluate(model, data, ks, mask_history, sampled_negatives, batch_size, seed, groups)


def _evaluate(
    model: SequentialRecommender,
    data: EvalSet,
    ks: tuple[int, ...],
    mask_history: str,
    sampled_negatives: int,
    batch_size: int,
    seed: int,
    groups: dict[str, np.ndarray] | None,
) -> dict[str, float]:
    device = model_device(model)
    inputs = torch.from_numpy(data.inputs)
    targets = torch.from_numpy(data.targets) - 1  # column of each target
    metrics = RankingMetrics(ks)
    groups = {
        name: (torch.from_numpy(np.asarray(mask, dtype=bool)), RankingMetrics(ks))
        for name, mask in (groups or {}).items()
    }
    order = np.argsort((data.inputs > 0).sum(1), kind="stable")[rank() :: world_size()]
    for start in range(0, len(order), batch_size):
        users = order[start : start + batch_size]
        scores = model.score(inputs[users].to(device)).float()
        scores.nan_to_num_(nan=-math.inf, posinf=-math.inf, neginf=-math.inf)  # ranked last, never a hit
        rows, cols = _history_entries(data.history, data.history_offsets, users, device)
        target = targets[users].to(device)
        if sampled_negatives:
            keys = _negative_keys(seed, torch.from_numpy(users).to(device), scores.shape[1])
            ranks = _sampled_ranks(scores, target, rows, cols, sampled_negatives, keys)
            target_scores = scores.gather(1, target[:, None]).squeeze(1)
        else:
            if mask_history != "none":
                scores.index_put_((rows, cols), scores.new_tensor(MASK_VALUES[mask_history]))
            target_scores = scores.gather(1, target[:, None]).squeeze(1)
            ranks = pessimistic_rank(scores, target_scores)
        ranks[target_scores == float("-inf")] = torch.iinfo(ranks.dtype).max  # excluded or NaN: never hit, at any k
        metrics.update(ranks)
        for mask, group_metrics in groups.values():
            group_metrics.update(ranks[mask[users].to(device)])
    result = metrics.result(device)
    for name, (_, group_metrics) in groups.items():
        result.update({f"{name}/{metric}": value for metric, value in group_metrics.result(device).items()})
    return result


def _history_entries(
    history: np.ndarray, offsets: np.ndarray, users: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(row within the batch, item column) of every history item of the batch's `users`."""
    counts = offsets[users + 1] - offsets[users]
    starts = np.repeat(offsets[users] - np.cumsum(counts) + counts, counts)
    flat = starts + np.arange(counts.sum())
    rows = np.repeat(np.arange(len(users)), counts)
    return torch.from_numpy(rows).to(device), torch.from_numpy(history[flat] - 1).to(device)


def _sampled_ranks(
    scores: torch.Tensor,
    target: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    n_negatives: int,
    keys: torch.Tensor,
) -> torch.Tensor:
    """Rank of each target among `n_negatives` unseen items: those with the largest `keys` [B, n_items]."""
    allowed = torch.ones_like(scores, dtype=torch.bool)
    allowed[rows, cols] = False
    allowed[torch.arange(len(target), device=scores.device), target] = False
    available = allowed.sum(1)
    if (available < n_negatives).any():
        raise ValueError(f"sampled_negatives={n_negatives}: some user has only {int(available.min())} unseen items")
    negatives = keys.masked_fill(~allowed, torch.iinfo(keys.dtype).min).topk(n_negatives, dim=1).indices
    return pessimistic_rank(scores.gather(1, negatives), scores.gather(1, target[:, None]).squeeze(1)) + 1


_MIX = (-4658895280553007687, -7723592293110705685)  # splitmix64's multipliers, as signed 64-bit integers


def _negative_keys(seed: int, users: torch.Tensor, n_items: int) -> torch.Tensor:
    """[B, n_items] pseudo-random int64 keys, a function of (seed, user, item) alone (splitmix64's finaliser
    over int64, whose products wrap alike on every device): the largest keys among a user's unseen items are
    a uniform sample without replacement."""
    x = (users[:, None] * n_items + torch.arange(n_items, device=users.device)) * 2 + seed * 0x9E3779B9
    for multiplier in _MIX:
        x = (x ^ (x >> 31)) * multiplier
    return x ^ (x >> 31)
