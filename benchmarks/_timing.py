"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def sync(device: str | torch.device = "cuda") -> None:
    """Wait for queued CUDA work when ``device`` is a CUDA device (so a timer sees all of it)."""
    if str(device).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


def median_time(fn: Callable[[], object], repeat: int, device: str | torch.device = "cuda") -> float:
    """Median wall time of ``repeat`` calls of ``fn``, each waiting for ``device``'s queued work."""
    times = []
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
