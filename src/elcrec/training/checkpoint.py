"""A run folder: `model.pt` (plain state dict), `config.json` (every setting), `items.json` (original id
of each internal item id), `metrics.json`, `training_state.pt` (what resuming needs) and `train.log`. Every file is
written atomically (temp file + rename), so an interrupted write never leaves a half file behind. The
.pt files load with torch.load(weights_only=True).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Config
from ..models import SequentialRecommender, build_model

MODEL_FILE, CONFIG_FILE, ITEMS_FILE, METRICS_FILE = "model.pt", "config.json", "items.json", "metrics.json"
STATE_FILE = "training_state.pt"  # everything `train(resume=True)` needs to continue exactly
LOG_FILE = "train.log"  # what training printed, with times; a resumed run appends


def atomic_write(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, value: Any) -> None:
    atomic_write(path, (json.dumps(value, indent=2) + "\n").encode())


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, buffer.getvalue())


def read_pt(path: Path, what: str) -> Any:
    """torch.load(weights_only=True) on CPU; a truncated, foreign or pickled-object file is a ValueError naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError, ... depending on the damage
        raise ValueError(f"{path} cannot be read as {what} ({error.__class__.__name__}: {str(error)[:120]})") from None


def load_state(path: Path) -> dict[str, Any]:
    """The training state written after the last finished epoch."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: nothing to resume (no epoch of this run has finished)")
    return read_pt(path, "a training state")


def cpu_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def save_run(run_dir: str | Path, model: SequentialRecommender, config: Config, item_ids: np.ndarray) -> None:
    run_dir = Path(run_dir)
    write_json(run_dir / CONFIG_FILE, config.to_dict())
    write_json(run_dir / ITEMS_FILE, np.asarray(item_ids).tolist())
    save_state(run_dir / MODEL_FILE, cpu_weights(model))


@dataclass
class Run:
    model: SequentialRecommender
    config: Config
    item_ids: np.ndarray  # original id of internal item id i is item_ids[i - 1]
    path: Path


ARTEFACT_FORMAT = "elcrec-model/1"


def export_run(run_dir: str | Path, out: str | Path) -> None:
    """One self-contained file (weights, config, item ids) that `load_run` and `elcrec serve` accept;
    it loads with torch.load(weights_only=True)."""
    run = load_run(run_dir)
    artefact = {"format": ARTEFACT_FORMAT, "config": json.dumps(run.config.to_dict()),
                "item_ids": np.asarray(run.item_ids).tolist(),
                "state_dict": cpu_weights(run.model)}
    save_state(out, artefact)


def _load_artefact(path: Path, device: str | torch.device) -> Run:
    artefact = read_pt(path, "a run folder or an elcrec model artefact")
    if not isinstance(artefact, dict) or artefact.get("format") != ARTEFACT_FORMAT:
        raise ValueError(f"{path} is not an elcrec model artefact (export one with `elcrec export RUN --out FILE`)")
    config = Config.from_dict(json.loads(artefact["config"]))
    item_ids = np.array(artefact["item_ids"])
    model = build_model(config, len(item_ids))
    model.load_state_dict(artefact["state_dict"])
    return Run(model.to(device).eval(), config, item_ids, path)


def load_run(path: str | Path, device: str | torch.device = "cpu") -> Run:
    """Load a run folder (or its model.pt), or an exported artefact: config, item mapping and weights,
    model in eval mode."""
    path = Path(path)
    if path.is_file() and path.name != MODEL_FILE:
        return _load_artefact(path, device)
    run_dir = path.parent if path.is_file() else path
    missing = [name for name in (MODEL_FILE, CONFIG_FILE, ITEMS_FILE) if not (run_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{run_dir} is not a run folder: missing {', '.join(missing)}")
    config = Config.from_dict(json.loads((run_dir / CONFIG_FILE).read_text()))
    item_ids = np.array(json.loads((run_dir / ITEMS_FILE).read_text()))
    model = build_model(config, len(item_ids))
    model.load_state_dict(read_pt(run_dir / MODEL_FILE, "model weights"))
    return Run(model.to(device).eval(), config, item_ids, run_dir)
