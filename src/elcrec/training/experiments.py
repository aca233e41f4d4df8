"""Groups of runs: several models or ablation variants, each over several seeds, summarised as mean ± std
of the test metrics, with a paired t-test between two of them (same seeds) and the paper's ablation plot.

A run that already finished in its folder, with the same settings, is read back instead of trained again,
and one that was interrupted is resumed: an interrupted group picks up where it stopped. What would stop a run
before its first epoch is checked for every run before the first one trains.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import READ_BY, Config, ConfigError
from ..data import SequenceData, load_dataset, train_set
from ..models import create_model
from ..progress import log
from ..runs import CONFIG_FILE, METRICS_FILE, STATE_FILE, RunError, fingerprint, read_json, write_json
from ..runtime import resolve_device
from .trainer import check_saved_data, check_saved_settings, train

# the paper's ablation (Fig. 3): the backbone with instance CL, then each ELCRec component, then both
ABLATIONS = {
    "B": {"elcm": False, "icl": False},
    "B+ICL": {"elcm": False, "icl": True},
    "B+ELCM": {"elcm": True, "icl": False},
    "ELCRec": {"elcm": True, "icl": True},
}
ABLATION_METRICS = ("HR@5", "HR@20", "NDCG@5", "NDCG@20")  # summed per variant, as the paper plots them
PAPER_KS = (5, 20)  # the cut-offs of ABLATION_METRICS
# variants that are another model's run: B, both modules off, is CL4SRec (the same loss, parameters and random
# draws; tests/test_experiments.py checks that they train bit for bit alike)
ABLATION_MODELS = {"B": "cl4srec", "ELCRec": "elcrec"}


def run_group(
    base: Config | dict[str, Config],
    variants: dict[str, dict[str, Any]],
    seeds: list[int],
    root: Path,
    data: SequenceData | None = None,
) -> dict[str, list[dict[str, float]]]:
    """Train every variant (Config overrides of `base`: the group's settings, or each variant's own) with every
    seed into root/<variant>/seed<seed>; returns the test metrics per variant, in seed order. Every run's settings
    are built, and what would stop a run before its first epoch checked (check_group), before the first trains."""
    configs = {
        name: [
            (base[name] if isinstance(base, dict) else base).replace(
                **overrides, seed=seed, output_dir=str(root / name / f"seed{seed}")
            )
            for seed in seeds
        ]
        for name, overrides in variants.items()
    }
    data = load_dataset(next(iter(configs.values()))[0]) if data is None else data
    check_group(configs, data)
    results: dict[str, list[dict[str, float]]] = {}
    runs = [(name, config) for name, group in configs.items() for config in group]
    started = time.perf_counter()
    for done, (name, config) in enumerate(runs):
        elapsed = f", {time.perf_counter() - started:,.0f} s so far" if done else ""
        log.info(f"== run {done + 1} of {len(runs)}{elapsed}: {name}, seed {config.seed} in {config.run_dir}")
        results.setdefault(name, []).append(finished_or_train(config, data)["test"])
    write_json(root / "results.json", {"seeds": seeds, "variants": variants, "test": results})
    return results


SAME_DATA = "a run is read back, or resumed, only with the data it was trained on: give another output folder"


def check_group(configs: dict[str, list[Config]], data: SequenceData) -> None:
    """What would stop a run of the group before its first epoch, raised before the first run trains (not after
    hours of the others): a run trained on other data, one with a training state but other settings than it saved
    (train refuses to resume it), and for a variant with a run to start, its model set up on the data as a run
    sets it up (llmesr's texts, the clusters k-means needs)."""
    found = fingerprint(data)
    for group in configs.values():
        for config in group:
            check_saved_data(config.run_dir, found, SAME_DATA)
            if (config.run_dir / STATE_FILE).is_file() and (config.run_dir / CONFIG_FILE).is_file():
                check_saved_settings(config)
        starting = [config for config in group if not (config.run_dir / STATE_FILE).is_file()]
        if starting:
            config = starting[0]
            create_model(config, data).to(resolve_device(config.device)).prepare(train_set(data, config.max_len))


def model_settings(settings: dict[str, Any], models: list[str]) -> dict[str, dict[str, Any]]:
    """Each model's share of one set of settings for a group of `models`: a setting only some models read
    (READ_BY) goes to those of the group that read it; one that no model of the group reads goes to every model,
    for Config to refuse or ignore as it does for a single run."""
    return {
        model: {
            name: value
            for name, value in settings.items()
            if name not in READ_BY or model in READ_BY[name] or not set(READ_BY[name]) & set(models)
        }
        for model in models
    }


def check_group_folder(root: Path, variants: dict[str, dict[str, Any]], seeds: list[int]) -> None:
    """A group's summary (results.json) replaces only a summary it covers (no variant or seed of it left out): a
    rerun of the same group, or one with more variants or seeds; any other is an error, not lost."""
    path = root / "results.json"
    if not path.is_file():
        return
    try:
        held = read_json(path, "group results")
        held_variants, held_seeds = list(held["variants"]), list(held["seeds"])
    except (RunError, KeyError, TypeError):  # damaged: no summary to keep
        return
    if not set(held_variants) <= set(variants) or not set(held_seeds) <= set(seeds):
        raise ValueError(
            f"{root} holds the results of another group ({', '.join(held_variants)}, seeds "
            f"{','.join(map(str, held_seeds))}): choose another output folder, or remove {path} to replace them"
        )


def finished_or_train(config: Config, data: SequenceData) -> dict[str, Any]:
    """The result (metrics.json) of the run in config.run_dir: read back when it finished with exactly
    these settings, otherwise trained, resuming from its training state when there is one."""
    return _finished(config, data) or train(config, data=data, resume=(config.run_dir / STATE_FILE).is_file())


def _finished(config: Config, data: SequenceData) -> dict[str, Any] | None:
    """The run's result when it finished with these settings; None otherwise, and for a damaged metrics.json
    (a run with a training state then finishes again: its best checkpoint is tested anew). A RunError when it
    finished on other data: its result would pass for this data's."""
    folder = config.run_dir
    if not (folder / METRICS_FILE).is_file() or not saved_with(folder / CONFIG_FILE, config):
        return None
    check_saved_data(folder, fingerprint(data), SAME_DATA)
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
    alike on every seed (to 1e-12 of the metrics' scale) have no spread to test against: the test is undefined
    there (scipy's t is infinite or huge, its p 0), and the row says so."""
    from scipy.stats import ttest_rel

    lines = [f"| metric | {second} - {first} (mean) | t | p (two-sided) |", "|---|---|---|---|"]
    for metric in metrics:
        a = np.array([run[metric] for run in results[first]])
        b = np.array([run[metric] for run in results[second]])
        # alike up to float noise: equal hit counts give differences that differ in their last bits
        if len(a) > 1 and np.ptp(b - a) <= 1e-12 * np.abs([a, b]).max():
            test = "n/a (no spread) | n/a"
        else:
            t, p = ttest_rel(b, a) if len(a) > 1 else (math.nan, math.nan)
            test = f"{t:.2f} | {p:.3f}"
        lines.append(f"| {metric} | {np.mean(b - a):+.4f} | {test} |")
    return lines


def ranking_metrics(ks: tuple[int, ...]) -> tuple[str, ...]:
    """HR@k for every k of `ks`, then NDCG@k: the columns of compare's and ablate's tables."""
    return tuple(f"{name}@{k}" for name in ("HR", "NDCG") for k in ks)


def ablation_metrics(eval_ks: tuple[int, ...]) -> tuple[str, ...]:
    """What the ablation plot sums: HR and NDCG at the paper's cut-offs among eval_ks (all of them: ABLATION_METRICS),
    or at every eval k when it has neither."""
    return ranking_metrics(tuple(k for k in PAPER_KS if k in eval_ks) or eval_ks)


def ablation_plot(
    results: dict[str, list[dict[str, float]]], path: Path, metrics: tuple[str, ...] = ABLATION_METRICS
) -> None:
    """Bars of the sum of `metrics` per variant (mean over seeds, error bar = std)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    totals = {name: [sum(run[m] for m in metrics) for run in runs] for name, runs in results.items()}
    fig, axis = plt.subplots(figsize=(6, 4))
    names = list(totals)
    means = [np.mean(totals[n]) for n in names]
    spreads = [np.std(totals[n], ddof=1) if len(totals[n]) > 1 else 0.0 for n in names]
    axis.bar(names, means, yerr=spreads, capsize=4, color=["#999999", "#6baed6", "#fd8d3c", "#d62728"][: len(names)])
    lowest = min(min(min(v) for v in totals.values()), *(m - s for m, s in zip(means, spreads)))
    axis.set_ylim(bottom=max(lowest * 0.9, 0.0))  # every error bar whole
    axis.set(ylabel=" + ".join(metrics), title="ablation (test, sum of metrics)")
    axis.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
