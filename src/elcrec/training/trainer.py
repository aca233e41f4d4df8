"""The training loop, top to bottom: setup (data, split, model, optimiser, a resumed state) -> epochs of
(train, validate and checkpoint) -> early stop -> finish (test the best checkpoint, write metrics.json).

Under torchrun the same loop runs in every process (elcrec.distributed): each takes an equal shard of
every global batch, DistributedDataParallel averages the gradients, evaluation is sharded and summed,
and rank 0 alone logs and writes files."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import random
import shlex
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import distributed
from ..config import Config, preset_values
from ..data import SequenceData, eval_set, load_dataset, train_set
from ..evaluation import evaluate, format_metrics
from ..models import create_model
from ..progress import Progress, log, run_logging
from ..runs import (
    CONFIG_FILE,
    LOCK_FILE,
    LOG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    RUN_FILES,
    STATE_FILE,
    RunError,
    describe,
    describe_code,
    discard_replaced,
    fingerprint,
    load_run,
    read_pt,
    read_settings,
    read_state,
    remove_results,
    remove_stale_writes,
    replacing_run,
    restore_replaced,
    result_record,
    save_run,
    save_settings,
    save_tensors,
    saved_fingerprint,
    training_lock,
    write_json,
)
from ..runtime import denormals_flushed, describe_machine, has_native, resolve_device, seed_everything
from .negatives import NegativeSampler
from .step import Step, TrainTensors, amp_name, make_batch
from .tracking import open_tracker

LOG_EVERY = 20  # steps between reads of the loss (each waits for the device)
# settings the data does not read, by whether it is the built-in synthetic data (elcrec.data.load_dataset)
UNREAD_BY_DATA = {
    True: ("data_format", "user_col", "item_col", "time_col", "dedup", "kcore"),
    False: ("synthetic_users", "synthetic_items", "synthetic_intents", "synthetic_seed"),
}


class NonFinite(ValueError):
    """The training loss, the weights or the optimiser's state became NaN or infinite (the settings or the data are
    at fault: a ValueError); nothing from that epoch was saved."""


def train(
    config: Config,
    data: SequenceData | None = None,
    progress: bool = True,
    resume: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train `config.model`, keep the best validation checkpoint in `config.run_dir`, test it, and return
    (and write to metrics.json) the result record (elcrec.runs.result_record).

    After every epoch the whole training state (weights, optimiser, loss scaler, every random state,
    early-stopping state, history) is written atomically to training_state.pt; `resume=True` continues
    from it, and the continued run is identical to one never interrupted (tests/test_reliability.py).
    Training seeds the global generators from config.seed and flushes denormal floats on torch's threads
    while it runs (elcrec.runtime). Started by torchrun with several processes, it trains with DistributedDataParallel.
    It logs to the run's train.log and, with `progress`, shows a progress bar and the log on the terminal
    (without, warnings alone), unless the caller's own logging is set up (elcrec.progress.run_logging).
    `on_epoch(record)` is called with each epoch's history record (loss, terms, seconds, valid metrics),
    in every process; an exception it raises stops training (Optuna's pruning uses it).
    A folder that already holds a run, or files a run writes (RUN_FILES) without being one, is refused unless
    `resume` or `overwrite` is given; `overwrite` replaces the old run's files and what was derived from it once
    the new run has started, and leaves them as they were when it fails before (elcrec.runs.replacing_run). A
    folder another process is training in is refused (elcrec.runs.training_lock; under torchrun, rank 0 holds
    it, and checks and prepares the folder while the other processes wait)."""
    if config.sampled_negatives and max(config.eval_ks) > config.sampled_negatives:  # a run saved so still loads
        raise ValueError(
            f"eval_ks={list(config.eval_ks)}: with sampled_negatives={config.sampled_negatives} a target ranks "
            f"among {config.sampled_negatives + 1} items: a cut-off above {config.sampled_negatives} counts every "
            "user a hit, and selects no model"
        )
    if config.run_dir.exists() and not config.run_dir.is_dir():
        raise FileExistsError(f"{config.run_dir} is a file: output_dir names the run's folder")
    if resume and not config.run_dir.is_dir():
        raise FileNotFoundError(f"{config.run_dir}: no such run folder to resume")
    if distributed.launched_rank() != 0:  # rank 0 checks and prepares the folder; _train waits for it
        return _train(config, data, progress, resume, on_epoch)
    if not (resume or overwrite):
        check_foreign_files(config.run_dir)  # before training_lock makes its file
    with training_lock(config.run_dir):
        if restore_replaced(config.run_dir):
            log.warning(f"{config.run_dir}: put back a run set aside by an --overwrite whose new run never started")
        existing = [name for name in (MODEL_FILE, STATE_FILE) if (config.run_dir / name).is_file()]
        if existing and not (resume or overwrite):
            raise FileExistsError(
                f"{config.run_dir} already holds a run ({', '.join(existing)}): resume it, choose "
                "another output_dir, or overwrite it"
            )
        if resume and (config.run_dir / CONFIG_FILE).is_file():
            check_saved_settings(config)
        remove_stale_writes(config.run_dir)
        with replacing_run(config.run_dir) if overwrite else contextlib.nullcontext():
            return _train(config, data, progress, resume, on_epoch)


