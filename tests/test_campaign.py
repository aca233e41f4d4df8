"""The reproduction campaign's plan (benchmarks/reproduce.py over benchmarks/paper.toml): which cells it trains,
which it reads from others, and the records it writes."""

import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import common  # noqa: E402  (benchmarks/ is not a package)
import reproduce  # noqa: E402

from elcrec.training.experiments import ABLATIONS  # noqa: E402

SASREC = {
    "dataset": "beauty",
    "model": "sasrec",
    "seed": 1,
    "variant": "fast",
    "ablation": "",
    "figure": "",
    "label": "",
}
TINY = {"epochs": 1, "hidden_size": 16}  # a run of a second on the campaign fixture's data
GROUP = '[[cells]]\ndatasets = ["beauty"]\nmodels = ["sasrec"]\nseeds = [1]\n'


@pytest.fixture
def campaign(tmp_path, monkeypatch):
    """A campaign in tmp_path: its runs and records there, a tiny Beauty.txt (80 users of 5 to 8 of 40 items) as
    its data, and the paper's numbers beside it."""
    rng = np.random.default_rng(0)
    users = [[user, *(rng.choice(40, size=rng.integers(5, 9), replace=False) + 1)] for user in range(1, 81)]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "Beauty.txt").write_text("".join(" ".join(map(str, row)) + "\n" for row in users))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "REFERENCE_NUMBERS.md").write_text("| dataset | metric | SASRec |\n|---|---|---|\n")
    for module in (common, reproduce):
        monkeypatch.setattr(module, "DATA_DIR", tmp_path / "data")
    monkeypatch.setattr(reproduce, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(reproduce, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(reproduce, "MANIFEST", reproduce.MANIFEST)  # main's use_manifest is undone
    return tmp_path


def tiny_data(defaults: dict = TINY):
    from elcrec.data import load_dataset

    return load_dataset(reproduce.cell_config(SASREC, defaults))


def status_of(cell: dict, defaults: dict, capsys) -> str:
    reproduce.print_status([cell], defaults)
    return capsys.readouterr().out


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
        (folder / "config.json").write_text(reproduce.cell_config(cell, {}).to_json())  # the manifest's settings
        test = {metric: scores[cell["model"]][cell["seed"] - 1] for metric in reproduce.METRICS}
        (folder / "metrics.json").write_text(json.dumps({"test": test, "best_epoch": 1, "history": [{"seconds": 1}]}))
        run = {"machine": "old", "test_seen_excluded": {"NDCG@20": test["NDCG@20"]}}  # from before `machines`
        if cell["model"] == "iclrec":  # started on a GPU, finished on a CPU; ELCRec's records predate the count
            run["epochs_on"] = {"cuda": 1, "cpu": cell["seed"]}
            del run["machine"]
            run["machines"] = {"gpu box": 1, "cpu box": cell["seed"]}
        (folder / "run.json").write_text(json.dumps(run))
    reproduce.write_table(cells, {}, "command")
    table = (tmp_path / "paper-table.md").read_text()
    assert "paired t-test over seeds 1,2,3, ELCRec against ICLRec" in table  # seed 4 has no ICLRec run
    expected = ttest_rel(scores["elcrec"][:3], scores["iclrec"])
    assert f"| NDCG@20 | +0.0023 | {expected.statistic:.2f} | {expected.pvalue:.3f} |" in table
    assert "| cuda 1 + cpu 1, cuda 1 + cpu 2, cuda 1 + cpu 3 |" in table
    assert "| cpu, cpu, cpu, cpu |" in table
    assert "Machines: cpu box; gpu box; old." in table

    cells[len(scores["iclrec"])]["figure"] = "ELCRec"  # ELCRec seed 1 stands in the ablation figure
    reproduce.write_ablation(cells, {})
    ablation = (tmp_path / "paper-ablation.md").read_text()
    assert "| Beauty | pending | pending | pending | 0.2040 |" in ablation  # one run: the sum of four metrics
    sums = [4 * value for value in scores["elcrec"]]  # the seed spread of that sum
    spread = f"{statistics.mean(sums):.4f} ± {statistics.stdev(sums):.4f}"
    assert f"yardstick for the differences above: Beauty, seeds 1,2,3,4: {spread}." in ablation


def test_a_record_counts_the_epochs_each_machine_trained():
    from common import epochs_by_machine

    sessions = [  # a state from before sessions were recorded was resumed at epoch 2, then at 4 under torchrun
        {"first_epoch": 4, "machine": "box B", "processes": 2, "amp": "none"},
        {"first_epoch": 2, "machine": "box A", "processes": 1},
    ]
    metrics = {"history": [{"epoch": epoch} for epoch in range(6)], "sessions": sessions}
    assert epochs_by_machine(metrics, "none") == {
        "unrecorded (epochs from before the run recorded its machines)": 2,
        "box A": 2,
        "box B, 2 processes": 2,
    }
    # a session from before sessions recorded their precision trained in the run's amp (auto came with the record)
    assert epochs_by_machine(metrics, "bf16") == {
        "unrecorded (epochs from before the run recorded its machines)": 2,
        "box A, amp bf16": 2,
        "box B, 2 processes": 2,
    }
    assert epochs_by_machine({"history": [{"epoch": 0}]}, "none") == {
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

    (tmp_path / "Beauty.txt").write_text("1 1 2 3\n")
    config = Config(data=str(tmp_path / "Beauty.txt"), model="sasrec", epochs=10, output_dir=str(tmp_path / "run"))
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


def test_a_record_whose_copy_was_interrupted_does_not_count(campaign, monkeypatch):
    """The record's run.json goes before the other files are replaced: an interrupted copy leaves no run.json,
    not the old one beside the new settings (which then read back as recorded)."""
    from elcrec import runs

    data = tiny_data()
    reproduce.run_cell(SASREC, TINY, data)
    out = campaign / "results" / "paper" / reproduce.cell_name(SASREC)
    write = runs.atomic_write

    def crash_on_metrics(path, content):
        if Path(path) == out / "metrics.json":
            raise OSError(28, "No space left on device", str(path))
        write(path, content)

    monkeypatch.setattr(runs, "atomic_write", crash_on_metrics)
    changed = {**TINY, "lr": 5e-4}
    with pytest.raises(OSError, match="No space left"):
        reproduce.run_cell(SASREC, changed, data)
    assert json.loads((out / "config.json").read_text())["lr"] == 5e-4  # the new settings were copied
    assert not reproduce.records_settings_of(SASREC, reproduce.cell_config(SASREC, changed), data)
    assert reproduce.recorded(SASREC, changed) is None


def test_a_record_names_the_commit_code_and_data_that_made_it(campaign):
    """run.json holds the commit and the code of the run's sessions, and the data's sha256: a record that names
    one is read back only for the same data; one that names none, on its settings alone."""
    from elcrec.runs import fingerprint

    data = tiny_data()
    reproduce.run_cell(SASREC, TINY, data)
    folder = campaign / "results" / "paper" / reproduce.cell_name(SASREC)
    run = json.loads((folder / "run.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    assert run["commit"] == reproduce.commit_of(reproduce.ROOT)  # trained here and now: this checkout's code
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", run["commit"])
    assert reproduce.code_commit([*run["code"], "elcrec 0.0.1, source sha256 000000000000"]) is None  # resumed
    assert run["code"] == [metrics["sessions"][0]["code"]] and run["code"][0].startswith("elcrec ")
    assert run["data_sha256"] == fingerprint(data)["sha256"]
    config = reproduce.cell_config(SASREC, TINY)
    assert reproduce.records_settings_of(SASREC, config, data)
    (folder / "run.json").write_text(json.dumps({**run, "data_sha256": "0" * 64}))  # trained on other data
    assert not reproduce.records_settings_of(SASREC, config, data)
    assert reproduce.records_settings_of(SASREC, config)  # --status and the table load no data
    del run["data_sha256"]  # a record from before data_sha256
    (folder / "run.json").write_text(json.dumps(run))
    assert reproduce.records_settings_of(SASREC, config, data)


def test_a_record_names_the_commit_and_whether_src_differs_from_it(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True)

    assert reproduce.commit_of(tmp_path) is None  # not a git checkout
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "code.py").write_text("x = 1\n")
    (tmp_path / "notes.md").write_text("notes\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "first")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert reproduce.commit_of(tmp_path) == head.stdout.strip()
    (tmp_path / "notes.md").write_text("more notes\n")  # not the package's code
    assert reproduce.commit_of(tmp_path) == head.stdout.strip()
    (tmp_path / "src" / "code.py").write_text("x = 2\n")
    assert reproduce.commit_of(tmp_path) == f"{head.stdout.strip()}-dirty"


def test_a_cell_whose_settings_changed_is_stale_and_trains_again(campaign, capsys):
    """A record of other settings than the manifest's is not done: --status says so, the table leaves it out, and
    the cell trains again, its old run folder moved aside (not deleted)."""
    data = tiny_data()
    reproduce.run_cell(SASREC, TINY, data)
    assert "done: test NDCG@20" in status_of(SASREC, TINY, capsys)
    wider = {**TINY, "hidden_size": 32}
    assert "recorded with other settings: trains again" in status_of(SASREC, wider, capsys)
    reproduce.write_table([SASREC], wider, "command")
    assert "| Beauty | sasrec | 1 | pending / - |" in (campaign / "results" / "paper-table.md").read_text()
    capsys.readouterr()
    reproduce.run_cell(SASREC, wider, data)
    run_dir = campaign / "runs" / reproduce.cell_name(SASREC)
    assert f"moved aside to {run_dir}.replaced-1" in capsys.readouterr().out
    assert json.loads((run_dir.parent / f"{run_dir.name}.replaced-1" / "config.json").read_text())["hidden_size"] == 16
    assert json.loads((run_dir / "config.json").read_text())["hidden_size"] == 32
    record = campaign / "results" / "paper" / reproduce.cell_name(SASREC) / "config.json"
    assert json.loads(record.read_text())["hidden_size"] == 32
    assert "done: test NDCG@20" in status_of(SASREC, wider, capsys)


def test_a_run_trained_past_the_manifests_epochs_is_stale(campaign, capsys):
    """A run of 2 epochs when the manifest now says 1 is no run of the cell (it may have trained past where the
    cell's stops): not 'interrupted: 2/1 epochs', and moved aside when the cell trains."""
    data = tiny_data()
    reproduce.run_cell(SASREC, {**TINY, "epochs": 2}, data)
    shutil.rmtree(campaign / "results")  # trained, not recorded
    line = status_of(SASREC, TINY, capsys)
    assert "its run folder holds a run with other settings: trains again" in line and "2/1" not in line
    reproduce.run_cell(SASREC, TINY, data)
    assert "was trained with a larger budget (epochs 2)" in capsys.readouterr().out
    metrics = campaign / "results" / "paper" / reproduce.cell_name(SASREC) / "metrics.json"
    assert len(json.loads(metrics.read_text())["history"]) == 1


@pytest.mark.parametrize("native", [True, False])
def test_a_bf16_cell_on_a_cpu_that_emulates_bf16_warns_before_training(campaign, bf16_instructions, native):
    """Emulated bf16 is many times slower than float32: a campaign of days, unless the worker says so first (the
    trainer's warning, before the first epoch)."""
    bf16_instructions(native)
    reproduce.run_cell({**SASREC, "variant": "fast-bf16"}, TINY, tiny_data())
    log = (campaign / "runs" / reproduce.cell_name(SASREC) / "train.log").read_text()  # what the worker shows
    warning = "warning: amp=bf16 on a CPU without bf16 instructions"
    assert (warning in log) != native
    assert native or log.index(warning) < log.index("epoch   0")


def test_retrain_trains_a_recorded_cell_again_and_replaces_its_record(campaign):
    data = tiny_data()
    reproduce.run_cell(SASREC, TINY, data)
    run_dir = campaign / "runs" / reproduce.cell_name(SASREC)
    shutil.rmtree(run_dir)  # a fresh clone: the records, no runs
    run_json = campaign / "results" / "paper" / reproduce.cell_name(SASREC) / "run.json"
    run_json.write_text(json.dumps({**json.loads(run_json.read_text()), "old": True}))
    reproduce.run_cell(SASREC, TINY, data)
    assert not run_dir.exists()  # read back
    reproduce.run_cell(SASREC, TINY, data, retrain=True)
    assert (run_dir / "metrics.json").is_file()
    assert "old" not in json.loads(run_json.read_text())
    trained = (run_dir / "metrics.json").read_bytes()
    (run_dir / "metrics.json").write_text(trained.decode().replace("{", '{"mine": 1, ', 1))  # the finished run
    reproduce.run_cell(SASREC, TINY, data, retrain=True)  # trains anew: the finished run is moved aside, kept
    assert "mine" in (run_dir.with_name(f"{run_dir.name}.replaced-1") / "metrics.json").read_text()
    assert "mine" not in (run_dir / "metrics.json").read_text()
    retrained = json.loads((run_dir / "metrics.json").read_text())
    assert retrained["test"] == json.loads(trained)["test"]  # float32 retrains to the last bit


def test_another_manifest_keeps_its_runs_records_and_tables_apart(campaign, monkeypatch, capsys):
    """A trial manifest never writes into the committed records (RESULTS) or the campaign's runs/reproduce/."""
    root = campaign / "repo"
    monkeypatch.setattr(reproduce, "ROOT", root)
    manifest = root / "trial.toml"
    root.mkdir()
    manifest.write_text(f"[defaults]\nepochs = 1\nhidden_size = 16\n{GROUP}")
    monkeypatch.setattr(sys, "argv", ["reproduce.py", "--manifest", str(manifest), "--threads", "1"])
    reproduce.main()
    assert (
        "trial.toml: runs in runs/reproduce-trial/, records and tables in runs/reproduce-trial/results/"
        in capsys.readouterr().out
    )
    results = root / "runs" / "reproduce-trial" / "results"
    assert (results / "paper" / "beauty" / "sasrec-seed1" / "run.json").is_file()
    assert (root / "runs" / "reproduce-trial" / "beauty" / "sasrec-seed1" / "metrics.json").is_file()
    assert "(cells: trial.toml;" in (results / "paper-table.md").read_text()
    assert "Command: `python benchmarks/reproduce.py --manifest trial.toml`" in (results / "paper-table.md").read_text()
    assert not (campaign / "results").exists() and not (campaign / "runs").exists()
    monkeypatch.setattr(sys, "argv", ["reproduce.py", "--manifest", str(manifest), "--threads", "1", "--retrain"])
    (results / "paper" / "beauty" / "sasrec-seed1" / "run.json").write_text("{}")
    reproduce.main()  # trained anew (the finished run moved aside), its record written again
    assert "commit" in json.loads((results / "paper" / "beauty" / "sasrec-seed1" / "run.json").read_text())


@pytest.mark.parametrize("options", [["--table"], ["--threads", "1"]])
def test_a_table_without_the_papers_numbers_is_an_error(campaign, monkeypatch, options):
    """Without REFERENCE_NUMBERS.md every paper column would read '-': refused before anything trains."""
    (campaign / "docs" / "REFERENCE_NUMBERS.md").unlink()
    monkeypatch.setattr(sys, "argv", ["reproduce.py", *options])
    with pytest.raises(SystemExit, match=re.escape(str(campaign / "docs" / "REFERENCE_NUMBERS.md"))):
        reproduce.main()
    assert not (campaign / "results").exists()


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "cannot be read as a manifest"),
        ("[[cells]\n", "not valid TOML"),
        ("", "no [[cells]] groups"),
        (GROUP.replace("seeds = [1]\n", ""), "a [[cells]] group without seeds"),
        (GROUP.replace('datasets = ["beauty"]\n', ""), "a [[cells]] group without datasets"),
        (GROUP.replace("[1]", "[]"), "seeds = []: give a list of one or more integers of 0 or more"),
        (GROUP.replace("[1]", "[-1]"), "seeds = [-1]: give a list of"),
        (GROUP.replace("[1]", '["1"]'), "seeds = ['1']: give a list of"),
        (GROUP.replace('["sasrec"]', '"sasrec"'), "models = 'sasrec': give a list of one or more names"),
        (GROUP.replace("sasrec", "sasrek"), "model 'sasrek': choose among"),
        (f"[defaults]\nseed = 2\n{GROUP}", "[defaults] sets ['seed'], which each cell sets itself"),
        (f'[defaults]\nengine = "reference"\n{GROUP}', "[defaults] sets ['engine']"),
        (f"[defaults]\nepoch = 2\n{GROUP}", "beauty/sasrec-seed1: unknown config key 'epoch'"),
        (f'[defaults]\nepochs = "many"\n{GROUP}', "beauty/sasrec-seed1: epochs='many'"),
        (
            GROUP.replace("sasrec", "elcrec")
            + 'variant = "fast"\n'
            + GROUP.replace("sasrec", "elcrec")
            + 'variant = "fast-bf16"\n',
            "beauty/elcrec-seed1 is listed twice, as fast and fast-bf16",
        ),
    ],
)
def test_a_manifest_mistake_is_one_message_naming_the_file(tmp_path, text, message):
    manifest = tmp_path / "cells.toml"
    if text is not None:
        manifest.write_text(text)
    with pytest.raises(SystemExit, match=f"^{re.escape(str(manifest))}: .*{re.escape(message)}"):
        reproduce.read_manifest(manifest)


@pytest.mark.parametrize(
    "only, names",
    [
        ("toys:elcrec", ["toys/elcrec-seed1"]),  # the main cell, not the ablation's
        ("toys:elcrec-bicl", ["toys/elcrec-bicl-seed1"]),
        ("beauty:iclrec:2,toys:elcrec", ["toys/elcrec-seed1", "beauty/iclrec-seed2"]),  # in the manifest's order
        ("beauty,tyos", "'tyos' names no cell"),
        (",", "'' names no cell"),
        ("beauty:elcrec:1:2", "'beauty:elcrec:1:2' names no cell"),
    ],
)
def test_only_names_cells_by_their_names_and_each_part_must_name_one(only, names):
    manifest = BENCHMARKS / "paper.toml"
    _, cells = reproduce.read_manifest(manifest)
    if isinstance(names, str):
        with pytest.raises(SystemExit, match=re.escape(names)):
            reproduce.chosen_cells(cells, only, manifest)
    else:
        assert [reproduce.cell_name(cell) for cell in reproduce.chosen_cells(cells, only, manifest)] == names


def test_status_names_a_missing_data_file_and_goes_on(campaign, capsys):
    """The campaign fixture's data folder holds Beauty.txt alone."""
    _, cells = reproduce.read_manifest(BENCHMARKS / "paper.toml")
    reproduce.print_status(cells, {})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(cells)
    assert f"data missing: {campaign / 'data' / 'Toys_and_Games.txt'}" in lines[0]


def test_the_campaigns_manifest_takes_its_own_places_back_after_a_trial(monkeypatch, tmp_path):
    for name in ("MANIFEST", "RUNS", "RESULTS"):
        monkeypatch.setattr(reproduce, name, getattr(reproduce, name))
    reproduce.use_manifest(tmp_path / "trial.toml")
    assert reproduce.RESULTS == reproduce.ROOT / "runs" / "reproduce-trial" / "results"
    reproduce.use_manifest(reproduce.PAPER_MANIFEST)
    assert (reproduce.RUNS, reproduce.RESULTS) == (reproduce.PAPER_RUNS, reproduce.PAPER_RESULTS)
