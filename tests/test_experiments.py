"""Groups of runs (elcrec compare / ablate): seeds, summaries, paired t-tests, picking up where they stopped."""

import json
import logging
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import ttest_rel
from typer.testing import CliRunner

from elcrec import Config
from elcrec.cli.main import app
from elcrec.data import load_dataset, make_synthetic
from elcrec.runs import MODEL_FILE, RunError
from elcrec.training import experiments
from elcrec.training.experiments import ABLATION_MODELS, ABLATIONS, paired_t_tests, run_group, summary_table
from elcrec.training.trainer import train

# the built-in data, small; no --threads: the test process keeps its own
TINY = ("--synthetic-users", 150, "--synthetic-items", 50, "--hidden-size", 16, "--max-len", 20, "--epochs", 1)
TINY += ("--device", "cpu")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_group_runs_each_variant_and_seed_and_reads_finished_runs_back(tiny_data, tmp_path, monkeypatch):
    base = Config(hidden_size=16, max_len=20, epochs=1, device="cpu")
    np.save(tmp_path / "text.npy", np.random.default_rng(0).normal(size=(tiny_data.n_items, 8)).astype(np.float32))
    variants = {
        "pop": {"model": "pop"},
        "sasrec": {"model": "sasrec"},
        "llmesr": {"model": "llmesr", "item_text": str(tmp_path / "text.npy")},
    }  # text_dim is filled in
    first = run_group(base, variants, [1, 2], tmp_path, data=tiny_data)
    assert {name: len(runs) for name, runs in first.items()} == {"pop": 2, "sasrec": 2, "llmesr": 2}
    config = json.loads((tmp_path / "sasrec" / "seed2" / "config.json").read_text())
    assert config["seed"] == 2 and config["model"] == "sasrec"
    assert json.loads((tmp_path / "results.json").read_text())["test"] == first
    with pytest.raises(RunError, match="other settings"):  # found before the new variant trains, not after it
        run_group(base.replace(hidden_size=32), {"new": {}, "sasrec": {}}, [1], tmp_path, data=tiny_data)
    assert not (tmp_path / "new").exists()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(experiments, "train", no_training)
    saved = tmp_path / "sasrec" / "seed1" / "config.json"
    config = json.loads(saved.read_text())
    del config["padding_outputs"]  # saved before the setting existed: the run had its default
    saved.write_text(json.dumps(config))
    assert run_group(base, variants, [1, 2], tmp_path, data=tiny_data) == first
    with pytest.raises(AssertionError, match="trained again"):  # other settings: a new run
        run_group(base.replace(epochs=2), variants, [1], tmp_path, data=tiny_data)
    other = make_synthetic(n_users=120, n_items=60, n_intents=4, seed=4)  # the same sizes, other sequences
    with pytest.raises(RunError, match="was trained on .* but the data given is .* only with the data it was"):
        run_group(base, variants, [1, 2], tmp_path, data=other)  # the results were read back as the new data's

    # a damaged result (cut short, or without test metrics): the run finishes again from its training state,
    # testing its best checkpoint anew, with no epoch trained again
    monkeypatch.undo()
    results = tmp_path / "sasrec" / "seed1" / "metrics.json"
    history = json.loads(results.read_text())["history"]
    for damage in (results.read_text()[:50], json.dumps({"model": "sasrec"})):
        results.write_text(damage)
        assert run_group(base, variants, [1, 2], tmp_path, data=tiny_data) == first
        assert json.loads(results.read_text())["history"] == history


