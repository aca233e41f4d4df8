"""Groups of runs: several models or ablation variants, each over several seeds, summarised as mean ± std
of the test metrics, with a paired t-test between two of them (same seeds) and the paper's ablation plot.

A run that already finished in its folder, with the same settings, is read back instead of trained again,
and one that was interrupted is resumed: an interrupted group picks up where it stopped.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config, ConfigError
from ..data import SequenceData, load_dataset
from ..runs import CONFIG_FILE, METRICS_FILE, STATE_FILE, RunError, read_json, write_json
from .progress import log
from .trainer import train

# the paper's ablation (Fig. 3): the backbone with instance CL, then each ELCRec component, then both
ABLATIONS = {
    "B": {"elcm": False, "icl": False},
    "B+ICL": {"elcm": False, "icl": True},
    "B+ELCM": {"elcm": True, "icl": False},
    "ELCRec": {"elcm": True, "icl": True},
}
ABLATION_METRICS = ("HR@5", "HR@20", "NDCG@5", "NDCG@20")  # summed per variant, as the paper plots them
# variants that are another model's run: B, both modules off, is CL4SRec (the same loss, parameters and random
# draws; tests/test_experiments.py checks that they train bit for bit alike)
ABLATION_MODELS = {"B": "cl4srec", "ELCRec": "elcrec"}


def run_group(
    base: Config, variants: dict[str, dict[str, Any]], seeds: list[int], root: Path, data: SequenceData | None = None
) -> dict[str, list[dict[str, float]]]:
    """Train every variant (Config overrides) with every seed into root/<variant>/seed<seed>; returns the
    test metrics per variant, in seed order."""
    data = load_dataset(base) if data is None else data
    results: dict[str, list[dict[str, float]]] = {}
    runs = [(name, overrides, seed) for name, overrides in variants.items() for seed in seeds]
    started = time.perf_counter()
    for done, (name, overrides, seed) in enumerate(runs):
        folder = root / name / f"seed{seed}"
        config = base.replace(**overrides, seed=seed, output_dir=str(folder))
        elapsed = f", {time.perf_counter() - started:,.0f} s so far" if done else ""
        log.info(f"== run {done + 1} of {len(runs)}{elapsed}: {name}, seed {seed} in {folder}")
        results.setdefault(name, []).append(finished_or_train(config, data)["test"])
    write_json(root / "results.json", {"seeds": seeds, "variants": variants, "test": results})
    return results


def finished_or_train(config: Config, data: SequenceData) -> dict[str, Any]:
    """The result (metrics.json) of the run in config.run_dir: read back when it finished with exactly
    these settings, otherwise trained, resuming from its training state when there is one."""
    return _finished(config) or train(config, data=data, resume=(config.run_dir / STATE_FILE).is_file())


def _finished(config: Config) -> dict[str, Any] | None:
    """The run's result when it finished with these settings; None otherwise, and for a damaged metrics.json
    (a run with a training state then finishes again: its best checkpoint is tested anew)."""
    folder = config.run_dir
    if not (folder / METRICS_FILE).is_file() or not saved_with(folder / CONFIG_FILE, config):
        return None
    try:
        result = read_json(folder / METRICS_FILE, "run metrics")
    except RunError as error:
        log.info(f"   {error}: finishing the run again")
        return None
    if not isinstance(result, dict) or not isinstance(result.get("test"), dict):
        log.info(f"   {folder / METRICS_FILE} holds no test metrics: finishing the run again")
        return None
    log.info("   finished before: read back")
    return result


def saved_with(path: Path, config: Config, aside: tuple[str, ...] = (), by_name: tuple[str, ...] = ()) -> bool:
    """Whether the settings a run saved (its config.json at `path`) are exactly `config`'s, those named in `aside`
    apart and the paths named in `by_name` compared by file name. Read through Config: a setting added since the
    run was saved takes the value the run had; one that no longer takes its saved value, a damaged file or a
    missing one count as different (the run trains again)."""
    try:
        saved = Config.from_saved(json.loads(path.read_text()))
    except (ConfigError, ValueError, OSError):
        return False
    return not saved.differences(config, aside, by_name)


def mean_std(runs: list[dict[str, float]], metric: str) -> str:
    """ "mean ± std" of a metric over runs (sample std over seeds), or the value of a single run."""
    return mean_std_of([run[metric] for run in runs])


def mean_std_of(values: list[float]) -> str:
    """ "mean ± std" of values (sample std), or the value itself when there is one."""
    array = np.asarray(values, dtype=float)
    return f"{array.mean():.4f} ± {array.std(ddof=1):.4f}" if len(array) > 1 else f"{array[0]:.4f}"


def summary_table(results: dict[str, list[dict[str, float]]], metrics: tuple[str, ...]) -> list[str]:
    """Markdown rows: mean ± std (sample std over seeds) of each metric per variant."""
    lines = ["| variant | seeds | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 2) + "|"]
    for name, runs in results.items():
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(mean_std(runs, metric) for metric in metrics) + " |")
    return lines


def paired_t_tests(
    results: dict[str, list[dict[str, float]]], first: str, second: str, metrics: tuple[str, ...]
) -> list[str]:
    """Markdown rows: mean difference (second - first) and the paired t-test over seeds, per metric. Differences
    alike on every seed have no spread to test against: the test is undefined there (scipy's t is infinite, its
    p 0), and the row says so."""
    from scipy.stats import ttest_rel

    lines = [f"| metric | {second} - {first} (mean) | t | p (two-sided) |", "|---|---|---|---|"]
    for metric in metrics:
        a = np.array([run[metric] for run in results[first]])
        b = np.array([run[metric] for run in results[second]])
        if len(a) > 1 and np.ptp(b - a) == 0:
            test = "n/a (no spread) | n/a"
        else:
            t, p = ttest_rel(b, a) if len(a) > 1 else (math.nan, math.nan)
            test = f"{t:.2f} | {p:.3f}"
        lines.append(f"| {metric} | {np.mean(b - a):+.4f} | {test} |")
    return lines


def ablation_plot(results: dict[str, list[dict[str, float]]], path: Path) -> None:
    """Bars of HR@5 + HR@20 + NDCG@5 + NDCG@20 per variant (mean over seeds, error bar = std)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    totals = {name: [sum(run[m] for m in ABLATION_METRICS) for run in runs] for name, runs in results.items()}
    fig, axis = plt.subplots(figsize=(6, 4))
    names = list(totals)
    means = [np.mean(totals[n]) for n in names]
    spreads = [np.std(totals[n], ddof=1) if len(totals[n]) > 1 else 0.0 for n in names]
    axis.bar(names, means, yerr=spreads, capsize=4, color=["#999999", "#6baed6", "#fd8d3c", "#d62728"][: len(names)])
    lowest = min(min(min(v) for v in totals.values()), *(m - s for m, s in zip(means, spreads)))
    axis.set_ylim(bottom=max(lowest * 0.9, 0.0))  # every error bar whole
    axis.set(ylabel=" + ".join(ABLATION_METRICS), title="ablation (test, sum of metrics)")
    axis.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
