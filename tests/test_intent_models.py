import math

import pytest
import torch

from elcrec import Config
from elcrec.data import train_set
from elcrec.models import Batch, build_model
from elcrec.models.augment import augment, crop, mask, reorder
from elcrec.models.contrastive import nce

X = torch.tensor([[0, 0, 0, 0, 1, 2, 3, 4, 5, 6], [11, 12, 13, 14, 15, 16, 17, 18, 19, 20], [0] * 9 + [7]])


def items(row):
    return [int(v) for v in row if v > 0]


def test_crop_keeps_a_contiguous_slice_right_aligned():
    torch.manual_seed(0)
    for _ in range(20):
        out = crop(X, 0.5)
        for row, original in zip(out, X):
            kept, source = items(row), items(original)
            assert len(kept) == max(1, int(0.5 * len(source)))
            start = source.index(kept[0])
            assert source[start : start + len(kept)] == kept and row[-1] > 0


def test_mask_blanks_the_share_of_items():
    torch.manual_seed(0)
    out = mask(X, 0.7)
    for row, original in zip(out, X):
        n = len(items(original))
        assert len(items(row)) == n - int(0.7 * n)
        assert set(items(row)) <= set(items(original))
        assert all(row[j] in (0, original[j]) for j in range(len(row)))  # positions stay


def test_reorder_shuffles_only_a_slice():
    torch.manual_seed(0)
    for _ in range(20):
        out = reorder(X, 0.5)
        assert torch.equal(out == 0, X == 0)
        for row, original in zip(out, X):
            changed = (row != original).nonzero().flatten().tolist()
            assert sorted(items(row)) == sorted(items(original))
            if changed:
                assert changed[-1] - changed[0] < int(0.5 * len(items(original)))


def test_slices_start_where_the_reference_starts_them():
    """The reference draws a slice's start from randint(0, n - s - 1): with s = int(0.2 * 10) = 2 on a 10-item
    row, eight offsets, none reaching the most recent item; with s = 0 (n = 4) a crop keeps any one item."""
    torch.manual_seed(0)
    ten = torch.arange(1, 11).repeat(4000, 1)
    starts = crop(ten, 0.2)[:, -2]  # the first item kept
    assert set(starts.tolist()) == set(range(1, 9))
    assert (crop(ten, 0.2)[:, -1] != 10).all()
    counts = torch.bincount(starts, minlength=9)[1:].double()
    assert (counts - 500).abs().max() < 4 * 500**0.5  # uniform over the eight offsets
    short = torch.tensor([[0, 0, 7, 8, 9, 6]]).repeat(2000, 1)
    assert set(crop(short, 0.2)[:, -1].tolist()) == {6, 7, 8, 9}
    reordered = reorder(ten, 0.2)
    assert (reordered[:, -1] == 10).all() and not torch.equal(reordered, ten)


def test_random_augment_mixes_operators():
    torch.manual_seed(0)
    big = X[1:2].repeat(200, 1)
    out = augment(big)
    lengths = set((out > 0).sum(1).tolist())
    assert {2, 3, 10} <= lengths  # crop (2 items), mask (3 left), reorder (all 10)


def test_nce_matches_the_definition():
    torch.manual_seed(0)
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    rows = torch.cat([a, b])
    total = 0.0
    for i in range(8):
        j = (i + 4) % 8
        logits = [float(rows[i] @ rows[k] / 0.5) for k in range(8) if k != i]
        target = float(rows[i] @ rows[j] / 0.5)
        total += -(target - math.log(sum(math.exp(v) for v in logits)))
    assert nce(a, b, 0.5).item() == pytest.approx(total / 8, rel=1e-5)


def batch_for(data, config):
    train = train_set(data, config.max_len)
    inputs, targets = torch.from_numpy(train.inputs[:32]), torch.from_numpy(train.targets[:32])
    return train, Batch(
        inputs=inputs,
        targets=targets,
        rows=torch.arange(len(inputs)),
        negatives=torch.randint(1, data.n_items + 1, targets.shape),
    )


@pytest.mark.parametrize(
    "options",
    [
        dict(model="cl4srec"),
        dict(model="iclrec"),
        dict(model="elcrec"),
        dict(model="elcrec", intent_fusion="shift"),
        dict(model="elcrec", elcm=False),
        dict(model="elcrec", icl=False),
        dict(model="elcrec", pooling="items"),
    ],
)
def test_intent_models_train_step(tiny_data, options):
    torch.manual_seed(0)
    config = Config(hidden_size=16, num_clusters=4, max_len=20, kmeans_restarts=1, **options)
    model = build_model(config, tiny_data.n_items)
    train, batch = batch_for(tiny_data, config)
    model.prepare(train)
    model.start_epoch(train)
    model.train()
    terms = model.loss_terms(batch)
    expected = {"cl4srec": {"rec", "cl"}, "iclrec": {"rec", "cl", "intent_cl"}}.get(
        config.model, {"rec", "cl"} | ({"cluster"} if config.elcm else set()) | ({"intent_cl"} if config.icl else set())
    )
    assert set(terms) == expected  # the ablation switches remove exactly their terms
    loss = sum(terms.values())
    loss.backward()
    assert torch.isfinite(loss)
    if config.model == "elcrec":
        centres = model.cluster_centers
        assert torch.allclose(centres.norm(dim=1), torch.ones(4), atol=1e-5)  # renormalised every step
        gets_gradient = centres.grad is not None and centres.grad.abs().sum() > 0
        assert gets_gradient == config.elcm
    assert model.score(batch.inputs).shape == (32, tiny_data.n_items)


