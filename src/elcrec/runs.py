"""Run folders and model artefacts: what a run leaves behind, and reading it back.

A run folder holds
  model.pt           plain state dict (torch.load(path, weights_only=True))
  config.json        every setting of the run (Config.from_saved rebuilds it)
  items.json         original id of each internal item id (internal id i is entry i - 1)
  data.json          the data's fingerprint: name, users, items, interactions, sha256 of the sequences
  metrics.json       the result record (`result_record`), the same for trained and imported runs
  training_state.pt  what `train(resume=True)` needs (training writes it, see elcrec.training)
  train.log          what training logged, with times
  .training.lock     held (flock) by the one process training in the folder; a second one is refused
Every file is written atomically (temp file + rename, with the umask's mode), so an interrupted write never
leaves a half file behind; JSON is strict (a non-finite number is written as null). An export is one file
(weights, config, item ids, fingerprint) that loads like a run folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .config import Config, ConfigError
from .data import SequenceData, load_dataset
from .models import SequentialRecommender, build_model
from .runtime import resolve_device, source_digest

MODEL_FILE, CONFIG_FILE, ITEMS_FILE, DATA_FILE = "model.pt", "config.json", "items.json", "data.json"
METRICS_FILE, STATE_FILE, LOG_FILE = "metrics.json", "training_state.pt", "train.log"
RUN_FILES = (MODEL_FILE, CONFIG_FILE, ITEMS_FILE, DATA_FILE, METRICS_FILE, STATE_FILE, LOG_FILE)  # what training writes
# what `elcrec report` and `elcrec intents` write into a run folder (globs): an overwritten run's go with it
REPORT_FILE, REPORT_FIGURE = "report.html", "report-{}.png"  # the report's page and each of its figures
INTENT_FILES = ("intents.csv", "intent-profiles.csv", "intents.json", "centres.npy")  # what `elcrec intents` writes
DERIVED_FILES = (REPORT_FILE, REPORT_FIGURE.format("*"), *INTENT_FILES)
TEMP_SUFFIX = ".tmp"  # atomic_write's files before they are renamed into place
LOCK_FILE = ".training.lock"
# an overwritten run's files while they move (gathered, or put back: beside them only the old run's files), until
# the run replacing them has started, while deleted
REPLACING_DIR, REPLACED_DIR, DISCARDED_DIR = ".replacing", ".replaced", ".replaced.discarded"
ARTEFACT_FORMAT = "elcrec-model/1"


class RunError(ValueError):
    """A run folder or artefact cannot be used as asked; the message names the files."""


class RunBusy(RunError):
    """Another process is training in the run folder."""


@contextlib.contextmanager
def training_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold `run_dir` for one training process: while it lives, another (a second `elcrec train`, a campaign
    worker) is refused instead of writing over the same files. The lock is an flock, which the OS drops when
    its holder exits, so a killed run leaves no stale lock. Without fcntl (Windows) the folder is unguarded."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            raise RunBusy(
                f"{run_dir} is being trained by another process{f' (pid {holder})' if holder else ''}: wait for it "
                "to finish, or choose another output_dir"
            ) from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)


def training_holder(run_dir: str | Path) -> int | None:
    """The pid of the process training in `run_dir` now, as its lock file names it, or None. It only reads:
    taking the lock to test it could make a process starting there at that moment give up."""
    try:
        pid = int((Path(run_dir) / LOCK_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # killed while it held the folder: the OS dropped its lock
    except PermissionError:
        pass  # alive, another user's
    return pid


def check_new_file(out: str | Path, overwrite: bool, example: str) -> None:
    """`out` names one file to write: not a folder, nor (unless `overwrite`) a file that exists. `example` is a
    file name the message suggests instead of a folder."""
    out = Path(out)
    if out.is_dir():
        raise RunError(f"{out} is a folder: give the {Path(example).suffix} file to write, e.g. {out / example}")
    if out.exists() and not overwrite:
        raise RunError(f"{out} exists: give another file, or replace it (--overwrite; overwrite=True in Python)")


def atomic_write(path: str | Path, data: bytes) -> None:
    """`data` into `path`, whole or not at all: written beside it as .<name>.<random>.tmp, then renamed over it. A
    failure names `path` (a full disk's error names no file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files only their owner can read
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename is None:
            raise OSError(error.errno, error.strerror, str(path)) from None
        raise


def remove_stale_writes(folder: Path) -> None:
    """Delete the temporary files that writes of a run's files left in `folder` when their process was killed:
    atomic_write's .<name>.<8 random characters>.tmp for the RUN_FILES only (other files' are a user's, or another
    command's writing now). Call it under the folder's training lock."""
    own = re.compile(
        "|".join(rf"\.{re.escape(name)}\.[a-z0-9_]{{8}}{re.escape(TEMP_SUFFIX)}" for name in RUN_FILES)
    )  # tempfile.mkstemp's names
    for stale in folder.glob(f".*{TEMP_SUFFIX}"):
        if own.fullmatch(stale.name):
            stale.unlink(missing_ok=True)


def remove_run(folder: Path) -> None:
    """Delete a run's files and what report and intents derived from it, before another run replaces it
    (--overwrite); files of other names stay."""
    _remove(folder, (*RUN_FILES, *DERIVED_FILES))


@contextlib.contextmanager
def replacing_run(folder: Path) -> Iterator[None]:
    """Replace the run in `folder` (--overwrite) without losing it to a run that does not start (bad data, a
    setting the data cannot take, Ctrl-C): while the block runs, the old run's files and what report and intents
    derived from it wait in folder/.replaced (gathered in .replacing, then renamed whole); the new run deletes
    them once it has saved its first checkpoint (discard_replaced), and a block that ends before puts them back.
    A process killed meanwhile leaves them there for the next training in the folder to put back
    (restore_replaced). Call it under the folder's training lock."""
    gathering = folder / REPLACING_DIR
    try:
        gathering.mkdir(parents=True)
        for pattern in (*RUN_FILES, *DERIVED_FILES):
            for path in folder.glob(pattern):
                if not path.is_dir():
                    path.rename(gathering / path.name)
        gathering.rename(folder / REPLACED_DIR)
        yield
    finally:
        restore_replaced(folder)  # nothing to put back once the new run has started


def restore_replaced(folder: Path) -> bool:
    """Put back the run an --overwrite set aside in `folder` (replacing_run) whose new run did not start, and
    delete what that one wrote; True when there was one. Call it under the folder's training lock."""
    replaced, moving = folder / REPLACED_DIR, folder / REPLACING_DIR
    found = replaced.is_dir() or moving.is_dir()
    if replaced.is_dir():
        remove_run(folder)
        replaced.rename(moving)  # the new run's files are gone: a restore stopped from here on moves the rest back
    if moving.is_dir():
        for path in moving.iterdir():
            path.replace(folder / path.name)
        moving.rmdir()
    shutil.rmtree(folder / DISCARDED_DIR, ignore_errors=True)  # a replaced run whose deletion was stopped
    return found


def set_aside(folder: Path) -> str:
    """What an error about `folder` adds when it holds a run that an --overwrite, stopped before its new run
    started, set aside: how to get it back."""
    if not any((folder / name).is_dir() for name in (REPLACING_DIR, REPLACED_DIR)):
        return ""
    return (
        f"; {REPLACED_DIR} in it holds a run set aside by an --overwrite whose new run never started: any "
        "`elcrec train` into the folder puts it back (and, without --overwrite, stops there)"
    )


def discard_replaced(folder: Path) -> None:
    """Delete the run that the run starting in `folder` replaces (replacing_run). Renamed first, which is atomic:
    the replacement is decided at once, and a deletion stopped half-way leaves no half run to put back."""
    replaced = folder / REPLACED_DIR
    if replaced.is_dir():
        replaced.rename(folder / DISCARDED_DIR)
        shutil.rmtree(folder / DISCARDED_DIR)


def remove_results(folder: Path) -> None:
    """Delete a run's result (metrics.json) and what report and intents derived from it, before its weights
    change (it trains on, or starts again)."""
    _remove(folder, (METRICS_FILE, *DERIVED_FILES))


def _remove(folder: Path, patterns: tuple[str, ...]) -> None:
    for pattern in patterns:
        for path in folder.glob(pattern):
            if not path.is_dir():
                path.unlink(missing_ok=True)


def strict_json(value: Any) -> Any:
    """`value` with every non-finite float replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


def write_json(path: str | Path, value: Any) -> None:
    atomic_write(path, (json.dumps(strict_json(value), indent=2, allow_nan=False) + "\n").encode())


def save_tensors(path: str | Path, value: Any) -> None:
    """torch.save, atomically: tensors, numbers, strings and plain containers (weights_only loadable)."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    atomic_write(path, buffer.getvalue())


def read_pt(path: Path, what: str, mmap: bool = False) -> Any:
    """torch.load(weights_only=True) on CPU; a truncated, foreign or pickled-object file is a RunError naming it.
    `mmap`: the tensors are read only where used (for a small part of a large file)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError, ... depending on the damage
        text = str(error)
        try:
            with open(path, "rb") as file:
                start = file.read(2)
        except OSError:  # not there, or not a file: torch's error says which
            start = b"PK"
        if start[:2] != b"PK" and start[:1] != b"\x80":  # torch.save writes a zip file (a pickle before torch 1.6)
            detail = "not a file torch.save wrote" + ("" if start else ": it is empty")
        elif "WeightsUnpickler error:" in text:  # torch's advice to load it unsafely is not ours to give
            reason = " ".join(text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation")[0].split())
            detail = f"not plain tensors: {reason}; files that could run code are never loaded"
        else:
            detail = f"{error.__class__.__name__}: {' '.join(text.split())[:200]}"
        raise RunError(f"{path} cannot be read as {what} ({detail})") from None


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise RunError(f"{path} cannot be read as {what}: not UTF-8 text (byte {error.start})") from None
    except ValueError as error:
        raise RunError(f"{path} cannot be read as {what}: not valid JSON ({error})") from None


def fingerprint(data: SequenceData) -> dict[str, Any]:
    """What identifies a dataset as a model saw it (after preprocessing): its name, counts, and a sha256 of
    every user's sequence with the original ids of users and items."""
    digest = hashlib.sha256()
    for array in (data.offsets, data.items):
        digest.update(np.ascontiguousarray(array, dtype="<i8").tobytes())
    for ids in (data.user_ids, data.item_ids):
        digest.update("\n".join(map(str, np.asarray(ids).tolist())).encode())
    return {
        "name": data.name,
        "users": data.n_users,
        "items": data.n_items,
        "interactions": data.n_interactions,
        "sha256": digest.hexdigest(),
    }


def saved_fingerprint(run_dir: Path) -> dict[str, Any] | None:
    """The fingerprint in a run folder's data.json (None without one: runs saved before fingerprints)."""
    path = run_dir / DATA_FILE
    return _fingerprint(read_json(path, "a data fingerprint"), path) if path.is_file() else None


FINGERPRINT_FIELDS = {"name": str, "users": int, "items": int, "interactions": int, "sha256": str}


def _fingerprint(found: Any, where: Path) -> dict[str, Any] | None:
    fields = FINGERPRINT_FIELDS.items()
    if found is not None and not (isinstance(found, dict) and all(isinstance(found.get(k), t) for k, t in fields)):
        needs = ", ".join(f"{key} ({kind.__name__})" for key, kind in fields)
        raise RunError(f"{where}: not a data fingerprint (it needs {needs})")
    return found


def describe_code() -> str:
    """The code computing now, as a run's sessions record it: the elcrec version and its source digest."""
    return f"elcrec {__version__}, source sha256 {source_digest()}"


def describe(fingerprint: dict[str, Any]) -> str:
    return (
        f"{fingerprint['name']} ({fingerprint['users']:,} users, {fingerprint['items']:,} items, "
        f"{fingerprint['interactions']:,} interactions, sha256 {fingerprint['sha256'][:12]})"
    )


@dataclass
class Run:
    """A trained (or imported) model with its settings, item mapping and the fingerprint of its data."""

    model: SequentialRecommender
    config: Config
    item_ids: np.ndarray  # original id of internal item id i is item_ids[i - 1]
    path: Path | None
    fingerprint: dict[str, Any] | None = None  # None for runs saved before fingerprints, or imported without data
    untrained: bool = False  # its weights are the starting ones: no epoch had finished

    def load_data(self, data: str | None = None) -> SequenceData:
        """The dataset `data` names (a path, or synthetic), read with the run's preprocessing settings, or the
        run's own; check it with `check_data`."""
        config = self.config.replace(data=data) if data else self.config
        if not data and config.data != "synthetic" and not Path(config.data).exists():
            relative = "" if Path(config.data).is_absolute() else " (a path relative to where the run was trained)"
            raise RunError(
                f"{self.path} was trained on {config.data}, which is not here{relative}: give the data's path "
                "(--data; data= in Python)"
            )
        return load_dataset(config)

    def check_data(self, data: SequenceData) -> None:
        """A RunError unless `data` is the dataset this run was trained on (by fingerprint, else by items)."""
        if self.fingerprint is not None:
            found = fingerprint(data)
            if found["sha256"] != self.fingerprint["sha256"]:
                raise RunError(
                    f"{self.path} was trained on {describe(self.fingerprint)}, but the data given is "
                    f"{describe(found)}: use the run's own data and preprocessing"
                )
            return
        if data.n_items != len(self.item_ids) or not (data.item_ids.astype(str) == self.item_ids.astype(str)).all():
            raise RunError(
                f"the data's items differ from the ones {self.path} was trained on ({data.n_items:,} vs "
                f"{len(self.item_ids):,} items): give the data it was trained on (--data; data= in Python), with its "
                "preprocessing"
            )

    def result(self) -> dict[str, Any] | None:
        """The run's result record (metrics.json), or None when it has none (not finished). A record written
        before the schema was one (an imported run's held only test and mask_history) gets the missing keys."""
        path = None if self.path is None or self.path.is_file() else self.path / METRICS_FILE
        if path is None or not path.is_file():
            return None
        found = read_json(path, "a result record")
        if not isinstance(found, dict) or "test" not in found:
            raise RunError(f"{path}: not a result record (no test metrics)")
        source = "trained" if found.get("history") else "imported"
        record = {**result_record(self.config, found["test"], source=source), **found}
        if damaged := [name for name, valid in RECORD_FIELDS.items() if not valid(record[name])]:
            raise RunError(f"{path}: a damaged result record ({', '.join(damaged)} not as training writes them)")
        return record


def _number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))  # null: non-finite


