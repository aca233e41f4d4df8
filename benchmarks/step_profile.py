"""Where the faithful ELCRec training step's time goes on this CPU, and how fast it could be: each variant in its
own process times steps (the median, no profiler), then torch.profiler splits a step's time by operator
(self time) into matmuls (mm, addmm, bmm), copies and casts (copy_) and the rest (elementwise work,
reductions, indexing, the optimiser), and lists the operators (by input shapes) with the most self time;
torch.utils.flop_counter counts the step's matmul FLOPs.

    python benchmarks/step_profile.py [--dataset beauty] [--steps 20] [--threads 2] [--variants fast,reference]

Variants: fast, fast-bf16 (amp=bf16) and reference (the reference's computation order), the Beauty preset and
the faithful recipe. From the split: the matmuls' own speed (FLOPs over their time) as a share of the matmul
peak in the run's precision (a 4096² matmul, benchmarks/speed.py), and two bounds on the fast step: the
matmuls alone at their measured speed (every other operator free), and the matmuls at the peak. Against the
reference's step, these bound what any work on the elementwise code could gain.

Writes benchmarks/results/step-profile-<dataset>-elcrec.md (or --out).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
from pathlib import Path

from common import (
    ROOT,
    VARIANTS,
    benchmark_config,
    command_line,
    matmul_peak,
    run_variants,
    time_steps,
    training_steps,
    write_markdown,
)

from elcrec.runtime import describe_machine

WARMUP = 5
PROFILED = 10
TOUCHED_MB = 4096
TOP = 12
PROFILED_VARIANTS = ("fast", "fast-bf16", "reference")
MATMULS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addbmm"}
COPIES = {"aten::copy_"}


def worker(dataset: str, variant: str, steps: int, threads: int) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    from elcrec.runtime import prepare_process

    prepare_process(threads)
    config = benchmark_config(dataset, "elcrec", device="cpu", seed=1, **VARIANTS[variant])
    model, step, batches = training_steps(config, WARMUP + steps + 2 * PROFILED)
    timed = batches[WARMUP : WARMUP + steps]
    profiled = batches[WARMUP + steps : WARMUP + steps + PROFILED]
    counted = batches[WARMUP + steps + PROFILED :]
    time_steps(step, batches[:WARMUP])
    step_ms = 1000 * statistics.median(time_steps(step, timed))
    touch_heap(TOUCHED_MB)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as profiler:
        time_steps(step, profiled)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    self_us = {event.key: event.self_cpu_time_total for event in profiler.key_averages()}
    by_shape = sorted(profiler.key_averages(group_by_input_shape=True), key=lambda e: -e.self_cpu_time_total)
    top = [
        {
            "op": event.key.removeprefix("aten::"),
            "shapes": [shape for shape in event.input_shapes if shape],
            "calls": event.count / PROFILED,
            "ms": event.self_cpu_time_total / PROFILED / 1000,
        }
        for event in by_shape[:TOP]
    ]
    total = sum(self_us.values())
    share = {
        "matmul": sum(us for name, us in self_us.items() if name in MATMULS) / total,
        "copies": sum(us for name, us in self_us.items() if name in COPIES) / total,
    }
    share["other"] = 1 - share["matmul"] - share["copies"]
    with FlopCounterMode(display=False) as counter:
        for batch in counted:
            step(batch)
    gflop = counter.get_total_flops() / len(counted) / 1e9
    dtype = step.amp_dtype or torch.float32
    return {
        "variant": variant,
        "threads": torch.get_num_threads(),
        "step_ms": step_ms,
        "share": share,
        "gflop": gflop,
        "peak": matmul_peak(torch.device("cpu"), dtype),
        "precision": str(dtype).removeprefix("torch."),
        "faults": faults / PROFILED,
        "profiled_ms": total / PROFILED / 1000,
        "top": top,
    }


def touch_heap(megabytes: int) -> None:
    """Page in `megabytes` at the top of glibc's heap and free them, which keep_freed_memory (prepare_process)
    keeps. The profiler's records fragment the heap, so the profiled steps grow it; growth into pages never
    touched faults in whichever operator first writes them, at tens of µs a fault on a virtual machine, and
    would inflate that operator's share several-fold. Recording input shapes, the profiler grows the heap at
    every step: `megabytes` covers all the profiled steps (the table's fault column checks it)."""
    import torch

    torch.ones(megabytes * 2**20 // 4)


def table(rows: list[dict]) -> list[str]:
    reference = next(row["step_ms"] for row in rows if row["variant"] == "reference")
    lines = [
        "| variant | ms/step | vs reference | matmul | copies and casts | other | step GFLOP | matmul GFLOP/s "
        "(own time) | matmul peak GFLOP/s | matmul share of peak | matmuls alone: ms/step (vs reference) | "
        "matmuls at peak: ms/step (vs reference) | page faults per profiled step |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        share, ms = row["share"], row["step_ms"]
        matmul_ms = share["matmul"] * ms
        speed = row["gflop"] / matmul_ms * 1000
        peak_columns = f"| - ({row['precision']}, emulated) | - | {matmul_ms:.0f} ({reference / matmul_ms:.1f}x) | -"
        if row["peak"] is not None:
            floor_ms = row["gflop"] / row["peak"] * 1000
            peak_columns = (
                f"| {row['peak']:.0f} ({row['precision']}) | {speed / row['peak']:.0%} "
                f"| {matmul_ms:.0f} ({reference / matmul_ms:.1f}x) | {floor_ms:.0f} ({reference / floor_ms:.1f}x)"
            )
        lines.append(
            f"| {row['variant']} | {ms:.0f} | {reference / ms:.2f}x | {share['matmul']:.0%} | {share['copies']:.0%} "
            f"| {share['other']:.0%} | {row['gflop']:.1f} | {speed:.0f} {peak_columns} | {row['faults']:,.0f} |"
        )
    return lines


def top_operators(row: dict) -> list[str]:
    lines = ["| operator | input shapes | calls per step | ms per step | share of the step |", "|---|---|---|---|---|"]
    for op in row["top"]:
        shapes = ", ".join("×".join(map(str, shape)) for shape in op["shapes"])
        lines.append(
            f"| {op['op']} | {shapes} | {op['calls']:g} | {op['ms']:.1f} | {op['ms'] / row['profiled_ms']:.0%} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="beauty", choices=("beauty", "sports", "toys", "yelp"))
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant (the median is reported)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = the idle cores)")
    parser.add_argument(
        "--variants",
        default=",".join(PROFILED_VARIANTS),
        help=f"which of {', '.join(PROFILED_VARIANTS)} (the bounds are against reference, which always runs)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="default: benchmarks/results/step-profile-<dataset>-elcrec.md"
    )
    parser.add_argument("--worker", choices=PROFILED_VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.dataset, args.worker, args.steps, args.threads)))
        return
    variants = args.variants.split(",")
    if unknown := set(variants) - set(PROFILED_VARIANTS):
        raise SystemExit(
            f"--variants {args.variants!r}: {', '.join(sorted(unknown))}: choose among {', '.join(PROFILED_VARIANTS)}"
        )

    options = ["--dataset", args.dataset, "--steps", str(args.steps), "--threads", str(args.threads)]
    rows = run_variants(__file__, tuple(dict.fromkeys([*variants, "reference"])), options)
    lines = [
        f"# Where the faithful ELCRec step's time goes ({args.dataset.capitalize()})",
        "",
        f"Machine: {describe_machine()}. Command: `{command_line(parser, args)}`. The {args.dataset} preset and "
        "the faithful recipe; "
        f"ms/step: the median of {args.steps} steps after {WARMUP} warm-up steps, without the profiler. The split "
        f"(self time per operator under torch.profiler, {PROFILED} further steps): matmul (mm, addmm, bmm), "
        "copies and casts (copy_), other (elementwise, reductions, indexing, the optimiser). Step GFLOP: matmul "
        "work per step (torch.utils.flop_counter), its speed over the matmuls' own time, against the best 4096² "
        "matmul in the run's precision. Bounds on each step: its matmuls alone at their measured speed (every "
        "other operator free), and at the peak. Before the profiled steps the worker pages in "
        f"{TOUCHED_MB} MB of heap for the profiler's records to grow into: page faults during them land in "
        "whichever operator first writes a page.",
        "",
        *table(rows),
        "",
        f"## The {TOP} operators with the most self time",
        "",
        "Per variant, grouped by operator and input shapes: self time per profiled step, and its share of the "
        "profiled step (the profiler's sum of self times, which includes its own overhead).",
    ]
    for row in rows:
        lines += ["", f"### {row['variant']}", "", *top_operators(row)]
    write_markdown(args.out or ROOT / "benchmarks" / "results" / f"step-profile-{args.dataset}-elcrec.md", lines)


if __name__ == "__main__":
    main()
