"""Sequence augmentations for contrastive views, vectorised over a [B, L] batch of right-aligned,
left-padded sequences (METHODS.md):

  crop:    keep a random contiguous slice of max(1, int(ratio * n)) items (ratio 0.2);
  mask:    set int(ratio * n) random positions to padding 0 (ratio 0.7);
  reorder: shuffle a random contiguous slice of int(ratio * n) items (ratio 0.2);
  random:  each row picks one of the three.

n is the number of items in the row. As in the reference, a slice of s = int(ratio * n) >= 1 items starts
uniformly at one of the offsets 0..n - s - 1 (its randint(0, n - s - 1)), so a crop or a reordered slice
never reaches the most recent item; a crop with s = 0 keeps one item drawn from all n. The reference
augments the whole untruncated history and then keeps the last max_len items; here the view is built
from the max_len window the model reads.
"""

from __future__ import annotations

import torch

from ..config import CHOICES


def _rows(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    L = inputs.shape[1]
    n = (inputs > 0).sum(1)
    first = L - n  # column of each row's oldest item
    return n, first, torch.arange(L, device=inputs.device).expand_as(inputs)


def _slice_start(first: torch.Tensor, n: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Column where each row's slice of `size` items starts: one of n - size offsets from its first item."""
    return first + (torch.rand(n.shape, device=n.device) * (n - size)).long()


def crop(inputs: torch.Tensor, ratio: float = 0.2) -> torch.Tensor:
    n, first, column = _rows(inputs)
    size = (ratio * n).long()
    keep = size.clamp(min=1)
    start = _slice_start(first, n, size)
    L = inputs.shape[1]
    # output column j (j >= L - keep) takes input column start + j - (L - keep)
    source = start[:, None] + column - (L - keep)[:, None]
    out = inputs.gather(1, source.clamp(0, L - 1))
    return out.masked_fill(column < (L - keep)[:, None], 0)


def mask(inputs: torch.Tensor, ratio: float = 0.7) -> torch.Tensor:
    n, _, _ = _rows(inputs)
    count = (ratio * n).long()
    keys = torch.rand(inputs.shape, device=inputs.device).masked_fill(inputs == 0, 2.0)  # padding sorts last
    rank = keys.argsort(1).argsort(1)
    return inputs.masked_fill(rank < count[:, None], 0)


def reorder(inputs: torch.Tensor, ratio: float = 0.2) -> torch.Tensor:
    n, first, column = _rows(inputs)
    size = (ratio * n).long()
    start = _slice_start(first, n, size)
    inside = (column >= start[:, None]) & (column < (start + size)[:, None])
    # positions outside the slice keep their integer key; inside keys land randomly in [start, start + size)
    keys = torch.where(
        inside, start[:, None] + torch.rand(inputs.shape, device=inputs.device) * size[:, None], column.float()
    )
    return inputs.gather(1, keys.argsort(1))


def augment(
    inputs: torch.Tensor,
    method: str = "random",
    crop_ratio: float = 0.2,
    mask_ratio: float = 0.7,
    reorder_ratio: float = 0.2,
) -> torch.Tensor:
    if method == "crop":
        return crop(inputs, crop_ratio)
    if method == "mask":
        return mask(inputs, mask_ratio)
    if method == "reorder":
        return reorder(inputs, reorder_ratio)
    if method != "random":
        raise ValueError(f"augmentation {method!r}: choose one of {', '.join(CHOICES['augment'])}")
    choice = torch.randint(0, 3, (inputs.shape[0], 1), device=inputs.device)
    views = (crop(inputs, crop_ratio), mask(inputs, mask_ratio), reorder(inputs, reorder_ratio))
    return torch.where(choice == 0, views[0], torch.where(choice == 1, views[1], views[2]))
