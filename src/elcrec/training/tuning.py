"""Hyperparameter search with Optuna (`pip install -e '.[tune]'`): TPE sampling, median pruning on the
validation metric reported every epoch, one run folder per trial, and the study kept in SQLite so a
search that is stopped continues (with more trials) when started again, with the same settings and search
space only; a trial it stopped in (killed, or Ctrl-C) is resumed first, in its own folder, as one of them.
The objective is the best validation `metric`: selection never reads the test split (each trial's run
records its test metrics, as every run does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Config, ConfigError
from ..data import SequenceData, load_dataset
from ..progress import log
from ..runs import STATE_FILE, atomic_write, describe, fingerprint, write_json
from .trainer import train

# name -> (kind, low, high) or ("choice", options)
SEARCH_SPACE: dict[str, tuple] = {
    "lr": ("log", 1e-4, 5e-3),
    "dropout": ("float", 0.0, 0.6),
    "attn_dropout": ("float", 0.0, 0.6),
    "weight_decay": ("log", 1e-8, 1e-3),
    "cl_weight": ("log", 0.01, 1.0),
    "intent_cl_weight": ("log", 0.01, 1.0),
    "trade_off": ("log", 0.01, 10.0),
    "num_clusters": ("choice", (32, 64, 128, 256, 512)),
    "hidden_size": ("choice", (32, 64, 128)),
    "num_layers": ("choice", (1, 2, 3)),
}
DEFAULT_PARAMS = {
    "elcrec": ("lr", "dropout", "trade_off", "num_clusters", "cl_weight"),
    "iclrec": ("lr", "dropout", "num_clusters", "cl_weight"),
    "cl4srec": ("lr", "dropout", "cl_weight"),
}


def search_params(model: str, names: str = "") -> list[str]:
    chosen = [n.strip() for n in names.split(",") if n.strip()] or list(DEFAULT_PARAMS.get(model, ("lr", "dropout")))
    unknown = [n for n in chosen if n not in SEARCH_SPACE]
    if unknown:
        raise ValueError(f"cannot search {', '.join(unknown)}: choose from {', '.join(SEARCH_SPACE)}")
    unread = [n for n in chosen if n in Config(model=model).unread()]
    if unread:
        raise ValueError(f"{model} does not read {', '.join(unread)}: searching it would only repeat trials")
    return chosen


def suggest(trial: Any, name: str) -> Any:
    kind, *bounds = SEARCH_SPACE[name]
    if kind == "choice":
        return trial.suggest_categorical(name, list(bounds[0]))
    return trial.suggest_float(name, bounds[0], bounds[1], log=kind == "log")


def tune(
    base: Config,
    params: list[str],
    trials: int,
    root: Path,
    timeout: float | None = None,
    data: SequenceData | None = None,
) -> Any:
    """Run `trials` more trials of the study in root/study.db; returns the optuna Study."""
    import optuna

    data = load_dataset(base) if data is None else data
    root.mkdir(parents=True, exist_ok=True)
    # before the study is opened: trials are logged here; optuna's INFO lines and a Ctrl-C's trace are noise
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(
        study_name="elcrec",
        storage=f"sqlite:///{root / 'study.db'}",
        load_if_exists=True,
        direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=5),
    )
    check_same_search(study, base, params, root, fingerprint(data))
    first = len(study.trials)
    interrupted = requeue_interrupted(study)  # queued as the first of this search's trials
    # seeded by how many trials the study holds: a continued study draws new points, not its first ones again
    study.sampler = optuna.samplers.TPESampler(seed=base.seed + first)

    def objective(trial: Any) -> float:
        values = {name: suggest(trial, name) for name in params}
        folder = Path(trial.user_attrs.get("folder") or root / f"trial{trial.number}")
        trial.set_user_attr("folder", str(folder))
        resumes = trial.user_attrs.get("resumes")
        log.info(
            f"== trial {trial.number - first + 1} of {trials} (study trial {trial.number}"
            + (f", resuming trial {resumes}" if resumes is not None else "")
            + "): "
            + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        )

        def report(record: dict[str, Any]) -> None:
            trial.report(record[base.metric], record["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {record['epoch']}: {base.metric} {record[base.metric]:.4f}")

        try:
            config = base.replace(**values, output_dir=str(folder))
            resume = (folder / STATE_FILE).is_file()
            return train(config, data=data, progress=False, on_epoch=report, resume=resume)["valid"][base.metric]
        except ConfigError as error:  # a point the data cannot take (num_clusters above the training sequences)
            log.info(f"   infeasible, pruned: {error}")
            raise optuna.TrialPruned(f"infeasible: {error}") from None
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)  # resumed when the search is started again
            raise

    if interrupted:
        log.info(f"resuming interrupted trial(s) {', '.join(map(str, interrupted))} first")
    study.optimize(objective, n_trials=trials, timeout=timeout)
    return study


def requeue_interrupted(study: Any) -> list[int]:
    """Trials a stopped search left unfinished (still running: its process was killed; or failed by Ctrl-C),
    each queued again with its parameters and folder, so the next trials resume them; returns their numbers.
    One search process per study: a trial another process runs would be taken for a killed one."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    requeued = {trial.user_attrs.get("resumes") for trial in trials}
    numbers = []
    for trial in trials:
        if trial.number in requeued or "folder" not in trial.user_attrs:
            continue
        if trial.state == TrialState.RUNNING:
            study.tell(trial.number, state=TrialState.FAIL)
        elif not (trial.state == TrialState.FAIL and trial.user_attrs.get("interrupted")):
            continue
        study.enqueue_trial(
            trial.params,
            user_attrs={"resumes": trial.number, "folder": trial.user_attrs["folder"]},
            skip_if_exists=False,
        )
        numbers.append(trial.number)
    return numbers


