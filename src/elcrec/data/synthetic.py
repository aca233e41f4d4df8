"""Built-in data with planted intents, so the demo and the tests have structure to learn.

Each intent owns a block of items arranged in a ring and a Zipf-like preference over that block.
A user has a main and a second intent and drifts between them. Each step either follows the ring
from the previous item (sequential signal) or draws from the current intent (intent signal), with a
little uniform noise over the whole catalogue. Deterministic by seed.
"""

from __future__ import annotations

import numpy as np

from .dataset import SequenceData


def make_synthetic(
    n_users: int = 2000,
    n_items: int = 400,
    n_intents: int = 8,
    seed: int = 1,
    min_length: int = 5,
    mean_extra_length: float = 10.0,
    max_length: int = 60,
    follow_prob: float = 0.6,
    switch_prob: float = 0.1,
    noise_prob: float = 0.05,
) -> SequenceData:
    if n_items < n_intents:
        raise ValueError(f"n_items={n_items} must be at least n_intents={n_intents}")
    rng = np.random.default_rng(seed)
    block = np.array_split(rng.permutation(n_items) + 1, n_intents)  # item ids of each intent, in ring order
    block_size = np.array([len(b) for b in block])
    ring = np.full((n_intents, block_size.max()), 0, dtype=np.int64)
    for i, b in enumerate(block):
        ring[i, : len(b)] = b
    ring_pos = np.zeros(n_items + 1, dtype=np.int64)  # position of every item within its intent's ring
    for b in block:
        ring_pos[b] = np.arange(len(b))

    intent_weights = rng.dirichlet(np.full(n_intents, 2.0))
    main = rng.choice(n_intents, size=n_users, p=intent_weights)
    second = (main + rng.integers(1, n_intents, size=n_users)) % n_intents if n_intents > 1 else main
    lengths = np.minimum(min_length + rng.geometric(1.0 / (1.0 + mean_extra_length), size=n_users) - 1, max_length)

    def draw_from(intent: np.ndarray) -> np.ndarray:
        # Zipf-like preference within the block: rank r drawn with weight 1 / (r + 1)
        size = block_size[intent]
        u = rng.random(len(intent))
        rank = np.floor(np.expm1(u * np.log1p(size))).astype(np.int64)
        return ring[intent, np.minimum(rank, size - 1)]

    steps = lengths.max()
    items = np.zeros((n_users, steps), dtype=np.int64)
    intents = np.zeros((n_users, steps), dtype=np.int64)
    current = main.copy()
    items[:, 0], intents[:, 0] = draw_from(current), current
    for t in range(1, steps):
        switch = rng.random(n_users) < switch_prob
        current = np.where(switch, np.where(current == main, second, main), current)
        follow = rng.random(n_users) < follow_prob
        prev = items[:, t - 1]
        prev_in_intent = ring[current, ring_pos[prev] % block_size[current]] == prev  # blocks are disjoint
        step = rng.integers(1, 4, size=n_users)
        nxt_follow = ring[current, (ring_pos[prev] + step) % block_size[current]]
        nxt = np.where(follow & prev_in_intent, nxt_follow, draw_from(current))
        noise = rng.random(n_users) < noise_prob
        nxt = np.where(noise, rng.integers(1, n_items + 1, size=n_users), nxt)
        items[:, t], intents[:, t] = nxt, current

    valid = np.arange(steps)[None, :] < lengths[:, None]
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return SequenceData(
        items=items[valid],
        offsets=offsets,
        user_ids=np.arange(1, n_users + 1),
        item_ids=np.arange(1, n_items + 1),
        name="synthetic",
        intents=intents[valid],
        ring_positions=ring_pos[1:],
    )
