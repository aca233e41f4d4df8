"""Training: the loop, negative sampling and run folders (checkpoints)."""

from .checkpoint import Run, atomic_write, export_run, load_run, save_run, write_json
from .negatives import NegativeSampler
from .trainer import train

__all__ = ["NegativeSampler", "Run", "atomic_write", "export_run", "load_run", "save_run", "train", "write_json"]
