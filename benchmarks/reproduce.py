"""The reproduction campaign of the ELCRec paper's Table 1: train every cell of a manifest (dataset x model x
seed, benchmarks/paper.toml) in order, and regenerate benchmarks/results/paper-table.md after each.

    python benchmarks/reproduce.py --threads 1                      # the whole manifest, resumable
    python benchmarks/reproduce.py --only beauty:elcrec --threads 2 # the main ELCRec cells of one dataset
    python benchmarks/reproduce.py --table                          # only regenerate the table
    python benchmarks/reproduce.py --status                         # where each cell stands

Runs go to runs/reproduce/<dataset>/<model>-seed<seed> (never committed). A cell whose committed record was
trained with the same settings (and, where the record names it, on the same data) is read back, also in a clone
without its run folder, unless --retrain (which moves a finished run in the run folder aside and trains the
cell anew); a record with other settings is stale: the cell trains again. An
interrupted run continues from its training_state.pt (started again, the campaign picks up where it stopped); a
run folder holding a run the cell cannot continue is moved aside. Workers can share the manifest, one per core
(each with --threads 1): a cell another worker is training is skipped (elcrec.runs.training_lock). For each
finished run, its config.json and metrics.json (every epoch's loss and validation metrics, the test metrics) are
copied to benchmarks/results/paper/<dataset>/<model>-seed<seed>/ (config.json with paths relative to the
repository root) with run.json: the test metrics with seen items excluded, the engine variant, the machines, the
commit and code that made it and the data's sha256. Another manifest than benchmarks/paper.toml keeps its runs,
records and tables in runs/reproduce-<its name>/.
Data comes from ELCREC_DATA_DIR (default ../shared/data); the paper's numbers from
$ELCREC_DATA_DIR/../docs/REFERENCE_NUMBERS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import (
    DATA_DIR,
    FILES,
    ROOT,
    VARIANTS,
    benchmark_config,
    dataset_path,
    epochs_by_machine,
    machines_of,
    recorded_with,
    write_markdown,
    write_portable_config,
)

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

PAPER_MANIFEST = ROOT / "benchmarks" / "paper.toml"
MANIFEST = PAPER_MANIFEST  # the manifest in use (use_manifest), which the table's header names
PAPER_RUNS, PAPER_RESULTS = ROOT / "runs" / "reproduce", ROOT / "benchmarks" / "results"
RUNS, RESULTS = PAPER_RUNS, PAPER_RESULTS  # the manifest in use's (use_manifest)
TABLE_NAMES = {"beauty": "Beauty", "sports": "Sports", "toys": "Toys", "yelp": "Yelp"}
PAPER_COLUMNS = {
    "sasrec": "SASRec",
    "bert4rec": "BERT4Rec",
    "cl4srec": "CL4SRec",
    "iclrec": "ICLRec",
    "elcrec": "ELCRec (paper)",
}
METRICS = ("HR@5", "HR@20", "NDCG@5", "NDCG@20")


def use_manifest(path: Path) -> None:
    """Where `path`'s runs, records and tables go: benchmarks/paper.toml's to runs/reproduce and the committed
    benchmarks/results; any other manifest's to runs/reproduce-<its stem>/ and its results/ folder, so that a
    trial never writes over the campaign's records or trains in its run folders."""
    global MANIFEST, RUNS, RESULTS
    MANIFEST = path
    if path.resolve() == PAPER_MANIFEST.resolve():
        RUNS, RESULTS = PAPER_RUNS, PAPER_RESULTS
    else:
        RUNS = ROOT / "runs" / f"reproduce-{path.stem}"
        RESULTS = RUNS / "results"


