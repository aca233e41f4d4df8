"""Determinism, crash-safe resume (SIGKILL mid-run), and a poisoned loss that must not be saved."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from elcrec import Config, __version__
from elcrec.config import CHOICES
from elcrec.models import SASRec
from elcrec.runs import RunBusy, restore_replaced, training_holder
from elcrec.runtime import describe_machine, source_digest
from elcrec.training import NonFinite, train, trainer

SETTINGS = [
    "--data",
    "synthetic",
    "--synthetic-users",
    "1500",
    "--synthetic-items",
    "300",
    "--model",
    "elcrec",
    "--hidden-size",
    "16",
    "--num-clusters",
    "8",
    "--kmeans-restarts",
    "1",
    "--batch-size",
    "32",
    "--max-len",
    "20",
    "--epochs",
    "4",
    "--patience",
    "0",
    "--device",
    "cpu",
    "--seed",
    "7",
]


def run_cli(*args, **popen):
    """`elcrec train` in its own process, on one thread (the idle cores could differ between two runs compared)."""
    return subprocess.Popen(
        [sys.executable, "-m", "elcrec", "train", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        **popen,
    )


def metrics(folder):
    result = json.loads((folder / "metrics.json").read_text())
    return result["best_epoch"], result["valid"], result["test"], [h["loss"] for h in result["history"]]


def test_same_seed_same_metrics(tiny_data, tmp_path):
    config = Config(
        model="elcrec", hidden_size=16, num_clusters=4, max_len=20, kmeans_restarts=1, epochs=2, device="cpu", seed=5
    )
    first = train(config.replace(output_dir=str(tmp_path / "a")), data=tiny_data, progress=False)
    second = train(config.replace(output_dir=str(tmp_path / "b")), data=tiny_data, progress=False)
    assert first["test"] == second["test"] and first["valid"] == second["valid"]
    assert [h["loss"] for h in first["history"]] == [h["loss"] for h in second["history"]]


def test_killed_run_resumes_to_the_same_metrics(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert run_cli(*SETTINGS, "--output-dir", str(whole)).wait() == 0

    process = run_cli(*SETTINGS, "--output-dir", str(killed))
    state = killed / "training_state.pt"
    deadline = time.time() + 300

    def finished_epochs() -> int:  # the state is replaced atomically: never read half-written
        return torch.load(state, weights_only=True)["epoch"] + 1 if state.exists() else 0

    while finished_epochs() < 1 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed; make it longer"
    os.kill(process.pid, signal.SIGKILL)  # somewhere inside epoch 1 (or its validation)
    process.wait()
    finished = torch.load(state, weights_only=True)["epoch"]
    assert 0 <= finished < 3 and not (killed / "metrics.json").exists()

    resumed = run_cli("--resume", str(killed))
    assert resumed.wait() == 0, resumed.stderr.read()
    assert metrics(killed) == metrics(whole)  # bit-identical on CPU
    here = describe_machine("cpu", threads=False)
    sessions = json.loads((killed / "metrics.json").read_text())["sessions"]  # where each part trained
    assert [session["first_epoch"] for session in sessions] == [0, finished + 1]
    assert all(session["machine"].startswith(here) and session["processes"] == 1 for session in sessions)
    assert {session["code"] for session in sessions} == {f"elcrec {__version__}, source sha256 {source_digest()}"}
    assert len(json.loads((whole / "metrics.json").read_text())["sessions"]) == 1
    assert (killed / "train.log").read_text().count(f"machine: {here}") == 2


def test_a_state_saved_on_another_device_type_resumes_with_a_warning(tiny_data, tmp_path):
    """A state saved on CUDA holds the negative sampler's Philox state, which a CPU generator cannot take: the
    resumed run seeds that generator from it (the same way every time) and says it is not an identical resume."""

    class Stop(Exception):
        pass

    def stop(record):
        if record["epoch"] == 1:  # epoch 0's state is written, epoch 1's is not
            raise Stop

    config = Config(model="sasrec", hidden_size=16, max_len=20, epochs=3, device="cpu", seed=3)
    results = []
    for name in ("a", "b"):
        run = config.replace(output_dir=str(tmp_path / name))
        with pytest.raises(Stop):
            train(run, data=tiny_data, progress=False, on_epoch=stop)
        state_file = run.run_dir / "training_state.pt"
        state = torch.load(state_file, weights_only=True)
        order = state["rng"]["generators"][0]
        state["rng"]["generators"] = [order, torch.arange(16, dtype=torch.uint8)]  # as CUDA's generator state
        state["device"] = "cuda"
        for epoch in state["history"]:  # as a state from before epochs named their device
            del epoch["device"]
        torch.save(state, state_file)
        results.append(train(run, data=tiny_data, progress=False, resume=True))
        assert "saved on cuda, this run is on cpu" in (run.run_dir / "train.log").read_text()
    assert results[0]["test"] == results[1]["test"]
    assert [epoch["device"] for epoch in results[0]["history"]] == ["cuda", "cpu", "cpu"]


def test_a_run_stopped_before_its_first_epoch_finished_resumes_to_the_same_metrics(tmp_path, monkeypatch):
    """The training state is written before the first epoch too: a run interrupted in it (Ctrl-C) resumes from
    the start, identical to one never interrupted, instead of leaving a folder that is neither resumable nor
    trainable again; evaluated, served or exported meanwhile, it says its weights are the untrained starting ones
    (recommend, serve and export said nothing), and so does what was exported."""
    import socket

    import uvicorn
    from typer.testing import CliRunner

    from elcrec.cli.main import app

    config = Config(model="elcrec", synthetic_users=150, synthetic_items=50, hidden_size=16, num_clusters=4)
    config = config.replace(max_len=20, kmeans_restarts=1, epochs=2, device="cpu", seed=6)
    whole = train(config.replace(output_dir=str(tmp_path / "whole")), progress=False)

    def stop(record):  # after epoch 0's validation, before its state is written
        raise KeyboardInterrupt

    part = config.replace(output_dir=str(tmp_path / "part"))
    with pytest.raises(KeyboardInterrupt):
        train(part, progress=False, on_epoch=stop)
    assert torch.load(part.run_dir / "training_state.pt", weights_only=True)["epoch"] == -1
    exported = tmp_path / "part.elcrec.pt"
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    with socket.create_server(("127.0.0.1", 0)) as free:
        port = str(free.getsockname()[1])
    for command in (
        ["evaluate", str(part.run_dir)],
        ["recommend", str(part.run_dir), "--history", "1 2"],
        ["serve", str(part.run_dir), "--port", port],
        ["export", str(part.run_dir), "--out", str(exported)],
        ["recommend", str(exported), "--history", "1 2"],
    ):
        done = CliRunner().invoke(app, command)  # on the test's threads
        assert done.exit_code == 0 and "these are its untrained starting weights" in done.output, (command, done.output)
    resumed = train(part, progress=False, resume=True)
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in whole["history"]]
    assert resumed["test"] == whole["test"]
    assert "resuming from the start: no epoch had finished" in (part.run_dir / "train.log").read_text()
    assert "untrained" not in CliRunner().invoke(app, ["evaluate", str(part.run_dir)]).output
    trained = CliRunner().invoke(app, ["export", str(part.run_dir), "--out", str(exported), "--overwrite"])
    assert trained.exit_code == 0 and "untrained" not in trained.output
    assert "untrained" not in CliRunner().invoke(app, ["recommend", str(exported), "--history", "1 2"]).output


def interrupted_after_epoch_0(folder, data):
    """A 3-epoch SASRec run in `folder`, stopped (Ctrl-C) in epoch 1: its settings; its state is epoch 0's."""
    config = Config(model="sasrec", hidden_size=16, max_len=20, epochs=3, device="cpu", output_dir=str(folder))

    def stop(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, data=data, progress=False, on_epoch=stop)
    return config


