import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("ELCREC_DATA_DIR", ROOT.parent / "shared" / "data"))
REFERENCE_DIR = DATA_DIR.parent / "reference"


def benchmark_file(name: str) -> Path:
    path = DATA_DIR / f"{name}.txt"
    if not path.is_file():
        pytest.skip(f"{path} not found: set ELCREC_DATA_DIR to the folder holding the benchmark files")
    return path


@pytest.fixture
def bf16_instructions(monkeypatch):
    """`bf16_instructions(native)` makes torch (and so elcrec.runtime.has_native) report that this CPU has bf16
    instructions (AVX512-BF16 or AMX), or has none, for the test."""

    def report(native: bool) -> None:
        for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
            monkeypatch.setattr(torch.cpu, name, lambda: native)

    return report


@pytest.fixture(autouse=True)
def keep_denormals():
    """The CLI flushes denormals for its process (elcrec.runtime.prepare_process); CLI tests run in this process,
    whose other tests (hypothesis's subnormal floats among them) expect IEEE arithmetic."""
    yield
    from elcrec.runtime import denormals_flushed_per_thread, flush_denormals

    if any(denormals_flushed_per_thread()):
        flush_denormals(False)


@pytest.fixture(autouse=True)
def same_threads(monkeypatch):
    """CLI commands run in this process set its torch threads (to the idle cores when not told): they keep the
    test's count, and whatever a command sets is undone, so no test's threads depend on the load or on the tests
    before it (a resumed run matches an uninterrupted one bit for bit only at the same thread count)."""
    threads = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", str(threads))
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def float64():
    """For checks that compare two orders of computation (sharded vs one process, fast vs reference engine,
    trimmed vs padded inputs): in float64 rounding stays far below any real discrepancy, on every CPU (in
    float32 the summation order alone moved gradients by 1e-5 on some and 2e-6 on others)."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


@pytest.fixture
def tiny_data():
    from elcrec.data import make_synthetic

    return make_synthetic(n_users=120, n_items=60, n_intents=4, seed=3)