@pytest.mark.parametrize("variant", sorted(ABLATION_MODELS))
def test_an_ablation_variant_named_a_model_trains_as_that_model(tiny_data, tmp_path, variant):
    """What lets the campaign take CL4SRec's run for ablation B: the same losses, weights and metrics, bit for bit
    (bf16 autocast and three blocks, as the campaign's Toys cells)."""
    base = Config(hidden_size=16, max_len=20, num_layers=3, epochs=2, num_clusters=8, amp="bf16", device="cpu")
    runs = {
        "variant": base.replace(model="elcrec", **ABLATIONS[variant], output_dir=str(tmp_path / "variant")),
        "model": base.replace(model=ABLATION_MODELS[variant], output_dir=str(tmp_path / "model")),
    }
    results = {name: train(config, tiny_data, progress=False) for name, config in runs.items()}
    assert [h["terms"] for h in results["variant"]["history"]] == [h["terms"] for h in results["model"]["history"]]
    assert results["variant"]["test"] == results["model"]["test"]
    weights = {name: torch.load(tmp_path / name / MODEL_FILE, weights_only=True) for name in runs}
    assert all(torch.equal(weights["variant"][key], value) for key, value in weights["model"].items())


def test_summary_and_paired_t_test():
    results = {"a": [{"NDCG@20": v} for v in (0.10, 0.12, 0.11)], "b": [{"NDCG@20": v} for v in (0.13, 0.14, 0.15)]}
    table = summary_table(results, ("NDCG@20",))
    assert table[2] == f"| a | 3 | 0.1100 ± {np.std([0.10, 0.12, 0.11], ddof=1):.4f} |"
    expected = ttest_rel([0.13, 0.14, 0.15], [0.10, 0.12, 0.11])
    row = paired_t_tests(results, "a", "b", ("NDCG@20",))[2]
    assert row == f"| NDCG@20 | +0.0300 | {expected.statistic:.2f} | {expected.pvalue:.3f} |"
    # the same difference on every seed: scipy's t is infinite and p 0, a significance the data cannot show
    alike = {"a": [{"HR@5": v} for v in (0.25, 0.5, 0.75)], "b": [{"HR@5": v + 0.125} for v in (0.25, 0.5, 0.75)]}
    assert paired_t_tests(alike, "a", "b", ("HR@5",))[2] == "| HR@5 | +0.1250 | n/a (no spread) | n/a |"


