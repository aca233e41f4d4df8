import json

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
    }
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
