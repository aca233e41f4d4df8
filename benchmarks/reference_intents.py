"""What the public ELCRec checkpoints look like on their data: import each (elcrec import-reference), score it
on the validation and test splits (the paper's protocol, seen items masked as the reference masks them: the
validation score is what a reproduction's model selection can be compared with), assign every user to its
nearest centre, and write how many intents are used, the share of the largest, and the largest intents'
profiles (elcrec.evaluation.intents.intent_profiles).

    python benchmarks/reference_intents.py --checkpoint beauty:../shared/reference/ELCRec-Beauty-1.pt \\
        --checkpoint toys:ELCRec-Toys_and_Games-1.pt

The checkpoints come from the public ELCRec repository (src/output/); the Beauty one is also in
../shared/reference. Writes benchmarks/results/intents-reference.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import FILES, ROOT, command_line, dataset_path, write_markdown

from elcrec.runtime import describe_machine

SHOWN = 5  # profiled intents per checkpoint, largest first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", required=True, metavar="DATASET:PATH")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = the idle cores)")
    args = parser.parse_args()

    from elcrec import Config
    from elcrec.data import eval_set, load_dataset
    from elcrec.evaluation import evaluate
    from elcrec.evaluation.intents import ACTIVITY_GROUPS, intent_profiles, user_intents
    from elcrec.models.reference import import_reference
    from elcrec.runtime import prepare_process

    prepare_process(args.threads)
    lines = [
        "# The public ELCRec checkpoints: their scores and intents",
        "",
        f"Machine: {describe_machine()}. Command: `{command_line(parser, args)}`, the checkpoints of the "
        "public ELCRec repository, imported with their dataset's preset. Each user's intent is the nearest "
        "centre to the representation of their last 50 items (the reference's: the mean over all 50 "
        "positions, padding included). Valid and test: full ranking, mask_history=reference.",
        "",
        "| dataset | valid HR@20 | valid NDCG@20 | test HR@20 | test NDCG@20 | users | intents | intents used "
        "| largest intent's share | users in the 5 largest |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    details = []
    for spec in args.checkpoint:
        dataset, _, path = spec.partition(":")
        if dataset not in FILES:
            raise SystemExit(f"--checkpoint {spec!r}: give DATASET:PATH with DATASET one of {', '.join(FILES)}")
        if not Path(path).is_file():
            raise SystemExit(f"--checkpoint {spec!r}: {path} not found")
        data = load_dataset(Config(data=str(dataset_path(dataset))))
        model, config, _ = import_reference(path, data.item_ids, preset=dataset)
        scores = {
            split: evaluate(model, eval_set(data, config.max_len, split), ks=(20,), mask_history="reference")
            for split in ("valid", "test")
        }
        metrics = " | ".join(f"{scores[split][m]:.4f}" for split in ("valid", "test") for m in ("HR@20", "NDCG@20"))
        _, intents, distances = user_intents(model, data)
        profiles = intent_profiles(model, data, intents, distances, top=5)
        sizes = np.array([p["users"] for p in profiles])
        lines.append(
            f"| {FILES[dataset]} | {metrics} | {data.n_users:,} | {config.num_clusters} | {len(profiles)} "
            f"| {sizes[0] / data.n_users:.1%} | {sizes[:SHOWN].sum() / data.n_users:.1%} |"
        )
        details += [
            "",
            f"## {FILES[dataset]}: the {SHOWN} largest intents",
            "",
            "| intent | users | share | mean distance | "
            + " | ".join(f"{g} users" for g in ACTIVITY_GROUPS)
            + " | top items (frequency) |",
            "|---" * (5 + len(ACTIVITY_GROUPS)) + "|",
        ]
        for p in profiles[:SHOWN]:
            activity = " | ".join(f"{p['activity'][g]:.0%}" for g in ACTIVITY_GROUPS)
            items = " ".join(str(item) for item, _ in p["top_items_by_frequency"])
            details.append(
                f"| {p['intent']} | {p['users']:,} | {p['share']:.1%} | {p['mean_distance']:.3f} | "
                f"{activity} | {items} |"
            )
    write_markdown(ROOT / "benchmarks" / "results" / "intents-reference.md", lines + details)


if __name__ == "__main__":
    main()
