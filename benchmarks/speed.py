"""Training and evaluation speed per model and engine variant on one benchmark dataset, each in its own process:
seconds per training epoch (ICLRec's k-means E-step included), sequences per second, seconds to rank
every item for every user (full-ranking validation), peak resident memory, and the matmul work done per
second as a share of this machine's measured matmul peak.

    python benchmarks/speed.py --dataset beauty --models sasrec,iclrec,elcrec \
        --engines fast,fast-bf16,fast-zero,reference --epochs 2

Variants (benchmarks/common.py): fast, reference (the reference's computation order), fast-bf16 (the fast
engine under bf16 autocast, amp=bf16), fast-zero (the fast engine with padding_outputs=zero, a deviation;
contrastive models only, skipped for the others).

Writes benchmarks/results/speed-<dataset>.md. FLOPs are counted by torch.utils.flop_counter on training
steps (forward and backward, the mean of 8 random batches) and scaled to the epoch; elementwise work is
not counted.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from common import (
    FILES,
    MATMUL_SIZE,
    ROOT,
    VARIANTS,
    ZERO_MODELS,
    benchmark_config,
    command_line,
    matmul_peak,
    worker_result,
    write_markdown,
)

from elcrec.runtime import describe_machine


def step_flops(model, train, config, sampler, device, batches: int = 8) -> float:
    """FLOPs of one training step as the trainer runs it (forward, backward, Adam; the optimiser's elementwise
    work is not counted), the mean over random full batches (fast-zero's work follows the sequence lengths)."""
    from torch.utils.flop_counter import FlopCounterMode

    from elcrec.training import Step, TrainTensors, make_batch

    rows_of, step = TrainTensors.of(train), Step(model, config, device)
    order = torch.randperm(len(rows_of), generator=torch.Generator().manual_seed(0))
    model.train()
    total = 0
    for rows in order[: batches * config.batch_size].split(config.batch_size):
        batch = make_batch(rows_of, rows, device, sampler)
        with FlopCounterMode(display=False) as counter:
            step(batch)
        total += counter.get_total_flops()
    return total / batches


def worker(dataset: str, model_name: str, engine: str, epochs: int, device: str, threads: int) -> dict:
    from elcrec.data import eval_set, load_dataset, train_set
    from elcrec.evaluation import evaluate
    from elcrec.runs import load_run
    from elcrec.runtime import prepare_process, resolve_device
    from elcrec.training import NegativeSampler, train
    from elcrec.training.step import autocast_dtype

    dev = resolve_device(device)
    prepare_process(threads, dev)

    config = benchmark_config(
        dataset,
        model_name,
        **VARIANTS[engine],
        epochs=epochs,
        patience=0,
        device=device,
        output_dir=str(ROOT / "runs" / "speed" / dataset / f"{model_name}-{engine}"),
    )
    data = load_dataset(config)
    # this VM's speed drifts: measure the peak beside each run, in the run's matmul precision
    peak = matmul_peak(dev, autocast_dtype(config.amp, dev) or torch.float32)
    result = train(config, data=data, progress=False, overwrite=True)
    seconds = [h["seconds"] for h in result["history"]]

    # the trained model, for the evaluation timing and the FLOP count
    model = load_run(config.run_dir, dev).model
    trained = train_set(data, config.max_len)
    valid = eval_set(data, config.max_len, "valid")
    evaluate(model, valid)  # warm-up
    eval_seconds = []
    for _ in range(3):
        started = time.perf_counter()
        evaluate(model, valid)
        eval_seconds.append(time.perf_counter() - started)
    sampler = NegativeSampler(data, dev, seed=0) if model.needs_negatives else None
    flops = step_flops(model, trained, config, sampler, dev) * len(trained.inputs) / config.batch_size
    epoch = statistics.median(seconds)
    return {
        "model": model_name,
        "engine": engine,
        "epoch_s": epoch,
        "epochs": seconds,
        "seq_per_s": len(trained.inputs) / epoch,
        "eval_s": min(eval_seconds),
        "users": len(valid.inputs),
        "gflop_per_epoch": flops / 1e9,
        "gflops": flops / 1e9 / epoch,
        "peak_gflops": peak,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=FILES, default="beauty")
    parser.add_argument("--models", default="sasrec,iclrec,elcrec")
    parser.add_argument(
        "--engines", default="fast,fast-bf16,fast-zero,reference", help=f"variants: {', '.join(VARIANTS)}"
    )
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run; the median epoch time is reported")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = the idle cores)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "ENGINE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epochs < 1:
        raise SystemExit(f"--epochs {args.epochs}: give 1 or more")
    if args.worker:
        print(json.dumps(worker(args.dataset, *args.worker, args.epochs, args.device, args.threads)))
        return

    rows = []
    for model in args.models.split(","):
        for engine in args.engines.split(","):
            if engine not in VARIANTS:
                raise SystemExit(f"--engines {engine!r}: choose among {', '.join(VARIANTS)}")
            if engine == "fast-zero" and model not in ZERO_MODELS:
                continue  # padding_outputs is a setting of the contrastive models
            command = [
                sys.executable,
                __file__,
                "--dataset",
                args.dataset,
                "--epochs",
                str(args.epochs),
                "--device",
                args.device,
                "--threads",
                str(args.threads),
                "--worker",
                model,
                engine,
            ]
            print(f"{model} engine={engine} ...", flush=True)
            rows.append(worker_result(command))
            print(json.dumps(rows[-1]), flush=True)

    reference = {row["model"]: row["epoch_s"] for row in rows if row["engine"] == "reference"}
    lines = [
        f"# Training and evaluation speed on {FILES[args.dataset]} (preset {args.dataset})",
        "",
        f"Machine: {describe_machine(args.device)}. Command: `{command_line(parser, args)}`.",
        "The faithful recipe (benchmarks/time_to_quality.py times the fast one). "
        "Train s/epoch: median over the epochs run (ICLRec's E-step included). Eval s: full ranking of every "
        "item for every user of the validation split, best of 3. GFLOP: matmul work of the engine's own "
        "step, mean of 8 random batches (the reference engine encodes more rows; fast-zero, padding_outputs=zero, "
        "skips the positions before each sequence's first item and is a deviation from the reference). Matmul "
        f"peak: best {MATMUL_SIZE}² matmul in the run's matmul precision (bfloat16 for fast-bf16, amp=bf16, "
        "float32 otherwise), measured in each run's process just before training; '-' where the CPU emulates "
        "bf16 (no AVX512-BF16 or AMX). Floor: GFLOP/epoch at the "
        "matmul peak, the epoch if every matmul ran at peak and nothing else took time; bound: the speed-up over "
        "the reference that floor would give.",
        "",
        "| model | engine | train s/epoch | speed-up vs reference | seq/s | eval s (users) | GFLOP/epoch "
        "| GFLOP/s | matmul peak GFLOP/s | share of peak | floor s/epoch | bound vs reference | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        reference_s, peak = reference.get(row["model"]), row["peak_gflops"]
        versus = "-" if reference_s is None else f"{reference_s / row['epoch_s']:.2f}x"  # no reference variant run
        peak_columns = "| - | - | - | -"  # an emulated precision has no hardware peak
        if peak is not None:
            floor = row["gflop_per_epoch"] / peak
            bound = "-" if reference_s is None else f"{reference_s / floor:.1f}x"
            peak_columns = f"| {peak:.0f} | {row['gflops'] / peak:.0%} | {floor:.1f} | {bound}"
        lines.append(
            f"| {row['model']} | {row['engine']} | {row['epoch_s']:.1f} | {versus} "
            f"| {row['seq_per_s']:,.0f} "
            f"| {row['eval_s']:.2f} ({row['users']:,}) | {row['gflop_per_epoch']:,.0f} | {row['gflops']:.0f} "
            f"{peak_columns} | {row['peak_rss_mb']:,.0f} |"
        )
    out = args.out or ROOT / "benchmarks" / "results" / f"speed-{args.dataset}.md"
    write_markdown(out, lines)


if __name__ == "__main__":
    main()
