"""What long work tells (training, batch recommendation): one logging path and progress that suits its output.

Everything goes through the `elcrec` logger. `run_logging` adds, for one run, a file handler (the run's
train.log, with times: settings, data warnings, every epoch, errors) and, when asked, a console handler that
prints above the progress bar. `Progress` is a tqdm bar on a terminal, and a line every PROGRESS_SECONDS
otherwise (a log file gets no carriage returns).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tqdm.auto import tqdm

log = logging.getLogger("elcrec")
PROGRESS_SECONDS = 60.0


class _Console(logging.Handler):
    """Messages above tqdm's bar, on stderr with it (stdout holds a command's results: --json is JSON alone);
    errors are left to the caller (the CLI prints them as one `error:` line)."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.ERROR:
            tqdm.write(self.format(record), file=sys.stderr)


class _Parent(logging.Handler):
    """Hands records on to the logger's parent (the caller's own logging), from its level up."""

    def emit(self, record: logging.LogRecord) -> None:
        if log.parent is not None and log.parent.hasHandlers():  # none: Python's last resort would print it again
            log.parent.handle(record)


class _RunFile(logging.FileHandler):
    """The run's train.log: a file that cannot be opened (a process whose run folder is on another machine) is
    reported as logging reports its errors, not raised in place of the error being logged."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            super().emit(record)
        except OSError:
            self.handleError(record)


@contextlib.contextmanager
def run_logging(path: Path, console: bool, process: int = 0) -> Iterator[logging.Logger]:
    """The `elcrec` logger, writing every message of a run to `path` (appended, with times) and to the terminal
    (warnings alone unless `console`; errors are the caller's to report) unless the caller's logging shows them
    (handlers on the root logger, when `elcrec` propagates, or on `elcrec` itself). A level the caller set on the
    `elcrec` logger holds for the terminal and the caller's handlers; the file takes INFO and up whatever it is.
    Another process than the first of a multi-process run adds only its errors to the file, named by its rank,
    and only if it has one (the first process's log would otherwise say only that a peer closed the connection)."""
    if process == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
    file = _RunFile(path, encoding="utf-8", delay=process > 0)
    prefix = f"process {process}: " if process else ""
    file.setFormatter(logging.Formatter(f"%(asctime)s {prefix}%(message)s", "%Y-%m-%d %H:%M:%S"))
    file.setLevel(logging.ERROR if process else logging.INFO)
    level, propagate = log.level, log.propagate
    shown = max(level, logging.INFO)  # what the terminal and the caller's handlers get
    callers = [handler for handler in log.handlers if not isinstance(handler, _Console)]

    def quiet(record: logging.LogRecord) -> bool:  # a handler filter: the caller's level, for their handlers
        return record.levelno >= shown

    handlers: list[logging.Handler] = [file, *([_Parent(shown)] if propagate else [])]
    shows = callers or propagate and logging.getLogger().handlers or any(isinstance(h, _Console) for h in log.handlers)
    if process == 0 and not shows:
        handlers.append(_Console(shown if console else max(shown, logging.WARNING)))
    log.setLevel(logging.INFO)  # for the file: the caller's handlers keep to `shown` through `quiet`
    log.propagate = False  # through _Parent, from `shown` up
    for handler in callers:
        handler.addFilter(quiet)
    for handler in handlers:
        log.addHandler(handler)
    try:
        yield log
    finally:
        for handler in handlers:
            log.removeHandler(handler)
            handler.close()
        for handler in callers:
            handler.removeFilter(quiet)
        log.setLevel(level)
        log.propagate = propagate


def console_logging() -> None:
    """Print the `elcrec` logger's messages (INFO and up, errors excepted) for the rest of the process: the CLI's
    choice, so that groups of runs show their progress between runs."""
    if not any(isinstance(handler, _Console) for handler in log.handlers):
        log.addHandler(_Console())
    log.setLevel(logging.INFO)


class Progress:
    """Work done in a long loop: a bar on a terminal, else a log line every PROGRESS_SECONDS."""

    def __init__(self, total: int, description: str, enabled: bool, unit: str = "seq") -> None:
        self.total, self.description, self.unit, self.done = total, description, unit, 0
        self.started = self.reported = time.perf_counter()
        self.bar = (
            tqdm(total=total, desc=description, unit=unit, leave=False) if enabled and sys.stderr.isatty() else None
        )
        self.lines = enabled and self.bar is None

    def update(self, count: int, **shown: float) -> None:
        """`count` more done; `shown` values (the running loss, when known) are shown with them."""
        self.done += count
        now = time.perf_counter()
        if self.bar is not None:
            self.bar.update(count)
            if shown:
                self.bar.set_postfix({name: f"{value:.4f}" for name, value in shown.items()})
        elif self.lines and now - self.reported >= PROGRESS_SECONDS:
            self.reported = now
            values = "".join(f", {name} {value:.4f}" for name, value in shown.items())
            log.info(
                f"{self.description}: {self.done:,}/{self.total:,} {self.unit} ({self.done / self.total:.0%})"
                f"{values}, {self.done / (now - self.started):,.0f} {self.unit}/s"
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
