"""The process's runtime: device, CPU threads, denormal flushing, memory tuning and seeding.

Nothing here happens on import. The CLI calls `prepare_process` once per command; the trainer seeds
(`seed_everything`), since a run's result depends on it, and flushes denormals while it trains
(`denormals_flushed`, then as before); a notebook that only evaluates or serves keeps its process as it was.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import random
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch


def resolve_device(name: str) -> torch.device:
    """auto (CUDA when present), cpu or cuda; a ValueError when CUDA is asked for and absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda but no CUDA device is available on this machine (use device=auto or cpu)")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device={name!r}: choose auto, cpu or cuda")
    return torch.device(name)


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def idle_cores(seconds: float = 0.1) -> float:
    """Cores this process may use that no other process kept busy over the last `seconds` (/proc/stat)."""
    cores = usable_cores()
    stat = Path("/proc/stat")
    if not stat.is_file():
        return float(cores)

    def sample() -> tuple[int, int]:
        values = [int(v) for v in stat.read_text().split("\n", 1)[0].split()[1:9]]
        return sum(values), values[3] + values[4]  # all time, idle + iowait

    total, idle = sample()
    time.sleep(seconds)
    total2, idle2 = sample()
    busy = (1 - (idle2 - idle) / max(total2 - total, 1)) * (os.cpu_count() or cores)
    return max(cores - busy, 0.0)


