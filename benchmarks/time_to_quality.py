"""Time to quality: a recipe's test metrics and its validation curve against wall-clock minutes, beside the
faithful recipe's runs of the paper campaign (benchmarks/reproduce.py).

    python benchmarks/time_to_quality.py --dataset beauty --model elcrec --recipe fast --seeds 1,2,3 --threads 2

Each seed trains in runs/time-to-quality/<dataset>/<model>-<recipe>[-e<epochs>][-<tag>]-seed<n> (an interrupted run
resumes); its config.json and metrics.json are committed to benchmarks/results/time-to-quality/<dataset>/ under the
same name and read back while the settings are the same, also in a clone without the run folder. Run it on an
otherwise idle machine, since the minutes are the point (--shared: the table says they were not). Minutes:
training plus validation of every epoch (validation picks the checkpoint). Model selection is on validation
NDCG@20; the test split is read once, at the chosen epoch. The faithful rows are the campaign's committed records
(benchmarks/results/paper/<dataset>/<model>-seed<n>), trained with one thread beside other work: their minutes are
what they took there. Writes benchmarks/results/time-to-quality-<dataset>-<model>[-e<epochs>][-<tag>].md and .png.
--tag keeps another machine's runs, records and table apart from the committed ones; --epochs trains fewer (or
more) epochs than the recipe's, its schedule decaying over them, to fit the minutes on a slower machine.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
from common import (
    FILES,
    ROOT,
    benchmark_config,
    command_line,
    machines_of,
    recorded_with,
    trained_on,
    write_markdown,
    write_portable_config,
)
from reproduce import epochs_on, paper_numbers, reference_file

from elcrec.config import RECIPES, Config, recipe_values
from elcrec.data import load_dataset
from elcrec.runs import atomic_write
from elcrec.runtime import describe_machine, prepare_process, resolve_device
from elcrec.training.experiments import finished_or_train, mean_std
from elcrec.training.step import amp_name, autocast_dtype

METRICS = ("HR@5", "HR@20", "NDCG@5", "NDCG@20")


def minutes(history: list[dict]) -> np.ndarray:
    """Cumulative wall minutes at the end of each epoch (records from before valid_seconds: training only)."""
    return np.cumsum([h["seconds"] + h.get("valid_seconds", 0.0) for h in history]) / 60


def faithful_records(dataset: str, model: str) -> list[tuple[int, dict, dict]]:
    found = []
    for folder in sorted((ROOT / "benchmarks" / "results" / "paper" / dataset).glob(f"{model}-seed*")):
        if (folder / "run.json").is_file():
            seed = int(folder.name.rsplit("seed", 1)[1])
            metrics = json.loads((folder / "metrics.json").read_text())
            found.append((seed, metrics, json.loads((folder / "run.json").read_text())))
    return found


def row(name: str, results: list[dict], limit: float, note: str) -> str:
    tests = [result["test"] for result in results]
    total = [minutes(result["history"])[-1] for result in results]
    best = [minutes(result["history"])[result["best_epoch"]] for result in results]
    best_epochs = ", ".join(str(result["best_epoch"]) for result in results)
    epochs_run = ", ".join(str(len(result["history"])) for result in results)
    return (
        f"| {name} | {len(results)} | "
        + " | ".join(mean_std(tests, m) for m in METRICS)
        + f" | {best_epochs} | {epochs_run}"
        f" | {np.mean(best):.1f} | {np.mean(total):.1f} | {sum(t <= limit for t in total)} of {len(total)} | {note} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=FILES, default="beauty")
    parser.add_argument("--model", default="elcrec")
    parser.add_argument("--recipe", choices=[r for r in RECIPES if r != "faithful"], default="fast")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--minutes", type=float, default=20.0, help="the time budget the table checks")
    parser.add_argument(
        "--paper",
        type=float,
        help="the target test NDCG@20 (default: the paper's for --model on --dataset, from REFERENCE_NUMBERS.md)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = the idle cores)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--epochs",
        type=int,
        help="epochs instead of the recipe's (its learning-rate schedule decays over them); names take -e<N>",
    )
    parser.add_argument(
        "--shared",
        action="store_true",
        help="the runs trained beside other work (e.g. --threads 1 beside another run): the table says their "
        "minutes are not the protocol's",
    )
    parser.add_argument(
        "--tag",
        default="",
        help="a name for another machine's runs (e.g. zen3): their run folders, records and table take it, so "
        "they do not replace the committed ones",
    )
    args = parser.parse_args()
    if not re.fullmatch(r"[A-Za-z0-9_]*", args.tag):
        raise SystemExit(f"--tag {args.tag!r}: letters, digits and _ only")
    if args.paper is None:
        args.paper = paper_numbers().get((args.dataset, args.model), {}).get("NDCG@20")
        if args.paper is None:
            raise SystemExit(
                f"{reference_file()} gives no paper NDCG@20 for {args.model} on {args.dataset}: give the target "
                "with --paper"
            )
    if args.epochs is not None and args.epochs < 1:
        raise SystemExit(f"--epochs {args.epochs}: give at least 1")
    epochs = {"epochs": args.epochs} if args.epochs else {}  # given: it wins over the recipe's
    recipe = {**recipe_values(args.recipe, args.model), **epochs}
    tag = (f"-e{args.epochs}" if args.epochs else "") + (f"-{args.tag}" if args.tag else "")
    prepare_process(args.threads)

    # the precision amp=auto takes here, named: a record trained in another one is not read back
    amp = amp_name(autocast_dtype(Config(recipe=args.recipe).amp, resolve_device(args.device)))
    base = benchmark_config(
        args.dataset,
        args.model,
        recipe=args.recipe,
        amp=amp,
        **epochs,
        mask_history="reference",  # the paper's protocol, as the campaign's faithful runs
        device=args.device,
    )
    data = load_dataset(base)
    if not all(seed.isdigit() for seed in args.seeds.split(",")):
        raise SystemExit(f"--seeds {args.seeds!r}: give seeds like 1,2,3")
    seeds = [int(s) for s in args.seeds.split(",")]
    names = {seed: Path(args.dataset) / f"{args.model}-{args.recipe}{tag}-seed{seed}" for seed in seeds}
    for name in names.values():  # before any training: this machine's runs must not replace another's
        saved = ROOT / "benchmarks" / "results" / "time-to-quality" / name / "config.json"
        saved_amp = json.loads(saved.read_text()).get("amp") if saved.is_file() else amp
        if saved_amp != amp:
            raise SystemExit(
                f"{saved.parent.relative_to(ROOT)} trained in amp {saved_amp}, "
                f"and amp=auto trains in {amp} on this machine: give --tag NAME (the CPU's, say) to keep this "
                "machine's runs apart, or remove that record to replace it"
            )
    fast = {}
    for seed, name in names.items():
        config = base.replace(seed=seed, output_dir=str(ROOT / "runs" / "time-to-quality" / name))
        record = ROOT / "benchmarks" / "results" / "time-to-quality" / name
        if recorded_with(record, config, "metrics.json"):
            fast[seed] = json.loads((record / "metrics.json").read_text())
            continue
        fast[seed] = finished_or_train(config, data)
        write_portable_config(config.run_dir / "config.json", record / "config.json")
        atomic_write(record / "metrics.json", (config.run_dir / "metrics.json").read_bytes())  # last: complete
    faithful = faithful_records(args.dataset, args.model)

    settings = " ".join(f"{k}={v}" for k, v in recipe.items()) + f" (amp={amp} on this machine)"
    # a record read back trained where its sessions say, not necessarily here or with these threads
    machines = {trained_on(session, amp) for metrics in fast.values() for session in metrics.get("sessions", [])}
    machines = machines or {"machines their records do not name"}
    lines = [
        f"# Time to quality: {args.model} on {FILES[args.dataset]}, recipe {args.recipe} against faithful",
        "",
        f"Machine: {describe_machine(args.device)}, "
        + (
            "shared with other work while the runs trained: their minutes are not the protocol's, which times an "
            "otherwise idle machine; recipe "
            if args.shared
            else "otherwise idle (the protocol: minutes are wall-clock); recipe "
        )
        + f"{args.recipe}'s runs trained on "
        + "; ".join(sorted(machines))
        + ". "
        f"Command: `{command_line(parser, args)}`. Recipe {args.recipe}: {settings}, on the {args.dataset} "
        "preset; faithful: the defaults (BCE with one sampled negative, Adam 1e-3 constant, up to 300 epochs, "
        "patience 40). Protocol: full ranking, seen items scored 0 as the reference does (mask_history=reference), "
        "test split at the best validation NDCG@20 epoch (epochs count from 0, as the run logs do); mean ± sample "
        "std over seeds. Minutes: training and validation of every epoch. Faithful rows: the paper campaign's "
        "records (benchmarks/reproduce.py), with the machine and threads of their own run.json"
        + (": " + "; ".join(sorted({name for _, _, run in faithful for name in machines_of(run)})) if faithful else "")
        + "".join(
            f"; seed {seed}'s epochs ran on {epochs_on(metrics, run)}" for seed, metrics, run in faithful
        )  # a campaign run may have moved between a GPU and a CPU: its minutes mix the two
        + ".",
        "",
        f"| recipe | seeds | {' | '.join(f'test {m}' for m in METRICS)} | best epochs | epochs run | minutes to "
        f"the best epoch | minutes run | runs within {args.minutes:g} min | note |",
        "|---" * (len(METRICS) + 8) + "|",
        row(args.recipe, list(fast.values()), args.minutes, "machines above"),
    ]
    if faithful:
        lines.append(
            row("faithful", [metrics for _, metrics, _ in faithful], args.minutes, "campaign runs, see run.json")
        )
    else:
        pending = "| faithful | 0 | pending: benchmarks/reproduce.py has not finished a run |"
        lines.append(pending + " |" * (len(METRICS) + 5))
        lines += [
            "",
            f"Until the campaign's faithful runs of {args.model} on {FILES[args.dataset]} finish, the faithful "
            f"recipe's earlier single-seed runs are in reproduce-{args.dataset}-{args.model}.md (float32) and "
            f"reproduce-{args.dataset}-{args.model}-fast-bf16.md (bf16).",
        ]
    mean_test = np.mean([result["test"]["NDCG@20"] for result in fast.values()])
    slowest = max(minutes(result["history"])[-1] for result in fast.values())
    reached = mean_test >= args.paper and slowest <= args.minutes  # quality and time, both
    lines += [
        "",
        f"Target: test NDCG@20 >= {args.paper} (the paper's) within {args.minutes:g} minutes. Recipe {args.recipe}: "
        f"{mean_test:.4f} on average, the slowest run in {slowest:.1f} minutes: "
        f"{'reached' if reached else 'not reached'}" + (" (minutes on a shared machine)." if args.shared else "."),
        "",
        f"![validation NDCG@20 against minutes](time-to-quality-{args.dataset}-{args.model}{tag}.png)",
    ]
    out = ROOT / "benchmarks" / "results" / f"time-to-quality-{args.dataset}-{args.model}{tag}.md"
    write_markdown(out, lines)
    plot(out.with_suffix(".png"), fast, faithful, args)


def plot(path: Path, fast: dict[int, dict], faithful: list[tuple[int, dict, dict]], args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.2))
    styles = ("-", "--", ":", "-.")
    for i, (seed, result) in enumerate(fast.items()):
        curve = [h["NDCG@20"] for h in result["history"]]
        style = styles[i % len(styles)]
        axis.plot(minutes(result["history"]), curve, style, color="tab:blue", label=f"{args.recipe} seed {seed}")
    for i, (seed, metrics, run) in enumerate(faithful):
        curve = [h["NDCG@20"] for h in metrics["history"]]
        style = styles[i % len(styles)]
        label = f"faithful seed {seed} (epochs on {epochs_on(metrics, run)})"
        axis.plot(minutes(metrics["history"]), curve, style, color="tab:gray", label=label)
    axis.axvline(args.minutes, color="black", linewidth=0.8, label=f"{args.minutes:g} minutes")
    axis.set_xlabel("wall minutes (training + validation)")
    axis.set_ylabel("validation NDCG@20")
    axis.set_title(f"{args.model} on {FILES[args.dataset]}: recipe {args.recipe} and faithful")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
