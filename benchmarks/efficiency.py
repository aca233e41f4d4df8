"""The paper's efficiency table: ELCRec against ICLRec, seconds per training epoch and peak memory, on the four
datasets with their presets. ICLRec clusters every training sequence every epoch (its E-step, counted in the
epoch); ELCRec clusters once, before the first epoch. Each run is benchmarks/speed.py's worker (its own
process, the trainer's own step) for a few epochs.

    python benchmarks/efficiency.py [--epochs 2] [--engine fast] [--threads 0]

Writes benchmarks/results/paper-efficiency.md and paper-efficiency.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import FILES, ROOT, VARIANTS, command_line, worker_result, write_markdown

from elcrec.runtime import describe_machine

MODELS = ("iclrec", "elcrec")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(FILES))
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run; the median epoch is reported")
    parser.add_argument("--engine", default="fast", choices=VARIANTS)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = the idle cores)")
    args = parser.parse_args()

    speed = Path(__file__).with_name("speed.py")
    rows = []
    for dataset in args.datasets.split(","):
        for model in MODELS:
            command = [
                sys.executable,
                str(speed),
                "--dataset",
                dataset,
                "--epochs",
                str(args.epochs),
                "--threads",
                str(args.threads),
                "--worker",
                model,
                args.engine,
            ]
            print(f"{dataset} {model} ...", flush=True)
            rows.append({"dataset": dataset, **worker_result(command)})

    lines = [
        "# Efficiency: ELCRec against ICLRec",
        "",
        f"Machine: {describe_machine()}. Command: `{command_line(parser, args)}`. Each dataset's preset for each "
        "model, the faithful recipe; train s/epoch: the median "
        f"of {args.epochs} epochs (ICLRec's k-means E-step over every training sequence included; ELCRec's "
        "one-time k-means is before the first epoch), validation excluded; peak memory: the process's peak "
        "resident set.",
        "",
        "| dataset | ICLRec s/epoch | ELCRec s/epoch | ELCRec / ICLRec | ICLRec peak MB | ELCRec peak MB |",
        "|---|---|---|---|---|---|",
    ]
    by = {(row["dataset"], row["model"]): row for row in rows}
    for dataset in dict.fromkeys(row["dataset"] for row in rows):
        icl, elc = by[dataset, "iclrec"], by[dataset, "elcrec"]
        lines.append(
            f"| {FILES[dataset]} | {icl['epoch_s']:.1f} | {elc['epoch_s']:.1f} "
            f"| {elc['epoch_s'] / icl['epoch_s']:.2f} | {icl['peak_rss_mb']:,.0f} | {elc['peak_rss_mb']:,.0f} |"
        )
    plot(rows, ROOT / "benchmarks" / "results" / "paper-efficiency.png")
    lines += ["", "![seconds per epoch and peak memory](paper-efficiency.png)"]
    write_markdown(ROOT / "benchmarks" / "results" / "paper-efficiency.md", lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    datasets = list(dict.fromkeys(row["dataset"] for row in rows))
    x = np.arange(len(datasets))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for axis, key, label in ((axes[0], "epoch_s", "seconds per epoch"), (axes[1], "peak_rss_mb", "peak memory (MB)")):
        for offset, model in zip((-0.2, 0.2), MODELS):
            values = [next(r[key] for r in rows if r["dataset"] == d and r["model"] == model) for d in datasets]
            axis.bar(x + offset, values, width=0.4, label=model)
        axis.set_xticks(x, [FILES[d] for d in datasets], fontsize=8)
        axis.set(ylabel=label)
        axis.grid(axis="y", alpha=0.3)
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
