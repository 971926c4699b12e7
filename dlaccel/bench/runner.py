"""Run the workloads on the chosen backends (and the PyTorch peer): check, time, rate, compare."""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..backends import Backend, get_backend
from ..errors import InputError
from . import sysinfo
from .timing import Timing, first_call, measure, measure_limits
from .workloads import PROFILES, Case, Workload

SCHEMA = "dlaccel-bench/1"
PEER = "torch"
# Relative error ||got - ref|| / ||ref|| allowed per output, by dtype: summation order differs
# between BLAS, compiled loops and PyTorch, so element-wise tolerances would flag rounding.
TOLERANCE = {"float32": 1e-3, "float64": 1e-9}
# Per profile: the fewest timed samples and the time budget for sampling one row.
SAMPLING = {"full": (5, 0.5), "quick": (3, 0.15), "tiny": (1, 0.0)}


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
    speedup_vs_loops: float | None = None
    speedup_vs_numpy: float | None = None
    overhead_us: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.median_s is not None


def compare_outputs(got: dict[str, np.ndarray], ref: dict[str, np.ndarray], dtype: Any) -> dict[str, Any]:
    """``{"passed", "max_rel_error", "tolerance", "message"}`` for ``got`` against the reference."""
    tolerance = TOLERANCE[np.dtype(dtype).name]
    worst = 0.0
    for key, r in ref.items():
        g = got.get(key)
        message = None
        if g is None:
            message = f"output {key} missing"
        elif g.shape != r.shape:
            message = f"output {key} has shape {g.shape}, NumPy gives {r.shape}"
        elif r.ndim and g.dtype != r.dtype:
            message = f"output {key} has dtype {g.dtype}, NumPy gives {r.dtype}"
        if message:
            return {"passed": False, "max_rel_error": None, "tolerance": tolerance, "message": message}
        g64, r64 = g.astype(np.float64), r.astype(np.float64)
        if not np.isfinite(g64).all():
            return {"passed": False, "max_rel_error": None, "tolerance": tolerance,
                    "message": f"output {key} has NaN or Inf"}
        scale = max(float(np.linalg.norm(r64)), np.finfo(np.float64).tiny)
        worst = max(worst, float(np.linalg.norm(g64 - r64)) / scale)
    passed = worst <= tolerance
    message = None if passed else f"differs from NumPy: relative error {worst:.2e} > {tolerance:.0e}"
    return {"passed": passed, "max_rel_error": worst, "tolerance": tolerance, "message": message}


def load_torch(threads: int) -> tuple[Any, str | None]:
    """PyTorch with ``threads`` intra-op threads, or ``(None, reason)``."""
    try:
        import torch
    except ImportError:
        return None, "PyTorch is not installed, so there is no peer row (pip install torch)"
    except Exception as exc:  # a broken install must not stop the benchmark
        return None, f"PyTorch failed to import ({type(exc).__name__}: {exc}), so there is no peer row"
    torch.set_num_threads(threads)
    return torch, None


def resolve_targets(names: list[str] | None) -> list[str | Backend]:
    """Backend names (validated; unavailable ones raise with their reason) plus ``"torch"``.
    ``None`` means every available backend and the peer."""
    if not names:
        names = [n for n, info in sysinfo.available_backends().items() if info["available"]] + [PEER]
    targets: list[str | Backend] = []
    for raw in names:  # get_backend raises for an unknown name or an unavailable backend
        name = raw.strip().lower()
        if name == PEER:
            targets.append(PEER)
        else:
            targets.append(get_backend(name))
    return targets


def _target_name(target: str | Backend) -> str:
    return target if isinstance(target, str) else target.name


class _Data:
    """Host data and NumPy reference outputs, made once per (workload, size) and shared."""

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype
        self._data: dict[tuple, dict] = {}
        self._ref: dict[tuple, dict] = {}

    @staticmethod
    def _key(workload: Workload, size: dict) -> tuple:
        return workload.name, tuple(sorted(size.items()))

    def data(self, workload: Workload, size: dict) -> dict:
        key = self._key(workload, size)
        if key not in self._data:
            self._data[key] = workload.data(size, self.dtype)
        return self._data[key]

    def reference(self, workload: Workload, size: dict) -> dict[str, np.ndarray]:
        key = self._key(workload, size)
        if key not in self._ref:
            case = workload.build(get_backend("numpy"), size, self.data(workload, size))
            _, result = first_call(case)
            self._ref[key] = case.outputs(result)
        return self._ref[key]


def _build(workload: Workload, target: str | Backend, size: dict, data: dict, torch: Any) -> Case:
    if isinstance(target, str):
        if workload.build_torch is None:
            raise InputError(f"workload {workload.name!r} has no PyTorch version")
        return workload.build_torch(torch, size, data)
    return workload.build(target, size, data)


