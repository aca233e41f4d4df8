"""`python -m elcrec ...` is the `elcrec` command (what torchrun and subprocesses call)."""

from .cli.main import run

run()
