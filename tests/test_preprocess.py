import logging

import numpy as np
import pytest

from elcrec.data import Interactions, build_sequences, kcore_filter


def interactions(pairs):
    users, items = zip(*pairs)
    return Interactions(np.array(users), np.array(items), np.arange(len(pairs)), "test")


def test_kcore_is_iterated_until_stable():
    # k=2: item 9 occurs once -> removed; then user 3 has one interaction left -> removed;
    # then item 7 (only user 3 and 1) drops to one -> removed, leaving users 1, 2 on items 5, 6.
    users = np.array([1, 1, 1, 2, 2, 3, 3])
    items = np.array([5, 6, 7, 5, 6, 7, 9])
    u, i = kcore_filter(users, items, 2)
    assert list(zip(u, i)) == [(1, 5), (1, 6), (2, 5), (2, 6)]
    assert np.bincount(u).max() >= 2 and (np.bincount(i)[np.unique(i)] >= 2).all()


def test_dedup_modes():
    pairs = [(1, "a"), (1, "a"), (1, "b"), (1, "a"), (1, "c")]

    def seq(mode):
        d = build_sequences(interactions(pairs), dedup=mode)
        return [d.item_ids[i - 1] for i in d.sequence(0)]

    assert seq("none") == ["a", "a", "b", "a", "c"]
    assert seq("consecutive") == ["a", "b", "a", "c"]
    assert seq("all") == ["a", "b", "c"]


def test_short_users_dropped_with_a_warning(caplog):
    pairs = [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2)]
    with caplog.at_level(logging.WARNING):
        data = build_sequences(interactions(pairs))
    assert list(data.user_ids) == [1]
    assert "dropped 1 user" in caplog.text


def test_ids_are_remapped_contiguously_after_filtering():
    pairs = [(7, 100), (7, 300), (7, 500), (8, 300), (8, 500), (8, 900)]
    data = build_sequences(interactions(pairs))
    assert data.n_items == 4 and sorted(set(data.items)) == [1, 2, 3, 4]
    assert [data.item_ids[i - 1] for i in data.sequence(1)] == [300, 500, 900]


def test_a_small_kcore_holds_after_short_users_are_dropped():
    """k=2: user 3 (two items) passes the k-core but is too short to split; dropped afterwards it left item "v"
    with one interaction. Users too short to split take part in the iteration instead."""
    pairs = [(1, "a"), (1, "b"), (1, "v"), (2, "a"), (2, "b"), (2, "c"), (4, "a"), (4, "c"), (4, "b")]
    pairs += [(3, "v"), (3, "c")]
    data = build_sequences(interactions(pairs), kcore=2)
    counts = np.bincount(data.items)[1:]
    assert "v" not in list(data.item_ids) and (counts >= 2).all() and (data.lengths >= 3).all()


def test_times_spanning_more_than_int64_keep_each_users_rows():
    """The sort key user * time span + time wrapped when the span passed 2**63 (times before 1970 beside an
    INT64_MAX "unknown" sentinel; uint64 times), which moved rows into other users' sequences."""
    users, items = np.array([1, 1, 1, 1, 2, 2, 2]), np.array([10, 20, 30, 40, 50, 60, 70])

    def sequences(times):
        data = build_sequences(Interactions(users, items, times, "test"))
        return [[int(data.item_ids[i - 1]) for i in data.sequence(u)] for u in range(data.n_users)]

    top, bottom = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    assert sequences(np.array([-100, -50, top, -10, 1, 2, 3])) == [[10, 20, 40, 30], [50, 60, 70]]
    assert sequences(np.array([2**64 - 1, 5, 2**63, 7, 1, 2, 3], dtype=np.uint64)) == [[20, 40, 30, 10], [50, 60, 70]]
    # equal times keep file order at any span
    assert sequences(np.array([top, bottom, top, bottom, 0, 0, 0])) == [[20, 40, 10, 30], [50, 60, 70]]


def test_interactions_and_sequences_built_in_python_are_checked_and_typed():
    """Plain lists trained, then failed where numpy arrays were assumed; a user of 1 or 2 items failed, or was
    validated on an empty history; offsets that went backwards were accepted."""
    from elcrec.data import SequenceData

    built = Interactions(users=[1, 1, 1, 2, 2, 2], items=["a", "b", "c"] * 2, times=[3, 2, 1] * 2, source="x")
    data = build_sequences(built)
    assert data.sequence(0).tolist() == [3, 2, 1] and data.item_ids.tolist() == ["a", "b", "c"]
    made = SequenceData(items=[1, 2, 3, 3, 2, 1], offsets=[0, 3, 6], user_ids=["u", "v"], item_ids=[7, 8, 9])
    assert isinstance(made.user_ids, np.ndarray) and isinstance(made.item_ids, np.ndarray)
    for offsets in ([0, 2, 6], [0, 4, 3, 6]):
        users = list("uvw")[: len(offsets) - 1]
        with pytest.raises(ValueError, match="fewer than 3 items"):
            SequenceData(items=[1, 2, 3, 3, 2, 1], offsets=offsets, user_ids=users, item_ids=[7, 8, 9])
