"""Groups of runs (elcrec compare / ablate): seeds, summaries, paired t-tests, picking up where they stopped."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.stats import ttest_rel

from elcrec import Config
from elcrec.runs import MODEL_FILE
from elcrec.training import experiments
from elcrec.training.experiments import ABLATION_MODELS, ABLATIONS, paired_t_tests, run_group, summary_table
from elcrec.training.trainer import train


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
