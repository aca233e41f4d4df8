"""The reproduction campaign's plan (benchmarks/reproduce.py over benchmarks/paper.toml): which cells it trains,
which it reads from others, and the records it writes."""

import json
import re
import statistics
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import reproduce  # noqa: E402  (benchmarks/ is not a package)

from elcrec.training.experiments import ABLATIONS  # noqa: E402


def test_the_manifest_trains_each_run_once_and_the_ablation_has_every_bar():
    _, cells = reproduce.read_manifest(BENCHMARKS / "paper.toml")
    names = [reproduce.cell_name(cell) for cell in cells]
    assert len(names) == len(set(names))
    assert not any("elcrec-b-" in name for name in names)  # B is CL4SRec's cell, never trained again
    for dataset in ("beauty", "toys"):
        bars = {cell["figure"]: cell for cell in cells if cell["dataset"] == dataset and cell["figure"]}
        assert sorted(bars) == sorted(ABLATIONS)
        assert (bars["B"]["model"], bars["B"]["ablation"]) == ("cl4srec", "")
        assert (bars["ELCRec"]["model"], bars["ELCRec"]["ablation"]) == ("elcrec", "")
        assert {name: bars[name]["ablation"] for name in ("B+ICL", "B+ELCM")} == {"B+ICL": "B+ICL", "B+ELCM": "B+ELCM"}
    main_beauty = {cell["model"] for cell in cells if cell["dataset"] == "beauty" and not cell["ablation"]}
    assert main_beauty == {"sasrec", "bert4rec", "gru4rec", "cl4srec", "iclrec", "elcrec"}


@pytest.mark.parametrize(
    "group, message",
    [
        ('datasets = ["beauty"]\nmodels = ["elcrec"]\nablations = ["B"]\nseeds = [1]', "either models or ablations"),
        ('datasets = ["beauty"]\nablations = ["C"]\nseeds = [1]', "ablation 'C'"),
        ('datasets = ["movies"]\nmodels = ["elcrec"]\nseeds = [1]', "dataset 'movies'"),
        ('datasets = ["beauty"]\nmodels = ["elcrec"]\nseeds = [1]\nepochs = 3', "unknown cells key(s) ['epochs']"),
    ],
)
def test_a_bad_manifest_is_refused(tmp_path, group, message):
    manifest = tmp_path / "cells.toml"
    manifest.write_text(f"[[cells]]\n{group}\n")
    with pytest.raises(SystemExit, match=re.escape(message)):
        reproduce.read_manifest(manifest)


def test_records_hold_paths_relative_to_the_repository(tmp_path):
    settings = {"data": str(reproduce.ROOT.parent / "shared" / "data" / "Beauty.txt"), "seed": 1}
    settings["output_dir"] = str(reproduce.ROOT / "runs" / "reproduce" / "beauty" / "sasrec-seed1")
    (tmp_path / "config.json").write_text(json.dumps(settings))
    reproduce.write_portable_config(tmp_path / "config.json", tmp_path / "record.json")
    record = json.loads((tmp_path / "record.json").read_text())
    assert record == {
        "data": "../shared/data/Beauty.txt",
        "seed": 1,
        "output_dir": "runs/reproduce/beauty/sasrec-seed1",
    }


def test_a_run_that_stopped_on_an_error_is_shown_failed(tmp_path):
    log = tmp_path / "train.log"
    assert reproduce.last_error(log) is None
    log.write_text("2026-12-01 10:00:00 epoch   3  loss 1.2\n2026-12-01 10:00:09 error: the training loss became NaN\n")
    assert reproduce.last_error(log) == "the training loss became NaN"
    log.write_text(log.read_text() + "2026-12-01 11:00:00 resuming after epoch 3\n")  # started again
    assert reproduce.last_error(log) is None


def test_the_table_tests_elcrec_against_iclrec_over_the_seeds_both_have(tmp_path, monkeypatch):
    from scipy.stats import ttest_rel

    monkeypatch.setattr(reproduce, "RESULTS", tmp_path)
    scores = {"iclrec": [0.048, 0.050, 0.047], "elcrec": [0.051, 0.052, 0.049, 0.053]}
    blank = {"variant": "fast", "ablation": "", "figure": "", "label": ""}
    cells = [
        {"dataset": "beauty", "model": model, "seed": seed, **blank}
        for model, values in scores.items()
        for seed in range(1, len(values) + 1)
    ]
    for cell in cells:
        folder = tmp_path / "paper" / reproduce.cell_name(cell)
        folder.mkdir(parents=True)
        test = {metric: scores[cell["model"]][cell["seed"] - 1] for metric in reproduce.METRICS}
        (folder / "metrics.json").write_text(json.dumps({"test": test, "best_epoch": 1, "history": [{"seconds": 1}]}))
        run = {"machine": "old", "test_seen_excluded": {"NDCG@20": test["NDCG@20"]}}  # from before `machines`
        if cell["model"] == "iclrec":  # started on a GPU, finished on a CPU; ELCRec's records predate the count
            run["epochs_on"] = {"cuda": 1, "cpu": cell["seed"]}
            del run["machine"]
            run["machines"] = {"gpu box": 1, "cpu box": cell["seed"]}
        (folder / "run.json").write_text(json.dumps(run))
    reproduce.write_table(cells, "command")
    table = (tmp_path / "paper-table.md").read_text()
    assert "paired t-test over seeds 1,2,3, ELCRec against ICLRec" in table  # seed 4 has no ICLRec run
    expected = ttest_rel(scores["elcrec"][:3], scores["iclrec"])
    assert f"| NDCG@20 | +0.0023 | {expected.statistic:.2f} | {expected.pvalue:.3f} |" in table
    assert "| cuda 1 + cpu 1, cuda 1 + cpu 2, cuda 1 + cpu 3 |" in table
    assert "| cpu, cpu, cpu, cpu |" in table
    assert "Machines: cpu box; gpu box; old." in table

    cells[len(scores["iclrec"])]["figure"] = "ELCRec"  # ELCRec seed 1 stands in the ablation figure
    reproduce.write_ablation(cells)
    ablation = (tmp_path / "paper-ablation.md").read_text()
    assert "| Beauty | pending | pending | pending | 0.2040 |" in ablation  # one run: the sum of four metrics
    sums = [4 * value for value in scores["elcrec"]]  # the seed spread of that sum
    spread = f"{statistics.mean(sums):.4f} ± {statistics.stdev(sums):.4f}"
    assert f"yardstick for the differences above: Beauty, seeds 1,2,3,4: {spread}." in ablation