def test_a_run_resumed_on_other_data_is_refused(tiny_data, tmp_path):
    """A resumed run trains on the data it started on: other data (a data file changed since) is an error that
    names both, and the run's data.json keeps the data it was trained on."""
    from elcrec.data import make_synthetic
    from elcrec.runs import RunError

    config = interrupted_after_epoch_0(tmp_path, tiny_data)
    saved = (tmp_path / "data.json").read_text()
    other = make_synthetic(n_users=120, n_items=60, n_intents=4, seed=4)  # the same sizes, other sequences
    with pytest.raises(RunError, match="a run continues on the data it started on"):
        train(config, data=other, progress=False, resume=True)
    assert (tmp_path / "data.json").read_text() == saved
    assert train(config, data=tiny_data, progress=False, resume=True)["history"][-1]["epoch"] == 2


def test_a_run_resumed_with_other_settings_is_refused(tiny_data, tmp_path):
    """A run resumes with the settings it was trained with: others (a comparison run again into the same folder
    with a new setting) are an error that lists them, before anything is trained or loaded."""
    from elcrec.runs import RunError
    from elcrec.training.experiments import finished_or_train

    config = interrupted_after_epoch_0(tmp_path, tiny_data)
    with pytest.raises(RunError, match="other settings \\(hidden_size 16 -> 32, lr 0.001 -> 0.01\\)"):
        train(config.replace(hidden_size=32, lr=0.01), data=tiny_data, progress=False, resume=True)
    with pytest.raises(RunError, match="other settings \\(hidden_size 16 -> 32\\)"):
        finished_or_train(config.replace(hidden_size=32), tiny_data)  # as compare and ablate resume their runs
    moved = config.replace(output_dir=str(tmp_path / "moved"))  # the folder and the device may change
    (tmp_path / "moved").mkdir()
    for path in tmp_path.iterdir():
        if path.is_file():
            (tmp_path / "moved" / path.name).write_bytes(path.read_bytes())
    assert len(train(moved, data=tiny_data, progress=False, resume=True)["history"]) == 3


