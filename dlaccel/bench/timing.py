"""Timing done right: first call apart, device synchronized before every clock read, GC off while
sampling, enough calls per sample that the clock's resolution does not matter; and the machine's
limits (GEMM rate, copy bandwidth) measured the same way."""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .workloads import Case

# Each sample lasts at least this long, so per-call times of microsecond ops are averaged over
# many calls instead of being rounded by the clock.
MIN_SAMPLE_S = 0.02
MAX_SAMPLES = 50


@dataclass
class Timing:
    """Seconds per call. ``samples_s`` each average ``number`` consecutive calls."""

    samples_s: list[float]
    number: int
    baseline_s: list[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(self.samples_s)

    def quartiles(self) -> tuple[float, float]:
        if len(self.samples_s) < 2:
            return self.samples_s[0], self.samples_s[0]
        q1, _, q3 = statistics.quantiles(self.samples_s, n=4, method="inclusive")
        return q1, q3

    @property
    def overhead_s(self) -> float | None:
        """Median over samples of (call - baseline call), paired so that drift cancels."""
        if not self.baseline_s:
            return None
        return statistics.median(a - b for a, b in zip(self.samples_s, self.baseline_s))


def first_call(case: Case) -> tuple[float, Any]:
    """Time the first call (compilation included) and return its result for checking."""
    t0 = time.perf_counter()
    result = case.step()
    case.sync()
    return time.perf_counter() - t0, result


def _sample(fn: Callable[[], Any], sync: Callable[[], None], number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    sync()
    return (time.perf_counter() - t0) / number


def measure(case: Case, min_samples: int, budget_s: float) -> Timing:
    """Warm up once, then take samples until both ``min_samples`` and ``budget_s`` are reached."""
    warm = _sample(case.step, case.sync, 1)
    number = max(1, math.ceil(MIN_SAMPLE_S / max(warm, 1e-9)))
    timing = Timing([], number)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        while len(timing.samples_s) < MAX_SAMPLES:
            if case.baseline is not None:
                timing.baseline_s.append(_sample(case.baseline, case.sync, number))
            timing.samples_s.append(_sample(case.step, case.sync, number))
            if len(timing.samples_s) >= min_samples and time.perf_counter() - start >= budget_s:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return timing


# -- machine limits ------------------------------------------------------------------------------

LIMIT_SIZES = {
    # GEMM side n (2 n^3 FLOP), copy elements (bigger than any last-level cache at full size)
    "full": {"gemm_n": 2048, "copy_n": 32 * 2**20},
    "quick": {"gemm_n": 1536, "copy_n": 16 * 2**20},
    "tiny": {"gemm_n": 128, "copy_n": 2**16},
}


def _best(fn: Callable[[], Any], sync: Callable[[], None], repeats: int) -> float:
    fn()
    sync()
    return min(_sample(fn, sync, 1) for _ in range(repeats))


def measure_limits(profile: str, dtype: Any, xp: Any = np, sync: Callable[[], None] = lambda: None) -> dict:
    """The best GEMM rate (GFLOP/s) and copy bandwidth (GB/s, bytes read + written) of the array
    library ``xp`` (NumPy: the host; CuPy: the device) in ``dtype``."""
    sizes = LIMIT_SIZES[profile]
    dtype = np.dtype(dtype)
    n, copy_n = sizes["gemm_n"], sizes["copy_n"]
    A, B, C = xp.ones((n, n), dtype=dtype), xp.ones((n, n), dtype=dtype), xp.empty((n, n), dtype=dtype)
    gemm_s = _best(lambda: xp.matmul(A, B, out=C), sync, 5)
    src = xp.ones(copy_n, dtype=dtype)
    dst = xp.empty_like(src)
    copy_s = _best(lambda: xp.copyto(dst, src), sync, 7)
    return {
        "dtype": dtype.name,
        "gemm_n": n,
        "gemm_gflops": 2.0 * n**3 / gemm_s / 1e9,
        "copy_bytes": 2 * copy_n * dtype.itemsize,
        "copy_gbps": 2.0 * copy_n * dtype.itemsize / copy_s / 1e9,
    }
