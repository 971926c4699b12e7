"""One row of the benchmark: the record (:class:`Result`), its check against the NumPy backend,
and :func:`run_one`, which checks then times one workload on one target in this process. Both
ends of the process isolation import it, and it imports neither: no import circle.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backends import Backend, get_backend
from ..errors import InputError
from ..sysinfo import limit_blas
from .timing import Timing, first_call, measure
from .workloads import Case, Workload

PEER = "torch"
# Error allowed per output, by dtype: the largest element-wise difference max|got - ref| scaled by
# the reference's largest magnitude max|ref|. Elementwise, so a few wrong elements in a large
# output fail (a norm averages them away); scaled by the whole output's magnitude, so rounding from
# a different summation order (BLAS, compiled loops, PyTorch) in small elements does not.
TOLERANCE = {"float32": 1e-3, "float64": 1e-9}


@dataclass
class Result:
    """One row of the table (and of the JSON ``results`` list)."""

    workload: str
    group: str
    backend: str
    unit: str
    size: dict[str, Any]
    measured_size: dict[str, Any]
    extrapolation: float = 1.0
    first_call_s: float | None = None
    median_s: float | None = None
    q1_s: float | None = None
    q3_s: float | None = None
    min_s: float | None = None
    max_s: float | None = None
    samples: int = 0
    calls_per_sample: int = 0
    check: dict[str, Any] = field(default_factory=dict)
    rate: float | None = None
    rate_unit: str | None = None
    limit: float | None = None
    share_of_limit: float | None = None
    # A training step's roofline: its GEMM work, the bytes it must move, the time those take at the
    # machine's limits (the larger: floor_s) and which one that is ("gemm" or "copy").
    gemm_flops: float | None = None
    min_bytes: float | None = None
    floor_s: float | None = None
    bound: str | None = None
    speedup_vs_loops: float | None = None
    speedup_vs_numpy: float | None = None
    overhead_us: float | None = None
    error: str | None = None
    # The process the row was timed in (a fresh child per backend unless run in-process).
    pid: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.median_s is not None


def _rel_error(a: np.ndarray, ref: np.ndarray) -> float:
    """``max|a - ref| / max|ref|``, elementwise, in float64 (0 for empty arrays)."""
    ref64 = ref.astype(np.float64)
    if ref64.size == 0:
        return 0.0
    scale = max(float(np.abs(ref64).max()), np.finfo(np.float64).tiny)
    return float(np.abs(a.astype(np.float64) - ref64).max()) / scale


def compare_outputs(got: dict[str, np.ndarray], ref: dict[str, np.ndarray], dtype: Any,
                    truth: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Check ``got`` against the NumPy backend's ``ref`` (same dtype): shapes and dtypes, then the
    elementwise error ``max|got - truth| / max|truth|`` per output, where ``truth`` is the NumPy
    backend in float64 on the same inputs. The tolerance is the dtype's, widened to 4x NumPy's own error where
    rounding makes even NumPy inexact (a gradient that is a near-cancelling sum).

    Returns ``{"passed", "max_rel_error", "tolerance", "message"}`` (the worst output's error and the
    tolerance it was held to)."""
    base = TOLERANCE[np.dtype(dtype).name]
    truth = ref if truth is None else truth
    if not ref:  # a workload with no outputs would pass unchecked
        return {"passed": False, "max_rel_error": None, "tolerance": base, "message": "no outputs to check"}
    worst, worst_tol = 0.0, base
    for key, r in ref.items():
        g = got.get(key)
        message = None
        if g is None:
            message = f"output {key} missing"
        elif g.shape != r.shape:
            message = f"output {key} has shape {g.shape}, NumPy gives {r.shape}"
        elif r.ndim and g.dtype != r.dtype:
            message = f"output {key} has dtype {g.dtype}, NumPy gives {r.dtype}"
        elif not np.isfinite(g).all():
            message = f"output {key} has NaN or Inf"
        if message is not None or g is None:
            return {"passed": False, "max_rel_error": None, "tolerance": base, "message": message}
        tol = max(base, 4 * _rel_error(r, truth[key]))
        err = _rel_error(g, truth[key])
        if err / tol > worst / worst_tol:
            worst, worst_tol = err, tol
    passed = worst <= worst_tol
    message = None if passed else (f"differs from NumPy: max elementwise error {worst:.2e} of the largest "
                                   f"magnitude > {worst_tol:.1e}")
    return {"passed": passed, "max_rel_error": worst, "tolerance": worst_tol, "message": message}