def test_a_training_state_of_another_run_is_refused(tiny_data, tmp_path):
    """A state resumes only the run that saved it: under a config.json edited since, or copied in from a run on
    other data, it would continue under settings or on data it was not trained with."""
    from elcrec.data import make_synthetic
    from elcrec.runs import RunError

    config = interrupted_after_epoch_0(tmp_path / "run", tiny_data)
    settings = tmp_path / "run" / "config.json"
    saved = settings.read_text()
    settings.write_text(json.dumps({**json.loads(saved), "lr": 0.002}))  # edited by hand
    with pytest.raises(RunError, match=r"saved by a run with other settings \(lr 0.001\) than config.json gives"):
        train(Config.from_dict(json.loads(settings.read_text())), data=tiny_data, progress=False, resume=True)
    settings.write_text(saved)
    other = make_synthetic(n_users=120, n_items=60, n_intents=4, seed=4)
    interrupted_after_epoch_0(tmp_path / "other", other)
    state = (tmp_path / "run" / "training_state.pt").read_bytes()
    (tmp_path / "run" / "training_state.pt").write_bytes((tmp_path / "other" / "training_state.pt").read_bytes())
    with pytest.raises(RunError, match="saved by a run on other data .*: it is another run's training state"):
        train(config, data=tiny_data, progress=False, resume=True)
    (tmp_path / "run" / "training_state.pt").write_bytes(state)
    assert train(config, data=tiny_data, progress=False, resume=True)["history"][-1]["epoch"] == 2


def test_resume_refuses_new_settings_and_missing_state(tmp_path):
    process = run_cli("--resume", str(tmp_path), "--lr", "0.1")
    assert process.wait() == 2 and "--resume continues" in process.stderr.read()
    (tmp_path / "config.json").write_text(json.dumps({"model": "sasrec"}))
    process = run_cli("--resume", str(tmp_path))
    assert process.wait() == 2 and "nothing to resume" in process.stderr.read()
    with pytest.raises(FileNotFoundError, match="no such run folder to resume"):
        train(Config(output_dir=str(tmp_path / "nowhere")), resume=True)
    assert not (tmp_path / "nowhere").exists()  # nothing created for a run that is not there


def test_a_finished_run_of_a_model_that_trains_nothing_says_so_when_resumed(tiny_data, tmp_path):
    """pop saves no training state: resuming it said to run the command again without --resume, which said to
    resume it."""
    from elcrec.runs import RunError

    config = Config(model="pop", device="cpu", output_dir=str(tmp_path))
    train(config, data=tiny_data, progress=False)
    with pytest.raises(RunError, match="is a finished run with nothing to resume .*elcrec evaluate .*--overwrite"):
        train(config, data=tiny_data, progress=False, resume=True)


def test_non_finite_loss_stops_without_saving(tiny_data, tmp_path, monkeypatch):
    calls = {"n": 0}
    loss_terms = SASRec.loss_terms

    def poisoned(self, batch):
        calls["n"] += 1
        terms = loss_terms(self, batch)
        if calls["n"] == 4:  # epoch 1 (2 steps per epoch), its 2nd step
            terms["rec"] = terms["rec"] * float("nan")
        return terms

    monkeypatch.setattr(SASRec, "loss_terms", poisoned)
    config = Config(hidden_size=16, max_len=20, batch_size=64, epochs=3, device="cpu", output_dir=str(tmp_path))
    with pytest.raises(NonFinite, match="epoch 1, step 1"):
        train(config, data=tiny_data, progress=False)
    assert torch.load(tmp_path / "training_state.pt", weights_only=True)["epoch"] == 0
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in saved.values() if v.is_floating_point())


