import numpy as np

from elcrec.data import make_synthetic


def test_deterministic_by_seed():
    a, b, c = make_synthetic(300, 80, 4, seed=5), make_synthetic(300, 80, 4, seed=5), make_synthetic(300, 80, 4, seed=6)
    assert np.array_equal(a.items, b.items) and np.array_equal(a.offsets, b.offsets)
    assert not np.array_equal(a.items, c.items)


def test_planted_intents_shape_the_sequences():
    data = make_synthetic(1000, 200, 8, seed=1)
    assert data.lengths.min() >= 5 and data.items.min() >= 1 and data.items.max() <= 200
    # each item mostly belongs to one intent
    counts = np.zeros((data.n_items + 1, 8))
    np.add.at(counts, (data.items, data.intents), 1)
    owner_share = counts[1:].max(1).sum() / counts.sum()
    assert owner_share > 0.85
    # users stay within a few intents: two intents (main + second) cover most of each sequence
    covered = []
    for u in range(data.n_users):
        per_intent = np.bincount(data.intents[data.offsets[u] : data.offsets[u + 1]], minlength=8)
        covered.append(np.sort(per_intent)[-2:].sum() / per_intent.sum())
    assert np.mean(covered) == 1.0
