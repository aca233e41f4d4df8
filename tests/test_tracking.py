"""Experiment tracking (TensorBoard, MLflow), the per-epoch hook, and the Optuna search."""

import json

import pytest

from elcrec import Config
from elcrec.data import make_synthetic
from elcrec.training import train

TINY = dict(hidden_size=16, max_len=20, epochs=3, patience=0, device="cpu")


def test_on_epoch_sees_every_epoch_and_can_stop_training(tiny_data, tmp_path):
    seen = []
    train(Config(output_dir=str(tmp_path / "a"), **TINY), data=tiny_data, progress=False, on_epoch=seen.append)
    assert [record["epoch"] for record in seen] == [0, 1, 2] and all("NDCG@20" in r["valid"] for r in seen)

    def stop(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(Config(output_dir=str(tmp_path / "b"), **TINY), data=tiny_data, progress=False, on_epoch=stop)


def test_tensorboard_tracking(tiny_data, tmp_path):
    pytest.importorskip("tensorboard", reason="pip install -e '.[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = Config(model="cl4srec", tracking="tensorboard", output_dir=str(tmp_path), **TINY)
    result = train(config, data=tiny_data, progress=False)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"loss", "loss/rec", "loss/cl", "valid/NDCG@20", "test/NDCG@20"} <= set(tags)
    assert [e.value for e in events.Scalars("loss")] == pytest.approx([h["loss"] for h in result["history"]])


def test_mlflow_tracking(tiny_data, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="pip install -e '.[mlflow]'")
    monkeypatch.chdir(tmp_path)  # MLflow stores artifacts under the working directory
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    config = Config(tracking="mlflow", output_dir=str(tmp_path / "run"), **TINY)
    result = train(config, data=tiny_data, progress=False)
    run = mlflow.search_runs(search_all_experiments=True, output_format="list")[0]
    assert run.data.params["lr"] == str(config.lr)
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "valid/NDCG_at_20")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
        [h["valid"]["NDCG@20"] for h in result["history"]]
    )
    assert run.data.metrics["test/NDCG_at_20"] == pytest.approx(result["test"]["NDCG@20"])


def test_tune_searches_prunes_and_continues(tiny_data, tmp_path):
    pytest.importorskip("optuna", reason="pip install -e '.[tune]'")
    from elcrec.training.tuning import search_params, tune, write_summary

    base = Config(**{**TINY, "epochs": 6})
    params = search_params("sasrec", "lr,dropout")
    study = tune(base, params, 6, tmp_path, data=tiny_data)
    assert len(study.trials) == 6
    assert all(len(t.intermediate_values) >= 1 for t in study.trials)  # reported every epoch, for pruning
    lines = write_summary(study, base, params, tmp_path)
    assert lines[-1].startswith("| 5 |")
    best = Config.from_dict(json.loads((tmp_path / "best.json").read_text()))
    assert best.lr == study.best_trial.params["lr"]
    continued = tune(base, params, 1, tmp_path, data=tiny_data)  # the stored study continues
    assert len(continued.trials) == 7
    assert continued.trials[-1].params not in [trial.params for trial in continued.trials[:-1]]  # a new point
    with pytest.raises(ValueError, match="other settings \\(epochs 6 -> 3, params lr,dropout -> lr\\)"):
        tune(base.replace(epochs=3), ["lr"], 1, tmp_path, data=tiny_data)  # would mix into one ranking
    other = make_synthetic(n_users=120, n_items=60, n_intents=4, seed=4)  # the same sizes, other sequences
    with pytest.raises(ValueError, match="other settings \\(data synthetic \\(120 users.* -> synthetic \\(120"):
        tune(base, params, 1, tmp_path, data=other)
    search = continued.user_attrs["search"]  # a study from before the data was kept takes its next data's
    continued.set_user_attr("search", {key: value for key, value in search.items() if key != "data"})
    assert len(tune(base, params, 1, tmp_path, data=other).trials) == 8
    with pytest.raises(ValueError, match="other settings \\(data synthetic"):
        tune(base, params, 1, tmp_path, data=tiny_data)
    preset = Config.from_dict({**json.loads((tmp_path / "best.json").read_text()), "recipe": "fast"})
    assert preset.loss == "ce"  # best.json holds the given settings: a recipe given with it still applies
    with pytest.raises(ValueError, match="cannot search bogus"):
        search_params("sasrec", "lr,bogus")


