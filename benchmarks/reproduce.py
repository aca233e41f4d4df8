"""Train each model with the paper's preset on one benchmark dataset and write a markdown table of
HR@5/20 and NDCG@5/20 beside the paper's numbers (read from REFERENCE_NUMBERS.md), with seconds per
epoch and epochs run.

    python benchmarks/reproduce.py --dataset beauty --models sasrec,elcrec [--epochs 300] [--out FILE] [--resume]

Data comes from ELCREC_DATA_DIR (default ../shared/data); runs go to runs/reproduce/<dataset>/<model>, or
<model>-<variant> for an engine variant other than fast (benchmarks/common.py; --variant fast-zero trains
with padding_outputs=zero, a deviation from the reference).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import DATA_DIR, FILES, ROOT, VARIANTS, dataset_path, machine, write_markdown

from elcrec import Config
from elcrec.data import load_dataset
from elcrec.training import train
from elcrec.training.checkpoint import STATE_FILE

TABLE_NAMES = {"beauty": "Beauty", "sports": "Sports", "toys": "Toys", "yelp": "Yelp"}
PAPER_COLUMNS = {"sasrec": "SASRec", "bert4rec": "BERT4Rec", "cl4srec": "CL4SRec", "iclrec": "ICLRec", "elcrec": "ELCRec (paper)"}
METRICS = ("HR@5", "HR@20", "NDCG@5", "NDCG@20")


def paper_numbers(dataset: str) -> dict[str, dict[str, float]]:
    """{model: {metric: value}} from the paper's table in REFERENCE_NUMBERS.md (empty if the file is absent)."""
    path = DATA_DIR.parent / "docs" / "REFERENCE_NUMBERS.md"
    if not path.is_file():
        return {}
    lines = [line for line in path.read_text().splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    numbers: dict[str, dict[str, float]] = {}
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] != TABLE_NAMES[dataset] or cells[1] not in METRICS:
            continue
        for model, column in PAPER_COLUMNS.items():
            if column in header:
                numbers.setdefault(model, {})[cells[1]] = float(cells[header.index(column)])
    return numbers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=FILES, default="beauty")
    parser.add_argument("--models", default="sasrec,cl4srec,iclrec,elcrec")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--patience", type=int, default=40)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--variant", choices=VARIANTS, default="fast", help="engine variant of every run")
    parser.add_argument("--resume", action="store_true", help="continue runs whose folder holds a training state")
    parser.add_argument("--overwrite", action="store_true", help="train again over runs already in runs/reproduce")
    parser.add_argument("--out", type=Path, default=None, help="markdown file [default: benchmarks/results/reproduce-<dataset>.md]")
    args = parser.parse_args()

    base = Config.from_dict({"data": str(dataset_path(args.dataset)), "preset": args.dataset, "epochs": args.epochs,
                             "patience": args.patience, "device": args.device})
    data = load_dataset(base)
    paper = paper_numbers(args.dataset)
    rows = []
    for model in args.models.split(","):
        name = model if args.variant == "fast" else f"{model}-{args.variant}"
        config = base.replace(model=model, **VARIANTS[args.variant], output_dir=str(ROOT / "runs" / "reproduce" / args.dataset / name))
        resume = args.resume and (config.run_dir / STATE_FILE).is_file()
        result = train(config, data=data, resume=resume, overwrite=args.overwrite)
        rows.append((model, result, len(result["history"]), sum(h["seconds"] for h in result["history"])))

    lines = [f"# Reproduction on {FILES[args.dataset]} (preset {args.dataset})", "",
             f"Machine: {machine(base.device)}. Command: `python benchmarks/reproduce.py --dataset {args.dataset} "
             f"--models {args.models} --epochs {args.epochs} --patience {args.patience}"
             + ("" if args.variant == "fast" else f" --variant {args.variant}") + f"`. Engine: {VARIANTS[args.variant]}.",
             "Full ranking, seen items excluded, test split of the best validation epoch (NDCG@20). Train s: the "
             "epochs' training time, summed over every session of a resumed run (validation not included).", "",
             "| model | " + " | ".join(f"{m} (ours / paper)" for m in METRICS) + " | best epoch | epochs run | s/epoch | train s |",
             "|---" * (len(METRICS) + 5) + "|"]
    for model, result, epochs, seconds in rows:
        cells = [f"{result['test'][m]:.4f} / {paper[model][m]:.4f}" if model in paper else f"{result['test'][m]:.4f} / -"
                 for m in METRICS]
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {result['best_epoch']} | {epochs} | {seconds / max(epochs, 1):.1f} | {seconds:.0f} |")
    out = args.out or ROOT / "benchmarks" / "results" / f"reproduce-{args.dataset}.md"
    write_markdown(out, lines)


if __name__ == "__main__":
    main()
