"""torch.compile's CPU backend (inductor) against eager on the faithful ELCRec step: Beauty, the Beauty preset,
the fast engine, float32 or bf16 autocast. Each variant runs in its own process and times training steps
through the trainer's step on the same batches, after warm-up steps (whose time, compilation included, is
reported apart):

    eager    the library as it trains
    blocks   each transformer block's forward compiled (static shapes: every batch is [B, max_len])
    loss     the model's whole loss compiled (dynamic shapes: the count of target positions varies)

    python benchmarks/compile_speed.py [--amp bf16] [--steps 20] [--threads 2]

Writes benchmarks/results/compile-beauty-elcrec[-bf16].md.
"""

from __future__ import annotations

import argparse
import json
import statistics

from common import ROOT, benchmark_config, run_variants, time_steps, training_steps, write_markdown

from elcrec.runtime import describe_machine

WARMUP = 5
VARIANTS = ("eager", "blocks", "loss")


def worker(variant: str, amp: str, steps: int, threads: int) -> dict:
    import torch

    from elcrec.runtime import prepare_process

    prepare_process(threads)
    config = benchmark_config("beauty", "elcrec", device="cpu", engine="fast", amp=amp, seed=1)
    model, step, batches = training_steps(config, WARMUP + steps)
    if variant == "blocks":
        for block in model.encoder.blocks:
            block.forward = torch.compile(block.forward, dynamic=False)
    elif variant == "loss":
        step.loss_terms = torch.compile(model.loss_terms, dynamic=True)
    seconds = time_steps(step, batches)
    return {
        "variant": variant,
        "threads": torch.get_num_threads(),
        "warmup_s": sum(seconds[:WARMUP]),
        "step_ms": 1000 * statistics.median(seconds[WARMUP:]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--amp", choices=("none", "bf16"), default="none")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant (the median is reported)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = the idle cores)")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.amp, args.steps, args.threads)))
        return

    options = ["--amp", args.amp, "--steps", str(args.steps), "--threads", str(args.threads)]
    rows = run_variants(__file__, VARIANTS, options)
    eager = rows[0]["step_ms"]
    suffix = "" if args.amp == "none" else f"-{args.amp}"
    lines = [
        f"# torch.compile on the faithful ELCRec step (Beauty, amp={args.amp})",
        "",
        f"Machine: {describe_machine()}. Command: `python "
        f"benchmarks/compile_speed.py --amp {args.amp} --steps {args.steps} --threads {args.threads}`. "
        f"The faithful recipe's settings with the Beauty preset and the fast engine; the median of {args.steps} "
        f"steps after {WARMUP} warm-up steps, each variant in its own process on the same batches.",
        "",
        "| variant | ms/step | vs eager | warm-up s (compilation included) |",
        "|---|---|---|---|",
        *(
            f"| {row['variant']} | {row['step_ms']:.0f} | {eager / row['step_ms']:.2f}x | {row['warmup_s']:.1f} |"
            for row in rows
        ),
    ]
    write_markdown(ROOT / "benchmarks" / "results" / f"compile-beauty-elcrec{suffix}.md", lines)


if __name__ == "__main__":
    main()