def check_foreign_files(run_dir: Path) -> None:
    """A FileExistsError when `run_dir` holds files of a run's names (RUN_FILES) that no run wrote: no training
    ever held the folder (training_lock's file marks one that did, a run stopped early too)."""
    if (run_dir / LOCK_FILE).exists():
        return
    if found := [name for name in RUN_FILES if (run_dir / name).is_file()]:
        raise FileExistsError(
            f"{run_dir} holds files a run would write over ({', '.join(found)}), and no run was trained in it: "
            "choose another output_dir, or overwrite them"
        )


def _train(
    config: Config,
    data: SequenceData | None,
    progress: bool,
    resume: bool,
    on_epoch: Callable[[dict[str, Any]], None] | None,
) -> dict[str, Any]:
    joined = distributed.launched() and not torch.distributed.is_initialized()
    device = resolve_device(config.device)
    if distributed.launched():
        device = distributed.setup(device)
        distributed.barrier()  # rank 0 has checked and prepared the run folder (train): the others may read it
    main = distributed.is_main()
    try:
        logs = run_logging(config.run_dir / LOG_FILE, console=main and progress, process=distributed.rank())
        with logs, denormals_flushed() as flushed:
            try:
                if device.type == "cpu" and not flushed:
                    log.warning(
                        "warning: denormal floats are not flushed on every thread (no FTZ/DAZ on this CPU, or "
                        "torch's OpenMP threads out of reach): steps whose gradients hold them may run slower"
                    )
                result = Trainer(config, data, device, resume, progress and main).run(on_epoch)
            except Exception as error:
                log.error(f"error: {error}")  # into train.log; the caller reports it
                raise
    except BaseException:
        if joined:
            distributed.leave(after_error=True)
        raise
    if joined:
        distributed.leave()
    return result