def check_same_search(study: Any, base: Config, params: list[str], root: Path, data: dict[str, Any]) -> None:
    """A study continues only with the settings, search space and data (its fingerprint) it started with (kept in
    the study): trials of others would mix into one ranking and best.json."""
    search = {"settings": base.replace(output_dir="").to_dict(), "params": params, "data": data}
    started = study.user_attrs.get("search")
    if started is None:
        study.set_user_attr("search", search)
        return
    differences = Config.from_dict(started["settings"]).differences(base, aside=("output_dir",))
    changed = [f"{name} {before!r} -> {now!r}" for name, (before, now) in differences.items()]
    if started["params"] != params:
        changed.append(f"params {','.join(started['params'])} -> {','.join(params)}")
    if "data" not in started:  # a study from before the data was kept: from now on, it is this data's
        study.set_user_attr("search", {**started, "data": data})
    elif started["data"]["sha256"] != data["sha256"]:
        changed.append(f"data {describe(started['data'])} -> {describe(data)}")
    if changed:
        raise ValueError(
            f"{root} holds a search with other settings ({', '.join(changed)}): continue it with its own, or "
            "search into another output folder"
        )


def write_summary(study: Any, base: Config, params: list[str], root: Path) -> list[str]:
    """tuning.md (best trial, every trial) and best.json (the base settings with the best values)."""
    import optuna

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise ValueError("no trial finished: nothing to report")
    best = study.best_trial
    # the settings given and the best values, so a preset, recipe or flag given with it still fills the rest
    best_settings = {**base.given_settings(), **best.params}
    best_settings.pop("output_dir", None)
    write_json(root / "best.json", best_settings)
    lines = [
        f"# Search over {', '.join(params)} ({base.model} on {base.data_name})",
        "",
        f"Objective: best validation {base.metric} of each trial. Best: trial {best.number}, "
        f"{base.metric} {best.value:.4f}, "
        + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items()),
        f"Train with it: `elcrec train --config {root / 'best.json'}`.",
        "",
        "| trial | state | " + " | ".join(params) + f" | valid {base.metric} | epochs |",
        "|---" * (len(params) + 4) + "|",
    ]
    for trial in study.trials:
        values = [
            f"{trial.params[p]:.4g}" if isinstance(trial.params.get(p), float) else str(trial.params.get(p, ""))
            for p in params
        ]
        score = f"{trial.value:.4f}" if trial.value is not None else "-"
        epochs = max(trial.intermediate_values, default=-1) + 1  # a resumed trial reports only the epochs after
        lines.append(
            f"| {trial.number} | {trial.state.name.lower()} | " + " | ".join(values) + f" | {score} | {epochs} |"
        )
    atomic_write(root / "tuning.md", ("\n".join(lines) + "\n").encode())
    return lines
