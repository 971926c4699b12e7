"""Run the workloads on the chosen backends (and the PyTorch peer): check, time, rate, compare."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
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
SAMPLING = {"full": (3, 0.5), "quick": (3, 0.15), "tiny": (1, 0.0)}


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


def _rel_error(a: np.ndarray, ref: np.ndarray) -> float:
    ref64 = ref.astype(np.float64)
    scale = max(float(np.linalg.norm(ref64)), np.finfo(np.float64).tiny)
    return float(np.linalg.norm(a.astype(np.float64) - ref64)) / scale


def compare_outputs(got: dict[str, np.ndarray], ref: dict[str, np.ndarray], dtype: Any,
                    truth: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Check ``got`` against the NumPy backend's ``ref`` (same dtype): shapes and dtypes, then the
    relative error ``||got - truth|| / ||truth||`` per output, where ``truth`` is the NumPy backend in
    float64 on the same inputs. The tolerance is the dtype's, widened to 4x NumPy's own error where
    rounding makes even NumPy inexact (a gradient that is a near-cancelling sum).

    Returns ``{"passed", "max_rel_error", "tolerance", "message"}`` (the worst output's error and the
    tolerance it was held to)."""
    base = TOLERANCE[np.dtype(dtype).name]
    truth = ref if truth is None else truth
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
    message = None if passed else f"differs from NumPy: relative error {worst:.2e} > {worst_tol:.1e}"
    return {"passed": passed, "max_rel_error": worst, "tolerance": worst_tol, "message": message}


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


def resolve_targets(names: Sequence[str | Backend] | None) -> list[str | Backend]:
    """Backends (names or instances; an unknown or unavailable name raises with the reason) plus
    ``"torch"`` for the peer. ``None`` means every available backend and the peer."""
    if not names:
        names = [*(n for n, info in sysinfo.available_backends().items() if info["available"]), PEER]
    targets: list[str | Backend] = []
    for item in names:
        if isinstance(item, str) and item.strip().lower() == PEER:
            targets.append(PEER)
        else:
            targets.append(get_backend(item.strip().lower() if isinstance(item, str) else item))
    return targets


def _target_name(target: str | Backend) -> str:
    return target if isinstance(target, str) else target.name


class _Data:
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
        ref, truth = store.reference(workload, size)
        result.check = compare_outputs(case.outputs(out), ref, store.dtype, truth)
        if not result.check["passed"]:
            result.error = f"check failed: {result.check['message']}"
            return result
        timing = measure(case, min_samples, budget_s)
    except Exception as exc:  # a backend under development must not take the whole table down
        result.error = one_line(f"{type(exc).__name__}: {exc}")
        return result
    _fill_timing(result, workload, first_s, timing, store.dtype, limits)
    return result


def one_line(message: str, limit: int = 160) -> str:
    """The first line of ``message`` without terminal colour codes (Numba's errors carry them)."""
    line = re.sub(r"\x1b\[[0-9;]*m", "", message).strip().splitlines()[0] if message.strip() else message
    return line if len(line) <= limit else line[: limit - 3] + "..."


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


def _ratio(baseline: Result | None, row: Result) -> float | None:
    if baseline is None or baseline.median_s is None or not baseline.ok or not row.median_s:
        return None
    return baseline.median_s / row.median_s


def _speedups(results: list[Result]) -> None:
    by_workload: dict[str, dict[str, Result]] = {}
    for r in results:
        by_workload.setdefault(r.workload, {})[r.backend] = r
    for rows in by_workload.values():
        loops, numpy_row = rows.get("loops"), rows.get("numpy")
        for r in rows.values():
            if not r.ok or r.unit == "overhead":
                continue
            r.speedup_vs_loops = _ratio(loops, r)
            r.speedup_vs_numpy = _ratio(numpy_row, r)


def run(
    backends: Sequence[str | Backend] | None = None,
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
    xp = getattr(device[0], "xp", None) if device else None
    if device and xp is not None:
        limits["device"] = measure_limits(profile, dt, xp, device[0].synchronize)
        limits["device_backends"] = [t.name for t in device]

    store = _Data(dt)
    results = []
    for workload in selected:
        for target in targets:
            say(f"{workload.name} on {_target_name(target)}")
            results.append(run_one(workload, target, profile, store, torch, min_samples, budget_s, limits))
    _speedups(results)

    system = sysinfo.collect()  # after the runs, so Numba's thread count is known if it was used
    peer = {"name": PEER, "available": torch is not None,
            "version": getattr(torch, "__version__", None), "threads": torch.get_num_threads() if torch else None}
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
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