def shown(path: Path) -> str:
    """`path` from the repository root when it lies inside it, as the table and the messages name files."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def reference_file() -> Path:
    return DATA_DIR.parent / "docs" / "REFERENCE_NUMBERS.md"


def paper_numbers() -> dict[tuple[str, str], dict[str, float]]:
    """{(dataset, model): {metric: value}} from the paper's table in REFERENCE_NUMBERS.md (empty without it:
    --status shows no paper numbers then; main refuses to write a table without them)."""
    path = reference_file()
    if not path.is_file():
        return {}
    lines = [line for line in path.read_text().splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    by_name = {name: dataset for dataset, name in TABLE_NAMES.items()}
    numbers: dict[tuple[str, str], dict[str, float]] = {}
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] not in by_name or cells[1] not in METRICS:
            continue
        for model, column in PAPER_COLUMNS.items():
            if column in header:
                numbers.setdefault((by_name[cells[0]], model), {})[cells[1]] = float(cells[header.index(column)])
    return numbers


def read_manifest(path: Path) -> tuple[dict, list[dict]]:
    """(defaults, cells in training order: the manifest's order): each cell {dataset, model, seed, variant,
    ablation (the ELCRec switches it trains with, "" for none), figure (the ablation variant it stands for in
    the ablation figure, or ""), label}. A [[cells]] group names `models`, or `ablations`: ELCRec's ablation
    variants (training.experiments.ABLATIONS); ELCRec itself and B are the main cells of ELCRec and CL4SRec
    (ABLATION_MODELS). A group with a `label` trains its cells again apart from the main ones, e.g. under another
    variant to explain a gap: named <model>-<label>-seed<n>, a row of their own in the table. Any mistake is one
    SystemExit naming the file, before anything trains."""
    from elcrec.config import ConfigError
    from elcrec.training.experiments import ABLATIONS

    manifest = parse_manifest(path)
    defaults, groups = manifest.get("defaults", {}), manifest.get("cells", [])
    if not isinstance(defaults, dict):
        raise SystemExit(f"{path}: defaults must be a table ([defaults])")
    own = {"data", "preset", "model", "seed", "output_dir", *(key for v in VARIANTS.values() for key in v)}
    own |= {key for switches in ABLATIONS.values() for key in switches}  # an ablation cell's
    if taken := sorted(set(defaults) & own):
        raise SystemExit(f"{path}: [defaults] sets {taken}, which each cell sets itself (its variant, seed, ...)")
    if not groups or not isinstance(groups, list) or not all(isinstance(group, dict) for group in groups):
        raise SystemExit(f"{path}: no [[cells]] groups: nothing to train")
    first: dict[str, dict] = {}  # a cell named twice (an ablation variant that is a main cell) counts once, where first
    for cell in (cell for group in groups for cell in group_cells(path, group)):
        kept = first.setdefault(cell_name(cell), cell)
        if kept["variant"] != cell["variant"]:  # which one trains would depend on the order of the groups
            raise SystemExit(f"{path}: {cell_name(cell)} is listed twice, as {kept['variant']} and {cell['variant']}")
        kept["figure"] = kept["figure"] or cell["figure"]
    for cell in first.values():  # the settings a run refuses, refused now rather than when its turn comes
        try:
            cell_config(cell, defaults)
        except ConfigError as error:
            raise SystemExit(f"{path}: {cell_name(cell)}: {error}") from None
    return defaults, list(first.values())


def parse_manifest(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as error:
        raise SystemExit(f"{path}: cannot be read as a manifest ({error.strerror})") from None
    try:
        manifest = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SystemExit(f"{path}: not valid TOML ({error})") from None
    if set(manifest) - {"defaults", "cells"}:
        raise SystemExit(f"{path}: unknown table(s) {sorted(set(manifest) - {'defaults', 'cells'})}")
    return manifest


def group_cells(path: Path, group: dict) -> list[dict]:
    """The cells of one [[cells]] group, in its order: datasets, then its models or ablations, then seeds."""
    from elcrec.config import CHOICES
    from elcrec.training.experiments import ABLATION_MODELS, ABLATIONS

    kinds = [key for key in ("models", "ablations") if key in group]
    if len(kinds) != 1:
        raise SystemExit(f"{path}: each [[cells]] group names either models or ablations, not {kinds or 'neither'}")
    names = kinds[0]
    unknown = set(group) - {"datasets", names, "seeds", "variant", "label"}
    if unknown:
        raise SystemExit(f"{path}: unknown cells key(s) {sorted(unknown)}")
    label, variant = group.get("label", ""), group.get("variant", "fast")
    if not isinstance(label, str) or not re.fullmatch(r"[a-z0-9-]*", label):
        raise SystemExit(f"{path}: label {label!r}: lower-case letters, digits and - only")
    if not isinstance(variant, str) or variant not in VARIANTS:
        raise SystemExit(f"{path}: variant {variant!r}: choose among {', '.join(VARIANTS)}")
    choices = {"datasets": FILES, "models": CHOICES["model"], "ablations": ABLATIONS}
    for key in ("datasets", names):
        for name in listed(path, group, key, lambda name: isinstance(name, str), "names"):
            if name not in choices[key]:
                raise SystemExit(f"{path}: {key[:-1]} {name!r}: choose among {', '.join(choices[key])}")
    seeds = listed(path, group, "seeds", lambda seed: type(seed) is int and seed >= 0, "integers of 0 or more")
    cells = []
    for dataset in group["datasets"]:
        for name in group[names]:
            figure = name if names == "ablations" else ""
            model = ABLATION_MODELS.get(figure, "elcrec") if figure else name
            ablation = "" if figure in ABLATION_MODELS else figure
            for seed in seeds:
                cells.append(
                    {
                        "dataset": dataset,
                        "model": model,
                        "seed": seed,
                        "variant": variant,
                        "ablation": ablation,
                        "figure": figure,
                        "label": label,
                    }
                )
    return cells


def listed(path: Path, group: dict, key: str, valid: Callable[[object], bool], what: str) -> list:
    """group[key], which must be a list of one or more `valid` values (a string would be read as its letters)."""
    if key not in group:
        raise SystemExit(f"{path}: a [[cells]] group without {key}")
    values = group[key]
    if not isinstance(values, list) or not values or not all(valid(value) for value in values):
        raise SystemExit(f"{path}: {key} = {values!r}: give a list of one or more {what}")
    return values


def cell_name(cell: dict) -> str:
    return f"{cell['dataset']}/{run_name(cell)}-seed{cell['seed']}"


def run_name(cell: dict) -> str:
    """The cell's name without its dataset and seed: its model, ablation and label (elcrec-bicl, sasrec-float32)."""
    ablation = f"-{cell['ablation'].lower().replace('+', '')}" if cell["ablation"] else ""
    label = f"-{cell['label']}" if cell["label"] else ""
    return f"{cell['model']}{ablation}{label}"