def test_centering_standardises_a_batch_of_one_row_by_its_running_statistics(tiny_data):
    """BatchNorm has no statistics of one row: a last batch of one (or a process's share of one under torchrun)
    stopped training with "Expected more than 1 value per channel"."""
    torch.manual_seed(0)
    config = Config(model="elcrec", hidden_size=16, num_clusters=4, max_len=20, kmeans_restarts=1)
    model = build_model(config.replace(intent_centering=True, pooling="items"), tiny_data.n_items)
    train, batch = batch_for(tiny_data, config)
    model.prepare(train)
    model.start_epoch(train)
    model.train()
    one = Batch(batch.inputs[:1], batch.targets[:1], batch.rows[:1], batch.negatives[:1])
    assert torch.isfinite(sum(model.loss_terms(one).values()))
    h = torch.randn(1, 20, 16)
    inputs = batch.inputs[:1]
    running = model.centering.running_mean.clone()
    expected = model.unit_representation(h, inputs)
    assert torch.equal(model.centering.running_mean, running)  # not a batch to learn statistics from
    model.eval()
    torch.testing.assert_close(expected, model.unit_representation(h, inputs))


def test_presets_fill_what_is_not_given():
    config = Config.from_dict({"preset": "beauty", "model": "elcrec", "num_clusters": 64})
    assert (config.num_layers, config.trade_off, config.intent_fusion, config.num_clusters) == (1, 10.0, "shift", 64)
    assert Config.from_dict({"preset": "toys", "model": "elcrec"}).num_layers == 3


@pytest.mark.parametrize("centres", ["initial", "every_epoch"])
def test_without_elcm_the_centres_are_kmeans_kept_or_fitted_every_epoch(tiny_data, centres):
    """B+ICL: no cluster loss, and the centres are k-means of the untrained encoder (initial) or refitted before
    every epoch as ICLRec's E-step (every_epoch)."""
    config = Config(
        model="elcrec",
        elcm=False,
        centres_without_elcm=centres,
        hidden_size=16,
        num_clusters=4,
        max_len=20,
        kmeans_restarts=1,
        dropout=0.0,
        attn_dropout=0.0,
    )
    torch.manual_seed(0)
    model = build_model(config, tiny_data.n_items)
    train, batch = batch_for(tiny_data, config)
    model.prepare(train)
    initial = model.cluster_centers.detach().clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        model.train()
        terms = model.loss_terms(batch)
        assert "cluster" not in terms
        optimizer.zero_grad()
        sum(terms.values()).backward()
        optimizer.step()
    assert torch.allclose(model.cluster_centers, initial, atol=1e-6)  # no gradient (each step renormalises them)
    model.start_epoch(train)
    refitted = not torch.allclose(model.cluster_centers, initial)
    assert refitted == (centres == "every_epoch")
    assert torch.allclose(model.cluster_centers.norm(dim=1), torch.ones(4), atol=1e-5)


def test_intent_profiles_name_items_as_the_data_does(tiny_data):
    """String item ids (a CSV of product codes) come out as strings: the explorer read them with numpy's
    .item(), which a Python string has not."""
    import dataclasses
    import json

    import numpy as np

    from elcrec.evaluation.intents import intent_profiles, user_intents

    data = dataclasses.replace(tiny_data, item_ids=np.array([f"p-{i:03d}" for i in tiny_data.item_ids], dtype=object))
    config = Config(model="elcrec", hidden_size=16, num_clusters=4, max_len=20, kmeans_restarts=1)
    model = build_model(config, data.n_items)
    model.prepare(train_set(data, config.max_len))
    _, intents, distances = user_intents(model, data)
    profiles = intent_profiles(model, data, intents, distances, top=3)
    named = [item for profile in profiles for item, _ in profile["top_items_by_centre"]]
    assert named and all(item.startswith("p-") for item in named)
    json.dumps(profiles)


def test_kmeans_uses_one_gpu_and_only_for_a_run_on_cuda(monkeypatch):
    """faiss's gpu=True takes every GPU (a torchrun job's other processes' too), and a CPU run on a GPU machine
    clustered on the GPU: k-means now runs on one GPU, and only when asked for by a run on CUDA."""
    import faiss
    import numpy as np

    from elcrec.models.clustering import kmeans

    asked = []
    real = faiss.Kmeans

    def recording(*args, gpu=False, **kwargs):
        asked.append(gpu)
        return real(*args, **kwargs)

    monkeypatch.setattr(faiss, "Kmeans", recording)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 4, raising=False)
    x = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    kmeans(x, 4, 5, 1, 0)
    kmeans(x, 4, 5, 1, 0, gpu=True)
    assert asked == [False, 1]
