"""Run the workloads on the chosen backends (and the PyTorch peer): check, time, rate, compare.

Each backend is timed in a child process of its own (:mod:`.isolation` says why) unless
``isolate=False``; this process measures the machine's limits, gathers the rows and writes the report.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from .. import sysinfo
from .._validation import check_count, check_dtype
from ..backends import Backend, get_backend
from ..errors import InputError, MissingDependencyError
from .isolation import run_in_child, target_spec
from .record import (
    PEER,
    Data,
    Result,
    apply_limits,
    jsonable,
    load_torch,
    run_one,
    target_name,
    torch_missing_reason,
)
from .timing import measure_limits
from .workloads import PROFILES, WORKLOADS, Workload

SCHEMA = "dlaccel-bench/1"
# Per profile: the fewest timed samples and the time budget for sampling one row.
SAMPLING = {"full": (3, 0.5), "quick": (3, 0.15), "tiny": (1, 0.0)}
# A child process that makes no progress (no row finished) for this long is killed and that row
# reported as timed out: generous, since a cold Numba cache compiles every kernel in one first call.
ROW_TIMEOUT_S = 600.0


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
        if all(target_name(target) != target_name(t) for t in targets):  # "-b numpy,numpy" times it once
            targets.append(target)
    return targets


def _speedups(results: list[Result]) -> None:
    """Each row's speed-ups: the median of its workload's loops and NumPy rows over its own."""
    medians = {(r.workload, r.backend): r.median_s for r in results if r.ok}
    for r in results:
        if r.ok and r.unit != "overhead" and r.median_s:
            for baseline in ("loops", "numpy"):
                base = medians.get((r.workload, baseline))
                setattr(r, f"speedup_vs_{baseline}", None if base is None else base / r.median_s)


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
    if profile not in PROFILES:
        raise InputError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    dt = check_dtype(dtype)
    default_samples, budget_s = SAMPLING[profile]
    min_samples = default_samples if min_samples is None else check_count(min_samples, "repeat", 1)
    if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
                                  or not timeout_s > 0):
        raise InputError(f"timeout must be a number of seconds > 0, got {timeout_s!r}")
    timeout_s = float(timeout_s or ROW_TIMEOUT_S)
    targets = resolve_targets(backends)  # what dlaccel bench resolved already passes through unprobed
    selected = list(WORKLOADS.values()) if workloads is None else workloads
    if isolate:
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
        for target in targets:
            name = target_name(target)
            outcome = run_in_child(target, [w.name for w in selected], profile, dt.name, min_samples, budget_s,
                                   threads, timeout_s, say)
            if outcome.unavailable is not None:  # PyTorch failed to import in its child
                notes.append(outcome.unavailable)
                continue
            workers[name] = outcome.info
            rows.update({(r.workload, name): r for r in outcome.rows})
    else:
        store = Data(dt)
        for workload in selected:
            for target in targets:
                say(f"{workload.name} on {target_name(target)}")
                rows[workload.name, target_name(target)] = run_one(
                    workload, target, profile, store, torch, min_samples, budget_s)
    results = [rows[w.name, target_name(t)] for w in selected for t in targets if (w.name, target_name(t)) in rows]
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
        "results": [jsonable(asdict(r)) for r in results],
        "notes": notes,
        "wall_s": time.perf_counter() - started,
    }
