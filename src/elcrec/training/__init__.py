"""Training: the loop, negative sampling and run folders (checkpoints)."""

from .checkpoint import Run, atomic_write, export_run, load_run, save_run, write_json
from .negatives import NegativeSampler
from .trainer import keep_freed_memory, resolve_device, seed_everything, train

__all__ = ["NegativeSampler", "Run", "atomic_write", "export_run", "keep_freed_memory", "load_run", "save_run", "resolve_device",
           "seed_everything", "train", "write_json"]
