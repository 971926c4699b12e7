"""Process isolation: each backend's rows are timed in a fresh child process, one child at a time;
a crash or a stall costs that row only. The parent's side is :func:`run_in_child`, the child's
:func:`child_main`; both take the row and its check from :mod:`.record`.

Runtimes sharing a process interfere: OpenBLAS's workers spin after every GEMM and hold the cores
that the next parallel region of another runtime (PyTorch's OpenMP pool, Numba's threading layer)
waits for, so a row timed after another backend's rows is slowed by them.

The protocol: the parent writes a JSON job to the child's stdin (the target, the workload names,
profile, dtype, sampling, thread count); the child answers with one JSON object a line on its
original stdout: ``ready`` (after its imports), ``start`` (a workload begins), ``row`` (a finished
:class:`~dlaccel.bench.record.Result`), ``unavailable`` (the peer cannot be imported), ``failed``
(the target could not be built) and ``info`` (its pid and thread pools). The parent turns a crash or
a stall (no progress for ``timeout_s``) into that row's error and starts a fresh child for the
workloads left.
"""

from __future__ import annotations

import importlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import IO, Any

import numpy as np

import dlaccel

from .. import sysinfo
from ..backends import REGISTRY, Backend, get_backend
from ..errors import InputError
from .record import PEER, Data, Result, jsonable, load_torch, one_line, run_one
from .workloads import WORKLOADS

# Not ``-m``: the package imports this module first, and runpy would warn about running it again.
CHILD = "import sys; from dlaccel.bench.isolation import child_main; sys.exit(child_main())"
_RESULT_FIELDS = {f.name for f in fields(Result)}


def target_spec(target: str | Backend) -> dict[str, str]:
    """How a child rebuilds ``target``: the peer, a registered backend's name, or an importable
    ``module:Class`` constructed without arguments. Raises ``InputError`` when none applies."""
    if isinstance(target, str):
        if target != PEER:
            raise InputError(f"expected a backend or {PEER!r}, got {target!r}")
        return {"peer": PEER}
    cls = type(target)
    if target.name in REGISTRY:
        try:
            registered = type(get_backend(target.name))
        except Exception:
            registered = None
        if registered is cls:
            return {"backend": target.name}
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        raise InputError(f"backend {target.name!r} ({cls.__qualname__}) is not importable by name, so a child "
                         "process cannot rebuild it; define it in a module or run with isolate=False")
    return {"class": f"{cls.__module__}:{cls.__qualname__}"}


# -- the parent's side ------------------------------------------------------------------------------


@dataclass
class ChildOutcome:
    """What the children of one target produced."""

    rows: list[Result] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    unavailable: str | None = None


@dataclass
class _Said:
    """What one child said, and how it ended."""

    rows: list[Result] = field(default_factory=list)
    pid: int | None = None
    current: str | None = None  # the workload it was in when it ended
    info: dict[str, Any] | None = None
    unavailable: str | None = None
    failed: str | None = None
    timed_out: bool = False
    exit_code: int | None = None
    stderr: str = ""


def _child_env() -> dict[str, str]:
    # The child must import this very dlaccel (a source checkout, an editable install, PYTHONPATH).
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(dlaccel.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _last_line(stream: IO[bytes]) -> str:
    stream.seek(0)
    text = stream.read().decode("utf-8", "replace")
    lines = [line for line in (one_line(raw) for raw in text.splitlines() if raw.strip()) if line]
    return lines[-1] if lines else ""


def _reader(stream: IO[str], lines: queue.Queue) -> None:
    try:
        for line in stream:
            lines.put(line)
    finally:
        lines.put(None)


def _one_child(job: dict[str, Any], timeout_s: float, say: Callable[[str], None], label: str) -> _Said:
    """Run one child to its end (or kill it); returns what it said and how it ended."""
    said = _Said()
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=stderr, env=_child_env(), text=True, encoding="utf-8")
        lines: queue.Queue = queue.Queue()
        reader = threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True)
        reader.start()
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(job))
            proc.stdin.close()
        except OSError:
            pass  # the child died at once; its exit status says why
        while True:  # the clock starts again at every message: the timeout is on progress
            try:
                line = lines.get(timeout=timeout_s)
            except queue.Empty:
                said.timed_out = True
                proc.kill()
                break
            if line is None:
                break
            try:
                message = json.loads(line)
            except ValueError:
                continue
            event = message.get("event")
            if event == "ready":
                said.pid = message.get("pid")
            elif event == "start":
                said.current = message["workload"]
                say(f"{message['workload']} on {label} (process {said.pid})")
            elif event == "row":
                said.rows.append(Result(**{k: v for k, v in message["row"].items() if k in _RESULT_FIELDS}))
                said.current = None
            elif event == "info":
                said.info = message.get("info")
            elif event in ("unavailable", "failed"):
                setattr(said, event, message.get("reason"))
        try:
            said.exit_code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            said.exit_code = proc.wait()
        reader.join(timeout=5)
        said.stderr = _last_line(stderr)
    return said


