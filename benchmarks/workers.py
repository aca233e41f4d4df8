"""How a campaign should spend the cores: one training process with a thread per core, or one process (worker) per
core with one thread each, as benchmarks/reproduce.py runs its workers. ELCRec on Beauty with the campaign's
engine variant (fast-bf16) by default; each layout times training steps through the trainer's step after
warm-up steps, the processes of one layout timed together (each starts timing when all have warmed up).

    python benchmarks/workers.py [--dataset beauty] [--model elcrec] [--variant fast-bf16] [--steps 25]

Writes benchmarks/results/workers-<dataset>-<model>.md. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from common import ROOT, VARIANTS, benchmark_config, time_steps, training_steps, write_markdown

from elcrec.runtime import describe_machine, usable_cores

WARMUP = 5


def worker(dataset: str, model: str, variant: str, threads: int, steps: int) -> None:
    """Warm up, say so, wait for the word on stdin, then time `steps` steps and print their median."""
    from elcrec.runtime import prepare_process

    prepare_process(threads)
    config = benchmark_config(dataset, model, device="cpu", seed=1, **VARIANTS[variant])
    _, step, batches = training_steps(config, WARMUP + steps)
    time_steps(step, batches[:WARMUP])
    print("ready", flush=True)
    sys.stdin.readline()
    seconds = time_steps(step, batches[WARMUP:])
    print(json.dumps({"step_s": statistics.median(seconds), "batch_size": config.batch_size}), flush=True)


def layout(args: argparse.Namespace, processes: int, threads: int) -> list[dict]:
    """Start `processes` workers of `threads` threads each, release them together, and collect their medians."""
    command = [sys.executable, __file__, "--dataset", args.dataset, "--model", args.model, "--variant", args.variant]
    command += ["--steps", str(args.steps), "--worker", str(threads)]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    children = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(processes)
    ]
    try:
        for child in children:
            if child.stdout.readline().strip() != "ready":
                raise SystemExit(f"a worker failed: {' '.join(command)}")
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()
        return [json.loads(child.stdout.readline()) for child in children]
    finally:
        for child in children:
            child.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--model", default="elcrec")
    parser.add_argument("--variant", default="fast-bf16", choices=VARIANTS)
    parser.add_argument("--steps", type=int, default=25, help="timed steps per process (the median is reported)")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.dataset, args.model, args.variant, args.worker, args.steps)
        return

    cores = usable_cores()
    layouts = [(1, 1, "one process, one thread, alone"), (1, cores, f"one process, {cores} threads")]
    layouts += [(cores, 1, f"{cores} processes, one thread each")] if cores > 1 else []
    rows = []
    for processes, threads, name in layouts:
        results = layout(args, processes, threads)
        per_s = sum(result["batch_size"] / result["step_s"] for result in results)
        rows.append((name, processes, threads, [result["step_s"] for result in results], per_s))
        print(rows[-1], flush=True)
    together = rows[1][4]
    lines = [
        f"# Spending the cores: {args.model} on {args.dataset}, {args.variant}",
        "",
        f"Machine: {describe_machine(threads=False)}. Command: `python "
        f"benchmarks/workers.py --dataset {args.dataset} --model {args.model} --variant {args.variant} --steps "
        f"{args.steps}`. The dataset's preset and the faithful recipe; the median of {args.steps} training steps "
        f"after {WARMUP} warm-up steps in each process, the processes of a layout timed together.",
        "",
        "| layout | ms/step of each process | sequences/s, all processes | vs one process with every thread |",
        "|---|---|---|---|",
        *(
            f"| {name} | {', '.join(f'{1000 * s:.0f}' for s in seconds)} | {per_s:,.0f} | {per_s / together:.2f}x |"
            for name, _, _, seconds, per_s in rows
        ),
    ]
    write_markdown(ROOT / "benchmarks" / "results" / f"workers-{args.dataset}-{args.model}.md", lines)


if __name__ == "__main__":
    main()