def test_truncated_weights_in_a_run_folder_are_named(tiny_data, tmp_path):
    from elcrec.runs import load_run

    train(
        Config(hidden_size=16, max_len=20, epochs=1, device="cpu", output_dir=str(tmp_path)),
        data=tiny_data,
        progress=False,
    )
    weights = tmp_path / "model.pt"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match="model.pt cannot be read as model weights"):
        load_run(tmp_path)


@pytest.mark.parametrize(
    "content, fragment",
    [  # reader-level errors: tests/test_readers.py
        ("1 2 3 4\n\n2 3 4 5\n", "no user has the 4 or more interactions"),
        ("1 2\n", "no user has 3 or more interactions"),
    ],
)
def test_datasets_too_short_to_train_on_fail_before_training(tmp_path, content, fragment):
    path = tmp_path / "data.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=fragment):
        train(Config(data=str(path), device="cpu", output_dir=str(tmp_path / "run")), progress=False)


def test_wrong_separator_and_binary_files_are_explained(tmp_path):
    from elcrec.data import DataError, read_interactions

    (tmp_path / "log.csv").write_text("user_id;item_id;timestamp\n1;2;3\n")
    with pytest.raises(DataError, match="separated by ';'"):
        read_interactions(tmp_path / "log.csv")
    (tmp_path / "data.txt").write_bytes(bytes(range(128, 256)))
    with pytest.raises(DataError, match="not UTF-8 text"):
        read_interactions(tmp_path / "data.txt")


def test_more_clusters_than_training_sequences_fails_before_training(tiny_data, tmp_path):
    config = Config(model="elcrec", num_clusters=500, hidden_size=16, device="cpu", output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="num_clusters=500 exceeds the 120 training sequences"):
        train(config, data=tiny_data, progress=False)
    assert not (tmp_path / "training_state.pt").exists()


def test_a_folder_holding_a_run_is_not_trained_over(tiny_data, tmp_path):
    config = Config(hidden_size=16, max_len=20, epochs=1, device="cpu", output_dir=str(tmp_path))
    first = train(config, data=tiny_data, progress=False)
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(config.replace(lr=0.01), data=tiny_data, progress=False)
    assert json.loads((tmp_path / "metrics.json").read_text())["test"] == first["test"]  # untouched
    assert train(config.replace(lr=0.01), data=tiny_data, progress=False, overwrite=True)["test"] != first["test"]


def test_a_folder_another_process_trains_in_is_refused_until_it_exits(tiny_data, tmp_path):
    config = Config(hidden_size=16, max_len=20, epochs=1, device="cpu", output_dir=str(tmp_path))
    hold = "import sys, time\nfrom elcrec.runs import training_lock\nwith training_lock(sys.argv[1]):\n"
    hold += "    print('held', flush=True)\n    time.sleep(120)"
    holder = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert training_holder(tmp_path) == holder.pid
        with pytest.raises(RunBusy, match=f"being trained by another process \\(pid {holder.pid}\\)"):
            train(config, data=tiny_data, progress=False)
        assert not (tmp_path / "model.pt").exists()
    finally:
        holder.kill()
        holder.wait()
    assert training_holder(tmp_path) is None  # its pid is still in the file, but it is gone
    train(config, data=tiny_data, progress=False)  # a killed holder leaves no stale lock
    assert (tmp_path / "metrics.json").is_file()
    assert training_holder(tmp_path) is None  # a finished run clears the file


def test_an_overwritten_run_stopped_early_leaves_no_stale_result(tiny_data, tmp_path):
    config = Config(hidden_size=16, max_len=20, epochs=2, device="cpu", output_dir=str(tmp_path))
    train(config, data=tiny_data, progress=False)

    def stop(record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, data=tiny_data, progress=False, overwrite=True, on_epoch=stop)
    assert not (tmp_path / "metrics.json").exists()  # a group would otherwise read the old result back