def run_in_child(target: str | Backend, names: list[str], profile: str, dtype: str, min_samples: int,
                 budget_s: float, threads: int, timeout_s: float, say: Callable[[str], None]) -> ChildOutcome:
    """Time ``names`` on ``target`` in fresh child processes: one, plus one more after each row
    that crashed or stalled its child. Never raises for what happens in a child."""
    label = target if isinstance(target, str) else target.name
    spec = target_spec(target)
    outcome = ChildOutcome()
    remaining = list(names)
    pids: list[int] = []
    started = time.perf_counter()
    exit_codes: list[int | None] = []
    while remaining:
        say(f"starting a process for {label}")
        job = {"target": spec, "label": label, "workloads": remaining, "profile": profile, "dtype": dtype,
               "min_samples": min_samples, "budget_s": budget_s, "threads": threads, "sys_path": sys.path}
        said = _one_child(job, timeout_s, say, label)
        exit_codes.append(said.exit_code)
        if said.pid is not None:
            pids.append(said.pid)
        if said.unavailable is not None:
            outcome.unavailable = said.unavailable
            return outcome
        outcome.rows.extend(said.rows)
        done = {r.workload for r in said.rows}
        outcome.info.update(said.info or {})
        where = "in this row" if said.current is not None else "before its first row"
        if said.failed is not None:  # the target itself could not be built: every row says why
            error = said.failed
        elif said.timed_out:
            error = f"timed out: no progress for {timeout_s:g} s {where}, the worker process was killed"
        else:
            error = f"the worker process died {where} ({_exit_text(said.exit_code)})"
        if said.stderr and said.failed is None:
            error += f": {said.stderr}"
        if said.current is not None:  # it crashed or stalled in this row; the rest get a fresh child
            outcome.rows.append(_error_row(said.current, label, profile, error, said.pid))
            done.add(said.current)
        elif said.info is None and not said.rows or said.failed is not None:
            # It never got to a row (or the target could not be built): no fresh child would either.
            outcome.rows.extend(_error_row(n, label, profile, error, said.pid) for n in remaining if n not in done)
            done.update(remaining)
        remaining = [n for n in remaining if n not in done]
    outcome.info.update(pids=pids, exit_codes=exit_codes, wall_s=time.perf_counter() - started)
    outcome.info.setdefault("pid", pids[0] if pids else None)
    return outcome


def _error_row(name: str, label: str, profile: str, error: str, pid: int | None) -> Result:
    workload = WORKLOADS[name]
    return Result(workload.name, workload.group, label, workload.unit, workload.size(profile),
                  workload.size(profile, label), workload.extrapolation(profile, label), error=error, pid=pid)


# -- the child's side -------------------------------------------------------------------------------


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


def child_main() -> int:
    """The child: read the job from stdin, time its rows, report them one JSON object a line.

    Its fd 1 is pointed at stderr, so stray prints cannot corrupt the protocol stream. Each row is
    checked against the NumPy backend inside the child before it is timed, exactly as in-process."""
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # anything else printed goes to stderr, never into the protocol
    sys.stdout = sys.stderr

    def emit(**message: Any) -> None:
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    job = json.loads(sys.stdin.read())
    emit(event="ready", pid=os.getpid())
    if sysinfo.blas_threads() != job["threads"]:  # the parent's BLAS thread count, for good
        sysinfo.limit_blas(job["threads"])
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
