import json
import math

import numpy as np
import pytest
import torch

from elcrec import Config
from elcrec.data import eval_set
from elcrec.evaluation import evaluate
from elcrec.runs import atomic_write, load_run, save_run
from elcrec.training import NegativeSampler, train


def test_negatives_never_hit_the_users_items(tiny_data):
    sampler = NegativeSampler(tiny_data, torch.device("cpu"), seed=0)
    users = torch.arange(tiny_data.n_users)
    targets = torch.ones(tiny_data.n_users, 40, dtype=torch.long)
    targets[:, :5] = 0  # padding positions get no negative
    negatives = sampler.sample(users, targets)
    assert (negatives[:, :5] == 0).all()
    negatives = negatives[:, 5:]
    for u in range(tiny_data.n_users):
        assert not set(negatives[u].tolist()) & set(tiny_data.sequence(u).tolist())
    assert negatives.min() >= 1 and negatives.max() <= tiny_data.n_items


def test_train_writes_run_and_checkpoint_round_trips(tiny_data, tmp_path):
    config = Config(epochs=2, hidden_size=16, batch_size=32, output_dir=str(tmp_path / "run"), device="cpu")
    result = train(config, data=tiny_data, progress=False)
    run_dir = tmp_path / "run"
    assert {p.name for p in run_dir.iterdir()} == {
        "model.pt",
        "config.json",
        "items.json",
        "data.json",
        "metrics.json",
        "training_state.pt",
        "train.log",
        ".training.lock",
    }
    assert (run_dir / ".training.lock").read_text() == ""  # released: no holder named
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"] == result["test"] and len(metrics["history"]) == 2
    for epoch in metrics["history"]:  # the named loss terms add up to the loss
        assert set(epoch["terms"]) == {"rec"} and epoch["terms"]["rec"] == pytest.approx(epoch["loss"], rel=1e-6)
        assert epoch["valid"][config.metric] == epoch[config.metric]
    log = (run_dir / "train.log").read_text()
    assert "settings:" in log and "epoch   1" in log and "test  HR@5" in log
    assert Config.from_dict(json.loads((run_dir / "config.json").read_text())) == config
    state = torch.load(run_dir / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    # the saved model scores the test split exactly as reported
    run = load_run(run_dir / "model.pt")
    again = evaluate(run.model, eval_set(tiny_data, config.max_len, "test"), ks=config.eval_ks)
    assert again == result["test"]
    assert np.array_equal(run.item_ids, tiny_data.item_ids)


def test_the_log_says_what_a_preset_gave_the_model_or_that_it_gave_nothing(tiny_data, tmp_path):
    """sasrec keeps its defaults under a paper preset (as llmesr does under sports): the log says so rather than
    leaving the preset looking applied."""
    for model, preset, line in (
        ("gru4rec", "sports", "preset sports for gru4rec: num_layers=1"),
        ("sasrec", "sports", "preset sports has no settings for sasrec: its defaults apply"),
    ):
        config = Config(
            model=model, preset=preset, epochs=1, hidden_size=16, device="cpu", output_dir=str(tmp_path / model)
        )
        train(config, data=tiny_data, progress=False)
        assert line in (tmp_path / model / "train.log").read_text()


def test_the_log_keeps_paths_whole_and_warns_of_settings_that_do_nothing(tiny_data, tmp_path):
    """The settings line broke paths at hyphens; preprocessing settings given for the synthetic data, a warm-up
    as long as the run, and a preset whose every setting is given (a config.json gives all) did nothing, silently."""
    run_dir = tmp_path / ("review-" * 16 + "config") / "r1"
    config = Config(recipe="fast", amp="none", epochs=1, hidden_size=16, max_len=20, kcore=1000, dedup="all")
    train(config.replace(device="cpu", output_dir=str(run_dir)), data=tiny_data, progress=False)
    log = (run_dir / "train.log").read_text()
    assert f" output_dir={run_dir}\n" in log or f" output_dir={run_dir} " in log
    assert "settings the synthetic data does not read (ignored): dedup=all kcore=1000" in log
    assert "warning: the warm-up (warmup_epochs=2) is not shorter than the run (epochs=1)" in log
    assert "and the cosine decay never starts" in log

    saved = json.loads((run_dir / "config.json").read_text())
    again = Config.from_saved({**saved, "model": "gru4rec", "preset": "sports", "output_dir": str(tmp_path / "again")})
    train(again, data=tiny_data, progress=False)
    assert (
        "warning: preset sports changes nothing: every setting it holds for gru4rec was given (a config.json file "
        "gives every setting, pinning them all)"
    ) in (tmp_path / "again" / "train.log").read_text()


def test_save_then_load_gives_identical_weights(tiny_data, tmp_path):
    from elcrec.models import build_model

    config = Config(hidden_size=16)
    model = build_model(config, tiny_data.n_items)
    save_run(tmp_path, model, config, tiny_data.item_ids)
    loaded = load_run(tmp_path).model
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_load_run_names_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing model.pt"):
        load_run(tmp_path)


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    atomic_write(path, b"old")
    monkeypatch.setattr("os.replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        atomic_write(path, b"new")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_sasrec_learns_the_planted_structure_beyond_popularity(tmp_path):
    from elcrec.data import make_synthetic

    data = make_synthetic(800, 120, 4, seed=2)
    base = Config(epochs=8, patience=0, batch_size=64, device="cpu")
    pop = train(base.replace(model="pop", output_dir=str(tmp_path / "pop")), data=data, progress=False)
    sasrec = train(base.replace(output_dir=str(tmp_path / "sasrec")), data=data, progress=False)
    assert sasrec["test"]["NDCG@20"] > 1.5 * pop["test"]["NDCG@20"]


def test_learning_rate_schedules():
    from elcrec.training.step import lr_factor

    constant = lr_factor(Config(epochs=4), steps_per_epoch=5)
    assert [constant(n) for n in range(20)] == [1.0] * 20  # the reference's constant rate
    cosine = lr_factor(Config(epochs=4, lr_schedule="cosine", warmup_epochs=1), steps_per_epoch=5)
    assert [cosine(n) for n in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])  # linear warm-up
    assert cosine(5) == 1.0 and cosine(12) == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 15)))
    assert cosine(20) == 0.0 and all(cosine(n) >= cosine(n + 1) for n in range(5, 25))


