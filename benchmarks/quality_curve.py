"""Does an engine variant cost quality? Train one model under several variants and seeds for the same
epochs (no early stopping) and write the validation curves side by side, with the seed-to-seed spread of
the first variant as the noise scale. Variants (benchmarks/common.py): fast, reference (the reference's
computation order), fast-bf16 (amp=bf16) and fast-zero (padding_outputs=zero, a deviation from the reference).

    python benchmarks/quality_curve.py --dataset beauty --model elcrec --epochs 20 --runs fast:1,fast:2,reference:1

Writes benchmarks/results/quality-curve-<dataset>-<model>.md (runs under runs/quality-curve/; a run that
finished with the same settings is read back, an interrupted one resumed).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from common import FILES, ROOT, VARIANTS, benchmark_config, command_line, write_markdown

from elcrec.data import load_dataset
from elcrec.runtime import describe_machine, prepare_process
from elcrec.training.experiments import finished_or_train


def parse_runs(text: str) -> list[tuple[str, int]]:
    runs = []
    for item in text.split(","):
        variant, _, seed = item.partition(":")
        if variant not in VARIANTS or not seed.isdigit():
            raise SystemExit(f"--runs {item!r}: give VARIANT:SEED with VARIANT one of {', '.join(VARIANTS)}")
        runs.append((variant, int(seed)))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=FILES, default="beauty")
    parser.add_argument("--model", default="elcrec")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--runs", default="fast:1,fast:2,reference:1", help="VARIANT:SEED,... in table order")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = the idle cores)")
    args = parser.parse_args()
    prepare_process(args.threads)

    runs = parse_runs(args.runs)
    base = benchmark_config(args.dataset, args.model, epochs=args.epochs, patience=0, device=args.device)
    data = load_dataset(base)
    curves, seconds, tests = {}, {}, {}
    for variant, seed in runs:
        config = base.replace(
            **VARIANTS[variant],
            seed=seed,
            output_dir=str(ROOT / "runs" / "quality-curve" / args.dataset / f"{args.model}-{variant}-{seed}"),
        )
        result = finished_or_train(config, data)
        curves[variant, seed] = [h[base.metric] for h in result["history"]]
        seconds[variant, seed] = sum(h["seconds"] for h in result["history"]) / len(result["history"])
        tests[variant, seed] = result["test"][base.metric]

    names = [f"{variant} seed {seed}" for variant, seed in runs]
    lines = [
        f"# Validation {base.metric} per epoch, {args.model} on {FILES[args.dataset]}, by engine variant",
        "",
        f"Machine: {describe_machine(base.device)}. Command: `{command_line(parser, args)}` (preset {args.dataset}, "
        "the faithful recipe without early stopping). Variants: "
        + "; ".join(
            f"{name}: {settings}" for name, settings in VARIANTS.items() if any(variant == name for variant, _ in runs)
        )
        + ". The s/epoch row is training steps only, indicative (benchmarks/speed.py measures speed).",
        "",
        "| epoch | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for epoch in range(args.epochs):
        lines.append(f"| {epoch} | " + " | ".join(f"{curves[run][epoch]:.4f}" for run in runs) + " |")
    lines.append("| train s/epoch | " + " | ".join(f"{seconds[run]:.1f}" for run in runs) + " |")
    lines.append(f"| test {base.metric} (best epoch) | " + " | ".join(f"{tests[run]:.4f}" for run in runs) + " |")

    half = args.epochs // 2

    def gap(a, b):  # mean absolute difference between two curves over the last half of the epochs
        return statistics.fmean(abs(x - y) for x, y in zip(curves[a][half:], curves[b][half:]))

    window = f"epochs {half}-{args.epochs - 1}"
    lines += ["", f"Mean |difference| between two curves over {window}:", ""]
    first = runs[0][0]
    for variant in dict.fromkeys(variant for variant, _ in runs):
        seeds = [run for run in runs if run[0] == variant]
        if len(seeds) > 1:
            lines.append(
                f"- seed to seed within {variant}: "
                + ", ".join(f"{a[1]} vs {b[1]} {gap(a, b):.4f}" for a, b in zip(seeds, seeds[1:]))
            )
        if variant != first:
            lines.append(
                f"- {variant} vs {first}: "
                + ", ".join(f"{a[1]} vs {b[1]} {gap(a, b):.4f}" for a in seeds for b in runs if b[0] == first)
            )
    for variant in dict.fromkeys(variant for variant, _ in runs):
        seeds = [run for run in runs if run[0] == variant]
        lines.append(
            f"- {variant}: mean {base.metric} over {window} and seeds "
            f"{statistics.fmean(x for run in seeds for x in curves[run][half:]):.4f}"
        )
    out = args.out or ROOT / "benchmarks" / "results" / f"quality-curve-{args.dataset}-{args.model}.md"
    write_markdown(out, lines)


if __name__ == "__main__":
    main()
