"""The child of the process isolation (:mod:`dlaccel.bench.isolation`): ``python -m dlaccel.bench.worker``
times one backend's rows and reports them, one JSON object a line.

Its fd 1 is pointed at stderr, so stray prints cannot corrupt the protocol stream. Each row is
checked against the NumPy backend inside the child before it is timed, exactly as in-process.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from dataclasses import asdict
from typing import Any

import numpy as np

from ..backends import Backend, get_backend
from . import sysinfo
from .record import PEER, Data, jsonable, load_torch, one_line, run_one
from .workloads import WORKLOADS


def _set_blas_threads(threads: int) -> None:
    """The parent's BLAS thread count, in case this process would start with another."""
    if sysinfo.blas_threads() == threads:
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=threads, user_api="blas")


def _resolve(spec: dict[str, str], sys_path: list[str]) -> Backend:
    if "backend" in spec:
        return get_backend(spec["backend"])
    # A backend class from the parent's own modules (a test's, a notebook's package): the parent's
    # import path, after this process's own, finds it.
    sys.path.extend(p for p in sys_path if p not in sys.path)
    module_name, _, qualname = spec["class"].partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj()


def _info(torch: Any) -> dict[str, Any]:
    pools, _ = sysinfo.thread_pools()
    info: dict[str, Any] = {"pid": os.getpid(), "blas_threads": sysinfo.blas_threads(),
                            "numba_threads": sysinfo.numba_threads(),
                            "thread_pools": [{k: p[k] for k in ("api", "library", "version", "kernel", "threads")}
                                             for p in pools]}
    if torch is not None:
        info.update(torch_version=torch.__version__, torch_threads=torch.get_num_threads())
    return info


def main() -> int:
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # anything else printed goes to stderr, never into the protocol
    sys.stdout = sys.stderr

    def emit(**message: Any) -> None:
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    job = json.loads(sys.stdin.read())
    emit(event="ready", pid=os.getpid())
    _set_blas_threads(job["threads"])
    torch = None
    target: str | Backend
    try:
        if "peer" in job["target"]:
            torch, reason = load_torch(job["threads"])
            if torch is None:
                emit(event="unavailable", reason=reason)
                return 0
            target = PEER
        else:
            target = _resolve(job["target"], job.get("sys_path", []))
    except Exception as exc:
        emit(event="failed", reason=one_line(f"{job['label']} could not be set up: {type(exc).__name__}: {exc}"))
        return 0
    dtype = np.dtype(job["dtype"])
    for name in job["workloads"]:
        emit(event="start", workload=name)
        store = Data(dtype)  # per workload: full-size data and references are freed between rows
        result = run_one(WORKLOADS[name], target, job["profile"], store, torch, job["min_samples"], job["budget_s"])
        emit(event="row", row=jsonable(asdict(result)))
        del store
    emit(event="info", info=_info(torch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
