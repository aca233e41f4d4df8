"""What the benchmark scripts share: where the benchmark files are, a run's settings on one of them, the engine
variants they compare, timed training steps, and the process's resident memory
(Linux /proc)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("ELCREC_DATA_DIR", ROOT.parent / "shared" / "data"))
FILES = {"beauty": "Beauty", "sports": "Sports_and_Outdoors", "toys": "Toys_and_Games", "yelp": "Yelp"}
# engine variants by name: the settings each adds to a run (fast-zero: the contrastive models only)
VARIANTS = {
    "fast": {"engine": "fast"},
    "reference": {"engine": "reference"},
    "fast-bf16": {"engine": "fast", "amp": "bf16"},
    "fast-zero": {"engine": "fast", "padding_outputs": "zero"},
}
ZERO_MODELS = ("cl4srec", "iclrec", "elcrec")
MATMUL_SIZE = 4096  # the matmul that measures the peak


def data_file(dataset: str) -> Path:
    """Where a benchmark file is looked for (dataset_path: that it is there)."""
    return DATA_DIR / f"{FILES[dataset]}.txt"


def dataset_path(dataset: str) -> Path:
    path = data_file(dataset)
    if not path.is_file():
        raise SystemExit(f"{path} not found: set ELCREC_DATA_DIR to the folder holding the benchmark files")
    return path


def benchmark_config(dataset: str, model: str, need_data: bool = True, **settings):
    """The settings of a run of `model` on a benchmark file, with the dataset's preset for it (settings win);
    without `need_data` the file need not be there (settings compared, not trained)."""
    from elcrec import Config

    path = dataset_path(dataset) if need_data else data_file(dataset)
    return Config(data=str(path), preset=dataset, model=model, **settings)


def training_steps(config, steps: int):
    """(model, step, batches) on CPU: `config`'s model prepared and seeded as training prepares it, the trainer's
    step, and the first `steps` training batches of a seeded shuffle, built ahead so that timing sees steps only."""
    from elcrec.data import load_dataset, train_set
    from elcrec.models import create_model
    from elcrec.training import NegativeSampler, Step, TrainTensors, make_batch

    data = load_dataset(config)
    split = train_set(data, config.max_len)
    torch.manual_seed(config.seed)
    model = create_model(config, data)
    model.prepare(split)
    model.train()
    rows, device = TrainTensors.of(split), torch.device("cpu")
    sampler = NegativeSampler(data, device, seed=config.seed) if model.needs_negatives else None
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(config.seed)).split(config.batch_size)
    return model, Step(model, config, device), [make_batch(rows, rows_, device, sampler) for rows_ in order[:steps]]


def time_steps(step, batches) -> list[float]:
    """Seconds of each step, with denormals flushed as the trainer runs."""
    from elcrec.runtime import denormals_flushed

    seconds = []
    with denormals_flushed():
        for batch in batches:
            started = time.perf_counter()
            step(batch)
            seconds.append(time.perf_counter() - started)
    return seconds


def matmul_peak(device: torch.device, dtype: torch.dtype, repeats: int = 10) -> float | None:
    """Best GFLOP/s of a MATMUL_SIZE² matmul in `dtype`; None where `device` emulates `dtype` (half precision
    without its instructions), whose speed is no hardware peak (and such a matmul takes minutes)."""
    from elcrec.runtime import has_native

    if not has_native(dtype, device):
        return None
    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        a @ a
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return 2 * MATMUL_SIZE**3 / best / 1e9


def command_line(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The command that writes these results again: the script with every option's value, defaults and --out
    included (a later default or a forgotten --out would give other results, or another file)."""
    parts = [f"python benchmarks/{Path(sys.argv[0]).name}"]
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if not action.option_strings or action.dest in ("help", "worker") or value in (None, False):
            continue
        parts += [action.option_strings[-1]] + ([] if value is True else [shlex.quote(str(value))])
    return " ".join(parts)


def worker_result(command: list[str], **run) -> dict:
    """The JSON line a worker process prints last; a worker that fails stops the benchmark with its own error
    (its stderr's last lines), not a CalledProcessError."""
    done = subprocess.run(command, capture_output=True, text=True, **run)
    if done.returncode:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise SystemExit(f"{Path(command[1]).name} {' '.join(command[2:])} failed (exit {done.returncode}):\n{tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_variants(script: str, variants, options: list[str]) -> list[dict]:
    """`script --worker VARIANT` with `options`, one process per variant in turn: the JSON line each prints last.
    This process then takes the workers' torch thread count, which the machine line names."""
    rows = []
    for variant in variants:
        print(f"{variant} ...", flush=True)
        rows.append(worker_result([sys.executable, script, *options, "--worker", variant]))
        print(json.dumps(rows[-1]), flush=True)
    torch.set_num_threads(rows[0]["threads"])
    return rows


def write_portable_config(source: Path, target: Path) -> None:
    """A run's config.json with its paths (data, output folder) relative to the repository root, as every clone
    beside ../shared has them: from the root, `elcrec train --config <it> --output-dir DIR` trains the run again."""
    from elcrec.runs import write_json

    settings = json.loads(source.read_text())
    for key in ("data", "output_dir"):
        if Path(settings[key]).is_absolute():
            settings[key] = os.path.relpath(settings[key], ROOT)
    write_json(target, settings)


def recorded_with(folder: Path, config, complete: str) -> bool:
    """Whether the committed record in `folder` (its config.json; complete once the file `complete` is there) was
    trained with exactly `config`'s settings, the data file's folder and the run folder aside (compared as a run
    folder's are: experiments.saved_with)."""
    from elcrec.training.experiments import saved_with

    done = (folder / complete).is_file()
    return done and saved_with(folder / "config.json", config, aside=("output_dir",), by_name=("data",))


def epochs_by_machine(metrics: dict, amp: str) -> dict[str, int]:
    """How many of a run's epochs each machine trained, from its metrics.json `sessions` (epochs from before the
    run recorded them: "unrecorded"); `amp`: the run's setting (trained_on)."""
    counts: dict[str, int] = {}
    sessions = sorted(metrics.get("sessions", []), key=lambda session: session["first_epoch"])
    for epoch in metrics["history"]:
        where = [session for session in sessions if session["first_epoch"] <= epoch["epoch"]]
        name = trained_on(where[-1], amp) if where else "unrecorded (epochs from before the run recorded its machines)"
        counts[name] = counts.get(name, 0) + 1
    return counts


def trained_on(session: dict, amp: str) -> str:
    """Where a session of a run trained, as the tables name it: its machine, with its autocast precision (bf16
    or fp16) and processes where there were several. `amp`, the run's setting, names the precision of sessions
    from before they recorded it, when the setting was the precision (amp=auto came with the record)."""
    amp, processes = session.get("amp", amp), session["processes"]
    return (
        session["machine"]
        + (f", amp {amp}" if amp != "none" else "")
        + (f", {processes} processes" if processes > 1 else "")
    )


def machines_of(run: dict) -> list[str]:
    """The machines a committed record's run.json names (records from before `machines` name one)."""
    return list(run["machines"]) if "machines" in run else [run["machine"]]


def write_markdown(path: Path, lines: list[str]) -> None:
    """Write a result table under benchmarks/results and echo it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return _status_mb("VmHWM")


def rss_mb() -> float:
    return _status_mb("VmRSS")


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM starts again from the current RSS