class Trainer:
    """One run's state, set up from its config (and, resuming, its saved training state)."""

    def __init__(
        self, config: Config, data: SequenceData | None, device: torch.device, resume: bool, progress: bool
    ) -> None:
        self.config, self.device, self.progress = config, device, progress
        self.world, self.main = distributed.world_size(), distributed.is_main()
        if config.batch_size % self.world:
            raise ValueError(
                f"batch_size={config.batch_size} is the global batch: it must be a multiple of the "
                f"{self.world} processes"
            )
        seed_everything(config.seed)  # the same initial weights and data order in every process
        self._log_settings(resume)
        self.data = load_dataset(config) if data is None else data
        if self.data.name != config.data_name:  # config.json is how evaluate, recommend and resume find the data
            raise ValueError(
                f"the data given is {self.data.name}, but the run's data setting names {config.data_name}: "
                "give the config the data it trains on (config.replace(data=...))"
            )
        log.info(self.data.summary())
        split = train_set(self.data, config.max_len)
        if not len(split.inputs):
            raise ValueError(
                f"{self.data.name}: no user has the 4 or more interactions training needs (the last two "
                "are held out for validation and test, and a training sequence needs an input and a target)"
            )
        self.split, self.train_rows = split, TrainTensors.of(split)
        self.valid, self.test = (
            eval_set(self.data, config.max_len, "valid"),
            eval_set(self.data, config.max_len, "test"),
        )
        self.fingerprint = fingerprint(self.data)
        if data is not None and self.main:
            self._check_settings_load_data()
        self.model = create_model(config, self.data).to(device)
        steps_per_epoch = math.ceil(math.ceil(len(self.train_rows) / self.world) * self.world / config.batch_size)
        self.step = Step(self.model, config, device, steps_per_epoch) if self.model.trainable else None
        self.sampler = NegativeSampler(self.data, device, seed=config.seed) if self.model.needs_negatives else None
        if self.step is not None:
            self._log_precision(self.step.amp_dtype)
        self.order = torch.Generator().manual_seed(config.seed)
        self.tracker = open_tracker(config) if self.main else None
        self.best_score, self.best_epoch, self.best_valid = -math.inf, -1, {}
        self.history: list[dict[str, Any]] = []
        self.sessions: list[dict[str, Any]] = []  # where each part of the run trained, first epoch on
        self.first_epoch, self.stopped = 0, False
        if resume:
            check_saved_data(config.run_dir, self.fingerprint)
        state = load_state(config.run_dir / STATE_FILE) if resume else None
        if state is None:
            self.model.prepare(split)
            if self.main:
                remove_results(config.run_dir)  # a result (and its report) whose weights were deleted
                save_settings(config.run_dir, config, self.data.item_ids, self.fingerprint)  # what a resume reads
        if self.world > 1:
            torch.manual_seed(process_seed(config.seed, distributed.rank()))  # each its own dropout and views
        if state is not None:
            self._restore(state)
            if self.main and self.best_epoch >= 0:  # the test result reads the best epoch's weights: check them now
                best = config.run_dir / MODEL_FILE
                if not best.is_file():
                    raise RunError(f"{best} is missing: the best epoch's weights ({self.best_epoch}) are lost")
                read_pt(best, "model weights")
            if self.main:
                write_json(config.run_dir / CONFIG_FILE, config.to_dict())  # the budget it resumes with (EXTENSIBLE)
                if self.first_epoch < config.epochs and not self.stopped:  # a finished run given a larger budget
                    remove_results(config.run_dir)  # its weights change: the result and its report go
        else:
            # the state before the weights: a run stopped from here on resumes from the start, and one stopped
            # before it holds no model.pt, so the same command starts it again
            if self.step is not None:
                self.save_state(-1)
            if self.main:
                self.save_best()  # a usable checkpoint exists from the start
                discard_replaced(config.run_dir)  # the run this one replaces (--overwrite): it has started

    def _log_precision(self, amp: torch.dtype | None) -> None:
        """Which precision (`amp`, the autocast dtype) amp=auto took, or a warning where the amp given is emulated
        on this device."""
        processor = "GPU" if self.device.type == "cuda" else "CPU"
        if self.config.amp == "auto":
            native = amp is not None
            if distributed.world_size() == 1:
                why = f"this {processor} computes bf16 " + ("in hardware" if native else "only by emulation")
            else:
                why = f"{'every' if native else 'not every'} process's {processor} computes bf16 in hardware"
            log.info(f"amp=auto: {amp_name(amp)} ({why}{'' if native else '; emulated, bf16 is slower than float32'})")
        elif amp is not None and not has_native(amp, self.device):
            log.warning(
                f"warning: amp={self.config.amp} on a {processor} without {self.config.amp} instructions: autocast "
                "emulates them, often many times slower than amp=none (amp=auto takes bf16 only where it is native)"
            )

    def _log_settings(self, resume: bool) -> None:
        c = self.config
        given = {} if resume else c.given_settings()  # a resumed run's config.json gives every setting
        values = c.to_dict()
        settings = " ".join(f"{key}={value}" for key, value in values.items())
        wrapped = textwrap.fill(
            f"settings: {settings}", 110, subsequent_indent="  ", break_on_hyphens=False, break_long_words=False
        )  # paths stay whole, to be copied
        log.info(f"run folder: {c.run_dir}\n{wrapped}")
        preset = preset_values(c.preset, c.model, c.backbone)
        if c.preset_settings():
            log.info(
                f"preset {c.preset} for {c.model}: " + " ".join(f"{k}={v}" for k, v in c.preset_settings().items())
            )
        elif c.preset and not preset:
            log.info(f"preset {c.preset} has no settings for {c.model}: its defaults apply")
        elif preset and all(name in given for name in preset):
            log.warning(
                f"warning: preset {c.preset} changes nothing: every setting it holds for {c.model} was given"
                + (" (a config.json file gives every setting, pinning them all)" if len(given) == len(values) else "")
            )
        if c.recipe_settings():
            log.info(f"recipe {c.recipe}: " + " ".join(f"{k}={v}" for k, v in c.recipe_settings().items()))
        if c.warmup_epochs >= c.epochs:
            log.warning(
                f"warning: the warm-up (warmup_epochs={c.warmup_epochs:g}) is not shorter than the run "
                f"(epochs={c.epochs}): the learning rate rises for the whole run, to "
                f"{c.lr * c.epochs / c.warmup_epochs:g} at most (lr={c.lr:g})"
                + (f", and the {c.lr_schedule} decay never starts" if c.lr_schedule != "constant" else "")
            )
        synthetic = c.data == "synthetic"
        readers = {c.model: c.unread(), "the synthetic data" if synthetic else "a data file": UNREAD_BY_DATA[synthetic]}
        for reader, names in readers.items():
            if ignored := [name for name in names if name in given]:
                log.info(
                    f"settings {reader} does not read (ignored): " + " ".join(f"{k}={getattr(c, k)}" for k in ignored)
                )
        log.info(f"machine: {describe_machine(self.device.type)}")
        if self.world > 1:
            log.info(
                f"{self.world} processes ({torch.distributed.get_backend()}), {c.batch_size // self.world} "
                "sequences each per step"
            )

    def _check_settings_load_data(self) -> None:
        """Data given in memory that the run's settings load otherwise trains as given, with a warning: evaluate,
        recommend, intents and resume find a run's data by its settings (and check it by its fingerprint)."""
        c = self.config
        if c.data != "synthetic" and not Path(c.data).exists():
            return  # nothing to compare: the data must be given again wherever the run is read
        settings = {name: getattr(c, name) for name in ("data", *UNREAD_BY_DATA[True], *UNREAD_BY_DATA[False])}
        stamp: tuple[int, ...] = ()
        if c.data != "synthetic":  # the file itself: a relative path names another one elsewhere
            settings["data"], found = str(Path(c.data).resolve()), Path(c.data).stat()
            stamp = (found.st_size, found.st_mtime_ns)
        loaded = settings_fingerprint(json.dumps(settings), stamp)
        if loaded != self.fingerprint:
            log.warning(
                "warning: the data given is not the data the run's settings load ("
                + (describe(loaded) if loaded else f"{c.data}, which they cannot read")
                + "): what reads the run later finds its data by those settings, so give it this data there "
                "(data= in Python, --data for a file)"
            )

    def _restore(self, state: dict[str, Any]) -> None:
        try:
            self._restore_state(state)
        except RunError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as error:  # another run's, or not a state
            raise RunError(
                f"{self.config.run_dir / STATE_FILE} is not a training state of this run "
                f"({type(error).__name__}: {str(error)[:300]})"
            ) from None

    def _restore_state(self, state: dict[str, Any]) -> None:
        self._check_state_is_this_runs(state)
        self.model.load_state_dict(state["model"])
        if self.step is not None:
            self.step.load_state_dict(state)
        if state.get("threads", torch.get_num_threads()) != torch.get_num_threads():
            log.warning(
                f"warning: the state was saved with {state['threads']} torch threads, this run has "
                f"{torch.get_num_threads()}: it continues, but not bit-identically to an uninterrupted run"
            )
        if state.get("device", self.device.type) != self.device.type:
            log.warning(
                f"warning: the state was saved on {state['device']}, this run is on {self.device.type}: it "
                "continues, but not identically to an uninterrupted run"
            )
        amp = amp_name(self.step.amp_dtype) if self.step is not None else "none"
        if state.get("amp", amp) != amp:  # amp=auto takes what this device computes in hardware
            log.warning(
                f"warning: the state was saved training in amp {state['amp']}, amp={self.config.amp} trains in "
                f"{amp} here: it continues, but not identically to an uninterrupted run"
            )
        saved_world = len(state.get("rng_by_rank", [None]))
        if saved_world != self.world:
            log.warning(
                f"warning: the state was saved by {saved_world} process(es), this run has {self.world}: it "
                "continues, but not identically to an uninterrupted run"
            )
        rng = state["rng_by_rank"][distributed.rank()] if saved_world == self.world > 1 else state["rng"]
        set_rng_states(rng, self.device, self.order, self.sampler.generator if self.sampler else None)
        if saved_world != self.world > 1:  # the first process's states alone: each its own dropout and views
            torch.manual_seed(stream_seed(rng, distributed.rank()))
        self.best_score, self.best_epoch, self.best_valid = (
            state["best_score"],
            state["best_epoch"],
            state["best_valid"],
        )
        self.history, self.first_epoch = state["history"], state["epoch"] + 1
        if self.first_epoch > self.config.epochs:
            raise RunError(
                f"{self.config.run_dir} has trained {self.first_epoch} epochs: epochs={self.config.epochs} cannot "
                "undo them"
            )
        # early stopping under this run's patience, which a resumed run may raise (train.check_saved_settings)
        patience = self.config.patience
        self.stopped = bool(patience) and state["epoch"] >= 0 and state["epoch"] - state["best_epoch"] >= patience
        self.sessions = state.get("sessions", [])  # none in a state from before sessions were recorded
        for record in self.history:  # epochs from before records named their device ran where the state was saved
            if "device" not in record and "device" in state:
                record["device"] = state["device"]
        if state["epoch"] < 0:
            log.info("resuming from the start: no epoch had finished")
        else:
            log.info(
                f"resuming after epoch {state['epoch']} (best {self.config.metric} {self.best_score:.4f} at epoch "
                f"{self.best_epoch})"
            )

    def run(self, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        callbacks = [callback for callback in (self.tracker and self.tracker.epoch, on_epoch) if callback]
        last = self.config.epochs if self.step is not None and not self.stopped else 0
        if self.first_epoch < last:
            self.sessions.append(
                {
                    "first_epoch": self.first_epoch,
                    "machine": describe_machine(self.device.type),
                    "amp": amp_name(self.step.amp_dtype),
                    "processes": self.world,
                    "code": describe_code(),
                }
            )
        for epoch in range(self.first_epoch, last):
            record = self.train_epoch(epoch)
            improved = self.validate(record)
            for callback in callbacks:
                callback(record)
            self.checkpoint(epoch, improved)
            if self.stopped:
                log.info(f"early stop: {self.config.metric} has not improved for {self.config.patience} epochs")
                break
        return self.finish()

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One pass over the training set; the record of the epoch's mean loss terms and seconds."""
        started, steps = time.perf_counter(), 0
        term_totals = torch.zeros((), device=self.device)
        first_bad = torch.full((), -1, device=self.device)  # first step with a non-finite loss, read at log points
        self.model.start_epoch(self.split)  # counted in the epoch's time (ICLRec's k-means E-step)
        self.model.train()
        permutation = torch.randperm(len(self.train_rows), generator=self.order)
        # equal shards: repeat a few sequences so the epoch divides among the processes (as DistributedSampler)
        permutation = torch.cat([permutation, permutation[: -len(permutation) % self.world]])
        bar = Progress(len(permutation), f"epoch {epoch}", self.progress)
        for rows in permutation.split(self.config.batch_size):
            terms = self.step(make_batch(self.train_rows, rows, self.device, self.sampler))
            steps += 1
            term_totals = term_totals + torch.stack([term.detach().float() for term in terms.values()])
            loss = sum(term.detach() for term in terms.values())
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), steps - 1, first_bad)
            if steps % LOG_EVERY == 0:
                self.check_finite(first_bad, epoch)
                bar.update(len(rows), loss=term_totals.sum().item() / steps)
            else:
                bar.update(len(rows))
        bar.close()
        self.step.sync_buffers()  # each process evaluates its shard with the model rank 0 saves
        self.check_finite(first_bad, epoch, weights=True)
        means = dict(zip(terms, (distributed.all_sum(term_totals) / (self.world * steps)).tolist()))
        seconds, device = time.perf_counter() - started, self.device.type
        return {"epoch": epoch, "loss": sum(means.values()), "terms": means, "seconds": seconds, "device": device}

    def check_finite(self, first_bad: torch.Tensor, epoch: int, weights: bool = False) -> None:
        """Stop (every process together) at a non-finite loss, or, at the end of an epoch, non-finite weights or
        optimiser state."""
        step = int(distributed.all_max(first_bad.clone()))
        kept = f"nothing from this epoch was saved ({self.config.run_dir} keeps the best checkpoint and the state " + (
            f"after epoch {epoch - 1})" if epoch else "from before the first epoch)"
        )
        if step >= 0:
            raise NonFinite(
                f"the training loss became NaN or infinite at epoch {epoch}, step {step}; {kept}. Lower "
                "the learning rate, try --amp none, or check the data."
            )
        if not weights:
            return
        weights_bad, moments_bad = distributed.all_max((~self.step.finite()).int()).tolist()
        if weights_bad:
            raise NonFinite(
                f"the weights became NaN or infinite in epoch {epoch} while the loss stayed finite; {kept}."
                f" Lower the learning rate (lr={self.config.lr:g})."
            )
        if moments_bad:
            raise NonFinite(
                f"the optimiser's moment estimates became NaN or infinite in epoch {epoch} (gradients beyond float "
                f"range), which freezes training: every later update is 0; {kept}. Look for a setting that scales the "
                "loss out of range (a tiny temperature, a huge loss weight), or lower the learning rate."
            )

    def validate(self, record: dict[str, Any]) -> bool:
        """Validation metrics into the epoch's record; whether they improved on the best."""
        c = self.config
        started = time.perf_counter()
        valid = evaluate(self.model, self.valid, **self.eval_options())
        record.update({c.metric: valid[c.metric], "valid": valid, "valid_seconds": time.perf_counter() - started})
        self.history.append(record)
        improved = valid[c.metric] > self.best_score
        terms = " ".join(f"{name} {value:.4f}" for name, value in record["terms"].items())
        log.info(
            f"epoch {record['epoch']:3d}  loss {record['loss']:.4f} ({terms})  "
            f"{len(self.train_rows) / record['seconds']:,.0f} seq/s  valid {format_metrics(valid)}"
            + ("  *" if improved else "")
        )
        if improved:
            self.best_score, self.best_epoch, self.best_valid = valid[c.metric], record["epoch"], valid
        return improved

    def _check_state_is_this_runs(self, state: dict[str, Any]) -> None:
        """A RunError unless the state was saved by a run of these settings on this data: one of another run
        (copied in, or a config.json edited since) would resume under settings it was not trained with. States
        saved before they named their settings and data pass."""
        path = self.config.run_dir / STATE_FILE
        if "settings" in state:
            saved = Config.from_saved(json.loads(state["settings"]))
            if changed := resume_differences(saved, self.config, data_checked=True)[0]:
                listed = ", ".join(f"{name} {before!r}" for name, (before, _) in changed.items())
                raise RunError(
                    f"{path} was saved by a run with other settings ({listed}) than {CONFIG_FILE} gives: it is "
                    "another run's training state; resume that run, or train this one anew (--overwrite)"
                )
        if state.get("data_sha256", self.fingerprint["sha256"]) != self.fingerprint["sha256"]:
            raise RunError(
                f"{path} was saved by a run on other data (sha256 {state['data_sha256'][:12]}) than "
                f"{describe(self.fingerprint)}: it is another run's training state"
            )

    def checkpoint(self, epoch: int, improved: bool) -> None:
        """The best weights when they improved, and the whole training state after every epoch."""
        self.stopped = bool(self.config.patience) and epoch - self.best_epoch >= self.config.patience
        if improved and self.main:
            self.save_best()
        self.save_state(epoch)

    def save_state(self, epoch: int) -> None:
        """Everything a resumed run continues from, after `epoch` (-1: before the first), in every process."""
        rng = distributed.gather_objects(
            rng_states(self.device, self.order, self.sampler.generator if self.sampler else None)
        )
        if self.main:
            save_tensors(
                self.config.run_dir / STATE_FILE,
                {
                    "epoch": epoch,
                    "stopped": self.stopped,
                    "settings": json.dumps(self.config.to_dict()),  # whose state it is (_check_state_is_this_runs)
                    "data_sha256": self.fingerprint["sha256"],
                    "model": self.model.state_dict(),
                    **self.step.state_dict(),
                    "rng": rng[0],
                    **({"rng_by_rank": rng} if self.world > 1 else {}),
                    "threads": torch.get_num_threads(),
                    "device": self.device.type,
                    "amp": amp_name(self.step.amp_dtype),
                    "best_score": self.best_score,
                    "best_epoch": self.best_epoch,
                    "best_valid": self.best_valid,
                    "history": self.history,
                    "sessions": self.sessions,
                },
            )

    def save_best(self) -> None:
        save_run(self.config.run_dir, self.model, self.config, self.data.item_ids, self.fingerprint)

    def eval_options(self) -> dict[str, Any]:
        c = self.config
        return dict(
            ks=c.eval_ks,
            mask_history=c.mask_history,
            sampled_negatives=c.sampled_negatives,
            batch_size=c.eval_batch_size,
            seed=c.seed,
        )

    def finish(self) -> dict[str, Any]:
        """Test the best checkpoint; metrics.json."""
        distributed.barrier()  # rank 0 has written the best checkpoint
        best = load_run(self.config.run_dir, self.device).model
        valid = self.best_valid or evaluate(best, self.valid, **self.eval_options())  # nothing trained (pop)
        test = evaluate(best, self.test, **self.eval_options())
        heading = f"best epoch {self.best_epoch}" if self.step is not None else f"{self.config.model} trains nothing"
        log.info(f"{heading}  valid {format_metrics(valid)}\ntest  {format_metrics(test)}")
        result = result_record(
            self.config, test, best_epoch=self.best_epoch, valid=valid, history=self.history, sessions=self.sessions
        )
        if self.main:
            write_json(self.config.run_dir / METRICS_FILE, result)
        if self.tracker:
            self.tracker.finish(result)
        return result


