"""How the cost of an epoch grows with the number of users: ELCRec against ICLRec (whose k-means E-step
encodes every training sequence each epoch) and SASRec (the backbone alone).

    python benchmarks/scaling.py --users 10000,100000,1000000 --models sasrec,iclrec,elcrec

Data: built-in synthetic logs with planted intents (64 intents, 12,000 items as in Beauty, lengths 5 +
geometric, mean about 9 as in Beauty). Settings: each model's Beauty preset (ELCRec and ICLRec 1 layer, SASRec
its paper's 2; d 64, K 256, batch 256).
Each (model, size) runs in its own process:
  - the one-time set-up (ELCRec's k-means initialisation) is timed on its own;
  - per epoch: ICLRec's E-step is timed in full, then `--steps` training steps (the trainer's step:
    model.loss, backward, Adam) after 3 warm-up steps; epoch seconds = E-step + steps per epoch x
    median step seconds. Where an epoch has no more steps than were timed, the full epoch is run and timed;
  - peak memory: the process's peak resident set during set-up and training (Linux VmHWM, reset after the
    data is built, so the data generator's own peak is not counted).
Writes benchmarks/results/scaling.md and scaling.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from common import ROOT, peak_rss_mb, reset_peak_rss, worker_result, write_markdown

from elcrec.runtime import describe_machine

N_ITEMS, N_INTENTS, WARMUP = 12_000, 64, 3


def worker(model_name: str, n_users: int, steps: int, device: str, threads: int) -> dict:
    import gc

    from elcrec import Config
    from elcrec.data import make_synthetic, train_set
    from elcrec.models import create_model
    from elcrec.runtime import flush_denormals, keep_freed_memory, resolve_device, seed_everything, set_threads
    from elcrec.training import NegativeSampler, Step, TrainTensors, make_batch

    dev = resolve_device(device)
    set_threads(threads)
    flush_denormals()
    seed_everything(1)
    started = time.perf_counter()
    data = make_synthetic(
        n_users=n_users,
        n_items=N_ITEMS,
        n_intents=N_INTENTS,
        seed=1,
        min_length=5,
        mean_extra_length=4.0,
        max_length=200,
    )
    config = Config(preset="beauty", model=model_name, device=device)
    train = train_set(data, config.max_len)
    data_seconds = time.perf_counter() - started
    gc.collect()
    if dev.type == "cpu":
        keep_freed_memory()  # here, not at the start: the data generator's freed memory is not kept
    reset_peak_rss()

    model = create_model(config, data).to(dev)
    started = time.perf_counter()
    model.prepare(train)
    setup_seconds = time.perf_counter() - started
    sampler = NegativeSampler(data, dev, seed=1) if model.needs_negatives else None
    step = Step(model, config, dev)
    rows_of = TrainTensors.of(train)
    batches = torch.randperm(len(rows_of), generator=torch.Generator().manual_seed(1)).split(config.batch_size)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    started = time.perf_counter()
    model.start_epoch(train)  # ICLRec: encode every training sequence, k-means
    sync()
    estep_seconds = time.perf_counter() - started
    model.train()
    full_epoch = len(batches) <= steps + WARMUP
    timed = []
    for i, rows in enumerate(batches if full_epoch else batches[: steps + WARMUP]):
        started = time.perf_counter()
        step(make_batch(rows_of, rows, dev, sampler))
        sync()
        if full_epoch or i >= WARMUP:
            timed.append(time.perf_counter() - started)
    train_seconds = sum(timed) if full_epoch else statistics.median(timed) * len(batches)
    return {
        "model": model_name,
        "users": n_users,
        "sequences": len(rows_of),
        "interactions": data.n_interactions,
        "steps_per_epoch": len(batches),
        "timed_steps": len(timed),
        "full_epoch": full_epoch,
        "data_s": data_seconds,
        "setup_s": setup_seconds,
        "estep_s": estep_seconds,
        "train_s": train_seconds,
        "epoch_s": estep_seconds + train_seconds,
        "peak_rss_mb": peak_rss_mb(),
        "threads": torch.get_num_threads(),
        "layers": config.num_layers,
    }


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for model in dict.fromkeys(row["model"] for row in rows):
        mine = [row for row in rows if row["model"] == model]
        users = [row["users"] for row in mine]
        left.plot(users, [row["epoch_s"] for row in mine], marker="o", label=model)
        right.plot(users, [row["peak_rss_mb"] / 1024 for row in mine], marker="o", label=model)
    for axis, label in ((left, "seconds per epoch"), (right, "peak memory (GiB)")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("users")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    left.set_title("epoch time (ICLRec: E-step included)")
    right.set_title("peak resident memory")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", default="10000,100000,1000000")
    parser.add_argument("--models", default="sasrec,iclrec,elcrec")
    parser.add_argument("--steps", type=int, default=40, help="training steps timed per run (after 3 warm-up steps)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = the idle cores)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scaling.md")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "USERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.steps, args.device, args.threads)))
        return

    if not all(users.isdigit() and int(users) > 0 for users in args.users.split(",")):
        raise SystemExit(f"--users {args.users!r}: give user counts like 2000,10000")
    rows = []
    for users in args.users.split(","):
        for model in args.models.split(","):
            print(f"{model} {int(users):,} users ...", flush=True)
            options = ["--steps", str(args.steps), "--device", args.device, "--threads", str(args.threads)]
            rows.append(worker_result([sys.executable, __file__, *options, "--worker", model, users]))
            print(json.dumps(rows[-1]), flush=True)

    sasrec = {row["users"]: row["epoch_s"] for row in rows if row["model"] == "sasrec"}
    layers_of = {row["model"]: row["layers"] for row in rows}
    counts = sorted({row["threads"] for row in rows})
    threads = f"{', '.join(map(str, counts))} thread{'s' if max(counts) > 1 else ''}"
    lines = [
        "# Epoch cost against the number of users",
        "",
        f"Machine: {describe_machine(args.device).split(', torch')[0]}, torch {torch.__version__} with {threads}. "
        "Command: `python benchmarks/scaling.py "
        f"--users {args.users} --models {args.models} --steps {args.steps} --device {args.device} --threads "
        f"{args.threads}`.",
        f"Synthetic logs ({N_INTENTS} planted intents, {N_ITEMS:,} items, Beauty-like lengths), each model's Beauty "
        "preset and the faithful recipe ("
        + ", ".join(f"{model} {layers} layer{'s' if layers > 1 else ''}" for model, layers in layers_of.items())
        + "; d 64, K 256, batch 256). Epoch s = E-step (ICLRec) + steps per epoch x median step time of "
        f"{args.steps} timed steps, or the whole epoch timed where it has no more steps than that (marked "
        "'full'). Set-up: ELCRec's one-time k-means initialisation. Peak memory: the process's peak resident "
        "set during set-up and training, data generation excluded.",
        "",
        "| users | interactions | model | epoch s | of which E-step s | x SASRec epoch | set-up s | peak RSS MB "
        "| epoch measured as |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = row["epoch_s"] / sasrec[row["users"]] if row["users"] in sasrec else float("nan")
        how = "full" if row["full_epoch"] else f"{row['timed_steps']} of {row['steps_per_epoch']:,} steps"
        lines.append(
            f"| {row['users']:,} | {row['interactions']:,} | {row['model']} | {row['epoch_s']:,.1f} "
            f"| {row['estep_s']:,.1f} | {ratio:.2f} | {row['setup_s']:,.1f} | {row['peak_rss_mb']:,.0f} "
            f"| {how} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot(rows, args.out.with_suffix(".png"))
    lines += ["", f"![epoch time and memory against users]({args.out.with_suffix('.png').name})"]
    write_markdown(args.out, lines)


if __name__ == "__main__":
    main()