def test_a_scheduled_run_resumes_exactly(tiny_data, tmp_path):
    """The schedule's position is part of the training state: stopped after epoch 1 and resumed, a cosine run
    equals one never interrupted."""
    config = Config(
        hidden_size=16,
        max_len=20,
        batch_size=32,
        epochs=3,
        lr=5e-3,
        lr_schedule="cosine",
        warmup_epochs=0.5,
        device="cpu",
        seed=4,
    )
    whole = train(config.replace(output_dir=str(tmp_path / "whole")), data=tiny_data, progress=False)

    def stop(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    part = config.replace(output_dir=str(tmp_path / "part"))
    with pytest.raises(KeyboardInterrupt):
        train(part, data=tiny_data, progress=False, on_epoch=stop)
    resumed = train(part, data=tiny_data, progress=False, resume=True)
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in whole["history"]]
    assert resumed["test"] == whole["test"]


def test_data_given_that_the_settings_do_not_load_is_warned_of(tmp_path, monkeypatch):
    """config.json is how a run finds its data later: data given in memory that its settings do not load (other
    synthetic sizes, another dedup of the same file) trained with no word, and nothing found its data again. The
    settings' data is read once for all the runs given the same data (a group, a search)."""
    from elcrec.data import make_synthetic
    from elcrec.training import trainer

    reads, load = [], trainer.load_dataset
    monkeypatch.setattr(trainer, "load_dataset", lambda config: reads.append(config) or load(config))
    trainer.settings_fingerprint.cache_clear()
    config = Config(model="pop", synthetic_users=300, synthetic_items=100, synthetic_intents=4, synthetic_seed=5)
    warning = "warning: the data given is not the data the run's settings load (synthetic (2,000 users"
    for name, settings, expected in (
        ("same", {}, False),
        ("other", {"synthetic_users": 2000}, True),
        ("again", {}, False),
    ):
        run_dir = tmp_path / name
        train(config.replace(**settings, output_dir=str(run_dir)), data=make_synthetic(300, 100, 4, seed=5))
        assert (warning in (run_dir / "train.log").read_text()) == expected
    assert len(reads) == 2  # once for each setting of the data
    trainer.settings_fingerprint.cache_clear()


def test_a_file_given_with_other_preprocessing_is_warned_of(tmp_path, monkeypatch):
    """The same file read with dedup=all in memory, under settings that say none: later reads would differ."""
    from elcrec.data import load_dataset
    from elcrec.training import trainer

    monkeypatch.chdir(tmp_path)
    trainer.settings_fingerprint.cache_clear()
    lines = [f"{u} " + " ".join(str(1 + (u + j) % 20) for j in (0, 1, 1, 2, 3, 4)) for u in range(1, 60)]
    (tmp_path / "log.txt").write_text("\n".join(lines) + "\n")
    config = Config(model="pop", data="log.txt")
    warning = "warning: the data given is not the data the run's settings load"
    for name, dedup, expected in (("same", "none", False), ("deduplicated", "all", True)):
        train(config.replace(output_dir=name), data=load_dataset(config.replace(dedup=dedup)), progress=False)
        assert (warning in (tmp_path / name / "train.log").read_text()) == expected, name
    trainer.settings_fingerprint.cache_clear()