EXTENSIBLE = ("epochs", "patience")  # a resumed run may train longer: a larger budget changes no epoch it trained


def resume_differences(
    saved: Config, given: Config, data_checked: bool
) -> tuple[dict[str, tuple[Any, Any]], dict[str, tuple[Any, Any]]]:
    """(the settings a run saved with `saved` may not change when resumed with `given`, the budget, EXTENSIBLE,
    it may), each as Config.differences gives them. The run's folder and device may change, and so may the data's
    path where the data itself is checked (`data_checked`: by its fingerprint)."""
    differences = saved.differences(given, aside=("output_dir", "device", *(("data",) if data_checked else ())))
    changed = {name: values for name, values in differences.items() if name not in EXTENSIBLE}
    return changed, {name: values for name, values in differences.items() if name in EXTENSIBLE}


def check_saved_settings(config: Config) -> None:
    """A RunError unless a resumed run is given the settings it was trained with (its config.json). The run folder
    and the device may change, and so may the data's path where data.json holds its fingerprint (check_saved_data
    then compares the data itself); the budget, EXTENSIBLE, may grow, epochs under a constant schedule only."""
    saved = read_settings(config.run_dir)
    changed, budget = resume_differences(saved, config, data_checked=saved_fingerprint(config.run_dir) is not None)
    if changed:
        listed = ", ".join(f"{name} {before!r} -> {given!r}" for name, (before, given) in changed.items())
        raise RunError(
            f"{config.run_dir} was trained with other settings ({listed}): a run resumes with its own; train "
            "these into another output folder"
        )
    if "epochs" in budget and config.lr_schedule != "constant":
        raise RunError(
            f"{config.run_dir} trains on a {config.lr_schedule} schedule fitted to its {saved.epochs} epochs: a "
            "longer budget would change the epochs it already trained; train a new run"
        )


