"""Property-based tests (hypothesis) for the readers, the split and the metrics, and a fuzz run over the readers."""

import math

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elcrec.data import DataError, build_sequences, eval_set, read_interactions, train_set
from elcrec.evaluation.metrics import RankingMetrics, pessimistic_rank

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
sequences = st.dictionaries(
    st.integers(0, 10**12), st.lists(st.integers(1, 10**12), min_size=1, max_size=30), min_size=1, max_size=20
)


@FAST
@given(sequences)
def test_benchmark_reader_keeps_every_line_in_order(tmp_path_factory, users):
    path = tmp_path_factory.mktemp("data") / "data.txt"
    path.write_text("".join(f"{u} {' '.join(map(str, items))}\n" for u, items in users.items()))
    read = read_interactions(path)
    for user, items in users.items():
        mine = read.users == user
        assert read.items[mine][np.argsort(read.times[mine], kind="stable")].tolist() == items


@FUZZ
@given(st.text(st.characters(exclude_categories=("Cs",)), max_size=300))
def test_reader_fuzz_never_crashes_with_anything_but_a_data_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "data.txt"
    path.write_text(text, encoding="utf-8")
    try:
        read = read_interactions(path)
    except DataError:
        return
    assert len(read.users) == len(read.items) > 0


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(["data.txt", "log.csv", "log.tsv", "log.parquet"]))
def test_reader_fuzz_on_bytes(tmp_path_factory, blob, name):
    path = tmp_path_factory.mktemp("bytes") / name
    path.write_bytes(blob)
    try:
        read_interactions(path, time_col="")
    except DataError:
        pass


@FAST
@given(sequences, st.integers(1, 12))
def test_split_holds_out_the_last_two_items_and_shifts_targets(users, max_len):
    from elcrec.data import Interactions

    flat = [(u, item, t) for u, items in users.items() for t, item in enumerate(items)]
    interactions = Interactions(
        np.array([f[0] for f in flat]), np.array([f[1] for f in flat]), np.array([f[2] for f in flat]), "generated"
    )
    try:
        data = build_sequences(interactions)
    except DataError:
        assert all(len(items) < 3 for items in users.values())
        return
    train, valid, test = train_set(data, max_len), eval_set(data, max_len, "valid"), eval_set(data, max_len, "test")
    for u in range(data.n_users):
        items = data.items[data.offsets[u] : data.offsets[u + 1]]
        assert test.targets[u] == items[-1] and valid.targets[u] == items[-2]
        row = test.inputs[u]
        assert row[row > 0].tolist() == items[:-1][-max_len:].tolist()
        seen = test.history[test.history_offsets[u] : test.history_offsets[u + 1]]
        assert seen.tolist() == items[:-1].tolist()  # every earlier item is masked, not just the window
    for row, u in enumerate(train.users):
        items = data.items[data.offsets[u] : data.offsets[u + 1]]
        inputs, targets = train.inputs[row], train.targets[row]
        assert inputs[inputs > 0].tolist() == items[:-3][-max_len:].tolist()
        assert targets[targets > 0].tolist() == items[1:-2][-max_len:].tolist()
        assert ((inputs > 0) == (targets > 0)).all()


@FAST
@given(st.lists(st.integers(-3, 3), min_size=2, max_size=40), st.data())
def test_pessimistic_rank_counts_better_and_tied_items(scores, data):
    target = data.draw(st.integers(0, len(scores) - 1))
    s = torch.tensor([scores], dtype=torch.float32)
    rank = int(pessimistic_rank(s, s[:, target])[0])
    assert rank == sum(v > scores[target] for v in scores) + sum(v == scores[target] for v in scores) - 1


@FAST
@given(st.lists(st.integers(0, 100), min_size=1, max_size=50))
def test_metrics_lie_in_range_and_grow_with_k(ranks):
    metrics = RankingMetrics((1, 5, 10, 20))
    metrics.update(torch.tensor(ranks))
    result = metrics.result()
    for name in ("HR", "NDCG", "MRR"):
        values = [result[f"{name}@{k}"] for k in (1, 5, 10, 20)]
        assert all(0 <= v <= 1 for v in values) and values == sorted(values)
    assert result["HR@10"] == sum(r < 10 for r in ranks) / len(ranks)
    assert math.isclose(result["NDCG@1"], result["HR@1"]) and math.isclose(result["MRR@1"], result["HR@1"])
