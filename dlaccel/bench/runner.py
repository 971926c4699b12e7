"""Run the workloads on the chosen backends (and the PyTorch peer): check, time, rate, compare.

By default each backend (and the peer) is timed in a fresh child process of its own
(:mod:`dlaccel.bench.worker`), one after the other: runtimes in one process interfere (OpenBLAS's
workers spin after every GEMM and hold the cores that the next parallel region of PyTorch's or
Numba's thread pool waits for). This process measures the machine's limits, gathers the rows,
computes the speed-ups and writes the report. ``isolate=False`` times everything in this process.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..backends import Backend, get_backend
from ..errors import InputError, MissingDependencyError
from . import sysinfo
from .timing import Timing, first_call, measure, measure_limits
from .workloads import PROFILES, Case, Workload

SCHEMA = "dlaccel-bench/1"
PEER = "torch"
# Error allowed per output, by dtype: the largest element-wise difference max|got - ref| scaled by
# the reference's largest magnitude max|ref|. Elementwise, so a few wrong elements in a large
# output fail (a norm averages them away); scaled by the whole output's magnitude, so rounding from
# a different summation order (BLAS, compiled loops, PyTorch) in small elements does not.
TOLERANCE = {"float32": 1e-3, "float64": 1e-9}
# Per profile: the fewest timed samples and the time budget for sampling one row.
SAMPLING = {"full": (3, 0.5), "quick": (3, 0.15), "tiny": (1, 0.0)}
# A child process that makes no progress (no row finished) for this long is killed and that row
# reported as timed out: generous, since a cold Numba cache compiles every kernel in one first call.
ROW_TIMEOUT_S = 600.0


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


@contextlib.contextmanager
def quiet_blas() -> Iterator[None]:
    """NumPy's BLAS on the calling thread only, for the reference outputs and the checks: its
    workers stay asleep instead of spinning on the cores the next timed row needs."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def torch_missing_reason() -> str | None:
    """Why there is no PyTorch peer, found without importing PyTorch; None when it looks importable."""
    try:
        if sys.modules.get("torch", False) is None or importlib.util.find_spec("torch") is None:
            return "PyTorch is not installed, so there is no peer row (pip install torch)"
    except (ImportError, ValueError) as exc:
        return f"PyTorch failed to import ({type(exc).__name__}: {exc}), so there is no peer row"
    return None


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
    ``"torch"`` for the peer, each once, in the order given. ``None`` means every available
    backend and the peer. Already-resolved targets (instances and ``"torch"``) pass through
    without probing anything again, so :func:`run` can take this function's result."""
    if not names:
        names = [*(n for n, info in sysinfo.available_backends().items() if info["available"]), PEER]
    targets: list[str | Backend] = []
    for item in names:
        if isinstance(item, str) and item.strip().lower() == PEER:
            target: str | Backend = PEER
        else:
            target = get_backend(item.strip().lower() if isinstance(item, str) else item)
        if all(_target_name(target) != _target_name(t) for t in targets):  # "-b numpy,numpy" times it once
            targets.append(target)
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
            with quiet_blas():
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
            min_samples: int, budget_s: float, limits: dict[str, Any] | None = None) -> Result:
    """Check then time one workload on one target in this process; errors end up in
    ``Result.error``. Rates are filled in; the limit and its share only when ``limits`` is given."""
    name = _target_name(target)
    size = workload.size(profile, name)
    result = Result(workload.name, workload.group, name, workload.unit, workload.size(profile), size,
                    workload.extrapolation(profile, name), pid=os.getpid())
    try:
        # The NumPy reference first (BLAS on one thread), so nothing runs between the target's
        # first call and its timing but the check.
        ref, truth = store.reference(workload, size)
        case = _build(workload, target, size, store.data(workload, size), torch)
        first_s, out = first_call(case)
        with quiet_blas():
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