def check_saved_data(
    run_dir: Path, found: dict[str, Any], rule: str = "a run continues on the data it started on"
) -> None:
    """A RunError, ending with `rule`, unless the data `found` (its fingerprint) is the data the run in `run_dir`
    was trained on (its data.json)."""
    saved = saved_fingerprint(run_dir)
    if saved is not None and saved["sha256"] != found["sha256"]:
        raise RunError(f"{run_dir} was trained on {describe(saved)}, but the data given is {describe(found)}: {rule}")


@functools.lru_cache(maxsize=4)
def settings_fingerprint(settings: str, stamp: tuple[int, ...]) -> dict[str, Any] | None:
    """The fingerprint of the data that the data `settings` (JSON) load, None where they cannot; `stamp`, the
    file's size and modification time, reads a changed file again. Cached: a group of runs, or a search, gives
    every run the same data."""
    level = log.level
    log.setLevel(logging.ERROR)  # reading it says again what reading the data given said
    try:
        return fingerprint(load_dataset(Config(**json.loads(settings))))
    except ValueError:
        return None
    finally:
        log.setLevel(level)


def load_state(path: Path) -> dict[str, Any]:
    """The training state written after the last finished epoch (before the first, when none has)."""
    if path.is_file():
        return read_state(path)
    run_dir = path.parent
    if (run_dir / MODEL_FILE).is_file():
        raise RunError(
            f"{run_dir} {'is a finished run' if (run_dir / METRICS_FILE).is_file() else 'holds a model'} with "
            f"nothing to resume (no {STATE_FILE}: its model trains nothing, or it was imported): evaluate it "
            f"(elcrec evaluate {shlex.quote(str(run_dir))}), or train it again with --overwrite"
        )
    raise FileNotFoundError(
        f"{path} not found: nothing to resume (the run stopped before it first saved its training state): run the "
        "command again without --resume"
    )


