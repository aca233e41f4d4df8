"""What a new user meets first: the demo, the intent explorer, recommendations for the data's users, JSON output,
the version, Ctrl-C during training, and progress in logs."""

import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from elcrec import Config, __version__
from elcrec.cli.main import app
from elcrec.data import load_dataset
from elcrec.serving import Recommender
from elcrec.training import train

runner = CliRunner()
SMALL = dict(synthetic_users=300, synthetic_items=80, synthetic_intents=4, hidden_size=16, max_len=20, device="cpu")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def elcrec_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("elcrec")
    config = Config(
        model="elcrec",
        num_clusters=4,
        kmeans_restarts=1,
        pooling="items",
        intent_centering=True,
        epochs=2,
        output_dir=str(folder),
        **SMALL,
    )
    train(config, progress=False)
    return folder


def test_the_demo_shows_learned_intents(tmp_path):
    result = invoke("demo", "--epochs", 2, "--output-dir", tmp_path)
    assert result.exit_code == 0, result.output
    out = result.output
    for model in ("pop", "sasrec", "elcrec"):
        assert any(line.startswith(model) for line in out.splitlines())
    agreement = out.split("ELCRec's 8 learned intents against the 8 planted ones: NMI ", 1)[1]
    nmi = float(agreement.split(",", 1)[0])
    assert 0 <= nmi <= 1 and "shuffled intents: NMI" in agreement and "pooling=items and intent_centering" in out
    assert "last items (planted intent):" in out and "ELCRec recommends:" in out
    assert (tmp_path / "elcrec" / "report.html").is_file()
    assert "does not read" not in out  # each model is given only the demo's settings it reads
    recorded = json.loads((tmp_path / "elcrec" / "metrics.json").read_text())["test"]["NDCG@20"]
    assert f"{recorded:.4f}" in [line.split()[6] for line in out.splitlines() if line.startswith("elcrec")]


def test_the_demo_replaces_its_own_runs_and_no_other(tmp_path):
    """demo --output-dir trained over whatever runs the folder held (train(overwrite=True)): a user's run in
    DIR/sasrec was replaced by the demo's. It replaces the runs it trained, and refuses before training others."""
    assert invoke("demo", "--epochs", 1, "--output-dir", tmp_path).exit_code == 0
    again = invoke("demo", "--epochs", 1, "--output-dir", tmp_path)
    assert again.exit_code == 0, again.output
    lines = [f"{user} " + " ".join(str(1 + (user + j) % 30) for j in range(6)) for user in range(1, 41)]
    (tmp_path / "mine.txt").write_text("\n".join(lines) + "\n")
    mine = tmp_path / "sasrec"
    trained = invoke("train", "--data", tmp_path / "mine.txt", "--epochs", 1, "--output-dir", mine, "--overwrite")
    assert trained.exit_code == 0, trained.output
    before = {path.name: path.read_bytes() for path in mine.iterdir() if path.is_file()}
    refused = invoke("demo", "--epochs", 1, "--output-dir", tmp_path)
    assert refused.exit_code == 2 and f"{mine} holds a run the demo did not train" in refused.output
    assert {path.name: path.read_bytes() for path in mine.iterdir() if path.is_file()} == before


def test_the_intent_explorer(elcrec_run):
    result = invoke("intents", elcrec_run, "--top", 3, "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    data = load_dataset(Config(**SMALL))
    profiles = found["intents"]
    assert found["users"] == data.n_users == sum(p["users"] for p in profiles)
    assert sum(p["share"] for p in profiles) == pytest.approx(1.0)
    assert [p["users"] for p in profiles] == sorted((p["users"] for p in profiles), reverse=True)
    assigned = np.loadtxt(elcrec_run / "intents.csv", delimiter=",", skiprows=1)
    for profile in profiles:
        members = assigned[assigned[:, 1] == profile["intent"], 0].astype(int)
        counts = np.bincount(np.concatenate([data.sequence(u - 1) for u in members]), minlength=data.n_items + 1)
        assert [count for _, count in profile["top_items_by_frequency"]] == sorted(counts, reverse=True)[:3]
        assert len(profile["top_items_by_centre"]) == 3 and set(profile["representative_users"]) <= set(members)
        assert sum(profile["activity"].values()) == pytest.approx(1.0)
    table = invoke("intents", elcrec_run, "--shown", 2)
    assert table.exit_code == 0 and "new/low/medium/high" in table.output
    assert (elcrec_run / "intent-profiles.csv").read_text().startswith('"intent","users","share"')
    listed = pacsv.read_csv(elcrec_run / "intent-profiles.csv").to_pylist()  # id lists as JSON: ids may hold spaces
    profiles = json.loads((elcrec_run / "intents.json").read_text())["intents"]  # of the same (last) call
    assert [json.loads(row["representative_users"]) for row in listed] == [p["representative_users"] for p in profiles]
    for column in ("top_items_by_frequency", "top_items_by_centre"):
        assert [json.loads(row[column]) for row in listed] == [[i for i, _ in p[column]] for p in profiles]


def test_the_intent_explorer_writes_only_into_a_folder(elcrec_run, tmp_path):
    """An exported model has no run folder: its files went to the model file's path (a raw "File exists")."""
    assert invoke("export", elcrec_run, "--out", tmp_path / "exported.pt").exit_code == 0
    for args in (["intents", tmp_path / "exported.pt"], ["intents", elcrec_run, "--out", tmp_path / "exported.pt"]):
        result = invoke(*args)
        assert result.exit_code == 2 and "error:" in result.output and "Errno" not in result.output, result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["exported.pt"]
    result = invoke("intents", tmp_path / "exported.pt", "--out", tmp_path / "intents")
    assert result.exit_code == 0, result.output


def test_recommendations_for_the_data_users(elcrec_run, tmp_path):
    recommender = Recommender.load(elcrec_run, device="cpu")
    data = load_dataset(Config(**SMALL))
    mine = recommender.recommend_users([3, 17], k=5)
    assert mine[0]["items"] == recommender.recommend([data.sequence(2).tolist()], k=5)[0]["items"]  # whole history
    alone = recommender.recommend_users(3, k=5)[0]  # a batch of one: the same items, scores to rounding
    assert [r["user"] for r in mine] == [3, 17] and alone["items"] == mine[0]["items"]
    assert alone["scores"] == pytest.approx(mine[0]["scores"], rel=1e-5)
    with pytest.raises(ValueError, match="users not in synthetic: 9999"):
        recommender.recommend_users([9999])
    assert recommender.recommend_users([], k=5) == []
    for k in (3.0, True, "3"):
        with pytest.raises(ValueError, match="choose an integer"):
            recommender.recommend([3, 4], k=k)
    other = load_dataset(Config(**{**SMALL, "synthetic_seed": 2}))  # checked once per dataset, each dataset checked
    with pytest.raises(ValueError, match="was trained on"):
        recommender.recommend_users([3], data=other)
    assert recommender.recommend_users([3, 17], k=5, data=data)[0]["items"] == mine[0]["items"]

    result = invoke("recommend", elcrec_run, "--user", 3, "--user", 17, "-k", 5, "--json")
    assert result.exit_code == 0 and json.loads(result.output) == mine  # the users as the data has them: 3, not "3"
    result = invoke("recommend", elcrec_run, "--history", "3 4 5", "-k", 2, "--json")
    assert result.exit_code == 0 and set(json.loads(result.output)) == {"items", "scores", "unknown"}
    out = tmp_path / "recs.parquet"
    result = invoke("recommend", elcrec_run, "--all-users", "--out", out, "-k", 4, "--batch-size", 64)
    assert result.exit_code == 0, result.output
    table = pq.read_table(out).to_pydict()
    assert len(table["user_id"]) == 4 * data.n_users and table["rank"][:4] == [1, 2, 3, 4]
    assert table["item_id"][:4] == recommender.recommend_users([1], k=4)[0]["items"]
    assert invoke("recommend", elcrec_run, "--all-users").exit_code == 2  # needs --out
    upper = tmp_path / "RECS.CSV"
    assert invoke("recommend", elcrec_run, "--all-users", "--out", upper, "-k", 4).exit_code == 0
    assert pacsv.read_csv(upper).to_pydict() == table  # a suffix in capitals is the same format
    (tmp_path / "folder.csv").mkdir()
    result = invoke("recommend", elcrec_run, "--all-users", "--out", tmp_path / "folder.csv")
    assert result.exit_code == 2 and "is a folder" in result.output and ".tmp" not in result.output
    assert invoke("recommend", elcrec_run, "--user", 3, "--history", "4").exit_code == 2  # one of them


def test_json_on_stdout_is_json_alone_when_the_data_logs_a_warning(tmp_path):
    """The log went to stdout: `evaluate --json` printed "dropped 1 user(s) ..." above its JSON."""
    data = tmp_path / "log.txt"
    data.write_text("".join(f"{user} {user % 7 + 1} {user % 5 + 1} 8 9 10\n" for user in range(1, 60)) + "99 1 2\n")
    run = tmp_path / "run"
    result = invoke("train", "--data", data, "--model", "pop", "--output-dir", run, "--threads", 1)
    assert result.exit_code == 0 and "dropped 1 user(s)" in result.stderr, result.output
    for args in (["evaluate", run, "--json"], ["recommend", run, "--user", 1, "--json"]):
        result = invoke(*args)
        assert result.exit_code == 0 and "dropped 1 user(s)" in result.stderr, result.output
        json.loads(result.stdout)


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == f"elcrec {__version__}"


def test_ctrl_c_during_training_says_how_to_resume(tmp_path):
    run = tmp_path / "run"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "elcrec",
            "train",
            "--synthetic-users",
            "1500",
            "--epochs",
            "50",
            "--hidden-size",
            "16",
            "--output-dir",
            str(run),
            "--device",
            "cpu",
            "--threads",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal: a shell starts background jobs (pytest ... &) with SIGINT ignored, which Python
        # then keeps, and the child would inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while not (run / "training_state.pt").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGINT)
    _, errors = process.communicate(timeout=120)
    assert process.returncode == 130 and f"continue with elcrec train --resume {shlex.quote(str(run))}" in errors, (
        errors[-2000:]
    )
    assert "Traceback" not in errors


def test_progress_in_a_log_is_periodic_lines(monkeypatch, caplog):
    from elcrec import progress

    monkeypatch.setattr(progress, "PROGRESS_SECONDS", 0.0)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    with caplog.at_level(logging.INFO, logger="elcrec"):
        bar = progress.Progress(100, "epoch 0", enabled=True)
        bar.update(40, loss=1.5)
        bar.update(60)
        bar.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("epoch 0: 40/100 seq (40%), loss 1.5000") and lines[1].startswith("epoch 0: 100/100")
    assert not any("\r" in line for line in lines)


def test_groups_say_which_run_of_how_many(tmp_path, caplog):
    from elcrec.training.experiments import run_group

    base = Config(epochs=1, **SMALL)
    with caplog.at_level(logging.INFO, logger="elcrec"):
        run_group(base, {"sasrec": {}, "gru4rec": {"model": "gru4rec"}}, [1, 2], tmp_path)
    announced = [r.getMessage() for r in caplog.records if r.getMessage().startswith("== run")]
    assert [line.split(":")[0].split(",")[0] for line in announced] == [f"== run {n} of 4" for n in (1, 2, 3, 4)]


def test_a_library_run_logs_once_at_the_level_its_caller_chose(tmp_path, monkeypatch, capsys):
    """With the caller's logging set up (logging.basicConfig), every line printed twice, and a level set on the
    `elcrec` logger was overridden for the run; train(progress=False) printed the whole log to the terminal."""
    import io

    from elcrec.training import train

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # pytest's own capture handlers aside: a plain script's root
    monkeypatch.setattr(logging.getLogger("elcrec"), "handlers", [])  # and no CLI test's console before
    monkeypatch.setattr(logging.getLogger("elcrec"), "level", logging.NOTSET)
    config = Config(**SMALL, epochs=1, warmup_epochs=2)  # warns: the warm-up outlasts the run

    def run(name, **kwargs):
        train(config.replace(output_dir=str(tmp_path / name)), **kwargs)
        return capsys.readouterr().err

    assert "epoch   0" in run("shown") and "warning: the warm-up" in run("shown-again", overwrite=True)
    quiet = run("quiet", progress=False)
    assert "warning: the warm-up" in quiet and "epoch   0" not in quiet  # warnings alone
    assert "epoch   0" in (tmp_path / "quiet" / "train.log").read_text()  # the file holds everything

    held = io.StringIO()
    monkeypatch.setattr(root, "handlers", [logging.StreamHandler(held)])
    monkeypatch.setattr(root, "level", logging.INFO)
    terminal = run("configured")
    assert "epoch   0" not in terminal and held.getvalue().count("epoch   0") == 1  # once, by the caller's handler
    held.truncate(0)
    held.seek(0)
    monkeypatch.setattr(logging.getLogger("elcrec"), "level", logging.WARNING)
    run("warnings")
    assert "epoch   0" not in held.getvalue() and "warning: the warm-up" in held.getvalue()
    assert "epoch   0" in (tmp_path / "warnings" / "train.log").read_text()
    assert logging.getLogger("elcrec").level == logging.WARNING and logging.getLogger("elcrec").propagate

    own = io.StringIO()  # the caller's handler on the elcrec logger itself, which does not propagate
    held.truncate(0)
    held.seek(0)
    monkeypatch.setattr(logging.getLogger("elcrec"), "propagate", False)
    monkeypatch.setattr(logging.getLogger("elcrec"), "handlers", [logging.StreamHandler(own)])
    assert "warning: the warm-up" not in run("own")  # shown once, by the caller's handler
    assert own.getvalue().count("warning: the warm-up") == 1 and "epoch   0" not in own.getvalue()
    assert held.getvalue() == "" and not logging.getLogger("elcrec").propagate


def test_a_log_file_that_cannot_open_never_replaces_the_error_being_logged(tmp_path, monkeypatch):
    """Another process than the first opens train.log only to log its error: where the run folder is not there
    (on another machine), opening it raised in place of the error."""
    from elcrec.progress import log, run_logging

    monkeypatch.setattr(logging, "raiseExceptions", False)  # logging's own report of the failure, kept quiet here
    with run_logging(tmp_path / "elsewhere" / "train.log", console=False, process=1):
        log.error("error: the real cause")
    assert not (tmp_path / "elsewhere").exists()
