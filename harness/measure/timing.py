"""One timing protocol, used everywhere: warm-up, device synchronize, repeats,
median and spread, peak memory. Only `fn` runs inside the timed region: build
inputs, load data and log outside it.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Timing:
    """Seconds per call: median, min, max over `repeats`; peak memory in bytes.

    `peak_memory` is torch.cuda.max_memory_allocated on CUDA; on CPU the process's
    peak resident set size (a high-water mark of the whole process)."""

    median_s: float
    min_s: float
    max_s: float
    repeats: int
    peak_memory: int
    device: str

    @property
    def spread(self) -> float:
        """(max - min) / median: the relative range of the repeats."""
        return (self.max_s - self.min_s) / self.median_s if self.median_s else 0.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    fn: Callable[[], object], device: torch.device | str = "cpu", warmup: int = 1, repeats: int = 5
) -> Timing:
    """Time `fn()` after `warmup` untimed calls; CUDA events on GPU, perf_counter on CPU."""
    device = torch.device(device)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end) / 1000.0)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return Timing(
        median_s=statistics.median(times),
        min_s=min(times),
        max_s=max(times),
        repeats=repeats,
        peak_memory=int(peak),
        device=str(device),
    )