def test_ablate_refuses_flags_it_sets_itself(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "elcrec", "ablate", "--icl", "--data", "synthetic"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "ablate sets --icl itself" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "elcrec", "compare", "--models", "sasrec,nope"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "--models 'sasrec,nope'" in done.stderr


def test_the_ablation_figure_shows_every_error_bar_whole(tmp_path, monkeypatch):
    """The y-axis starts below the lowest error bar's end, not at 0.9 x the lowest run, which cut bars off."""
    import matplotlib.figure

    from elcrec.training.experiments import ABLATION_METRICS, ablation_plot

    seen = {}
    monkeypatch.setattr(
        matplotlib.figure.Figure, "savefig", lambda figure, *a, **k: seen.update(y=figure.axes[0].get_ylim())
    )
    runs = {"B": [0.25, 0.25, 0.25, 2.5], "ELCRec": [0.3, 0.31, 0.32, 0.33]}  # B: mean - std below every run
    results = {name: [dict.fromkeys(ABLATION_METRICS, v / 4) for v in values] for name, values in runs.items()}
    ablation_plot(results, tmp_path / "a.png")
    b = np.array(runs["B"])
    assert seen["y"][0] <= max(b.mean() - b.std(ddof=1), 0.0)


@pytest.mark.parametrize(
    "late, message",
    [({"model": "elcrec", "num_clusters": 500}, "num_clusters=500 exceeds"), ({"model": "llmesr"}, "needs item text")],
)
def test_a_group_checks_every_variant_before_the_first_run_trains(tiny_data, tmp_path, late, message):
    """What stops a run before its first epoch stops the group before its first run, not after the others'."""
    base = Config(hidden_size=16, max_len=20, epochs=1, device="cpu")
    with pytest.raises(ValueError, match=message):
        run_group(base, {"sasrec": {}, "late": late}, [1, 2], tmp_path, data=tiny_data)
    assert not (tmp_path / "sasrec").exists()


def test_compare_gives_each_model_the_settings_it_reads(tmp_path):
    """One set of flags serves every model of a comparison: a setting only some models read goes to those; one that
    no model of the group reads is refused as train refuses it."""
    text = tmp_path / "text.npy"
    items = load_dataset(Config(synthetic_users=150, synthetic_items=50)).n_items
    np.save(text, np.random.default_rng(0).normal(size=(items, 8)).astype(np.float32))
    models = ("sasrec", "llmesr", "cl4srec")
    flags = ("--item-text", text, "--padding-outputs", "zero", *TINY)
    result = invoke("compare", "--models", ",".join(models), "--seeds", 1, *flags, "--output-dir", tmp_path)
    assert result.exit_code == 0, result.output
    saved = [json.loads((tmp_path / model / "seed1" / "config.json").read_text()) for model in models]
    assert [(s["item_text"], s["padding_outputs"]) for s in saved] == [
        ("", "encoded"),
        (str(text), "encoded"),
        ("", "zero"),
    ]
    result = invoke("compare", "--models", "sasrec,gru4rec", *flags)
    assert result.exit_code == 2 and "item_text is a setting of llmesr" in result.output


def test_training_and_attention_settings_go_to_the_models_that_read_them():
    """pop trains nothing and gru4rec has no attention; bert4rec's Cloze loss is a softmax whatever `loss` says."""
    from elcrec.training.experiments import model_settings

    settings = {"lr": 0.01, "num_heads": 4, "loss": "ce", "seed": 3}
    assert model_settings(settings, ["pop", "gru4rec", "bert4rec", "sasrec"]) == {
        "pop": {"seed": 3},
        "gru4rec": {"lr": 0.01, "loss": "ce", "seed": 3},
        "bert4rec": {"lr": 0.01, "num_heads": 4, "seed": 3},
        "sasrec": settings,
    }


def test_ablate_tables_and_plots_the_cut_offs_its_runs_have(tmp_path):
    """--eval-ks without 5 and 20 (the paper's plot): the table and the plot take HR and NDCG at 10; and
    --padding-outputs, a setting of ELCRec, is ELCRec's, not refused as the default model's."""
    flags = ("--eval-ks", 10, "--metric", "NDCG@10", "--padding-outputs", "zero", "--num-clusters", 4, *TINY)
    result = invoke("ablate", *flags, "--output-dir", tmp_path)
    assert result.exit_code == 0, result.output
    summary = (tmp_path / "ablation.md").read_text()
    assert "| variant | seeds | HR@10 | NDCG@10 |" in summary and "HR@10 + NDCG@10" in summary
    assert json.loads((tmp_path / "B" / "seed1" / "config.json").read_text())["padding_outputs"] == "zero"


def test_a_comparison_keeps_the_summary_of_another_group(tmp_path, monkeypatch):
    """Each group of models has its own folder by default; in a folder holding another group's summary, a group
    that leaves out any of its models or seeds is refused; one that covers it reads its runs back."""
    monkeypatch.chdir(tmp_path)
    assert invoke("compare", "--models", "pop", "--seeds", "1,2", *TINY).exit_code == 0
    root = tmp_path / "runs" / "compare-pop-synthetic"
    summary = (root / "comparison.md").read_bytes()
    for seeds in ("1", "3"):
        result = invoke("compare", "--models", "pop", "--seeds", seeds, *TINY, "--output-dir", root)
        assert result.exit_code == 2 and f"{root} holds the results of another group (pop, seeds 1,2)" in result.output
    assert (root / "comparison.md").read_bytes() == summary
    result = invoke("compare", "--models", "pop", "--seeds", "2,1,3", *TINY, "--output-dir", root)
    assert result.exit_code == 0 and result.output.count("read back") == 2, result.output


def test_a_paired_t_test_takes_float_noise_for_no_spread():
    """HR is a multiple of 1/users: the same difference in hits on every seed differs in its last bits."""
    first, second = [5 / 300, 7 / 300], [1 / 300, 3 / 300]
    assert np.ptp(np.subtract(second, first)) > 0
    results = {"a": [{"HR@5": v} for v in first], "b": [{"HR@5": v} for v in second]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's precision-loss warning leaked to the terminal
        assert paired_t_tests(results, "a", "b", ("HR@5",))[2] == "| HR@5 | -0.0133 | n/a (no spread) | n/a |"


@pytest.mark.parametrize(
    "command, target",
    [
        (("compare", "--models", "pop"), "elcrec.training.experiments.run_group"),
        (("ablate",), "elcrec.training.experiments.run_group"),
        (("tune",), "elcrec.training.tuning.tune"),
    ],
)
def test_ctrl_c_in_a_group_says_how_to_continue(tmp_path, monkeypatch, command, target):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(target, interrupted)
    result = invoke(*command, *TINY, "--output-dir", tmp_path)
    assert result.exit_code == 130 and "interrupted: run the same command again to continue" in result.output


def test_group_flags_say_what_is_wrong(tmp_path, monkeypatch):
    from elcrec.training.tuning import search_params

    monkeypatch.chdir(tmp_path)
    bad = {
        ("compare", "--models", "sasrec,elcrce"): "no model 'elcrce' (did you mean 'elcrec'?)",
        ("compare", "--models", "sasrec", "--seeds", ""): "--seeds '': give one or more seeds",
        **{("tune", "--trials", 1, "--timeout", t): "give a positive number of seconds" for t in ("-5", "0", "nan")},
    }
    for arguments, message in bad.items():
        result = invoke(*arguments, *TINY)
        assert result.exit_code == 2 and message in result.output, (arguments, result.output)
    with pytest.raises(ValueError, match="pop does not read lr, dropout"):  # every trial would be the same
        search_params("pop")


def test_a_group_given_a_runs_whole_settings_says_which_it_sets_itself(tmp_path):
    """A run's config.json given to compare names its model and seed, which the group sets for each run: they
    were overridden without a word."""
    trained = invoke("train", *TINY, "--seed", 5, "--output-dir", tmp_path / "run")
    assert trained.exit_code == 0, trained.output
    result = invoke(
        "compare",
        "--config",
        tmp_path / "run" / "config.json",
        "--models",
        "pop",
        "--seeds",
        1,
        "--output-dir",
        tmp_path / "group",
    )
    assert result.exit_code == 0, result.output
    given = tmp_path / "run" / "config.json"
    assert f"compare sets model, seed itself for each run: {given}'s model='sasrec' seed=5 not used" in result.output
    assert json.loads((tmp_path / "group" / "pop" / "seed1" / "config.json").read_text())["seed"] == 1


def test_tune_is_quiet_and_counts_the_epochs_of_a_resumed_trial(tiny_data, tmp_path, monkeypatch, caplog):
    """Optuna's own log lines stay out of tune's output; tuning.md counts every epoch of a resumed trial, not only
    those after it resumed."""
    optuna = pytest.importorskip("optuna", reason="pip install -e '.[tune]'")
    from elcrec.training import tuning

    optuna.logging.set_verbosity(optuna.logging.INFO)  # as in a new process
    library = logging.getLogger("optuna")
    monkeypatch.setattr(library, "handlers", [*library.handlers, caplog.handler])
    base = Config(hidden_size=16, max_len=20, epochs=3, device="cpu")
    real_train = tuning.train

    def stopped_in_epoch_1(config, **kwargs):
        def stop(record):
            kwargs["on_epoch"](record)
            if record["epoch"] == 1:
                raise KeyboardInterrupt

        return real_train(config, **{**kwargs, "on_epoch": stop})

    with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
        patched.setattr(tuning, "train", stopped_in_epoch_1)
        tuning.tune(base, ["lr"], 1, tmp_path, data=tiny_data)
    study = tuning.tune(base, ["lr"], 1, tmp_path, data=tiny_data)  # resumes trial 0 after its epoch 0
    assert not [record for record in caplog.records if record.name.startswith("optuna")]
    rows = tuning.write_summary(study, base, ["lr"], tmp_path)[-2:]
    assert rows[0].startswith("| 0 | fail |") and rows[1].startswith("| 1 | complete |") and rows[1].endswith(" 3 |")