def chosen_cells(cells: list[dict], only: str, manifest: Path) -> list[dict]:
    """The cells --only names, in the manifest's order: comma-separated DATASET[:NAME[:SEED]], NAME as run_name
    gives it (elcrec names the main ELCRec cells, elcrec-bicl an ablation's); each part must name a cell."""
    if not only:
        return cells
    names: set[str] = set()
    for part in only.split(","):
        wanted = part.split(":")
        named = {cell_name(c) for c in cells if [c["dataset"], run_name(c), str(c["seed"])][: len(wanted)] == wanted}
        if not part or not named:
            raise SystemExit(f"--only {only!r}: {part!r} names no cell of {manifest}")
        names |= named
    return [cell for cell in cells if cell_name(cell) in names]


def cell_config(cell: dict, defaults: dict):
    """The cell's run settings: its dataset's preset for its model, the manifest's defaults, its variant's and
    ablation's switches. The data file need not be there: --status and the tables compare settings only."""
    from elcrec.training.experiments import ABLATIONS

    switches = ABLATIONS[cell["ablation"]] if cell["ablation"] else {}
    return benchmark_config(
        cell["dataset"],
        cell["model"],
        need_data=False,
        seed=cell["seed"],
        **defaults,
        **VARIANTS[cell["variant"]],
        **switches,
        output_dir=str(RUNS / cell_name(cell)),
    )