def set_aside_by_a_killed_overwrite(config, data, folder):
    """A finished run in `folder` that an --overwrite killed after its new run wrote a log set aside in .replaced
    (as a SIGKILL leaves it), with {file name: bytes} of the old run."""
    train(config.replace(output_dir=str(folder)), data=data, progress=False)
    before = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file() and path.name[0] != "."}
    (folder / ".replaced").mkdir()
    for name in before:
        (folder / name).rename(folder / ".replaced" / name)
    (folder / "train.log").write_text("the new run's log, cut short\n")
    return before


def test_a_restore_of_a_set_aside_run_that_is_stopped_loses_nothing(tiny_data, tmp_path, monkeypatch):
    """Putting back a run that a killed --overwrite set aside deletes the new run's files first: a restore stopped
    after some old files were back had the next one delete those as the new run's."""
    config = Config(hidden_size=16, max_len=20, epochs=1, device="cpu")
    before = set_aside_by_a_killed_overwrite(config, tiny_data, tmp_path)
    replace, moved = Path.replace, []

    def stopped_after_two(self, target):
        if len(moved) == 2:
            raise KeyboardInterrupt
        moved.append(self.name)
        return replace(self, target)

    monkeypatch.setattr(Path, "replace", stopped_after_two)
    with pytest.raises(KeyboardInterrupt):
        restore_replaced(tmp_path)
    monkeypatch.setattr(Path, "replace", replace)
    assert len(moved) == 2 and all((tmp_path / name).read_bytes() == before[name] for name in moved)
    assert restore_replaced(tmp_path)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.name[0] != "."} == before
    assert sorted(path.name for path in tmp_path.iterdir() if path.is_dir()) == []


def test_under_torchrun_only_rank_0_reads_and_prepares_the_run_folder(tiny_data, tmp_path, monkeypatch):
    """The other processes read a folder that rank 0 may still be putting back a set-aside run in: their checks
    found the new run's cut-short files, or half the old run's. They now leave the folder to rank 0 and wait for
    it in the process group (trainer._train)."""
    config = Config(hidden_size=16, max_len=20, epochs=1, device="cpu", output_dir=str(tmp_path))
    before = set_aside_by_a_killed_overwrite(config, tiny_data, tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**json.loads(before["config.json"]), "hidden_size": 32}))
    joined = []
    monkeypatch.setattr(trainer, "_train", lambda *args: joined.append(args[0].run_dir))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    train(config, data=tiny_data, progress=False, resume=True)  # rank 1 used to check the new run's settings
    assert joined == [tmp_path]
    assert (tmp_path / ".replaced").is_dir() and not (tmp_path / "model.pt").exists()  # untouched: rank 0's work
    monkeypatch.setenv("RANK", "0")
    train(config, data=tiny_data, progress=False, resume=True)
    assert joined == [tmp_path, tmp_path]
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.name[0] != "."} == before


def test_weights_that_became_non_finite_stop_training(tmp_path, monkeypatch):
    """A step whose loss was finite can still leave non-finite weights (lr=inf did, with 200 users: one step per
    epoch): training stops before anything from that epoch is saved or validated."""
    step = torch.optim.Adam.step

    def overflowing(self, *args, **kwargs):
        result = step(self, *args, **kwargs)
        self.param_groups[0]["params"][0].data[0, 0] = float("inf")
        return result

    monkeypatch.setattr(torch.optim.Adam, "step", overflowing)
    config = Config(
        synthetic_users=200,
        synthetic_items=60,
        hidden_size=16,
        max_len=20,
        epochs=3,
        device="cpu",
        output_dir=str(tmp_path),
    )
    with pytest.raises(NonFinite, match="weights became NaN or infinite in epoch 0 while the loss stayed finite"):
        train(config, progress=False)
    assert torch.load(tmp_path / "training_state.pt", weights_only=True)["epoch"] == -1  # from before epoch 0
    assert not (tmp_path / "metrics.json").exists()
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in saved.values() if v.is_floating_point())
    assert "the state from before the first epoch)" in (tmp_path / "train.log").read_text()


def test_an_optimiser_state_that_became_infinite_stops_training(tmp_path, monkeypatch):
    """An infinite second moment (a temperature of 1e-30 made one) makes every later Adam update 0: the loss and
    the weights stay finite while training goes on, frozen. It stops before anything from that epoch is saved."""
    step = torch.optim.Adam.step

    def overflowing(self, *args, **kwargs):
        result = step(self, *args, **kwargs)
        next(iter(self.state.values()))["exp_avg_sq"].fill_(float("inf"))
        return result

    monkeypatch.setattr(torch.optim.Adam, "step", overflowing)
    config = Config(synthetic_users=200, synthetic_items=60, hidden_size=16, max_len=20, epochs=2, device="cpu")
    with pytest.raises(NonFinite, match="moment estimates became NaN or infinite in epoch 0 .* which freezes training"):
        train(config.replace(output_dir=str(tmp_path)), progress=False)
    assert torch.load(tmp_path / "training_state.pt", weights_only=True)["epoch"] == -1  # from before epoch 0


