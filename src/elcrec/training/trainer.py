"""The training loop, top to bottom: data -> split -> model -> epochs of (train, validate, keep the
best) -> early stop -> test the best checkpoint -> metrics.json next to it.

Under torchrun the same loop runs in every process (elcrec.distributed): each takes an equal shard of
every global batch, DistributedDataParallel averages the gradients, evaluation is sharded and summed,
and rank 0 alone prints and writes files."""

from __future__ import annotations

import math
import random
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import distributed
from ..config import Config
from ..data import SequenceData, eval_set, load_dataset, train_set
from ..data.item_text import item_text_matrix, user_text_matrix
from ..evaluation import evaluate
from ..models import build_model
from ..runtime import cpu_has_native, flush_denormals, resolve_device, seed_everything
from .checkpoint import LOG_FILE, METRICS_FILE, MODEL_FILE, STATE_FILE, load_run, load_state, save_run, save_state, write_json
from .negatives import NegativeSampler
from .tracking import open_tracker

LOG_EVERY = 20  # steps between progress-bar loss updates
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # amp setting -> autocast dtype


def check_finite(first_bad: torch.Tensor, epoch: int, run_dir: Path) -> None:
    step = int(distributed.all_max(first_bad.clone()))  # every process stops together
    if step >= 0:
        raise NonFiniteLoss(f"the training loss became NaN or infinite at epoch {epoch}, step {step}; nothing from "
                            f"this epoch was saved ({run_dir} keeps the best checkpoint and the state after epoch "
                            f"{epoch - 1}). Lower the learning rate, try --amp none, or check the data.")


def format_metrics(metrics: dict[str, float], names: tuple[str, ...] = ("HR", "NDCG")) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.partition("@")[0] in names)


