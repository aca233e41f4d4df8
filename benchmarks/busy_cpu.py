"""Training speed on a shared CPU: SASRec on Beauty (the Beauty preset, float32) on an idle machine and with
one core held by another process (a busy loop), with the default threads (as many as there are idle cores)
and with one torch thread per core (torch's own default). Each setting runs in its own process and times
training steps through the trainer's step, after warm-up steps.

    python benchmarks/busy_cpu.py [--steps 40]

Writes benchmarks/results/busy-cpu.md (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, benchmark_config, command_line, time_steps, training_steps, worker_result, write_markdown

from elcrec.runtime import describe_machine, usable_cores

WARMUP = 3


def worker(threads: int, steps: int) -> dict:
    from elcrec.runtime import prepare_process

    chosen = prepare_process(threads)
    config = benchmark_config("beauty", "sasrec", device="cpu", seed=1)
    _, step, batches = training_steps(config, steps + WARMUP)
    seconds = time_steps(step, batches)
    return {"threads": chosen, "seq_per_s": config.batch_size / statistics.median(seconds[WARMUP:])}


def measure(threads: int, steps: int, busy: bool) -> dict:
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        if hog is not None:
            time.sleep(1.0)  # the hog holds its core before the worker looks for idle ones
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        return worker_result([sys.executable, __file__, "--steps", str(steps), "--worker", str(threads)], env=env)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="training steps timed per setting")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/busy-cpu.md")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.steps)))
        return
    cores = usable_cores()
    rows = []
    for busy in (False, True):
        for threads, name in ((0, "default (idle cores)"), (cores, f"{cores} threads (one per core)")):
            result = measure(threads, args.steps, busy)
            rows.append((busy, name, result))
            print(busy, name, result, flush=True)
    idle = {name: result["seq_per_s"] for busy, name, result in rows if not busy}
    lines = [
        "# Training on a shared CPU",
        "",
        f"Machine: {describe_machine()}. Command: `{command_line(parser, args)}`. "
        "SASRec on Beauty "
        "(Beauty preset, faithful recipe: float32, fast engine), the median of "
        f"{args.steps} training steps after {WARMUP} warm-up steps, each setting in its own process; busy: "
        "another process runs a busy loop on one core.",
        "",
        "| CPU | threads | threads used | sequences/s | slower than idle with the same setting |",
        "|---|---|---|---|---|",
    ]
    for busy, name, result in rows:
        ratio = idle[name] / result["seq_per_s"]
        lines.append(
            f"| {'one core busy' if busy else 'idle'} | {name} | {result['threads']} "
            f"| {result['seq_per_s']:,.0f} | {ratio:.2f}x |"
        )
    write_markdown(args.out or ROOT / "benchmarks" / "results" / "busy-cpu.md", lines)


if __name__ == "__main__":
    main()