def test_a_record_counts_the_epochs_each_machine_trained():
    from common import epochs_by_machine

    sessions = [  # a state from before sessions were recorded was resumed at epoch 2, then at 4 under torchrun
        {"first_epoch": 4, "machine": "box B", "processes": 2},
        {"first_epoch": 2, "machine": "box A", "processes": 1},
    ]
    metrics = {"history": [{"epoch": epoch} for epoch in range(6)], "sessions": sessions}
    assert epochs_by_machine(metrics) == {
        "unrecorded (epochs from before the run recorded its machines)": 2,
        "box A": 2,
        "box B, 2 processes": 2,
    }
    assert epochs_by_machine({"history": [{"epoch": 0}]}) == {
        "unrecorded (epochs from before the run recorded its machines)": 1
    }


def test_a_recorded_cell_is_read_back_where_its_run_folder_is_missing(tmp_path, monkeypatch):
    """A new machine has the committed records but no runs/: a cell recorded with the same settings is not
    trained again; one whose settings changed since is."""
    from elcrec import Config
    from elcrec.training import experiments

    monkeypatch.setattr(reproduce, "RESULTS", tmp_path)
    cell = {"dataset": "beauty", "model": "sasrec", "seed": 1, "variant": "fast", "ablation": "", "figure": ""}
    cell["label"] = ""
    config = Config(data="/elsewhere/data/Beauty.txt", preset="beauty", model="sasrec", seed=1, output_dir="/x/y")
    folder = tmp_path / "paper" / reproduce.cell_name(cell)
    folder.mkdir(parents=True)
    record = {**config.to_dict(), "data": "../shared/data/Beauty.txt", "output_dir": "runs/reproduce/beauty/x"}
    (folder / "config.json").write_text(json.dumps(record))
    assert not reproduce.records_settings_of(cell, config)  # no run.json: the record is not complete
    (folder / "run.json").write_text("{}")
    assert reproduce.records_settings_of(cell, config)
    assert not reproduce.records_settings_of(cell, config.replace(lr=5e-4))
    (folder / "config.json").write_text(json.dumps({**record, "loss": "hinge"}))  # a value no longer taken
    assert not reproduce.records_settings_of(cell, config)
    (folder / "config.json").write_text(json.dumps(record))

    def train_again(*args):
        raise AssertionError("a recorded cell was trained again")

    monkeypatch.setattr(experiments, "finished_or_train", train_again)
    monkeypatch.setattr(reproduce, "cell_config", lambda cell, defaults: config)
    reproduce.run_cell(cell, {}, data=None)  # returns: read back
    monkeypatch.setattr(reproduce, "cell_config", lambda cell, defaults: config.replace(lr=5e-4))
    with pytest.raises(AssertionError, match="trained again"):
        reproduce.run_cell(cell, {}, data=None)


def test_status_gives_the_pace_of_the_device_a_run_last_trained_on(tmp_path, monkeypatch, capsys):
    import torch

    from elcrec import Config

    config = Config(model="sasrec", epochs=10, output_dir=str(tmp_path / "run"))
    config.run_dir.mkdir()
    monkeypatch.setattr(reproduce, "cell_config", lambda cell, defaults: config)
    monkeypatch.setattr(reproduce, "RESULTS", tmp_path)
    on_gpu = [{"seconds": 2.0, "valid_seconds": 1.0}] * 4  # from before epochs named their device: the state's
    state = {"epoch": 3, "stopped": False, "history": on_gpu, "best_score": 0.05, "best_epoch": 3, "device": "cuda"}
    torch.save(state, config.run_dir / "training_state.pt")
    cell = {"dataset": "beauty", "model": "sasrec", "seed": 1, "variant": "fast", "ablation": "", "figure": ""}
    cell["label"] = ""
    reproduce.print_status([cell], {})
    assert (
        "4/10 epochs, best valid NDCG@20 0.0500 at epoch 3, 3 s/epoch on cuda, at most 0.0 h left"
        in capsys.readouterr().out
    )
    state["history"] = on_gpu + [{"seconds": 50.0, "valid_seconds": 10.0, "device": "cpu"}]  # resumed on a CPU
    state["epoch"] = 4
    torch.save(state, config.run_dir / "training_state.pt")
    reproduce.print_status([cell], {})
    assert (
        "5/10 epochs, best valid NDCG@20 0.0500 at epoch 3, 60 s/epoch on cpu, at most 0.1 h left"
        in capsys.readouterr().out
    )
