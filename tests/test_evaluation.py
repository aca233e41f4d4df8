import math

import numpy as np
import pytest
import torch

from elcrec import Config
from elcrec.data import EvalSet, eval_set, train_set
from elcrec.evaluation import RankingMetrics, evaluate, pessimistic_rank
from elcrec.models import SequentialRecommender, build_model


class FixedScores(SequentialRecommender):
    """Scores each row with a fixed vector (rows looked up by the first input column)."""

    def __init__(self, scores):
        super().__init__()
        self.register_buffer("table", torch.tensor(scores, dtype=torch.float32))

    def score(self, histories):
        return self.table[histories[:, -1] - 1].clone()


def eval_data(last_items, targets, histories):
    offsets = np.concatenate([[0], np.cumsum([len(h) for h in histories])])
    return EvalSet(
        users=np.arange(len(targets)),
        inputs=np.array(last_items)[:, None],
        targets=np.array(targets),
        history=np.concatenate(histories).astype(np.int64),
        history_offsets=offsets,
    )


def test_ranks_count_ties_pessimistically():
    scores = torch.tensor([[0.9, 0.5, 0.5, 0.1], [1.0, 1.0, 1.0, 1.0]])
    ranks = pessimistic_rank(scores, scores[:, 1])
    assert ranks.tolist() == [2, 3]  # tie with one other item -> placed after it; all equal -> last


def test_metrics_against_hand_computed_values():
    metrics = RankingMetrics((1, 3))
    metrics.update(torch.tensor([0, 2, 5]))
    result = metrics.result()
    assert result["HR@1"] == pytest.approx(1 / 3)
    assert result["HR@3"] == pytest.approx(2 / 3)
    assert result["NDCG@3"] == pytest.approx((1 + 1 / math.log2(4)) / 3)
    assert result["MRR@3"] == pytest.approx((1 + 1 / 3) / 3)


def test_history_masking_modes():
    # 5 items; user 0's target is item 3 (score 0.2); history items 1 and 2 score above it.
    # user 1's target item 5 scores -0.5: under 'reference' the seen items (set to 0) outrank it.
    table = [[0.9, 0.8, 0.2, 0.1, -1.0], [-0.1, -0.2, -0.3, -0.4, -0.5]]
    data = eval_data([1, 2], [3, 5], [[1, 2], [1, 2]])
    model = FixedScores(table)
    run = lambda mode: evaluate(model, data, ks=(1, 3), mask_history=mode)  # noqa: E731
    # exclude: user 0 rank 0, user 1 rank 2 (items 3, 4 above)
    assert run("exclude")["HR@1"] == 0.5 and run("exclude")["NDCG@3"] == pytest.approx((1 + 1 / 2) / 2)
    # none: user 0 rank 2, user 1 rank 4
    assert run("none")["HR@3"] == 0.5 and run("none")["HR@1"] == 0.0
    # reference: user 0 rank 0 (seen -> 0 < 0.2); user 1: seen items at 0 beat -0.5 -> rank 4
    assert run("reference")["HR@1"] == 0.5 and run("reference")["HR@3"] == 0.5


def test_excluded_target_in_history_cannot_be_hit():
    data = eval_data([1], [2], [[2]])  # repeat consumption: the target was seen before
    model = FixedScores([[0.0, 5.0, 1.0]])
    assert evaluate(model, data, ks=(1,), mask_history="none")["HR@1"] == 1.0
    assert evaluate(model, data, ks=(3,), mask_history="exclude")["HR@3"] == 0.0
    assert evaluate(model, data, ks=(4, 500), mask_history="exclude")["HR@500"] == 0.0  # k beyond the 3 items


def test_a_cut_off_given_twice_counts_once():
    data = eval_data([1, 1], [2, 3], [[1], [1]])
    model = FixedScores([[0.0, 5.0, 1.0]])
    assert evaluate(model, data, ks=(1, 1, 3)) == evaluate(model, data, ks=(1, 3))