def run_cell(cell: dict, defaults: dict, data, retrain: bool = False) -> None:
    """Train (or read back, or resume) one cell and copy its record to RESULTS/paper/; `retrain`: even where the
    record matches, and a finished run in its run folder is moved aside (an interrupted one resumes)."""
    from elcrec.data import eval_set
    from elcrec.evaluation import evaluate
    from elcrec.runs import atomic_write, load_run, saved_fingerprint, training_lock, write_json
    from elcrec.training.experiments import finished_or_train

    config = cell_config(cell, defaults)
    print(f"== {cell_name(cell)} ({cell['variant']}): {config.run_dir}", flush=True)
    if not retrain and records_settings_of(cell, config, data):  # a clone without the run folder trains nothing
        print("   recorded before with these settings: read back", flush=True)
        return
    started = time.perf_counter()
    if (config.run_dir / "config.json").is_file():
        with training_lock(config.run_dir):  # never moves a folder another worker is training in
            finished = retrain and (config.run_dir / "metrics.json").is_file()
            set_aside(
                config, f"--retrain: {config.run_dir} holds a finished run" if finished else run_replaced(config, data)
            )
    result = finished_or_train(config, data)
    out = RESULTS / "paper" / cell_name(cell)
    if not retrain and (out / "run.json").is_file() and json.loads((out / "metrics.json").read_text()) == result:
        return  # recorded already
    best = load_run(config.run_dir).model
    exclude = evaluate(
        best,
        eval_set(data, config.max_len, "test"),
        ks=config.eval_ks,
        mask_history="exclude",
        batch_size=config.eval_batch_size,
    )
    codes = list(dict.fromkeys(session["code"] for session in result.get("sessions", []) if "code" in session))
    (out / "run.json").unlink(missing_ok=True)  # first: a crash below must not leave the old one beside new files
    write_portable_config(config.run_dir / "config.json", out / "config.json")
    atomic_write(out / "metrics.json", (config.run_dir / "metrics.json").read_bytes())
    record = {
        "variant": cell["variant"],
        "machines": epochs_by_machine(result, config.amp),
        "epochs_on": dict(Counter(epoch.get("device", "unrecorded") for epoch in result["history"])),
        "test_seen_excluded": exclude,
        "session_seconds": round(time.perf_counter() - started),
        "commit": code_commit(codes),
        "code": codes,
        "data_sha256": (saved_fingerprint(config.run_dir) or {}).get("sha256"),
    }
    write_json(out / "run.json", record)  # last: a record counts once its run.json is there


def set_aside(config, reason: str | None) -> None:
    """Move a run folder the cell does not continue, for `reason` (None: it does continue), to
    <folder>.replaced-<n>, the first n free: the cell trains anew, and nothing is deleted."""
    if reason is None:
        return
    n = 1
    while (aside := config.run_dir.with_name(f"{config.run_dir.name}.replaced-{n}")).exists():
        n += 1
    config.run_dir.rename(aside)
    print(f"   {reason}\n   moved aside to {aside}: the cell trains anew", flush=True)


def run_replaced(config, data=None) -> str | None:
    """Why the run in config.run_dir cannot go on as this cell's run, or None (no run there, or one that resumes
    or reads back as it): settings a resumed run may not change (the trainer's check_saved_settings), other data
    than `data` (when given), or a larger budget (epochs, patience) than the cell's, with which it may have trained
    past where the cell's run stops."""
    from elcrec.runs import RunError, fingerprint, read_settings
    from elcrec.training.trainer import EXTENSIBLE, check_saved_data, check_saved_settings

    if not (config.run_dir / "config.json").is_file():
        return None
    try:
        check_saved_settings(config)
        if data is not None:
            check_saved_data(config.run_dir, fingerprint(data))
        saved = read_settings(config.run_dir)
    except RunError as error:
        return str(error)
    larger = [f"{name} {getattr(saved, name)}" for name in EXTENSIBLE if getattr(saved, name) > getattr(config, name)]
    return f"{config.run_dir} was trained with a larger budget ({', '.join(larger)})" if larger else None


def code_commit(codes: list[str]) -> str | None:
    """The commit (commit_of) of the code that trained every session of a run (`codes`, the sessions' distinct
    code), or None where no commit names it: sessions of older code, or an elcrec imported from elsewhere than
    this checkout's src/ (a record read back or resumed across commits names its code alone)."""
    import elcrec
    from elcrec.runs import describe_code

    here = Path(elcrec.__file__).resolve().parent == (ROOT / "src" / "elcrec").resolve()
    return commit_of(ROOT) if here and codes == [describe_code()] else None