def test_errors_reach_the_run_log(tiny_data, tmp_path):
    config = Config(model="elcrec", num_clusters=500, hidden_size=16, device="cpu", output_dir=str(tmp_path))
    with pytest.raises(ValueError):
        train(config, data=tiny_data, progress=False)
    log = (tmp_path / "train.log").read_text()
    assert "settings: " in log and "error: num_clusters=500 exceeds the 120 training sequences" in log


def test_data_warnings_reach_the_run_log(tmp_path):
    data = tmp_path / "data.txt"
    data.write_text(
        "".join(f"{u} " + " ".join(str(1 + (u + j) % 30) for j in range(6)) + "\n" for u in range(40)) + "99 1 2\n"
    )  # a user too short to split
    train(
        Config(data=str(data), hidden_size=16, max_len=20, epochs=1, device="cpu", output_dir=str(tmp_path / "run")),
        progress=False,
    )
    assert "dropped 1 user(s) with fewer than 3 interactions" in (tmp_path / "run" / "train.log").read_text()


def test_run_files_are_strict_json_with_the_umask_mode(tmp_path):
    from elcrec.runs import write_json

    write_json(tmp_path / "m.json", {"NDCG@20": float("nan"), "runs": [float("inf"), 1.5]})
    assert json.loads((tmp_path / "m.json").read_text(), parse_constant=pytest.fail) == {
        "NDCG@20": None,
        "runs": [None, 1.5],
    }
    umask = os.umask(0o022)
    try:
        write_json(tmp_path / "shared.json", {})
        assert (tmp_path / "shared.json").stat().st_mode & 0o777 == 0o644  # readable by colleagues
    finally:
        os.umask(umask)


def test_runs_of_several_seeds_share_the_synthetic_data(tmp_path):
    """The synthetic data has its own seed: the seeds of a group change the training only."""
    from elcrec.training.experiments import run_group

    base = Config(synthetic_users=150, synthetic_items=50, hidden_size=16, max_len=20, epochs=1, device="cpu")
    run_group(base, {"sasrec": {}}, [1, 2], tmp_path)
    first, second = (json.loads((tmp_path / "sasrec" / f"seed{s}" / "data.json").read_text()) for s in (1, 2))
    assert first == second and first["users"] == 150
    assert Config(seed=2).synthetic_seed == Config(seed=1).synthetic_seed


def test_a_report_renders_an_imported_run(tiny_data, tmp_path):
    """An imported run has no training history: the report shows its metrics, without curves."""
    from elcrec.data import eval_set
    from elcrec.evaluation import evaluate
    from elcrec.models import build_model
    from elcrec.report import write_report
    from elcrec.runs import fingerprint, result_record, save_run, write_json

    config = Config(
        model="elcrec",
        hidden_size=16,
        num_clusters=4,
        max_len=20,
        output_dir=str(tmp_path),
        synthetic_users=120,
        synthetic_items=60,
        synthetic_intents=4,
        synthetic_seed=3,
    )  # tiny_data
    model = build_model(config, tiny_data.n_items)
    save_run(tmp_path, model, config, tiny_data.item_ids, fingerprint(tiny_data))
    test = evaluate(model, eval_set(tiny_data, 20, "test"))
    write_json(tmp_path / "metrics.json", result_record(config, test, source="imported"))
    page = write_report(tmp_path, data=None, sample=50).read_text()
    assert "No training curves: the run has no training epochs (imported, trained elsewhere)" in page
    assert "intent map" in page


def test_data_the_config_does_not_name_is_refused(tmp_path):
    """config.json is how evaluate, recommend and resume find a run's data again: training on data its config
    does not name would leave a run that names other data."""
    from elcrec.data import load_dataset

    (tmp_path / "log.txt").write_text(
        "".join(f"{u} " + " ".join(str(1 + (u + j) % 30) for j in range(6)) + "\n" for u in range(1, 60))
    )
    log = load_dataset(Config(data=str(tmp_path / "log.txt")))
    config = Config(model="sasrec", hidden_size=16, epochs=1, device="cpu", output_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="the data given is log, but the run's data setting names synthetic"):
        train(config, data=log, progress=False)