def run_one(workload: Workload, target: str | Backend, profile: str, store: _Data, torch: Any,
            min_samples: int, budget_s: float, limits: dict[str, dict]) -> Result:
    """Check then time one workload on one target; errors end up in ``Result.error``."""
    name = _target_name(target)
    size = workload.size(profile, name)
    result = Result(workload.name, workload.group, name, workload.unit, workload.size(profile), size,
                    workload.extrapolation(profile, name))
    try:
        case = _build(workload, target, size, store.data(workload, size), torch)
        first_s, out = first_call(case)
        result.check = compare_outputs(case.outputs(out), store.reference(workload, size), store.dtype)
        if not result.check["passed"]:
            result.error = f"check failed: {result.check['message']}"
            return result
        timing = measure(case, min_samples, budget_s)
    except Exception as exc:  # a backend under development must not take the whole table down
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    _fill_timing(result, workload, first_s, timing, store.dtype, limits)
    return result


def _fill_timing(result: Result, workload: Workload, first_s: float, timing: Timing, dtype: np.dtype,
                 limits: dict[str, dict]) -> None:
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
    machine = limits.get("device" if result.backend in limits.get("device_backends", ()) else "host")
    if workload.unit == "flop":
        result.rate, result.rate_unit = work / result.median_s / 1e9, "GFLOP/s"
        result.limit = machine["gemm_gflops"] if machine else None
    else:
        result.rate, result.rate_unit = work / result.median_s / 1e9, "GB/s"
        result.limit = machine["copy_gbps"] if machine else None
    if result.limit:
        result.share_of_limit = result.rate / result.limit


def _speedups(results: list[Result]) -> None:
    by_workload: dict[str, dict[str, Result]] = {}
    for r in results:
        by_workload.setdefault(r.workload, {})[r.backend] = r
    for rows in by_workload.values():
        loops, numpy_row = rows.get("loops"), rows.get("numpy")
        for r in rows.values():
            if not r.ok or r.unit == "overhead":
                continue
            if loops is not None and loops.ok:
                r.speedup_vs_loops = loops.median_s / r.median_s
            if numpy_row is not None and numpy_row.ok:
                r.speedup_vs_numpy = numpy_row.median_s / r.median_s


def run(
    backends: list[str] | None = None,
    workloads: list[Workload] | None = None,
    profile: str = "full",
    dtype: Any = "float32",
    min_samples: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run ``workloads`` on ``backends`` (names; ``"torch"`` for the peer; None for all available)
    and return the report (the JSON document ``dlaccel bench --json`` writes)."""
    from .workloads import WORKLOADS

    if profile not in PROFILES:
        raise InputError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise InputError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt.name not in TOLERANCE:
        raise InputError(f"dtype must be float32 or float64, got {dt.name}")
    default_samples, budget_s = SAMPLING[profile]
    if min_samples is not None and (isinstance(min_samples, bool) or not isinstance(min_samples, int)
                                    or min_samples < 1):
        raise InputError(f"repeat must be an integer >= 1, got {min_samples!r}")
    min_samples = min_samples or default_samples
    targets = resolve_targets(backends)
    selected = list(WORKLOADS.values()) if workloads is None else workloads
    say = progress or (lambda message: None)
    started = time.perf_counter()

    notes: list[str] = []
    threads = sysinfo.blas_threads()
    torch = None
    if PEER in targets:
        torch, reason = load_torch(threads)
        if torch is None:
            notes.append(reason or "")
            targets = [t for t in targets if t != PEER]

    say("measuring the machine's limits")
    limits: dict[str, Any] = {"host": measure_limits(profile, dt)}
    device = [t for t in targets if not isinstance(t, str) and getattr(t, "device_kind", "host") == "device"]
    if device:
        be = device[0]
        limits["device"] = measure_limits(profile, dt, be.xp, be.synchronize)
        limits["device_backends"] = [t.name for t in device]

    store = _Data(dt)
    results = []
    for workload in selected:
        for target in targets:
            say(f"{workload.name} on {_target_name(target)}")
            results.append(run_one(workload, target, profile, store, torch, min_samples, budget_s, limits))
    _speedups(results)
    for r in results:
        if r.extrapolation != 1.0 and r.ok:
            notes.append(f"{r.workload} on {r.backend}: extrapolated from "
                         f"{WORKLOADS[r.workload].describe(r.measured_size)} (x{r.extrapolation:g})")

    system = sysinfo.collect()  # after the runs, so Numba's thread count is known if it was used
    peer = {"name": PEER, "available": torch is not None,
            "version": getattr(torch, "__version__", None), "threads": torch.get_num_threads() if torch else None}
    return {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "profile": profile,
        "dtype": dt.name,
        "threads": threads,
        "system": system,
        "limits": limits,
        "peer": peer,
        "workloads": {w.name: {"title": w.title, "group": w.group, "unit": w.unit,
                               "size": w.size(profile), "describe": w.describe(w.size(profile))}
                      for w in selected},
        "results": [_jsonable(asdict(r)) for r in results],
        "notes": notes,
        "wall_s": time.perf_counter() - started,
    }


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
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