def test_tune_prunes_a_trial_the_data_cannot_take(tiny_data, tmp_path, monkeypatch):
    """num_clusters above the 120 training sequences is infeasible: that trial is pruned, the study goes on."""
    optuna = pytest.importorskip("optuna", reason="pip install -e '.[tune]'")
    from elcrec.training.tuning import tune

    grid = {"num_clusters": [32, 64, 256, 512]}  # both kinds, whatever TPE's draws in this optuna version
    monkeypatch.setattr(optuna.samplers, "TPESampler", lambda seed=None: optuna.samplers.GridSampler(grid, seed=seed))
    base = Config(**{**TINY, "epochs": 1, "model": "elcrec", "kmeans_restarts": 1})
    study = tune(base, ["num_clusters"], 4, tmp_path, data=tiny_data)
    states = {t.params["num_clusters"]: t.state for t in study.trials}
    assert sorted(states) == grid["num_clusters"]
    assert all(state == optuna.trial.TrialState.PRUNED for k, state in states.items() if k > 120)
    assert all(state == optuna.trial.TrialState.COMPLETE for k, state in states.items() if k <= 120)
    assert len(study.trials) == 4


def test_tune_resumes_the_trial_it_was_stopped_in(tiny_data, tmp_path, monkeypatch, caplog):
    """Ctrl-C in a trial, or a kill (the trial stays 'running' in the study): started again, the search resumes
    that trial first, in its folder, from its training state, as one of the trials asked for; the resumed run
    equals one never interrupted."""
    optuna = pytest.importorskip("optuna", reason="pip install -e '.[tune]'")
    from elcrec.training import tuning

    base = Config(**{**TINY, "epochs": 4})
    real_train = tuning.train

    def stopped_in_epoch_2(config, **kwargs):
        def stop(record):
            kwargs["on_epoch"](record)
            if record["epoch"] == 1:
                raise KeyboardInterrupt

        return real_train(config, **{**kwargs, "on_epoch": stop})

    monkeypatch.setattr(tuning, "train", stopped_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        tuning.tune(base, ["lr"], 2, tmp_path, data=tiny_data)
    monkeypatch.undo()
    caplog.set_level("INFO", logger="elcrec")
    study = tuning.tune(base, ["lr"], 2, tmp_path, data=tiny_data)
    first, resumed, new = study.trials
    assert "trial 1 of 2 (study trial 1, resuming trial 0)" in caplog.text
    assert first.state == optuna.trial.TrialState.FAIL and first.user_attrs["interrupted"]
    assert resumed.user_attrs["resumes"] == 0 and resumed.params == first.params
    assert resumed.state == new.state == optuna.trial.TrialState.COMPLETE and new.params != first.params
    record = json.loads((tmp_path / "trial0" / "metrics.json").read_text())
    whole = train(
        base.replace(lr=first.params["lr"], output_dir=str(tmp_path / "whole")), data=tiny_data, progress=False
    )
    assert [(e["loss"], e["valid"]) for e in record["history"]] == [(e["loss"], e["valid"]) for e in whole["history"]]
    assert record["test"] == whole["test"] and not (tmp_path / "trial1").exists()

    killed = study.ask()  # a trial whose process was killed: left running
    killed.set_user_attr("folder", str(tmp_path / "killed"))
    study = tuning.tune(base, ["lr"], 1, tmp_path, data=tiny_data)
    assert study.trials[killed.number].state == optuna.trial.TrialState.FAIL
    assert study.trials[-1].user_attrs["resumes"] == killed.number
    assert study.trials[-1].state == optuna.trial.TrialState.COMPLETE
    assert (tmp_path / "killed" / "metrics.json").is_file()