NO_TORCH = "PyTorch is not installed, so there is no peer row (pip install torch)"


def _broken_torch(exc: Exception) -> str:
    return f"PyTorch failed to import ({type(exc).__name__}: {exc}), so there is no peer row"


def load_torch(threads: int) -> tuple[Any, str | None]:
    """PyTorch with ``threads`` intra-op threads, or ``(None, reason)``."""
    try:
        import torch
    except ImportError:
        return None, NO_TORCH
    except Exception as exc:  # a broken install must not stop the benchmark
        return None, _broken_torch(exc)
    torch.set_num_threads(threads)
    return torch, None


def torch_missing_reason() -> str | None:
    """Why there is no PyTorch peer, found without importing PyTorch; None when it looks importable."""
    try:
        if sys.modules.get("torch", False) is None or importlib.util.find_spec("torch") is None:
            return NO_TORCH
    except (ImportError, ValueError) as exc:
        return _broken_torch(exc)
    return None


class Data:
    """Host data and NumPy reference outputs, made once per (workload, size) and shared."""

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype
        self._data: dict[tuple, dict] = {}
        self._ref: dict[tuple, tuple[dict, dict]] = {}

    @staticmethod
    def _key(workload: Workload, size: dict) -> tuple:
        return workload.name, tuple(sorted(size.items()))

    def data(self, workload: Workload, size: dict) -> dict:
        key = self._key(workload, size)
        if key not in self._data:
            self._data[key] = workload.data(size, self.dtype)
        return self._data[key]

    def reference(self, workload: Workload, size: dict) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The NumPy backend's outputs in the run's dtype and in float64, from the same inputs."""
        key = self._key(workload, size)
        if key not in self._ref:
            data = self.data(workload, size)
            # NumPy's BLAS on this thread only, here and for the check: its workers stay asleep
            # instead of spinning on the cores the next timed row needs.
            with limit_blas(1):
                ref = _outputs(workload, size, data)
                truth = ref if self.dtype == np.float64 else _outputs(workload, size, _upcast(data))
            self._ref[key] = (ref, truth)
        return self._ref[key]


def _outputs(workload: Workload, size: dict, data: dict) -> dict[str, np.ndarray]:
    case = workload.build(get_backend("numpy"), size, data)
    _, result = first_call(case)
    return case.outputs(result)


def _upcast(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _upcast(v) for k, v in data.items()}
    if isinstance(data, np.ndarray) and data.dtype.kind == "f":
        return data.astype(np.float64)
    return data


def build_case(workload: Workload, target: str | Backend, size: dict, data: dict, torch: Any) -> Case:
    if isinstance(target, str):
        if workload.build_torch is None:
            raise InputError(f"workload {workload.name!r} has no PyTorch version")
        return workload.build_torch(torch, size, data)
    return workload.build(target, size, data)


def run_one(workload: Workload, target: str | Backend, profile: str, store: Data, torch: Any,
            min_samples: int, budget_s: float, limits: dict[str, Any] | None = None) -> Result:
    """Check then time one workload on one target in this process; errors end up in
    ``Result.error``. Rates are filled in; the limit and its share only when ``limits`` is given."""
    name = target_name(target)
    size = workload.size(profile, name)
    result = Result(workload.name, workload.group, name, workload.unit, workload.size(profile), size,
                    workload.extrapolation(profile, name), pid=os.getpid())
    try:
        # The NumPy reference first (BLAS on one thread), so nothing runs between the target's
        # first call and its timing but the check.
        ref, truth = store.reference(workload, size)
        case = build_case(workload, target, size, store.data(workload, size), torch)
        first_s, out = first_call(case)
        with limit_blas(1):
            result.check = compare_outputs(case.outputs(out), ref, store.dtype, truth)
        if not result.check["passed"]:
            result.error = f"check failed: {result.check['message']}"
            return result
        timing = measure(case, min_samples, budget_s)
    except Exception as exc:  # a backend under development must not take the whole table down
        result.error = one_line(f"{type(exc).__name__}: {exc}")
        return result
    _fill_timing(result, workload, first_s, timing, store.dtype)
    if limits is not None:
        apply_limits(result, limits)
    return result


def one_line(message: str, limit: int = 160) -> str:
    """The first line of ``message`` without terminal colour codes (Numba's errors carry them)."""
    line = re.sub(r"\x1b\[[0-9;]*m", "", message).strip().splitlines()[0] if message.strip() else message
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _fill_timing(result: Result, workload: Workload, first_s: float, timing: Timing, dtype: np.dtype) -> None:
    k = result.extrapolation  # loops at a smaller size: every time scales by k
    q1, q3 = timing.quartiles()
    result.first_call_s = first_s * k
    result.median_s = timing.median_s * k
    result.q1_s, result.q3_s = q1 * k, q3 * k
    result.min_s, result.max_s = min(timing.samples_s) * k, max(timing.samples_s) * k
    result.samples, result.calls_per_sample = len(timing.samples_s), timing.number
    if workload.unit == "overhead":
        result.overhead_us = (timing.overhead_s or 0.0) * 1e6
        return
    work = workload.work(result.size, dtype)
    result.rate = work / result.median_s / 1e9
    result.rate_unit = "GFLOP/s" if workload.unit == "flop" else "GB/s"
    if workload.gemm_flops is not None and workload.min_bytes is not None:
        result.gemm_flops = workload.gemm_flops(result.size, dtype)
        result.min_bytes = workload.min_bytes(result.size, dtype)


def apply_limits(result: Result, limits: dict[str, Any]) -> None:
    """The limit a row's rate is compared with (the device's for a device backend) and the share."""
    if result.rate is None or result.unit == "overhead":
        return
    machine = limits.get("device" if result.backend in limits.get("device_backends", ()) else "host")
    if not machine:
        return
    if result.gemm_flops is not None and result.min_bytes is not None and result.median_s:
        # Roofline: the step can take no less than its GEMMs at the GEMM rate, nor less than its
        # bytes at the copy bandwidth. The limit is the rate the row would show at that floor.
        times = {"gemm": result.gemm_flops / (machine["gemm_gflops"] * 1e9),
                 "copy": result.min_bytes / (machine["copy_gbps"] * 1e9)}
        result.bound = max(times, key=lambda k: times[k])
        result.floor_s = times[result.bound]
        result.share_of_limit = result.floor_s / result.median_s
        result.limit = result.rate / result.share_of_limit if result.share_of_limit else None
        return
    result.limit = machine["gemm_gflops"] if result.unit == "flop" else machine["copy_gbps"]
    result.share_of_limit = result.rate / result.limit if result.limit else None


def jsonable(row: dict[str, Any]) -> dict[str, Any]:
    # Tuples (layer sizes) become lists and non-finite floats None, so the JSON is strict.
    def fix(v: Any) -> Any:
        if isinstance(v, float):
            return v if math.isfinite(v) else None
        if isinstance(v, (tuple, list)):
            return [fix(x) for x in v]
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        return v

    return fix(row)


def target_name(target: str | Backend) -> str:
    return target if isinstance(target, str) else target.name