def auto_threads() -> int:
    """Torch threads when none are asked for: OMP_NUM_THREADS if set (at most the usable cores: a job's
    environment may name the machine's cores where the job has fewer), else the idle cores now (at least one)
    shared among torchrun's local processes. Every thread of torch's pool waits for the slowest at each
    parallel step: on a core another process holds, SASRec trained 65x slower with 2 threads than with 1."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return min(max(int(os.environ["OMP_NUM_THREADS"]), 1), usable_cores())
    local = max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    return max(int(idle_cores() + 0.5) // local, 1)


def set_threads(threads: int = 0) -> int:
    """torch's CPU threads: `threads` (at most the usable cores), or `auto_threads()` for 0; returns the number
    set."""
    if threads < 0:
        raise ValueError(f"threads={threads}: give 0 (automatic) or a positive number")
    if threads > (cores := usable_cores()):
        raise ValueError(
            f"threads={threads}: this process may run on {cores} cores, and threads beyond them only wait for each "
            f"other; give at most {cores} (0: the idle cores)"
        )
    threads = threads or auto_threads()
    torch.set_num_threads(threads)
    return threads


def flush_denormals(enabled: bool = True) -> bool:
    """Treat float values below the smallest normal as zero (FTZ/DAZ), or (False) stop, on the calling thread
    and on every thread of torch's OpenMP pool; True when every thread does as asked (False when the pool's
    threads are out of reach). Exact for what training computes: such values are far below float32 rounding
    of anything they are added to, and some CPUs (Intel's among them) multiply them a hundred times slower
    (NT-Xent's softmax gradient is full of them). torch's set_flush_denormal reaches only the calling thread,
    so each pool thread runs it in one parallel region."""
    if not torch.set_flush_denormal(enabled) and enabled:
        return False  # this CPU has no FTZ/DAZ
    if torch.get_num_threads() > 1:
        gomp = _openmp_runtime()
        if gomp is None:
            return False
        callback = _PARALLEL_FN(lambda _: torch.set_flush_denormal(enabled))
        gomp.GOMP_parallel(callback, None, torch.get_num_threads(), 0)
    return all(flushed == enabled for flushed in denormals_flushed_per_thread())


@contextlib.contextmanager
def denormals_flushed() -> Iterator[bool]:
    """Denormals flushed on every torch thread for the block (whether they are), then as before."""
    before = denormals_flushed_per_thread()[0]
    try:
        yield flush_denormals()
    finally:
        if not before:
            flush_denormals(False)


def denormals_flushed_per_thread() -> list[bool]:
    """Whether each thread of torch's OpenMP pool (the calling thread first) flushes denormals to zero."""

    def flushes() -> bool:
        # single-element: computed on the calling thread; float32, where 1e-39 is denormal, whatever the default dtype
        return (torch.tensor([1e-39], dtype=torch.float32) * 0.5).item() == 0.0

    gomp = _openmp_runtime()
    if gomp is None or torch.get_num_threads() == 1:
        return [flushes()]
    found: dict[int, bool] = {}
    callback = _PARALLEL_FN(lambda _: found.__setitem__(gomp.omp_get_thread_num(), flushes()))
    gomp.GOMP_parallel(callback, None, torch.get_num_threads(), 0)
    return [found[i] for i in sorted(found)]


_PARALLEL_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


@functools.cache  # fixed by how torch was linked: found once per process
def _openmp_runtime() -> ctypes.CDLL | None:
    """The GNU OpenMP runtime torch runs its CPU threads on (Linux wheels), or None. Other wheels bring their
    own copy (faiss-cpu's libgomp-<hash>.so, loaded by k-means), whose threads are not torch's: the dynamic
    linker says which copy libtorch_cpu's own omp_get_thread_num binds to."""
    maps = Path("/proc/self/maps")
    if not maps.is_file():
        return None
    torch_cpu = {line.split()[-1] for line in maps.read_text().splitlines() if "libtorch_cpu" in line}
    dladdr = getattr(ctypes.CDLL(None), "dladdr", None)
    if len(torch_cpu) != 1 or dladdr is None:
        return None
    try:  # dlsym on a library's handle searches that library's own dependencies
        symbol = ctypes.cast(ctypes.CDLL(torch_cpu.pop()).omp_get_thread_num, ctypes.c_void_p)
    except AttributeError:  # torch built without OpenMP
        return None
    found = _DlInfo()
    if not dladdr(symbol, ctypes.byref(found)) or not found.dli_fname:
        return None
    gomp = ctypes.CDLL(found.dli_fname.decode())
    if not hasattr(gomp, "GOMP_parallel"):
        return None
    gomp.GOMP_parallel.argtypes = [_PARALLEL_FN, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    gomp.omp_get_thread_num.restype = ctypes.c_int
    return gomp


class _DlInfo(ctypes.Structure):
    _fields_ = [  # dladdr's answer (dlfcn.h)
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


def keep_freed_memory() -> None:
    """Make glibc serve every allocation from its heap and never give freed memory back to the system.
    Otherwise each activation buffer above 32 MB is mmap-ed afresh and page-faulted on every training step.
    The process keeps its peak memory until it exits: the CLI's choice, never a library call's."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    libc.mallopt(M_MMAP_MAX, 0)
    libc.mallopt(M_TRIM_THRESHOLD, -1)  # -1: never trim; any threshold (an int) still trims a free top above 2 GB


def has_native(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether `device` computes `dtype` matmuls in hardware: a CPU with AVX512-BF16 or AMX, a GPU from Ampere on
    for bf16; without, they are emulated and slower than float32. True for full precision, and when this torch
    cannot tell."""
    if dtype not in (torch.bfloat16, torch.float16):
        return True
    if device.type == "cuda":
        return dtype != torch.bfloat16 or torch.cuda.is_bf16_supported(including_emulation=False)
    names = {
        torch.bfloat16: ("_is_avx512_bf16_supported", "_is_amx_tile_supported"),
        torch.float16: ("_is_amx_fp16_supported",),
    }[dtype]
    checks = [getattr(torch.cpu, name, None) for name in names]
    return any(check is None or check() for check in checks)


def describe_machine(device: str = "cpu", threads: bool = True) -> str:
    """One line for a run's records: the CPU model with its family and model numbers (a virtual machine may name
    only the brand; an AMD EPYC of family 25 is a Zen 3 or 4, of family 26 a Zen 5), its cores, the bf16
    instructions it has (AVX512-BF16, AMX), torch and its threads (unless the caller names them itself), and the
    GPU when `device` is one."""
    cpu, flags, details = platform.processor() or platform.machine(), set(), []
    try:
        fields: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().split("\n\n", 1)[0].splitlines():  # the first CPU
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        cpu = fields.get("model name", cpu)
        flags = set(fields.get("flags", "").split())
        if "cpu family" in fields and "model" in fields:
            details.append(f"family {fields['cpu family']} model {fields['model']}")
    except OSError:
        pass
    details += [name for flag, name in (("avx512_bf16", "AVX512-BF16"), ("amx_bf16", "AMX-BF16")) if flag in flags]
    if not flags & {"avx512_bf16", "amx_bf16"}:
        details.append("no bf16 instructions")
    text = f"{cpu} ({', '.join(details)}), {os.cpu_count()} cores, torch {torch.__version__}"
    if threads:
        count = torch.get_num_threads()
        text += f" ({count} thread{'s' if count > 1 else ''})"
    if device != "cpu" and torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name()}"
    return text


@functools.cache
def source_digest() -> str:
    """The first 12 hex digits of a sha256 over the package's source files (their paths and contents): which
    code computed something, a change committed or not included."""
    digest, root = hashlib.sha256(), Path(__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(f"{path.relative_to(root).as_posix()}\n".encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's global generators (what dropout and augmentations draw from)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_process(threads: int = 0, device: torch.device | None = None) -> int:
    """What every computing CLI command does first: torch threads (0 = automatic), denormals flushed on
    them, and on CPU glibc's freed memory kept for reuse. Returns the number of threads."""
    threads = set_threads(threads)
    flush_denormals()
    if device is None or device.type == "cpu":
        keep_freed_memory()
    return threads