def commit_of(root: Path) -> str | None:
    """The git commit checked out in `root`, with "-dirty" when its src/ differs from it; None outside a git
    checkout. A record names it: it is the result of the code that trained it."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
        changes = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "src"], capture_output=True)
    except OSError:  # no git
        return None
    if head.returncode or changes.returncode:
        return None
    return head.stdout.strip() + ("-dirty" if changes.stdout.strip() else "")


def records_settings_of(cell: dict, config, data=None) -> bool:
    """Whether the cell's record was trained with exactly `config`'s settings (common.recorded_with) and, where
    its run.json names the data's sha256 and `data` is given, on `data` (--status and the tables judge by the
    settings alone: they load no data)."""
    from elcrec.runs import fingerprint

    folder = RESULTS / "paper" / cell_name(cell)
    if not recorded_with(folder, config, "run.json"):
        return False
    trained_on = json.loads((folder / "run.json").read_text()).get("data_sha256")
    return trained_on is None or data is None or trained_on == fingerprint(data)["sha256"]


def recorded(cell: dict, defaults: dict) -> tuple[dict, dict] | None:
    """The cell's record (metrics.json, run.json), or None: not recorded, or stale (other settings than the
    manifest's), which the tables leave out as not yet recorded."""
    folder = RESULTS / "paper" / cell_name(cell)
    if not records_settings_of(cell, cell_config(cell, defaults)):
        return None
    return json.loads((folder / "metrics.json").read_text()), json.loads((folder / "run.json").read_text())