def apply_limits(result: Result, limits: dict[str, Any]) -> None:
    """The limit a row's rate is compared with (the device's for a device backend) and the share."""
    if result.rate is None or result.unit == "overhead":
        return
    machine = limits.get("device" if result.backend in limits.get("device_backends", ()) else "host")
    if machine:
        result.limit = machine["gemm_gflops"] if result.unit == "flop" else machine["copy_gbps"]
        result.share_of_limit = result.rate / result.limit if result.limit else None


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
    isolate: bool = True,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Run ``workloads`` on ``backends`` (names; ``"torch"`` for the peer; None for all available)
    and return the report (the JSON document ``dlaccel bench --json`` writes).

    With ``isolate`` (the default) every backend and the peer run in a fresh child process of their
    own, one after the other; a child that crashes, or makes no progress for ``timeout_s`` seconds
    on one row, turns that row into an error and a fresh child carries on with the rest. Backends
    given as instances must then be importable classes constructible without arguments."""
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
    if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
                                  or not timeout_s > 0):
        raise InputError(f"timeout must be a number of seconds > 0, got {timeout_s!r}")
    timeout_s = float(timeout_s or ROW_TIMEOUT_S)
    targets = resolve_targets(backends)  # what dlaccel bench resolved already passes through unprobed
    selected = list(WORKLOADS.values()) if workloads is None else workloads
    if isolate:
        from .worker import target_spec

        for workload in selected:
            if WORKLOADS.get(workload.name) is not workload:
                raise InputError(f"workload {workload.name!r} is not one of dlaccel.bench.WORKLOADS, so a child "
                                 "process cannot rebuild it; run it with isolate=False")
        for target in targets:
            target_spec(target)  # raises now for a backend a child could not rebuild
    say = progress or (lambda message: None)
    started = time.perf_counter()

    notes: list[str] = []
    threads = sysinfo.blas_threads()
    torch = None
    if PEER in targets:
        if isolate:  # the peer's child imports PyTorch; this process never does
            reason = torch_missing_reason()
        else:
            torch, reason = load_torch(threads)
        if reason is not None:
            notes.append(reason)
            targets = [t for t in targets if t != PEER]
            if not targets:  # nothing left to time: an empty table would look like success
                raise MissingDependencyError(f"nothing to benchmark: {reason}")

    say("measuring the machine's limits")
    limits: dict[str, Any] = {"host": measure_limits(profile, dt)}
    device = [t for t in targets if not isinstance(t, str) and getattr(t, "device_kind", "host") == "device"]
    xp = getattr(device[0], "xp", None) if device else None
    if device and xp is not None:
        limits["device"] = measure_limits(profile, dt, xp, device[0].synchronize)
        limits["device_backends"] = [t.name for t in device]

    rows: dict[tuple[str, str], Result] = {}
    workers: dict[str, dict[str, Any]] = {}
    if isolate:
        from .worker import run_in_child

        for target in targets:
            name = _target_name(target)
            outcome = run_in_child(target, [w.name for w in selected], profile, dt.name, min_samples, budget_s,
                                   threads, timeout_s, say)
            if outcome.unavailable is not None:  # PyTorch failed to import in its child
                notes.append(outcome.unavailable)
                continue
            workers[name] = outcome.info
            rows.update({(r.workload, name): r for r in outcome.rows})
    else:
        store = _Data(dt)
        for workload in selected:
            for target in targets:
                say(f"{workload.name} on {_target_name(target)}")
                rows[workload.name, _target_name(target)] = run_one(
                    workload, target, profile, store, torch, min_samples, budget_s)
    results = [rows[w.name, _target_name(t)] for w in selected for t in targets if (w.name, _target_name(t)) in rows]
    for r in results:
        apply_limits(r, limits)
    _speedups(results)

    system = sysinfo.collect()  # after the runs, so Numba's thread count is known if it was used
    if system["numba_threads"] is None and workers.get("numba", {}).get("numba_threads") is not None:
        system["numba_threads"] = workers["numba"]["numba_threads"]
    peer: dict[str, Any] = {"name": PEER, "available": False, "version": None, "threads": None}
    if torch is not None:
        peer.update(available=True, version=torch.__version__, threads=torch.get_num_threads())
    elif PEER in workers:
        info = workers[PEER]
        peer.update(available=True, version=info.get("torch_version") or sysinfo.package_versions()["torch"],
                    threads=info.get("torch_threads"))
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "profile": profile,
        "dtype": dt.name,
        "threads": threads,
        "isolation": {
            "mode": "process" if isolate else "in-process",
            "parent_pid": os.getpid(),
            "row_timeout_s": timeout_s if isolate else None,
            "workers": workers,
        },
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
