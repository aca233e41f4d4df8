"""Uniform negative items that the user never interacted with (anywhere in the sequence, as the reference)."""

from __future__ import annotations

import torch

from ..data import SequenceData


class NegativeSampler:
    def __init__(self, data: SequenceData, device: torch.device, seed: int = 0) -> None:
        self.n_items = data.n_items
        users = torch.repeat_interleave(torch.arange(data.n_users), torch.from_numpy(data.lengths))
        # one sorted key per (user, item) pair: membership is a binary search, on any device
        self.keys = torch.unique(users * (self.n_items + 1) + torch.from_numpy(data.items))
        seen_all = torch.bincount(self.keys // (self.n_items + 1), minlength=data.n_users) >= self.n_items
        if seen_all.any():
            user = data.user_ids[int(seen_all.nonzero()[0, 0])]
            raise ValueError(
                f"user {user} has interacted with every one of the {self.n_items:,} items: loss=bce needs an unseen "
                "item to sample as each target's negative; train with loss=ce, or leave such users out"
            )
        self.keys = self.keys.to(device)
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def seen(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = users * (self.n_items + 1) + items
        where = torch.searchsorted(self.keys, keys).clamp_(max=len(self.keys) - 1)
        return self.keys[where] == keys

    def sample(self, users: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """One negative per target position: items in 1..n_items none of which the row's user has seen,
        0 where the target is padding (those positions carry no loss, so nothing is drawn for them)."""
        present = targets > 0
        owners = users[:, None].expand_as(targets)[present]
        drawn = torch.randint(1, self.n_items + 1, owners.shape, device=self.keys.device, generator=self.generator)
        for _ in range(1000):
            clash = self.seen(owners, drawn)
            if not clash.any():
                return torch.zeros_like(targets).masked_scatter_(present, drawn)
            drawn[clash] = torch.randint(
                1, self.n_items + 1, (int(clash.sum()),), device=drawn.device, generator=self.generator
            )
        raise ValueError(
            "could not draw unseen negatives in 1,000 tries: some user has interacted with almost every item; train "
            "with loss=ce, or leave such users out"
        )