def write_table(cells: list[dict], defaults: dict, command: str) -> None:
    from elcrec.training.experiments import mean_std_of, paired_t_tests

    paper = paper_numbers()
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for cell in cells:
        if not cell["ablation"]:  # the main cells (ELCRec's ablation variants: write_ablation)
            groups.setdefault((cell["dataset"], cell["model"], cell["label"]), []).append(cell)
    records = {cell_name(cell): record for cell in cells if (record := recorded(cell, defaults))}  # each read once
    machines = sorted({name for _, run in records.values() for name in machines_of(run)})
    lines = [
        "# Reproduction of the ELCRec paper's Table 1",
        "",
        f"Command: `{command}` (cells: {shown(MANIFEST)}; runs read back or resumed). Protocol: "
        "leave-one-out, full ranking over all items, seen items scored 0 as the reference scores them "
        "(`mask_history=reference`), test split of the best validation NDCG@20 epoch (patience 40, at most "
        "300 epochs); the test NDCG@20 with seen items excluded (`exclude`, our default) beside it. Each run "
        "takes its dataset's preset for its model (docs/models.md, Presets) and the faithful recipe; engine variant "
        "per run in its `run.json` (fast-bf16: fast engine with bf16 autocast). Several seeds: mean ± sample "
        "std. Best epochs count from 0, as the run logs do (epochs run: how many). Train h: the epochs' training "
        "time (validation excluded), summed over seeds and sessions, on the devices that `epochs on` names (a campaign "
        "run can start on a GPU and continue on a CPU: elcrec train --resume).",
        "",
        "Machines: " + ("; ".join(machines) if machines else "none yet") + ".",
        "",
        "| dataset | model | seeds | "
        + " | ".join(f"{m} ours / paper" for m in METRICS)
        + " | NDCG@20 vs paper | NDCG@20, seen excluded | best epochs | epochs run | train h | epochs on |",
        "|---" * (len(METRICS) + 9) + "|",
    ]
    for (dataset, model, label), members in groups.items():
        name = f"{model} ({label})" if label else model
        found = [records[cell_name(cell)] for cell in members if cell_name(cell) in records]
        reference = paper.get((dataset, model), {})
        seeds = ",".join(str(cell["seed"]) for cell in members)
        if not found:
            lines.append(
                f"| {TABLE_NAMES[dataset]} | {name} | {seeds} | "
                + " | ".join(f"pending / {reference[m]:.4f}" if m in reference else "pending / -" for m in METRICS)
                + " | | | | | | |"
            )
            continue
        done = [str(cell["seed"]) for cell in members if cell_name(cell) in records]
        value = {m: [metrics["test"][m] for metrics, _ in found] for m in METRICS}
        cells_text = [
            f"{mean_std_of(value[m])} / {reference[m]:.4f}" if m in reference else f"{mean_std_of(value[m])} / -"
            for m in METRICS
        ]
        gap = f"{np.mean(value['NDCG@20']) / reference['NDCG@20'] - 1:+.1%}" if "NDCG@20" in reference else "-"
        excluded = mean_std_of([run["test_seen_excluded"]["NDCG@20"] for _, run in found])
        best = ", ".join(str(metrics["best_epoch"]) for metrics, _ in found)
        epochs = ", ".join(str(len(metrics["history"])) for metrics, _ in found)
        hours = sum(h["seconds"] for metrics, _ in found for h in metrics["history"]) / 3600
        devices = ", ".join(epochs_on(metrics, run) for metrics, run in found)
        pending = "" if len(done) == len(members) else f" (of {seeds})"
        lines.append(
            f"| {TABLE_NAMES[dataset]} | {name} | {','.join(done)}{pending} | "
            + " | ".join(cells_text)
            + f" | {gap} | {excluded} | {best} | {epochs} | {hours:.1f} | {devices} |"
        )
    for dataset in TABLE_NAMES:  # the paper's significance claim, over the seeds both models have
        first, second = groups.get((dataset, "iclrec", ""), []), groups.get((dataset, "elcrec", ""), [])
        pairs = [
            (a, b)
            for a in first
            for b in second
            if a["seed"] == b["seed"] and {cell_name(a), cell_name(b)} <= set(records)
        ]
        if len(pairs) < 2:
            continue
        results = {
            name: [records[cell_name(cell)][0]["test"] for cell in paired]
            for name, paired in zip(("ICLRec", "ELCRec"), zip(*pairs))
        }
        seeds = ",".join(str(a["seed"]) for a, _ in pairs)
        lines += [
            "",
            f"{TABLE_NAMES[dataset]}: paired t-test over seeds {seeds}, ELCRec against ICLRec (the paper's "
            "significance claim):",
            "",
            *paired_t_tests(results, "ICLRec", "ELCRec", METRICS),
        ]
    write_markdown(RESULTS / "paper-table.md", lines)


def epochs_on(metrics: dict, run: dict) -> str:
    """Where a run's epochs ran: "cpu", "cuda", or each device's count ("cuda 190 + cpu 110"). Every run recorded
    before run.json counted them trained on the CPU."""
    counts = run.get("epochs_on") or {"cpu": len(metrics["history"])}
    return next(iter(counts)) if len(counts) == 1 else " + ".join(f"{device} {n}" for device, n in counts.items())