def test_a_finished_run_trains_longer_as_if_its_budget_had_been_larger(tiny_data, tmp_path):
    """--epochs (and --patience) may grow on resume: under a constant schedule the longer run equals one given
    that budget from the start; more epochs on a cosine schedule, fitted to the epochs, and a budget below the
    epochs trained are refused (patience alone, which leaves the schedule as it was, was refused too)."""
    from elcrec.runs import RunError

    config = Config(model="sasrec", hidden_size=16, max_len=20, epochs=4, device="cpu", seed=2)
    whole = train(config.replace(output_dir=str(tmp_path / "whole")), data=tiny_data, progress=False)
    short = config.replace(epochs=2, output_dir=str(tmp_path / "short"))
    train(short, data=tiny_data, progress=False)
    with pytest.raises(RunError, match="has trained 2 epochs: epochs=1 cannot undo them"):
        train(short.replace(epochs=1), data=tiny_data, progress=False, resume=True)
    longer = train(short.replace(epochs=4), data=tiny_data, progress=False, resume=True)
    assert [h["loss"] for h in longer["history"]] == [h["loss"] for h in whole["history"]]
    assert longer["test"] == whole["test"]
    assert json.loads((short.run_dir / "config.json").read_text())["epochs"] == 4

    cosine = config.replace(epochs=2, lr_schedule="cosine", output_dir=str(tmp_path / "cosine"))
    train(cosine, data=tiny_data, progress=False)
    with pytest.raises(RunError, match="cosine schedule fitted to its 2 epochs"):
        train(cosine.replace(epochs=4), data=tiny_data, progress=False, resume=True)
    patient = train(cosine.replace(patience=5), data=tiny_data, progress=False, resume=True)  # the schedule stays
    assert json.loads((cosine.run_dir / "config.json").read_text())["patience"] == 5 and len(patient["history"]) == 2


def test_a_run_stopped_while_writing_its_first_files_is_never_a_dead_end(tiny_data, tmp_path, monkeypatch):
    """Stopped after its settings but before its first training state, a run holds no model.pt, so its command
    runs again; stopped after that state but before the weights, it resumes from the start. (The weights were
    written first: a folder holding model.pt and no state could be neither resumed nor trained again.)"""
    from elcrec.training.trainer import Trainer

    config = Config(model="sasrec", hidden_size=16, max_len=20, epochs=2, device="cpu")
    whole = train(config.replace(output_dir=str(tmp_path / "whole")), data=tiny_data, progress=False)

    def stopped(method):
        def stop(self, *args):
            raise KeyboardInterrupt

        monkeypatch.setattr(Trainer, method, stop)
        part = config.replace(output_dir=str(tmp_path / method))
        with pytest.raises(KeyboardInterrupt):
            train(part, data=tiny_data, progress=False)
        monkeypatch.undo()
        return part

    part = stopped("save_state")  # before the first state
    assert (part.run_dir / "config.json").is_file() and not (part.run_dir / "model.pt").exists()
    with pytest.raises(FileNotFoundError, match="run the command again without --resume"):
        train(part, data=tiny_data, progress=False, resume=True)
    assert train(part, data=tiny_data, progress=False)["test"] == whole["test"]

    part = stopped("save_best")  # after the first state, before the weights
    assert (part.run_dir / "training_state.pt").is_file() and not (part.run_dir / "model.pt").exists()
    resumed = train(part, data=tiny_data, progress=False, resume=True)
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in whole["history"]]
    assert resumed["test"] == whole["test"]


def test_a_training_state_of_another_run_or_damaged_weights_are_named_before_training(tiny_data, tmp_path):
    """A state file that loads but is not this run's (another model's, not a mapping) and a best checkpoint
    that can no longer be read are RunErrors naming the file, before any epoch trains (the damaged best
    checkpoint was found only when the run finished, and then the run could never finish)."""
    from elcrec.runs import RunError

    config = interrupted_after_epoch_0(tmp_path / "run", tiny_data)
    state = config.run_dir / "training_state.pt"
    saved = state.read_bytes()
    whole = torch.load(state, weights_only=True)
    another_model = {**whole, "model": {"cluster_centers": torch.zeros(2, 2)}}
    for foreign, message in (
        ([1, 2], "it needs epoch"),
        ({"model": {}}, "it needs epoch"),
        (another_model, "of this run"),
    ):
        torch.save(foreign, state)
        with pytest.raises(RunError, match=f"training_state.pt is not a training state .*{message}"):
            train(config, data=tiny_data, progress=False, resume=True)
    state.write_bytes(saved)
    weights = config.run_dir / "model.pt"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(RunError, match="model.pt cannot be read as model weights"):
        train(config, data=tiny_data, progress=False, resume=True)
    assert torch.load(state, weights_only=True)["epoch"] == 0  # nothing trained