@pytest.mark.parametrize("broken", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("mode", ["none", "exclude", "reference"])
def test_non_finite_scores_rank_last_and_never_hit(broken, mode):
    """A broken model (NaN or infinite scores) earns nothing: NaN compared false with everything and counted
    as a hit at rank 0; inf outranked every item."""
    data = eval_data([1, 1], [2, 3], [[1], [1]])
    all_broken = FixedScores([[broken] * 4])
    assert all(value == 0 for value in evaluate(all_broken, data, ks=(1, 3), mask_history=mode).values())
    target_broken = FixedScores([[0.1, broken, 0.5, 0.3]])  # user 0's target is broken; user 1's scores 0.5
    result = evaluate(target_broken, data, ks=(1, 3), mask_history=mode)
    assert result["HR@1"] == 0.5 and result["HR@3"] == 0.5 and math.isfinite(result["NDCG@3"])
    sampled = evaluate(all_broken, data, ks=(1,), mask_history=mode, sampled_negatives=2)
    assert sampled["HR@1"] == 0.0


def test_sampled_mode_never_draws_seen_items_and_is_seeded():
    n_items = 50
    table = torch.zeros(1, n_items)
    table[0, :10] = 10.0  # seen items score highest: if drawn as negatives, the target could never hit
    table[0, 10] = 5.0  # the target
    data = eval_data([1] * 64, [11] * 64, [list(range(1, 11))] * 64)
    model = FixedScores(table.tolist())
    result = evaluate(model, data, ks=(1,), sampled_negatives=39, batch_size=16)
    assert result["HR@1"] == 1.0
    with pytest.raises(ValueError, match="unseen items"):
        evaluate(model, data, sampled_negatives=40)
    scores = torch.rand(1, n_items).tolist()
    model = FixedScores(scores)
    a = evaluate(model, data, ks=(5,), sampled_negatives=10, seed=4)
    b = evaluate(model, data, ks=(5,), sampled_negatives=10, seed=4)
    assert a == b


def test_sampled_negatives_are_each_users_own_whatever_the_processes(monkeypatch):
    """A user's negatives are a function of (seed, user, item): two processes sharing the users (each ranks
    every other one) draw what one process does. A seeded stream started in each process drew others."""
    from elcrec.evaluation import evaluator

    torch.manual_seed(0)
    model = FixedScores(torch.rand(1, 50).tolist())
    data = eval_data([1] * 64, [11] * 64, [list(range(1, 11))] * 64)
    whole = evaluate(model, data, ks=(1, 5), sampled_negatives=10, batch_size=16)
    shares = []
    for rank in (0, 1):  # each process's share; their sums are what torch.distributed adds up
        monkeypatch.setattr(evaluator, "rank", lambda rank=rank: rank)
        monkeypatch.setattr(evaluator, "world_size", lambda: 2)
        shares.append(evaluate(model, data, ks=(1, 5), sampled_negatives=10, batch_size=16))
    for metric, value in whole.items():  # equal shares of 32 users: the mean of the two
        assert (shares[0][metric] + shares[1][metric]) / 2 == pytest.approx(value, rel=100 * np.finfo(np.float64).eps)
    assert evaluate(model, data, ks=(1, 5), sampled_negatives=10, seed=1) != shares[1]


def test_long_tail_groups_split_users_and_combine_to_the_overall_metrics(tiny_data):
    from elcrec.evaluation.long_tail import item_popularity, long_tail_groups

    config = Config(hidden_size=16, max_len=20)
    split = eval_set(tiny_data, config.max_len, "test")
    groups = long_tail_groups(tiny_data, split)
    assert (groups["head_items"] ^ groups["tail_items"]).all() and (groups["head_users"] ^ groups["tail_users"]).all()
    assert groups["head_users"].sum() == round(0.2 * tiny_data.n_users)
    lengths = np.diff(split.history_offsets)
    assert lengths[groups["head_users"]].min() >= lengths[groups["tail_users"]].max()
    popularity = item_popularity(tiny_data)  # held-out items (the last two of each user) are not counted
    assert popularity.sum() == tiny_data.n_interactions - 2 * tiny_data.n_users
    head_targets = np.unique(split.targets[groups["head_items"]])
    tail_targets = np.unique(split.targets[groups["tail_items"]])
    assert popularity[head_targets].min() >= popularity[tail_targets].max()

    torch.manual_seed(0)
    model = build_model(config.replace(model="sasrec"), tiny_data.n_items)
    for sampled in (0, 20):
        result = evaluate(model, split, sampled_negatives=sampled, groups=groups)
        for pair in (("head_items", "tail_items"), ("head_users", "tail_users")):
            counts = [groups[name].sum() for name in pair]
            combined = sum(n * result[f"{name}/NDCG@10"] for name, n in zip(pair, counts)) / sum(counts)
            assert combined == pytest.approx(result["NDCG@10"])


def test_threshold_groups_are_llmesrs(tiny_data):
    """LLM-ESR's protocol: a tail item has fewer than ts_item distinct users over all the data (a user's repeats
    count once, test items included); a short user fewer than ts_user items in its input (capped at max_len)."""
    from elcrec.evaluation.long_tail import groups_of, item_users

    split = eval_set(tiny_data, 8, "test")
    users_of = [set() for _ in range(tiny_data.n_items + 1)]
    for u in range(tiny_data.n_users):
        for item in tiny_data.sequence(u):
            users_of[item].add(u)
    pop = np.array([len(users) for users in users_of])
    np.testing.assert_array_equal(item_users(tiny_data), pop)
    assert pop.sum() < tiny_data.n_interactions  # the synthetic users repeat items
    lengths = np.minimum(tiny_data.lengths - 1, 8)
    ts_item, ts_user = int(np.median(pop[split.targets])), 7  # some targets and users sit on the thresholds
    assert (pop[split.targets] == ts_item).any() and (lengths == ts_user).any()
    config = Config(max_len=8, long_tail="thresholds", tail_item_threshold=ts_item, short_user_threshold=ts_user)
    groups = groups_of(config, tiny_data, split)
    np.testing.assert_array_equal(groups["tail_items"], pop[split.targets] < ts_item)
    np.testing.assert_array_equal(groups["tail_users"], lengths < ts_user)
    assert 0 < groups["tail_items"].sum() < len(split.targets) and 0 < groups["tail_users"].sum() < len(lengths)
    assert (groups["head_items"] ^ groups["tail_items"]).all() and (groups["head_users"] ^ groups["tail_users"]).all()
    share = groups_of(config.replace(long_tail="share"), tiny_data, split)
    assert share["head_users"].sum() == round(0.2 * tiny_data.n_users)


def test_a_metrics_table_keeps_long_column_names_apart():
    from elcrec.evaluation import metrics_table

    values = {f"{m}@{k}": 0.5 for m in ("HR", "NDCG", "MRR") for k in (5, 100000)}
    header, row = metrics_table({"sasrec": values}, (5, 100000)).splitlines()
    assert header.split() == [f"{m}@{k}" for m in ("HR", "NDCG", "MRR") for k in (5, 100000)]
    assert row.split() == ["sasrec"] + ["0.5000"] * 6


def test_evaluate_takes_one_cut_off_and_refuses_what_it_cannot_rank(tiny_data):
    from elcrec.runs import Run

    model = build_model(Config(hidden_size=16, max_len=20), tiny_data.n_items)
    split = eval_set(tiny_data, 20, "test")
    assert set(evaluate(model, split, ks=10)) == {"HR@10", "NDCG@10", "MRR@10"}
    for ks in ((0,), (), (2.5,), (True,)):  # HR@0 came back 0
        with pytest.raises(ValueError, match="cut-offs of 1 to"):
            evaluate(model, split, ks=ks)
    with pytest.raises(TypeError, match=r"not a Run \(a Run holds one: run.model\)"):
        evaluate(Run(model, Config(), tiny_data.item_ids, None), split)


def test_among_sampled_negatives_a_broken_score_never_hits(tiny_data):
    """A NaN target ranked last among the sampled items counted as a hit at every cut-off above their number."""
    model = build_model(Config(model="pop"), tiny_data.n_items)
    model.prepare(train_set(tiny_data, 20))
    split = eval_set(tiny_data, 20, "test")
    model.counts.fill_(float("nan"))
    assert evaluate(model, split, ks=(5, 10), sampled_negatives=10) == pytest.approx(
        {f"{m}@{k}": 0.0 for m in ("HR", "NDCG", "MRR") for k in (5, 10)}
    )
    with pytest.raises(ValueError, match="a cut-off above sampled_negatives=10 counts every user a hit"):
        evaluate(model, split, ks=(11,), sampled_negatives=10)
