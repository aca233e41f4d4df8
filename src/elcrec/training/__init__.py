"""Training: the loop (`train`), one batch and one step (`make_batch`, `Step`), negative sampling, groups of runs
(seeds, ablations), hyperparameter search and experiment tracking. Run folders are elcrec.runs."""

from .negatives import NegativeSampler
from .step import Step, TrainTensors, make_batch
from .trainer import NonFinite, train

__all__ = ["NegativeSampler", "NonFinite", "Step", "TrainTensors", "make_batch", "train"]