def saved_threads(run_dir: Path) -> int:
    """The torch threads a run's training state was saved with (0 when it has none): resuming with as many
    continues it bit-identically (summation order depends on the thread count)."""
    path = Path(run_dir) / STATE_FILE
    return int(load_state(path).get("threads", 0)) if path.is_file() else 0


def rng_states(device: torch.device, *generators: torch.Generator | None) -> dict[str, Any]:
    """Every random state a run on `device` draws from, as tensors and numbers (torch.load(weights_only=True)
    reads it): of CUDA, the run's own GPU's only, so that it resumes where fewer GPUs are visible."""
    version, python_state, gauss = random.getstate()
    _, numpy_keys, position, has_gauss, cached = np.random.get_state()
    return {
        "python": (version, torch.tensor(python_state), gauss),
        "numpy": (torch.from_numpy(numpy_keys.astype(np.int64)), position, has_gauss, cached),
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state(device)] if device.type == "cuda" else [],
        "generators": [g.get_state() if g is not None else None for g in generators],
    }


def process_seed(seed: int, rank: int) -> int:
    """The seed of process `rank`'s torch stream (dropout, augmentations) in a run of `seed`: the run's seed for
    the first process, as in one process; for the others one drawn from (seed, rank), so that no process shares
    its stream with a process of another seed's run (with seed + rank, rank 1 of seed 1 drew as seed 2)."""
    return seed if rank == 0 else int(np.random.SeedSequence((seed, rank)).generate_state(1, np.uint64)[0])


def stream_seed(states: dict[str, Any], rank: int) -> int:
    """A seed for process `rank`'s torch stream (dropout, augmentations), drawn from saved `rng_states`:
    distinct for each process, and the same at every resume from those states."""
    saved = torch.Generator()
    saved.set_state(states["torch"])
    return int(torch.randint(2**62, (1,), generator=saved)) + rank


def set_rng_states(states: dict[str, Any], device: torch.device, *generators: torch.Generator | None) -> None:
    version, python_state, gauss = states["python"]
    random.setstate((version, tuple(python_state.tolist()), gauss))
    keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and device.type == "cuda":  # states saved before one per run: every visible GPU's
        saved = states["cuda"]
        torch.cuda.set_rng_state(saved[device.index or 0] if len(saved) > (device.index or 0) else saved[0], device)
    for generator, state in zip(generators, states["generators"]):
        if generator is None:
            continue
        if state.numel() == generator.get_state().numel():
            generator.set_state(state)
        else:  # saved on another device type (CUDA's Philox state, the CPU's Mersenne Twister): seeded from it
            generator.manual_seed(int.from_bytes(hashlib.sha256(state.numpy().tobytes()).digest()[:8], "little"))
