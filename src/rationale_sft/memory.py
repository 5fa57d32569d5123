"""Peak memory of one stage: resident set size (RSS) of this process and, on CUDA, allocated device memory.

Several runs of a grid may share one process (the local sequential executor), so the process's lifetime
peak says nothing about one run. On Linux the kernel's high-water mark (``VmHWM``) is reset when the stage
starts (``/proc/self/clear_refs``) and read when it ends; where it cannot be reset the peak is the
process's (``peak_rss_scope``: ``run`` or ``process``). The reset starts from the current RSS, so a run's
peak includes whatever the process still holds from the runs before it; ``release`` (called when a run's
training ends and when its stage block ends) hands back what a finished run freed, so that is little.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import resource
import sys
from collections.abc import Iterator
from pathlib import Path

PROC = Path("/proc/self")


def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark; False where the OS does not allow it."""
    try:
        (PROC / "clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    """This process's peak RSS in MiB since the last reset (``VmHWM``), else since it started."""
    try:
        for line in (PROC / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


@contextlib.contextmanager
def peak() -> Iterator[dict]:
    """Yield a dict that holds, once the block ends, ``peak_rss_mb`` and ``peak_rss_scope`` and, when torch
    uses CUDA, ``peak_gpu_mb`` (the most memory its allocator held during the block)."""
    out: dict = {}
    scope = "run" if reset_peak_rss() else "process"
    if _cuda() is not None:
        _cuda().reset_peak_memory_stats()
    try:
        yield out
    finally:
        out.update(peak_rss_mb=round(peak_rss_mb(), 1), peak_rss_scope=scope)
        if _cuda() is not None:  # initialised during the block: its peak since then is the block's
            out["peak_gpu_mb"] = round(_cuda().max_memory_allocated() / 2**20, 1)
        release()


def release() -> None:
    """Hand back to the OS what finished work freed: collect reference cycles, then trim glibc's heaps
    (glibc keeps freed memory in its arenas; measured with LoRA on SmolLM2-135M: RSS after a run 2.0 GB
    without the trim, 0.5 GB with it, benchmarks/bench_train_memory.py)."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim`` (None elsewhere: macOS, musl)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _cuda():
    """``torch.cuda`` when torch is loaded and a CUDA device is in use, else None."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda
