"""The process runtime: denormals flushed on every torch thread, freed memory kept, the automatic thread count,
devices."""

import ctypes
import os
import subprocess
import sys

import pytest
import torch

from elcrec import runtime

FLUSH_CHECK = """
import sys
import torch
from elcrec import runtime
if sys.argv[1:] == ["faiss"]:
    import faiss  # noqa: F401  (its wheel brings a second libgomp, as k-means loads it before training)
torch.set_num_threads(2)
torch.ones(1 << 22).mul_(2)  # the thread pool exists before the flush, as in a notebook
assert runtime.flush_denormals()
assert runtime.denormals_flushed_per_thread() == [True, True]
tiny = torch.full((512, 512), 1e-40)  # denormal: read as zero (DAZ) by the matmul's every thread
assert ((tiny @ torch.ones(512, 512)) == 0).all(), "a matmul thread kept denormals"
assert ((torch.full((1 << 22,), 1e-38) * 1e-3) == 0).all(), "an elementwise thread kept denormals"
print("ok")
"""


@pytest.mark.parametrize("loaded", ["torch", "faiss"])
def test_denormals_are_flushed_on_every_thread(loaded):
    """Without FTZ/DAZ on every OpenMP thread, each thread's share of a matmul over denormal inputs stays
    non-zero (torch.set_flush_denormal alone reaches the calling thread: half the products survived). With
    faiss loaded, two libgomp copies are in the process: torch's threads are those of its own copy."""
    if loaded == "faiss":
        pytest.importorskip("faiss")
    done = subprocess.run([sys.executable, "-c", FLUSH_CHECK, loaded], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


HEAP_CHECK = """
import ctypes
from elcrec import runtime
runtime.keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc.mallinfo2.restype = Mallinfo2
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
before = libc.mallinfo2().arena
block = libc.malloc(3 << 30)  # never written: no page is touched
if not block:
    raise SystemExit(3)  # the system refuses to reserve 3 GB (strict overcommit)
assert libc.mallinfo2().arena - before >= 3 << 30, "not served from the heap"
libc.free(block)
print((libc.mallinfo2().arena - before) >> 30)
"""


def test_freed_memory_stays_in_the_heap_however_large():
    """A freed 3 GB block stays in glibc's heap: given back, it would be page-faulted afresh by the next step
    that needs it (a trim threshold, an int, still trimmed a free top above 2 GB; -1 turns trimming off)."""
    if not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("needs glibc 2.33 or later (mallinfo2)")
    done = subprocess.run([sys.executable, "-c", HEAP_CHECK], capture_output=True, text=True, timeout=120)
    if done.returncode == 3:
        pytest.skip("this system does not reserve 3 GB for one malloc")
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) >= 3, f"the heap kept {done.stdout.strip()} GB of the freed 3 GB"


def test_automatic_threads_follow_omp_num_threads_and_idle_cores(monkeypatch):
    assert 0 <= runtime.idle_cores(0.05) <= len(os.sched_getaffinity(0)) == runtime.usable_cores()
    monkeypatch.setattr(runtime, "usable_cores", lambda: 8)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert runtime.auto_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "64")  # a job's environment naming the machine's cores, not the job's
    assert runtime.auto_threads() == 8
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(runtime, "idle_cores", lambda: 0.3)  # every core busy: still one thread
    assert runtime.auto_threads() == 1
    monkeypatch.setattr(runtime, "idle_cores", lambda: 3.6)
    assert runtime.auto_threads() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun's processes share the idle cores
    assert runtime.auto_threads() == 2


def test_threads_beyond_the_usable_cores_are_refused(monkeypatch):
    """--threads 10000 started 20,000 threads on 2 cores, and the run crawled: threads beyond the cores only wait
    for each other."""
    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    with pytest.raises(ValueError, match="threads=3: this process may run on 2 cores"):
        runtime.set_threads(3)


def test_devices():
    assert runtime.resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            runtime.resolve_device("cuda")
    with pytest.raises(ValueError, match="choose auto, cpu or cuda"):
        runtime.resolve_device("tpu")


def test_training_flushes_denormals_only_while_it_runs(tiny_data, tmp_path):
    from elcrec import Config
    from elcrec.training import train

    seen = []
    config = Config(hidden_size=16, max_len=20, epochs=1, device="cpu", output_dir=str(tmp_path))
    train(
        config, data=tiny_data, progress=False, on_epoch=lambda _: seen.append(runtime.denormals_flushed_per_thread())
    )
    assert seen and all(all(flags) for flags in seen)
    assert not any(runtime.denormals_flushed_per_thread())  # the process as it was


def test_training_says_when_the_pool_threads_are_out_of_reach(tiny_data, tmp_path, monkeypatch):
    """Without torch's OpenMP runtime in reach, the pool's threads keep denormals: flush_denormals says so
    (it used to report the calling thread's flag alone), and training warns in its log."""
    from elcrec import Config
    from elcrec.runs import LOG_FILE
    from elcrec.training import train

    monkeypatch.setattr(runtime, "_openmp_runtime", lambda: None)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert runtime.flush_denormals() is False
        runtime.flush_denormals(False)
        config = Config(hidden_size=16, max_len=20, epochs=1, device="cpu", output_dir=str(tmp_path))
        train(config, data=tiny_data, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert "denormal floats are not flushed on every thread" in (config.run_dir / LOG_FILE).read_text()


def test_native_half_precision_is_known_per_device(monkeypatch, bf16_instructions):
    """amp=bf16 on a GPU before Ampere is emulated: training warns there as it does on such a CPU."""
    import elcrec.runtime as runtime

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert not runtime.has_native(torch.bfloat16, torch.device("cuda"))
    assert runtime.has_native(torch.float16, torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert runtime.has_native(torch.bfloat16, torch.device("cuda", 1))
    bf16_instructions(False)
    assert not runtime.has_native(torch.bfloat16, torch.device("cpu"))
    bf16_instructions(True)
    assert runtime.has_native(torch.bfloat16, torch.device("cpu"))


def test_training_under_a_float64_default_evaluates_and_keeps_the_flush_setting(tiny_data, tmp_path, float64):
    """The flush check multiplied 1e-39, a normal float64, so it reported no flushing and training turned the
    caller's flush off after; the evaluator's history mask took the default dtype and failed on float32 scores."""
    from elcrec import Config
    from elcrec.training import train

    runtime.flush_denormals(True)
    try:
        assert all(runtime.denormals_flushed_per_thread())
        config = Config(hidden_size=16, max_len=20, epochs=1, device="cpu", output_dir=str(tmp_path))
        record = train(config, data=tiny_data, progress=False)
        assert all(runtime.denormals_flushed_per_thread())  # the caller's setting, kept
    finally:
        runtime.flush_denormals(False)
    assert record["test"]["NDCG@10"] > 0
    assert "not flushed" not in (tmp_path / "train.log").read_text()


def test_the_source_digest_changes_with_any_source_file(tmp_path, monkeypatch):
    """Sessions name the code that trained them: a run resumed after the code changed must say so."""
    (tmp_path / "models").mkdir()
    (tmp_path / "runtime.py").write_text("")
    monkeypatch.setattr(runtime, "__file__", str(tmp_path / "runtime.py"))
    digests = []
    for text in ("x = 1\n", "x = 2\n"):
        (tmp_path / "models" / "a.py").write_text(text)
        runtime.source_digest.cache_clear()
        digests.append(runtime.source_digest())
    runtime.source_digest.cache_clear()
    assert len(digests[0]) == 12 and digests[0] != digests[1]
