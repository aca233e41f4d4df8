"""The item-cluster constraint's gamma sweep of the ICC-LLM-ESR scripts (0.01, 0.05, 0.1, 0.5, 1.0) on the
synthetic-text benchmark (benchmarks/long_tail.py --texts sequential: item texts that carry each item's intent
and its neighbourhood in the intent's ring). LLM-ESR with the public code's behaviour (the llmesr defaults,
engine fast), without the constraint and with it at each gamma (k-means clusters of the text, mean centres,
input items), over several seeds; test NDCG@10 and HR@10 overall and on head/tail items and users (80/20
split, see elcrec.evaluation.long_tail), full ranking.

    python benchmarks/icc_gamma.py --seeds 1,2,3 --users 1500 --items 400 --epochs 25 --patience 5

Writes benchmarks/results/long-tail-icc-gamma.md and long-tail-icc-gamma.png. Runs go to runs/long-tail-icc-gamma/;
finished ones with the same settings are read back.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import ROOT, write_markdown

from elcrec.runtime import describe_machine

GROUPS = (
    ("all users", ""),
    ("head items", "head_items/"),
    ("tail items", "tail_items/"),
    ("head users", "head_users/"),
    ("tail users", "tail_users/"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--gammas", default="0.01,0.05,0.1,0.5,1.0")
    parser.add_argument("--users", type=int, default=1500)
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--icc-clusters", type=int, default=64, help="k-means clusters of the constraint")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "long-tail-icc-gamma.md")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = the idle cores)")
    args = parser.parse_args()

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
    gammas = [float(g) for g in args.gammas.split(",")]
    root = ROOT / "runs" / "long-tail-icc-gamma"
    root.mkdir(parents=True, exist_ok=True)
    synthetic = Config(data="synthetic", synthetic_users=args.users, synthetic_items=args.items, synthetic_intents=8)
    data = load_dataset(synthetic)
    text_path = root / "item-text.npy"  # a fixed path: finished runs with the same settings are read back
    np.save(text_path, embed_texts(synthetic_item_texts(data, sequential=True)))
    base = synthetic.replace(
        model="llmesr", item_text=str(text_path), epochs=args.epochs, patience=args.patience, device="cpu"
    )
    icc = {"icc": "kmeans", "icc_clusters": args.icc_clusters}
    variants = {"no constraint": {}, **{f"gamma {g:g}": {**icc, "icc_weight": g} for g in gammas}}
    run_group(base, variants, seeds, root, data=data)
    test = eval_set(data, base.max_len, "test")
    groups = long_tail_groups(data, test)
    results = {
        name: [evaluate(load_run(root / name / f"seed{seed}").model, test, groups=groups, seed=seed) for seed in seeds]
        for name in variants
    }

    counts = {label: int(groups[key[:-1]].sum()) if key else len(test.targets) for label, key in GROUPS}
    lines = [
        "# Long-tail: the item-cluster constraint's gamma (synthetic data, text carries intents and ring "
        "neighbourhoods)",
        "",
        f"Machine: {describe_machine()}. Command: `python benchmarks/icc_gamma.py --seeds {args.seeds} "
        f"--gammas {args.gammas} "
        f"--users {args.users} --items {args.items} --epochs {args.epochs} --patience {args.patience} "
        f"--icc-clusters {args.icc_clusters}`.",
        f"{data.summary()}. The faithful recipe with these epochs and patience. "
        "LLM-ESR with the public code's behaviour (elcrec's llmesr defaults: backbone sasrec, "
        "backbone_code public, cross-attention on the embeddings, causal attention, engine fast), without the "
        f"constraint and with it (k-means, {args.icc_clusters} clusters, mean centres, icc_items inputs) at the ICC-"
        "LLM-ESR scripts' gammas. The runs are kept small for a 2-core CPU (the scripts' 200 epochs, max_len 200 "
        f"and batch 128 would not fit): {args.users:,} users, at most {args.epochs} epochs, patience "
        f"{args.patience}, max_len {base.max_len}, batch {base.batch_size}. Test split, full ranking, seen items "
        f"excluded, mean ± std over seeds {args.seeds}; best validation epoch (NDCG@20) of each run. Groups "
        "(users): "
        + ", ".join(f"{k} {v:,}" for k, v in counts.items())
        + ". Head items: the 20% most popular (training interactions); head users: the 20% longest histories.",
    ]
    for metric in ("NDCG@10", "HR@10"):
        lines += [
            "",
            f"{metric}:",
            "",
            "| variant | best epochs | " + " | ".join(label for label, _ in GROUPS) + " |",
            "|---" * (len(GROUPS) + 2) + "|",
        ]
        for name, runs in results.items():
            best = ", ".join(str(_best_epoch(root / name / f"seed{seed}")) for seed in seeds)
            cells = " | ".join(mean_std(runs, key + metric) for _, key in GROUPS)
            lines.append(f"| {name} | {best} | {cells} |")
    write_markdown(args.out, lines)
    plot(results, gammas, args.out.with_suffix(".png"))


def _best_epoch(folder: Path) -> int:
    import json

    return json.loads((folder / "metrics.json").read_text())["best_epoch"]


def plot(results: dict[str, list[dict[str, float]]], gammas: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, metric in zip(axes, ("NDCG@10", "HR@10")):
        for (label, key), colour in zip(GROUPS, ("black", "tab:blue", "tab:orange", "tab:green", "tab:red")):
            values = np.array([[run[key + metric] for run in results[f"gamma {g:g}"]] for g in gammas])
            axis.errorbar(gammas, values.mean(1), yerr=values.std(1, ddof=1), marker="o", capsize=3, color=colour)
            axis.plot([], [], marker="o", color=colour, label=label)
            without = np.array([run[key + metric] for run in results["no constraint"]]).mean()
            axis.axhline(without, color=colour, linestyle="--", linewidth=1)
        axis.set_xscale("log")
        axis.set_xlabel("gamma (dashed: without the constraint)")
        axis.set_ylabel(f"test {metric}")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("LLM-ESR + item-cluster constraint: gamma sweep (mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
