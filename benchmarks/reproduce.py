"""The reproduction campaign of the ELCRec paper's Table 1: train every cell of a manifest (dataset x model x
seed, benchmarks/paper.toml) in order, and regenerate benchmarks/results/paper-table.md after each.

    python benchmarks/reproduce.py --threads 1                      # the whole manifest, resumable
    python benchmarks/reproduce.py --only beauty:elcrec --threads 2 # the cells of one dataset and model
    python benchmarks/reproduce.py --table                          # only regenerate the table
    python benchmarks/reproduce.py --status                         # where each cell stands

Runs go to runs/reproduce/<dataset>/<model>-seed<seed> (never committed). A cell whose committed record was
trained with the same settings is read back, also in a clone without its run folder; an interrupted run continues
from its training_state.pt (started again, the campaign picks up where it stopped). Workers can share the
manifest, one per core (each with --threads 1): a cell another worker is training is skipped
(elcrec.runs.training_lock). For each finished run, its config.json and metrics.json (every epoch's loss and
validation metrics, the test metrics) are copied to benchmarks/results/paper/<dataset>/<model>-seed<seed>/
(config.json with paths relative to the repository root) with run.json: the test metrics with seen items
excluded, the engine variant and the machine (the GPU too, when the run used one).
Data comes from ELCREC_DATA_DIR (default ../shared/data); the paper's numbers from REFERENCE_NUMBERS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from common import (
    DATA_DIR,
    FILES,
    ROOT,
    VARIANTS,
    benchmark_config,
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

RESULTS = ROOT / "benchmarks" / "results"
TABLE_NAMES = {"beauty": "Beauty", "sports": "Sports", "toys": "Toys", "yelp": "Yelp"}
PAPER_COLUMNS = {
    "sasrec": "SASRec",
    "bert4rec": "BERT4Rec",
    "cl4srec": "CL4SRec",
    "iclrec": "ICLRec",
    "elcrec": "ELCRec (paper)",
}
METRICS = ("HR@5", "HR@20", "NDCG@5", "NDCG@20")


def paper_numbers() -> dict[tuple[str, str], dict[str, float]]:
    """{(dataset, model): {metric: value}} from the paper's table in REFERENCE_NUMBERS.md (empty without it)."""
    path = DATA_DIR.parent / "docs" / "REFERENCE_NUMBERS.md"
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
    variant to explain a gap: named <model>-<label>-seed<n>, a row of their own in the table."""
    from elcrec.training.experiments import ABLATION_MODELS, ABLATIONS

    manifest = tomllib.loads(path.read_text())
    if set(manifest) - {"defaults", "cells"}:
        raise SystemExit(f"{path}: unknown table(s) {sorted(set(manifest) - {'defaults', 'cells'})}")
    cells = []
    for group in manifest.get("cells", []):
        kinds = [key for key in ("models", "ablations") if key in group]
        if len(kinds) != 1:
            raise SystemExit(f"{path}: each [[cells]] group names either models or ablations, not {kinds or 'neither'}")
        names = kinds[0]
        unknown = set(group) - {"datasets", names, "seeds", "variant", "label"}
        if unknown:
            raise SystemExit(f"{path}: unknown cells key(s) {sorted(unknown)}")
        if not re.fullmatch(r"[a-z0-9-]*", group.get("label", "")):
            raise SystemExit(f"{path}: label {group['label']!r}: lower-case letters, digits and - only")
        if group.get("variant", "fast") not in VARIANTS:
            raise SystemExit(f"{path}: variant {group['variant']!r}: choose among {', '.join(VARIANTS)}")
        for dataset in group["datasets"]:
            if dataset not in FILES:
                raise SystemExit(f"{path}: dataset {dataset!r}: choose among {', '.join(FILES)}")
            for name in group[names]:
                if names == "ablations" and name not in ABLATIONS:
                    raise SystemExit(f"{path}: ablation {name!r}: choose among {', '.join(ABLATIONS)}")
                figure = name if names == "ablations" else ""
                model = ABLATION_MODELS.get(figure, "elcrec") if figure else name
                for seed in group["seeds"]:
                    cells.append(
                        {
                            "dataset": dataset,
                            "model": model,
                            "seed": seed,
                            "variant": group.get("variant", "fast"),
                            "ablation": "" if figure in ABLATION_MODELS else figure,
                            "figure": figure,
                            "label": group.get("label", ""),
                        }
                    )
    first: dict[str, dict] = {}  # a cell named twice (an ablation variant that is a main cell) counts once, where first
    for cell in cells:
        kept = first.setdefault(cell_name(cell), cell)
        kept["figure"] = kept["figure"] or cell["figure"]
    return manifest.get("defaults", {}), list(first.values())


def cell_name(cell: dict) -> str:
    ablation = f"-{cell['ablation'].lower().replace('+', '')}" if cell["ablation"] else ""
    label = f"-{cell['label']}" if cell["label"] else ""
    return f"{cell['dataset']}/{cell['model']}{ablation}{label}-seed{cell['seed']}"


def cell_config(cell: dict, defaults: dict):
    from elcrec.training.experiments import ABLATIONS

    switches = ABLATIONS[cell["ablation"]] if cell["ablation"] else {}
    return benchmark_config(
        cell["dataset"],
        cell["model"],
        seed=cell["seed"],
        **defaults,
        **VARIANTS[cell["variant"]],
        **switches,
        output_dir=str(ROOT / "runs" / "reproduce" / cell_name(cell)),
    )


def run_cell(cell: dict, defaults: dict, data) -> None:
    """Train (or read back, or resume) one cell and copy its record to benchmarks/results/paper/."""
    from elcrec.data import eval_set
    from elcrec.evaluation import evaluate
    from elcrec.runs import atomic_write, load_run, write_json
    from elcrec.training.experiments import finished_or_train

    config = cell_config(cell, defaults)
    print(f"== {cell_name(cell)} ({cell['variant']}): {config.run_dir}", flush=True)
    if records_settings_of(cell, config):  # a clone without the run folder (a new machine) trains nothing again
        print("   recorded before with these settings: read back", flush=True)
        return
    started = time.perf_counter()
    result = finished_or_train(config, data)
    out = RESULTS / "paper" / cell_name(cell)
    if (out / "run.json").is_file() and json.loads((out / "metrics.json").read_text()) == result:
        return  # recorded already
    best = load_run(config.run_dir).model
    exclude = evaluate(
        best,
        eval_set(data, config.max_len, "test"),
        ks=config.eval_ks,
        mask_history="exclude",
        batch_size=config.eval_batch_size,
    )
    write_portable_config(config.run_dir / "config.json", out / "config.json")
    atomic_write(out / "metrics.json", (config.run_dir / "metrics.json").read_bytes())
    record = {
        "variant": cell["variant"],
        "machines": epochs_by_machine(result),
        "epochs_on": dict(Counter(epoch.get("device", "unrecorded") for epoch in result["history"])),
        "test_seen_excluded": exclude,
        "session_seconds": round(time.perf_counter() - started),
    }
    write_json(out / "run.json", record)  # last: a record counts once its run.json is there


def records_settings_of(cell: dict, config) -> bool:
    """Whether the cell's committed record was trained with exactly `config`'s settings (common.recorded_with)."""
    return recorded_with(RESULTS / "paper" / cell_name(cell), config, "run.json")


def recorded(cell: dict) -> tuple[dict, dict] | None:
    folder = RESULTS / "paper" / cell_name(cell)
    if not (folder / "run.json").is_file():
        return None
    return json.loads((folder / "metrics.json").read_text()), json.loads((folder / "run.json").read_text())


def write_table(cells: list[dict], command: str) -> None:
    from elcrec.training.experiments import mean_std_of, paired_t_tests

    paper = paper_numbers()
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for cell in cells:
        if not cell["ablation"]:  # the main cells (ELCRec's ablation variants: write_ablation)
            groups.setdefault((cell["dataset"], cell["model"], cell["label"]), []).append(cell)
    records = {cell_name(cell): record for cell in cells if (record := recorded(cell))}  # each read once
    machines = sorted({name for _, run in records.values() for name in machines_of(run)})
    lines = [
        "# Reproduction of the ELCRec paper's Table 1",
        "",
        f"Command: `{command}` (cells: benchmarks/paper.toml; runs read back or resumed). Protocol: "
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


def write_ablation(cells: list[dict]) -> None:
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
                recorded(cell)
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
            if (record := recorded(cell))
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
    """One line per cell: recorded (its test NDCG@20), training now or interrupted (epochs done, best validation,
    seconds per epoch on the device of its last epoch, the most time it can still take there), failed, or not
    started. Reads the run folders, takes nothing."""
    from elcrec.runs import LOG_FILE, STATE_FILE, read_pt, training_holder

    def read_state(path: Path) -> dict | None:
        return read_pt(path, "a training state") if path.is_file() else None

    paper = paper_numbers()
    width = max(len(cell_name(cell)) for cell in cells)
    for cell in cells:
        name, line, pid, record = cell_name(cell), "not started", None, recorded(cell)
        config = cell_config(cell, defaults)
        if record:
            metrics = record[0]
            target = paper.get((cell["dataset"], cell["model"]), {}).get("NDCG@20")
            versus = f" (paper {target:.4f})" if target and not cell["ablation"] else ""
            line = (
                f"done: test NDCG@20 {metrics['test']['NDCG@20']:.4f}{versus}, best epoch {metrics['best_epoch']} "
                f"of {len(metrics['history'])}"
            )
        elif (state := read_state(config.run_dir / STATE_FILE)) and state["history"]:
            done, history = state["epoch"] + 1, state["history"]
            pid = training_holder(config.run_dir)
            saved_on = state.get("device", "cpu")  # epochs from before records named their device ran there
            device = history[-1].get("device", saved_on)  # a run can move between devices: the last one's pace
            recent = [r for r in history if r.get("device", saved_on) == device][-10:]
            seconds = float(np.median([r["seconds"] + r.get("valid_seconds", 0.0) for r in recent]))
            left = 0 if state["stopped"] else config.epochs - done
            line = (
                f"{f'training (pid {pid})' if pid else 'interrupted'}: {done}/{config.epochs} epochs, best valid "
                f"{config.metric} {state['best_score']:.4f} at epoch {state['best_epoch']}, {seconds:.0f} s/epoch "
                f"on {device}, at most {left * seconds / 3600:.1f} h left there"
            )
        elif pid := training_holder(config.run_dir):
            line = f"starting (pid {pid})"
        elif state:
            line = "interrupted before its first epoch finished"
        if not (record or pid) and (error := last_error(config.run_dir / LOG_FILE)):
            line = f"failed: {error}"
        role = f" (the ablation's {cell['figure']})" if cell["figure"] and not cell["ablation"] else ""
        print(f"{name:<{width}}  {cell['variant']:<9}  {line}{role}")


def last_error(log: Path) -> str | None:
    """The error a run's log ends with (its training stopped on it and was not started again), if any."""
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines() if log.is_file() else []
    _, _, error = lines[-1].partition(" error: ") if lines else ("", "", "")
    return error or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=ROOT / "benchmarks" / "paper.toml")
    parser.add_argument("--only", default="", help="DATASET[:MODEL[:SEED]],... cells to train (default: all)")
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
    args = parser.parse_args()

    defaults, cells = read_manifest(args.manifest)
    wanted = [part.split(":") for part in args.only.split(",") if part]
    chosen = [
        cell
        for cell in cells
        if not wanted or any([cell["dataset"], cell["model"], str(cell["seed"])][: len(w)] == w for w in wanted)
    ]
    if wanted and not chosen:
        raise SystemExit(f"--only {args.only!r} names no cell of {args.manifest}")
    command = "python benchmarks/reproduce.py"
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
                loaded = {cell["dataset"]: load_dataset(cell_config(cell, defaults))}  # one dataset in memory
            try:
                run_cell(cell, defaults, loaded[cell["dataset"]])
            except RunBusy as busy:
                print(f"   skipped: {busy}", flush=True)
                continue
            except NonFinite as error:  # this cell diverged: the others can still train (--status shows it)
                print(f"   failed: {error}", flush=True)
                continue
            write_table(cells, command)
            write_ablation(cells)
    else:
        write_table(cells, command)
        write_ablation(cells)


if __name__ == "__main__":
    main()
