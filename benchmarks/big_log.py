"""Reading and preprocessing a large interaction log: time and peak memory of `load_dataset` (pyarrow reader,
then ordering, id remapping and sequence building in numpy) on a generated log of 10M interactions.

    python benchmarks/big_log.py --rows 10000000

The log: rows / 10 users (drawn uniformly, so about 10 interactions each), rows / 100 items with Zipf-like popularity,
unix-second timestamps, rows shuffled (logs are rarely sorted by user). Written twice: a CSV with integer ids,
and a Parquet file with Amazon-style string ids (14-character user ids, 10-character item ids). Each load
runs in its own process; peak memory is the process's peak resident set (Linux VmHWM) during the load,
measured from a fresh interpreter with elcrec imported. Writes benchmarks/results/big-log.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, peak_rss_mb, reset_peak_rss, rss_mb, worker_result, write_markdown

from elcrec.runtime import describe_machine


def generate(rows: int, folder: Path) -> dict[str, Path]:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    n_users, n_items = max(rows // 10, 1), max(rows // 100, 10)
    users = rng.integers(0, n_users, rows)
    items = np.minimum(rng.zipf(1.2, rows), n_items) - 1
    items = rng.permutation(n_items)[items]  # popular items spread over the id range
    times = 1_300_000_000 + rng.integers(0, 300_000_000, rows)
    paths = {"csv, integer ids": folder / "log.csv", "parquet, string ids": folder / "log.parquet"}
    pacsv.write_csv(
        pa.table({"user_id": users + 1, "item_id": items + 1, "timestamp": times}), paths["csv, integer ids"]
    )
    user_names = np.char.add("A", np.char.zfill(np.char.mod("%X", np.arange(n_users)), 13))
    item_names = np.char.add("B0", np.char.zfill(np.char.mod("%X", np.arange(n_items)), 8))
    pq.write_table(
        pa.table({"user_id": user_names[users], "item_id": item_names[items], "timestamp": times}),
        paths["parquet, string ids"],
    )
    return paths


def worker(path: str) -> dict:
    from elcrec import Config
    from elcrec.data import load_dataset

    reset_peak_rss()
    baseline = rss_mb()
    started = time.perf_counter()
    data = load_dataset(Config(data=path))
    seconds = time.perf_counter() - started
    compact = data.items.nbytes + data.offsets.nbytes + data.user_ids.nbytes + data.item_ids.nbytes
    return {
        "seconds": seconds,
        "baseline_mb": baseline,
        "peak_rss_mb": peak_rss_mb(),
        "users": data.n_users,
        "items": data.n_items,
        "interactions": data.n_interactions,
        "result_mb": compact / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "big-log.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return

    lines = [
        f"# Reading and preprocessing a log of {args.rows:,} interactions",
        "",
        f"Machine: {describe_machine()}. Command: `python benchmarks/big_log.py --rows {args.rows}`.",
        "`load_dataset` = read (pyarrow) + chronological order per user + id remapping + sequences. Peak RSS: "
        "the loading process's peak resident set; before: its resident set before the load (a fresh interpreter "
        "with elcrec imported); the load's own share is the difference. Result: the in-memory dataset (flat "
        "item array, offsets, id maps).",
        "",
        "| file | file MB | users | items | interactions kept | load s | RSS before MB | peak RSS MB | result MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        paths = generate(args.rows, Path(folder))
        print(f"generated in {time.perf_counter() - started:.0f} s", flush=True)
        for name, path in paths.items():
            row = worker_result([sys.executable, __file__, "--worker", str(path)])
            print(name, json.dumps(row), flush=True)
            lines.append(
                f"| {name} | {path.stat().st_size / 2**20:,.0f} | {row['users']:,} | {row['items']:,} "
                f"| {row['interactions']:,} | {row['seconds']:.1f} | {row['baseline_mb']:,.0f} "
                f"| {row['peak_rss_mb']:,.0f} "
                f"| {row['result_mb']:,.0f} |"
            )
    write_markdown(args.out, lines)


if __name__ == "__main__":
    main()