def _metrics(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(name, str) and _number(v) for name, v in value.items())


def _epoch(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("epoch"), int)
        and "loss" in value
        and _number(value["loss"])
        and all(_metrics(value.get(part, {})) for part in ("terms", "valid"))
    )


# what readers of a result record (metrics.json) take from it: a damaged file is a RunError naming it
RECORD_FIELDS = {
    "test": _metrics,
    "valid": _metrics,
    "history": lambda value: isinstance(value, list) and all(_epoch(epoch) for epoch in value),
    "best_epoch": lambda value: value is None or isinstance(value, int),
    "metric": lambda value: isinstance(value, str),
    "mask_history": lambda value: isinstance(value, str),
    "sampled_negatives": lambda value: isinstance(value, int),
}


def result_record(
    config: Config,
    test: dict[str, float],
    *,
    source: str = "trained",
    best_epoch: int | None = None,
    valid: dict[str, float] | None = None,
    history: list[dict[str, Any]] | None = None,
    sessions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """metrics.json: what was measured, under which protocol. `history` holds every epoch's loss, named loss
    terms, seconds and validation metrics, `sessions` where the training ran: the first epoch of each
    process that trained or resumed it, with its machine, torch threads, process count and code (the elcrec
    version and a digest of its source: runtime.source_digest) (both empty for an imported run, which has no
    training)."""
    return {
        "model": config.model,
        "data": config.data_name,
        "source": source,
        "best_epoch": best_epoch,
        "metric": config.metric,
        "mask_history": config.mask_history,
        "sampled_negatives": config.sampled_negatives,
        "valid": valid or {},
        "test": test,
        "history": history or [],
        "sessions": sessions or [],
    }


def save_run(
    run_dir: str | Path,
    model: SequentialRecommender,
    config: Config,
    item_ids: np.ndarray,
    data_fingerprint: dict[str, Any] | None = None,
) -> None:
    save_settings(run_dir, config, item_ids, data_fingerprint)
    save_tensors(Path(run_dir) / MODEL_FILE, cpu_weights(model))


def save_settings(
    run_dir: str | Path, config: Config, item_ids: np.ndarray, data_fingerprint: dict[str, Any] | None = None
) -> None:
    """A run folder's settings, item ids and data fingerprint: everything of it but the weights."""
    run_dir = Path(run_dir)
    write_json(run_dir / CONFIG_FILE, config.to_dict())
    write_json(run_dir / ITEMS_FILE, np.asarray(item_ids).tolist())
    if data_fingerprint is not None:
        write_json(run_dir / DATA_FILE, data_fingerprint)


def cpu_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def export_run(run_dir: str | Path, out: str | Path, overwrite: bool = False) -> Run:
    """One self-contained file (weights, config, item ids, data fingerprint) that `load_run` and
    `elcrec serve` accept; it loads with torch.load(weights_only=True). It never overwrites a folder or a
    file of the run folder itself, nor another file unless `overwrite`; it never takes a run file's name
    (load_run reads a model.pt as a run folder's weights). Returns the exported run."""
    run = load_run(run_dir)
    target = Path(out)
    if target.is_file() and run.path.is_dir() and target.resolve().parent == run.path.resolve():
        raise RunError(f"{out} is a file of the run being exported ({run.path}); give a new file")
    if target.name in RUN_FILES:
        raise RunError(f"{out}: {target.name} is the name of a run folder's file; give another, e.g. model.elcrec.pt")
    check_new_file(target, overwrite, "model.elcrec.pt")
    artefact = {
        "format": ARTEFACT_FORMAT,
        "config": json.dumps(run.config.to_dict()),
        "item_ids": np.asarray(run.item_ids).tolist(),
        "state_dict": cpu_weights(run.model),
        "data": json.dumps(run.fingerprint),
        "untrained": run.untrained,
    }
    save_tensors(out, artefact)
    return run


def load_run(path: str | Path, device: str | torch.device = "cpu") -> Run:
    """A run folder (or its model.pt), or an exported artefact: config, item mapping, fingerprint and
    weights, the model in eval mode. Anything missing, damaged or inconsistent is a RunError naming files."""
    path, device = Path(path), resolve_device(device) if isinstance(device, str) else device
    if path.is_file() and path.name != MODEL_FILE:
        return _load_artefact(path, device)
    run_dir = path.parent if path.is_file() else path
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder or artefact")
    missing = [name for name in (MODEL_FILE, CONFIG_FILE, ITEMS_FILE) if not (run_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{run_dir} is not a run folder: missing {', '.join(missing)}{set_aside(run_dir)}")
    config = read_settings(run_dir)
    item_ids = _item_ids(read_json(run_dir / ITEMS_FILE, "item ids"), run_dir / ITEMS_FILE)
    data = saved_fingerprint(run_dir)
    weights = read_pt(run_dir / MODEL_FILE, "model weights")
    model = _model(
        config, item_ids, weights, f"{run_dir / MODEL_FILE}", f"{run_dir / CONFIG_FILE} and {run_dir / ITEMS_FILE}"
    )
    untrained = not (run_dir / METRICS_FILE).is_file() and finished_epochs(run_dir) == 0
    return Run(model.to(device).eval(), config, item_ids, run_dir, data, untrained)


def finished_epochs(run_dir: Path) -> int | None:
    """How many epochs the run in `run_dir` has finished, by its training state (None without one: an imported
    run, or a model that trains nothing)."""
    path = Path(run_dir) / STATE_FILE
    return read_state(path, mmap=True)["epoch"] + 1 if path.is_file() else None


STATE_FIELDS = ("epoch", "model", "rng", "best_score", "best_epoch", "best_valid", "history")  # in every state


def read_state(path: Path, mmap: bool = False) -> dict[str, Any]:
    """A run's training state (training_state.pt); a damaged one is a RunError naming the file."""
    state = read_pt(path, "a training state", mmap=mmap)
    if not (isinstance(state, dict) and all(key in state for key in STATE_FIELDS) and isinstance(state["epoch"], int)):
        raise RunError(f"{path} is not a training state (it needs {', '.join(STATE_FIELDS)})")
    return state


def read_settings(run_dir: Path) -> Config:
    """A run folder's settings (config.json); a damaged file is a RunError naming it."""
    return _config(read_json(run_dir / CONFIG_FILE, "run settings"), run_dir / CONFIG_FILE)


def _load_artefact(path: Path, device: str | torch.device) -> Run:
    artefact = read_pt(path, "a run folder or an elcrec model artefact")
    if not isinstance(artefact, dict) or artefact.get("format") != ARTEFACT_FORMAT:
        raise RunError(f"{path} is not an elcrec model artefact (export one with `elcrec export RUN --out FILE`)")
    try:
        config = _config(json.loads(artefact["config"]), path)
        item_ids = _item_ids(artefact["item_ids"], path)
        data = _fingerprint(json.loads(artefact.get("data") or "null"), path)
    except (KeyError, TypeError, ValueError) as error:
        raise RunError(f"{path}: a damaged elcrec model artefact ({error})") from None
    model = _model(config, item_ids, artefact.get("state_dict"), f"{path}'s weights", "its settings and items")
    return Run(model.to(device).eval(), config, item_ids, path, data, artefact.get("untrained") is True)


def _config(values: Any, source: Path) -> Config:
    if not isinstance(values, dict):
        raise RunError(f"{source}: expected a mapping of settings")
    try:
        return Config.from_saved(values)
    except ConfigError as error:
        raise RunError(f"{source}: {error}") from None


def _item_ids(values: Any, source: Path) -> np.ndarray:
    if not isinstance(values, list) or not values:
        raise RunError(f"{source}: expected a non-empty list of item ids")
    if odd := [value for value in values if isinstance(value, bool) or not isinstance(value, int | float | str)]:
        raise RunError(f"{source}: item ids are numbers or strings, not {json.dumps(odd[0])}")
    if odd := [value for value in values if isinstance(value, float) and not math.isfinite(value)]:
        raise RunError(f"{source}: item ids are finite, not {odd[0]}")
    if len(set(values)) < len(values):
        twice = next(value for value, count in Counter(values).items() if count > 1)
        raise RunError(f"{source}: item {json.dumps(twice)} is listed twice (each internal id names its own item)")
    return np.array(values)


def _parts(keys: Iterable[str]) -> list[str]:
    """State-dict keys by module: 'encoder.blocks.2.* (16 tensors)' for the keys of one block."""
    groups: dict[str, int] = {}
    for key in keys:
        module = key.rsplit(".", 2)[0] if key.count(".") >= 2 else key
        groups[module] = groups.get(module, 0) + 1
    return [
        module if count == 1 and module in keys else f"{module}.* ({count} tensors)" for module, count in groups.items()
    ]


def _model(
    config: Config, item_ids: np.ndarray, weights: Any, weights_name: str, settings_name: str
) -> SequentialRecommender:
    """The config's model with `weights`; a mismatch names both sides (another dataset, size, depth or model)."""
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise RunError(f"{weights_name}: not a state dict of tensors")
    try:
        with torch.random.fork_rng(devices=[]):  # its initial weights, replaced: the caller's stream stays as it was
            model = build_model(config, len(item_ids), weights)
    except (ValueError, KeyError) as error:
        raise RunError(f"{weights_name} cannot be built from {settings_name}: {error}") from None
    expected = model.state_dict()
    problems = [
        f"{key} is {list(weights[key].shape)} there but {list(value.shape)} for the settings"
        for key, value in expected.items()
        if key in weights and weights[key].shape != value.shape
    ]
    problems += [f"it lacks {part}" for part in _parts(key for key in expected if key not in weights)]
    problems += [
        f"it has {part}, which the settings do not" for part in _parts(key for key in weights if key not in expected)
    ]
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise RunError(
            f"{weights_name} does not match {settings_name} (model={config.model}, "
            f"hidden_size={config.hidden_size}, num_layers={config.num_layers}, "
            f"{len(item_ids):,} items): {shown}"
        )
    # training never saves them (elcrec.training.trainer.NonFinite): such weights score nothing, and said nothing
    if broken := [key for key, value in weights.items() if value.is_floating_point() and not value.isfinite().all()]:
        raise RunError(f"{weights_name} hold NaN or infinite values ({', '.join(_parts(broken))}): damaged weights")
    model.load_state_dict(weights)
    return model
