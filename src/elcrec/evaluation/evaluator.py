"""Full-ranking (or sampled) evaluation, batched on the model's device.

History masking (`mask_history`), applied to every item the user saw before the target:
  exclude   -> score -inf: a seen item is never ranked (when the target itself was seen before, as
               in repeat consumption, it cannot be hit; that is what 'excluded' means);
  reference -> score 0, as the reference implementation does (a seen item can still outrank the target
               when the target scores below 0); reproduces the published numbers;
  none      -> scores untouched.
Sampled mode ranks the target among N negatives drawn uniformly without replacement from the items
the user has not seen (history and target excluded), with a seeded generator.
"""

from __future__ import annotations

import torch

from ..data import EvalSet
from ..models import SequentialRecommender
from .metrics import RankingMetrics, pessimistic_rank

MASK_VALUES = {"exclude": float("-inf"), "reference": 0.0}


@torch.no_grad()
def evaluate(model: SequentialRecommender, data: EvalSet, ks: tuple[int, ...] = (5, 10, 20),
             mask_history: str = "exclude", sampled_negatives: int = 0, batch_size: int = 1024,
             seed: int = 0) -> dict[str, float]:
    if mask_history not in ("none", *MASK_VALUES):
        raise ValueError(f"mask_history={mask_history!r}: choose none, exclude or reference")
    was_training = model.training
    model.eval()
    device = model_device(model)
    inputs = torch.from_numpy(data.inputs)
    targets = torch.from_numpy(data.targets).to(device) - 1  # column of each target
    history = torch.from_numpy(data.history).to(device) - 1
    offsets = data.history_offsets
    generator = torch.Generator(device=device).manual_seed(seed)
    metrics = RankingMetrics(ks)
    for start in range(0, len(inputs), batch_size):
        stop = min(start + batch_size, len(inputs))
        batch = inputs[start:stop].to(device)
        scores = model.score(batch).float()
        rows, cols = _history_entries(history, offsets, start, stop)
        target = targets[start:stop]
        if sampled_negatives:
            ranks = _sampled_ranks(scores, target, rows, cols, sampled_negatives, generator)
        else:
            if mask_history != "none":
                scores.index_put_((rows, cols), torch.tensor(MASK_VALUES[mask_history], device=device))
            target_scores = scores.gather(1, target[:, None]).squeeze(1)
            ranks = pessimistic_rank(scores, target_scores)
            ranks[target_scores == float("-inf")] = scores.shape[1]  # an excluded target is never hit
        metrics.update(ranks)
    model.train(was_training)
    return metrics.result()


def model_device(model: torch.nn.Module) -> torch.device:
    tensor = next(model.parameters(), None)
    tensor = next(model.buffers()) if tensor is None else tensor
    return tensor.device


def _history_entries(history: torch.Tensor, offsets, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row within the batch, item column) of every history item of rows start..stop."""
    lo, hi = int(offsets[start]), int(offsets[stop])
    counts = torch.from_numpy(offsets[start + 1 : stop + 1] - offsets[start:stop]).to(history.device)
    rows = torch.repeat_interleave(torch.arange(stop - start, device=history.device), counts)
    return rows, history[lo:hi]


def _sampled_ranks(scores: torch.Tensor, target: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                   n_negatives: int, generator: torch.Generator) -> torch.Tensor:
    allowed = torch.ones_like(scores)
    allowed[rows, cols] = 0
    allowed[torch.arange(len(target), device=scores.device), target] = 0
    available = allowed.sum(1)
    if (available < n_negatives).any():
        raise ValueError(f"sampled_negatives={n_negatives}: some user has only {int(available.min())} unseen items")
    negatives = torch.multinomial(allowed, n_negatives, replacement=False, generator=generator)
    return pessimistic_rank(scores.gather(1, negatives), scores.gather(1, target[:, None]).squeeze(1)) + 1
