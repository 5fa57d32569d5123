"""The machine's matmul peak, measured in the same run as a benchmark's model FLOP/s."""

from __future__ import annotations

import time

import torch


def matmul_peak(dtype: torch.dtype = torch.float32, n: int = 1024, reps: int = 10) -> float:
    """FLOP/s of an n x n x n matmul in ``dtype`` (best of ``reps``, after one warm-up product)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best