def write_ablation(cells: list[dict], defaults: dict) -> None:
    """paper-ablation.md and .png: the paper's ablation figure (the sum of HR@5, HR@20, NDCG@5 and NDCG@20 per
    variant) for each dataset with ablation cells."""
    from elcrec.training.experiments import ABLATION_METRICS, ABLATIONS, ablation_plot, mean_std_of

    datasets = [
        dataset for dataset in TABLE_NAMES if any(cell["figure"] and cell["dataset"] == dataset for cell in cells)
    ]
    if not datasets:
        return
    lines = [
        "# ELCRec's ablation",
        "",
        "The paper's Fig. 3: B is the backbone with instance CL, ICL the intent-assisted CL (fusion and PCL), "
        "ELCM the end-to-end learnable cluster module (without it the k-means centres of the untrained encoder "
        "stay fixed). B and ELCRec are the runs of CL4SRec and ELCRec in paper-table.md (ELCRec with both modules "
        "off trains as CL4SRec, bit for bit: tests/test_experiments.py). Test split, the campaign's protocol and the "
        f"faithful recipe (docs/reproducing.md); the sum of {' + '.join(ABLATION_METRICS)} as the paper plots it.",
        "",
        "| dataset | " + " | ".join(ABLATIONS) + " |",
        "|---" * (len(ABLATIONS) + 1) + "|",
    ]
    figures = []
    for dataset in datasets:
        results = {}
        for name in ABLATIONS:
            found = [
                recorded(cell, defaults)
                for cell in cells
                if cell["dataset"] == dataset and cell["figure"] == name and not cell["label"]
            ]
            results[name] = [record[0]["test"] for record in found if record]
        lines.append(
            f"| {TABLE_NAMES[dataset]} | "
            + " | ".join(
                mean_std_of([sum(run[m] for m in ABLATION_METRICS) for run in runs]) if runs else "pending"
                for runs in results.values()
            )
            + " |"
        )
        done = {name: runs for name, runs in results.items() if runs}
        if done:
            ablation_plot(done, RESULTS / f"paper-ablation-{dataset}.png")
            figures += ["", f"![{TABLE_NAMES[dataset]}](paper-ablation-{dataset}.png)"]
    spreads = []
    for dataset in datasets:
        seeds = {
            cell["seed"]: record[0]["test"]
            for cell in cells
            if cell["dataset"] == dataset and cell["model"] == "elcrec" and not cell["ablation"] and not cell["label"]
            if (record := recorded(cell, defaults))
        }
        if len(seeds) > 1:
            sums = [sum(test[m] for m in ABLATION_METRICS) for test in seeds.values()]
            spreads.append(f"{TABLE_NAMES[dataset]}, seeds {','.join(map(str, seeds))}: {mean_std_of(sums)}")
    if spreads:
        lines += [
            "",
            "A cell without ± is one run. The seed-to-seed spread of the same sum, for ELCRec's runs over several "
            f"seeds (mean ± sample std), is the yardstick for the differences above: {'; '.join(spreads)}.",
        ]
    write_markdown(RESULTS / "paper-ablation.md", lines + figures)


def print_status(cells: list[dict], defaults: dict) -> None:
    """One line per cell (cell_line); a main cell that is also a bar of the ablation figure says which. Reads the
    records and run folders, takes nothing."""
    paper = paper_numbers()
    width = max(len(cell_name(cell)) for cell in cells)
    for cell in cells:
        line = cell_line(cell, cell_config(cell, defaults), paper)
        role = f" (the ablation's {cell['figure']})" if cell["figure"] and not cell["ablation"] else ""
        print(f"{cell_name(cell):<{width}}  {cell['variant']:<9}  {line}{role}")


def cell_line(cell: dict, config, paper: dict) -> str:
    """Where a cell stands: its data file missing; recorded (its test NDCG@20); stale (recorded, or its run folder
    trained, with other settings than the manifest's: it trains again); failed; training now or interrupted;
    or not started."""
    from elcrec.runs import LOG_FILE, STATE_FILE, read_pt, training_holder

    folder = RESULTS / "paper" / cell_name(cell)
    if not Path(config.data).is_file():
        return f"data missing: {config.data}"
    if records_settings_of(cell, config):
        metrics = json.loads((folder / "metrics.json").read_text())
        target = paper.get((cell["dataset"], cell["model"]), {}).get("NDCG@20")
        versus = f" (paper {target:.4f})" if target and not cell["ablation"] else ""
        return (
            f"done: test NDCG@20 {metrics['test']['NDCG@20']:.4f}{versus}, best epoch {metrics['best_epoch']} "
            f"of {len(metrics['history'])}"
        )
    stale = "recorded with other settings: trains again" if (folder / "run.json").is_file() else None
    if run_replaced(config):
        return stale or "its run folder holds a run with other settings: trains again (the folder moved aside)"
    pid = training_holder(config.run_dir)
    if not pid and (error := last_error(config.run_dir / LOG_FILE)):
        return f"failed: {error}"
    saved = config.run_dir / STATE_FILE
    state = read_pt(saved, "a training state") if saved.is_file() else None
    if state and state["history"]:
        return progress(config, state, pid)
    if pid:
        return f"starting (pid {pid})"
    if state:
        return "interrupted before its first epoch finished"
    return stale or "not started"


def progress(config, state: dict, pid: int | None) -> str:
    """A started run's epochs done, best validation score, seconds per epoch on the device of its last epoch and
    the most time it can still take there; a finished one waits for a worker to record it."""
    done, history = state["epoch"] + 1, state["history"]
    if state["stopped"] or done == config.epochs:
        return f"trained ({done} epochs), not recorded yet: a worker records it when it reaches the cell"
    saved_on = state.get("device", "cpu")  # epochs from before records named their device ran there
    device = history[-1].get("device", saved_on)  # a run can move between devices: the last one's pace
    recent = [r for r in history if r.get("device", saved_on) == device][-10:]
    seconds = float(np.median([r["seconds"] + r.get("valid_seconds", 0.0) for r in recent]))
    return (
        f"{f'training (pid {pid})' if pid else 'interrupted'}: {done}/{config.epochs} epochs, best valid "
        f"{config.metric} {state['best_score']:.4f} at epoch {state['best_epoch']}, {seconds:.0f} s/epoch "
        f"on {device}, at most {(config.epochs - done) * seconds / 3600:.1f} h left there"
    )


def last_error(log: Path) -> str | None:
    """The error a run's log ends with (its training stopped on it and was not started again), if any."""
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines() if log.is_file() else []
    _, _, error = lines[-1].partition(" error: ") if lines else ("", "", "")
    return error or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=PAPER_MANIFEST)
    parser.add_argument(
        "--only",
        default="",
        help="DATASET[:NAME[:SEED]],... cells to train (default: all); NAME as in the run folder without its seed: "
        "elcrec (the main cells), elcrec-bicl, cl4srec-float32",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = the idle cores)")
    parser.add_argument(
        "--status",
        action="store_true",
        help="only print where each cell stands (done, training, interrupted, not started); trains nothing",
    )
    parser.add_argument(
        "--table",
        action="store_true",
        help="only regenerate the tables (paper-table.md, paper-ablation.md) from the records",
    )
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="train the chosen cells anew even where their record matches (a finished run in the run folder is "
        "moved aside, an interrupted one resumes); the new record replaces the old",
    )
    args = parser.parse_args()

    use_manifest(args.manifest)
    defaults, cells = read_manifest(args.manifest)
    chosen = chosen_cells(cells, args.only, args.manifest)
    command = "python benchmarks/reproduce.py"
    if RESULTS != PAPER_RESULTS:  # another manifest than the campaign's (use_manifest)
        command += f" --manifest {shown(MANIFEST)}"
        print(f"{shown(MANIFEST)}: runs in {shown(RUNS)}/, records and tables in {shown(RESULTS)}/", flush=True)
    if not (args.status or reference_file().is_file()):  # before hours of training, not at its first table
        raise SystemExit(f"{reference_file()} not found: the table's paper columns come from it")
    if args.status:
        try:
            print_status(chosen, defaults)
        except BrokenPipeError:  # `--status | head`: stop quietly, as the elcrec command does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the final flush must not fail again
            sys.exit(1)
    elif not args.table:
        from elcrec.data import load_dataset
        from elcrec.runs import RunBusy
        from elcrec.runtime import prepare_process
        from elcrec.training.trainer import NonFinite

        print(f"threads: {prepare_process(args.threads)}", flush=True)
        loaded: dict[str, object] = {}
        for cell in chosen:
            if cell["dataset"] not in loaded:
                dataset_path(cell["dataset"])  # a missing file stops the worker, named
                loaded = {cell["dataset"]: load_dataset(cell_config(cell, defaults))}  # one dataset in memory
            try:
                run_cell(cell, defaults, loaded[cell["dataset"]], args.retrain)
            except RunBusy as busy:
                print(f"   skipped: {busy}", flush=True)
                continue
            except NonFinite as error:  # this cell diverged: the others can still train (--status shows it)
                print(f"   failed: {error}", flush=True)
                continue
            write_table(cells, defaults, command)
            write_ablation(cells, defaults)
    else:
        write_table(cells, defaults, command)
        write_ablation(cells, defaults)


if __name__ == "__main__":
    main()