def test_a_write_that_fails_names_its_file_and_stale_temporary_files_go(tiny_data, tmp_path, monkeypatch):
    """A full disk's error names no file: atomic_write adds it. A killed process's half-written temporary files
    of the run's files are removed when the run is trained or resumed again (under its lock); other .*.tmp files
    stay (every one was removed)."""
    import errno
    import os

    from elcrec.runs import atomic_write

    def full(fd):  # where a full disk shows with delayed allocation
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", full)
        with pytest.raises(OSError, match=r"No space left on device: .*metrics.json") as raised:
            atomic_write(tmp_path / "metrics.json", b"{}")
    assert raised.value.errno == errno.ENOSPC and list(tmp_path.iterdir()) == []
    config = interrupted_after_epoch_0(tmp_path / "run", tiny_data)
    (config.run_dir / ".training_state.pt.k1ll3d_x.tmp").write_bytes(b"half")
    others = [".important.tmp", ".report.html.w8r1t1ng.tmp"]  # a user's, and `elcrec report` writing now
    for name in others:
        (config.run_dir / name).write_bytes(b"")
    train(config, data=tiny_data, progress=False, resume=True)
    assert sorted(path.name for path in config.run_dir.glob(".*.tmp")) == others


def test_random_states_hold_the_runs_own_gpu_only(monkeypatch):
    """A run saves its own GPU's generator (not every visible GPU's, which a machine with fewer GPUs could not
    restore, and which started CUDA in CPU runs on GPU machines); states saved before, one per visible GPU,
    restore the run device's one."""
    from elcrec.training.trainer import rng_states, set_rng_states

    def untouchable(*args):
        raise AssertionError("CUDA touched by a CPU run")

    monkeypatch.setattr(torch.cuda, "get_rng_state", untouchable)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", untouchable)
    monkeypatch.setattr(torch.cuda, "set_rng_state", untouchable)
    states = rng_states(torch.device("cpu"))
    assert states["cuda"] == []
    set_rng_states(states, torch.device("cpu"))

    applied = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: applied.append((int(state[0]), device)))
    older = {**states, "cuda": [torch.full((16,), n, dtype=torch.uint8) for n in range(3)]}  # three GPUs visible
    for device, expected in (("cuda:1", 1), ("cuda", 0), ("cuda:5", 0)):
        set_rng_states(older, torch.device(device))
        assert applied[-1] == (expected, torch.device(device))


@pytest.mark.parametrize("model", [model for model in CHOICES["model"] if model != "llmesr"])  # llmesr: test_llmesr
def test_every_model_resumes_exactly_and_serves_what_it_trained(tmp_path, model):
    """Each model end to end: two epochs in one run and one epoch resumed for a second give the same losses and
    test metrics, and the exported model recommends what the run folder does."""
    from elcrec.runs import export_run
    from elcrec.serving import Recommender

    config = Config(model=model, synthetic_users=150, synthetic_items=50, hidden_size=16, max_len=20, num_clusters=4)
    config = config.replace(kmeans_restarts=1, patience=0, device="cpu", seed=3)
    whole = train(config.replace(epochs=2, output_dir=str(tmp_path / "whole")), progress=False)
    if "epochs" not in config.unread():  # pop trains nothing: nothing to resume
        train(config.replace(epochs=1, output_dir=str(tmp_path / "part")), progress=False)
        part = train(config.replace(epochs=2, output_dir=str(tmp_path / "part")), progress=False, resume=True)
        assert [h["loss"] for h in part["history"]] == [h["loss"] for h in whole["history"]]
        assert part["test"] == whole["test"]
    export_run(tmp_path / "whole", tmp_path / "whole.elcrec.pt")
    histories = [[3, 7, 9], [12, 4]]
    exported = Recommender.load(tmp_path / "whole.elcrec.pt").recommend(histories, k=5)
    assert exported == Recommender.load(tmp_path / "whole").recommend(histories, k=5)
