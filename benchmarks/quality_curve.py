"""Does the fast engine cost quality? Train one model with engine=fast and engine=reference for the same
epochs (no early stopping) and write the validation curves side by side, with the seed-to-seed spread of
the fast engine as the noise scale.

    python benchmarks/quality_curve.py --dataset beauty --model elcrec --epochs 20 --fast-seeds 1,2 --reference-seeds 1

Writes benchmarks/results/quality-curve-<dataset>-<model>.md (runs under runs/quality-curve/).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from common import FILES, ROOT, dataset_path, machine, write_markdown

from elcrec import Config
from elcrec.data import load_dataset
from elcrec.training import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=FILES, default="beauty")
    parser.add_argument("--model", default="elcrec")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--fast-seeds", default="1,2")
    parser.add_argument("--reference-seeds", default="1")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    base = Config.from_dict({"data": str(dataset_path(args.dataset)), "preset": args.dataset, "model": args.model,
                             "epochs": args.epochs, "patience": 0, "device": args.device})
    data = load_dataset(base)
    runs = [(engine, int(seed)) for engine, seeds in (("fast", args.fast_seeds), ("reference", args.reference_seeds))
            for seed in seeds.split(",") if seed]
    curves, seconds, tests = {}, {}, {}
    for engine, seed in runs:
        config = base.replace(engine=engine, seed=seed,
                              output_dir=str(ROOT / "runs" / "quality-curve" / args.dataset / f"{args.model}-{engine}-{seed}"))
        started = time.perf_counter()
        result = train(config, data=data, overwrite=True)
        curves[engine, seed] = [h[base.metric] for h in result["history"]]
        seconds[engine, seed] = (sum(h["seconds"] for h in result["history"]) / len(result["history"]),
                                 time.perf_counter() - started)
        tests[engine, seed] = result["test"][base.metric]

    names = [f"{engine} seed {seed}" for engine, seed in runs]
    lines = [f"# Validation {base.metric} per epoch, {args.model} on {FILES[args.dataset]}: fast vs reference engine", "",
             f"Machine: {machine(base.device)}. Command: `python benchmarks/quality_curve.py --dataset {args.dataset} "
             f"--model {args.model} --epochs {args.epochs} --fast-seeds {args.fast_seeds} "
             f"--reference-seeds {args.reference_seeds}` (preset {args.dataset}, no early stopping). The s/epoch "
             "row is indicative only (other work shared the machine); benchmarks/speed.py measures speed.", "",
             "| epoch | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for epoch in range(args.epochs):
        lines.append(f"| {epoch} | " + " | ".join(f"{curves[run][epoch]:.4f}" for run in runs) + " |")
    lines.append("| train s/epoch | " + " | ".join(f"{seconds[run][0]:.1f}" for run in runs) + " |")
    lines.append(f"| test {base.metric} (best epoch) | " + " | ".join(f"{tests[run]:.4f}" for run in runs) + " |")

    def gap(a, b):  # mean absolute difference between two curves over the last half of the epochs
        half = args.epochs // 2
        return statistics.fmean(abs(x - y) for x, y in zip(curves[a][half:], curves[b][half:]))

    fast = [run for run in runs if run[0] == "fast"]
    reference = [run for run in runs if run[0] == "reference"]
    lines.append("")
    if len(fast) > 1:
        lines.append(f"Seed-to-seed noise (fast {fast[0][1]} vs {fast[1][1]}), mean |difference| over epochs "
                     f"{args.epochs // 2}-{args.epochs - 1}: {gap(fast[0], fast[1]):.4f}.")
    for ref in reference:
        for run in fast:
            lines.append(f"fast seed {run[1]} vs reference seed {ref[1]}, same window: {gap(run, ref):.4f}.")
    out = args.out or ROOT / "benchmarks" / "results" / f"quality-curve-{args.dataset}-{args.model}.md"
    write_markdown(out, lines)


if __name__ == "__main__":
    main()