def saved_threads(run_dir: Path) -> int:
    """The torch threads a run's training state was saved with (0 when it has none): resuming with as many
    continues it bit-identically (summation order depends on the thread count)."""
    path = Path(run_dir) / STATE_FILE
    return int(load_state(path).get("threads", 0)) if path.is_file() else 0


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite; nothing from that epoch was saved."""


def rng_states(*generators: torch.Generator | None) -> dict[str, Any]:
    """Every random state a run draws from, as tensors and numbers (torch.load(weights_only=True) reads it)."""
    version, python_state, gauss = random.getstate()
    _, numpy_keys, position, has_gauss, cached = np.random.get_state()
    return {"python": (version, torch.tensor(python_state), gauss),
            "numpy": (torch.from_numpy(numpy_keys.astype(np.int64)), position, has_gauss, cached),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "generators": [g.get_state() if g is not None else None for g in generators]}


def set_rng_states(states: dict[str, Any], *generators: torch.Generator | None) -> None:
    version, python_state, gauss = states["python"]
    random.setstate((version, tuple(python_state.tolist()), gauss))
    keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    for generator, state in zip(generators, states["generators"]):
        if generator is not None:
            generator.set_state(state)


def train(config: Config, data: SequenceData | None = None, progress: bool = True,
          resume: bool = False, on_epoch: Callable[[dict[str, Any]], None] | None = None,
          overwrite: bool = False) -> dict[str, Any]:
    """Train `config.model`, keep the best validation checkpoint in `config.run_dir`, test it, and return
    (and write to metrics.json) the best epoch's valid metrics and the test metrics.

    After every epoch the whole training state (weights, optimiser, loss scaler, every random state,
    early-stopping state, history) is written atomically to training_state.pt; `resume=True` continues
    from it, and the continued run is identical to one never interrupted (tests/test_reliability.py).
    Started by torchrun with several processes, it trains with DistributedDataParallel.
    `on_epoch(record)` is called with each epoch's history record (loss, terms, seconds, valid metrics),
    in every process; an exception it raises stops training (Optuna's pruning uses it).
    A folder that already holds a run is refused unless `resume` or `overwrite` is given."""
    existing = [name for name in (MODEL_FILE, STATE_FILE) if (config.run_dir / name).is_file()]
    if existing and not (resume or overwrite):
        raise FileExistsError(f"{config.run_dir} already holds a run ({', '.join(existing)}): resume it, choose "
                              "another output_dir, or overwrite it")
    joined = distributed.launched() and not torch.distributed.is_initialized()
    device = resolve_device(config.device)
    if distributed.launched():
        device = distributed.setup(device)
    try:
        return _train(config, data, progress, resume, device, on_epoch)
    finally:
        if joined:
            torch.distributed.barrier()  # gloo aborts a process whose peer leaves the group first
            torch.distributed.destroy_process_group()


def _train(config: Config, data: SequenceData | None, progress: bool, resume: bool, device: torch.device,
           on_epoch: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    world, main = distributed.world_size(), distributed.is_main()
    if config.batch_size % world:
        raise ValueError(f"batch_size={config.batch_size} is the global batch: it must be a multiple of the "
                         f"{world} processes")
    run_dir = config.run_dir
    log = RunLog(Path(run_dir) / LOG_FILE) if main else _quiet
    seed_everything(config.seed)  # the same initial weights and data order in every process
    if device.type == "cpu" and not flush_denormals():
        log("warning: this CPU keeps denormal floats: steps whose gradients hold them may run much slower")
    log(f"torch threads: {torch.get_num_threads()}")
    settings = " ".join(f"{key}={value}" for key, value in config.to_dict().items())
    log(f"run folder: {run_dir}\n" + textwrap.fill(f"settings: {settings}", 110, subsequent_indent="  "))
    if config.preset_settings():
        log(f"preset {config.preset} for {config.model}: "
            + " ".join(f"{k}={v}" for k, v in config.preset_settings().items()))
    if world > 1:
        log(f"{world} processes ({torch.distributed.get_backend()}), {config.batch_size // world} sequences "
            "each per step")
    data = load_dataset(config) if data is None else data
    log(data.summary())
    train_data = train_set(data, config.max_len)
    if not len(train_data.inputs):
        raise ValueError(f"{data.name}: no user has the 4 or more interactions training needs (the last two are held "
                         "out for validation and test, and a training sequence needs an input and a target)")
    valid, test = eval_set(data, config.max_len, "valid"), eval_set(data, config.max_len, "test")
    tracker = open_tracker(config) if main else None
    callbacks = [callback for callback in (tracker and tracker.epoch, on_epoch) if callback]
    eval_options = dict(ks=config.eval_ks, mask_history=config.mask_history,
                        sampled_negatives=config.sampled_negatives, batch_size=config.eval_batch_size, seed=config.seed)

    text = None
    if config.item_text:  # read before the model is built: it sizes the model's frozen text table
        text = item_text_matrix(config.item_text, data)
        if config.text_dim not in (0, text.shape[1]):
            raise ValueError(f"text_dim={config.text_dim} but {config.item_text} has {text.shape[1]}-d embeddings")
        config = config.replace(text_dim=text.shape[1])
    model = build_model(config, data.n_items).to(device)
    if text is not None:
        model.set_item_text(torch.from_numpy(text).to(device))
    if config.user_text:
        model.set_user_text(torch.from_numpy(user_text_matrix(config.user_text, data)))
    state_path = Path(run_dir) / STATE_FILE
    state = load_state(state_path) if resume else None
    if state is None:
        model.prepare(train_data)
        if main:
            (Path(run_dir) / METRICS_FILE).unlink(missing_ok=True)  # an overwritten run's result is no longer true
            save_run(run_dir, model, config, data.item_ids)  # a usable checkpoint exists from the start
    inputs = torch.from_numpy(train_data.inputs)
    targets = torch.from_numpy(train_data.targets)
    users = torch.from_numpy(train_data.users)
    sampler = NegativeSampler(data, device, seed=config.seed) if model.needs_negatives else None
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay) \
        if model.trainable else None
    amp_dtype = AMP_DTYPES.get(config.amp)
    if amp_dtype is not None and device.type == "cpu" and not cpu_has_native(amp_dtype):
        log(f"warning: amp={config.amp} on a CPU without {config.amp} instructions: autocast emulates them, which is "
            "usually slower than amp=none")
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")  # fp16 gradients underflow unscaled
    order = torch.Generator().manual_seed(config.seed)
    if world > 1:
        torch.manual_seed(config.seed + distributed.rank())  # each process its own dropout and augmentations

    best_score, best_epoch, best_valid, history, first_epoch, stopped = -math.inf, -1, {}, [], 0, False
    if state is not None:
        model.load_state_dict(state["model"])
        if optimizer:
            optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        if state.get("threads", torch.get_num_threads()) != torch.get_num_threads():
            log(f"warning: the state was saved with {state['threads']} torch threads, this run has "
                f"{torch.get_num_threads()}: it continues, but not bit-identically to an uninterrupted run")
        saved_world = len(state.get("rng_by_rank", [None]))
        if saved_world != world:
            log(f"warning: the state was saved by {saved_world} process(es), this run has {world}: it continues, "
                "but not identically to an uninterrupted run")
        rng = state["rng_by_rank"][distributed.rank()] if saved_world == world and world > 1 else state["rng"]
        set_rng_states(rng, order, sampler.generator if sampler else None)
        best_score, best_epoch, best_valid = state["best_score"], state["best_epoch"], state["best_valid"]
        history, first_epoch, stopped = state["history"], state["epoch"] + 1, state["stopped"]
        log(f"resuming after epoch {state['epoch']} (best {config.metric} {best_score:.4f} at epoch {best_epoch})")
    loss_terms = model.loss_terms
    if world > 1 and optimizer:
        from torch.nn.parallel import DistributedDataParallel

        loss_terms = DistributedDataParallel(distributed.LossModule(model),
                                             device_ids=[device.index] if device.type == "cuda" else None)
    for epoch in range(first_epoch, config.epochs if optimizer and not stopped else 0):
        started, term_totals, steps = time.perf_counter(), torch.zeros((), device=device), 0
        first_bad = torch.full((), -1, device=device)  # first step with a non-finite loss, checked at log points
        model.start_epoch(train_data)  # counted in the epoch's time (ICLRec's k-means E-step)
        model.train()
        permutation = torch.randperm(len(inputs), generator=order)
        # equal shards: repeat a few sequences so the epoch divides among the processes (as DistributedSampler)
        permutation = torch.cat([permutation, permutation[: -len(permutation) % world]])
        bar = tqdm(total=len(permutation), desc=f"epoch {epoch}", unit="seq", disable=not (progress and main),
                   leave=False)
        for rows in permutation.split(config.batch_size):
            local = distributed.shard(rows)
            batch_targets = targets[rows].to(device)  # the global batch's: the sampler draws for all of it
            batch = {"inputs": inputs[local].to(device), "targets": distributed.shard(batch_targets),
                     "rows": local.to(device)}
            if sampler is not None:  # drawn for the global batch in every process: one stream, as in one process
                batch["negatives"] = distributed.shard(sampler.sample(users[rows].to(device), batch_targets))
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                terms = loss_terms(batch)
                loss = sum(terms.values())
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            steps += 1
            term_totals = term_totals + torch.stack([term.detach().float() for term in terms.values()])
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()), steps - 1, first_bad)
            bar.update(len(rows))
            if steps % LOG_EVERY == 0:  # reading the loss waits for the device: only at log points
                check_finite(first_bad, epoch, run_dir)
                bar.set_postfix(loss=f"{term_totals.sum().item() / steps:.4f}")
        bar.close()
        check_finite(first_bad, epoch, run_dir)
        seconds = time.perf_counter() - started
        term_means = dict(zip(terms, (distributed.all_sum(term_totals) / (world * steps)).tolist()))
        epoch_loss = sum(term_means.values())  # the loss is the sum of its terms
        valid_metrics = evaluate(model, valid, **eval_options)
        score = valid_metrics[config.metric]
        improved = score > best_score
        history.append({"epoch": epoch, "loss": epoch_loss, "terms": term_means, "seconds": seconds,
                        config.metric: score, "valid": valid_metrics})
        terms_text = " ".join(f"{name} {value:.4f}" for name, value in term_means.items())
        log(f"epoch {epoch:3d}  loss {epoch_loss:.4f} ({terms_text})  {len(inputs) / seconds:,.0f} seq/s  "
            f"valid {format_metrics(valid_metrics)}{'  *' if improved else ''}")
        for callback in callbacks:
            callback(history[-1])
        if improved:
            best_score, best_epoch, best_valid = score, epoch, valid_metrics
            if main:
                save_run(run_dir, model, config, data.item_ids)
        stopped = bool(config.patience) and epoch - best_epoch >= config.patience
        rng = distributed.gather_objects(rng_states(order, sampler.generator if sampler else None))
        if main:
            save_state(state_path, {
                "epoch": epoch, "stopped": stopped, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "rng": rng[0], **({"rng_by_rank": rng} if world > 1 else {}), "threads": torch.get_num_threads(),
                "best_score": best_score, "best_epoch": best_epoch, "best_valid": best_valid, "history": history})
        if stopped:
            log(f"early stop: {config.metric} has not improved for {config.patience} epochs")
            break

    distributed.barrier()  # rank 0 has written the best checkpoint
    best = load_run(run_dir, device).model
    if not best_valid:  # nothing to train (popularity) or zero epochs
        best_valid = evaluate(best, valid, **eval_options)
    test_metrics = evaluate(best, test, **eval_options)
    log(f"best epoch {best_epoch}  valid {format_metrics(best_valid)}\ntest  {format_metrics(test_metrics)}")
    result = {"model": config.model, "data": config.data_name, "best_epoch": best_epoch, "metric": config.metric,
              "mask_history": config.mask_history, "sampled_negatives": config.sampled_negatives,
              "valid": best_valid, "test": test_metrics, "history": history}
    if main:
        write_json(Path(run_dir) / METRICS_FILE, result)
    if tracker:
        tracker.finish(result)
    return result


class RunLog:
    """Prints a message (above the progress bar) and appends it, with the time, to the run's log file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, message: str) -> None:
        tqdm.write(message)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(textwrap.indent(message, time.strftime("%Y-%m-%d %H:%M:%S ")) + "\n")


def _quiet(message: str) -> None:
    """What processes other than rank 0 print: nothing."""
