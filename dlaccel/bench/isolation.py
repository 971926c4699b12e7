"""Process isolation: each backend's rows are timed in a fresh child process, one child at a time,
so a crash or a stall costs that row only. Runtimes sharing a process interfere: OpenBLAS's workers
spin after every GEMM and hold the cores that another runtime's thread pool (PyTorch's OpenMP,
Numba's) then waits for.

The parent (:func:`run_in_child`) writes a JSON job to the child's stdin; the child
(:func:`child_main`) answers one JSON object a line: ``ready``, ``start`` (a workload begins),
``row`` (a :class:`~.record.Result`), ``unavailable`` (no peer), ``failed`` (the target could not be
built), ``info`` (its pid and thread pools). A crash, or no message for ``timeout_s``, becomes that
row's error, and a fresh child takes the workloads left.
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
from collections.abc import Callable, Iterator
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


def _messages(job: dict[str, Any], timeout_s: float) -> Iterator[dict[str, Any]]:
    """Run one child on ``job`` to its end (or kill it), yielding what it says; the last message
    is ``end``: its exit status, whether it was killed for making no progress, its last stderr line."""
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=stderr, env=_child_env(), text=True, encoding="utf-8")
        try:
            lines: queue.Queue = queue.Queue()
            reader = threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True)
            reader.start()
            try:
                assert proc.stdin is not None
                proc.stdin.write(json.dumps(job))
                proc.stdin.close()
            except OSError:
                pass  # the child died at once; its exit status says why
            timed_out = False
            while True:  # the clock starts again at every message: the timeout is on progress
                try:
                    line = lines.get(timeout=timeout_s)
                except queue.Empty:
                    timed_out = True
                    proc.kill()
                    break
                if line is None:
                    break
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                yield message
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            reader.join(timeout=5)
            yield {"event": "end", "exit_code": code, "timed_out": timed_out, "stderr": _last_line(stderr)}
        finally:
            if proc.poll() is None:  # the caller stopped early: a Ctrl-C in a notebook reaches this process only
                proc.kill()
                proc.wait()


def run_in_child(target: str | Backend, names: list[str], profile: str, dtype: str, min_samples: int,
                 budget_s: float, threads: int, timeout_s: float, say: Callable[[str], None]) -> ChildOutcome:
    """Time ``names`` on ``target`` in fresh child processes: one, plus one more after each row
    that crashed or stalled its child. Never raises for what happens in a child."""
    label = target if isinstance(target, str) else target.name
    spec = target_spec(target)
    outcome = ChildOutcome()
    remaining = list(names)
    pids: list[int] = []
    exit_codes: list[int | None] = []
    started = time.perf_counter()
    while remaining:
        say(f"starting a process for {label}")
        job = {"target": spec, "label": label, "workloads": remaining, "profile": profile, "dtype": dtype,
               "min_samples": min_samples, "budget_s": budget_s, "threads": threads, "sys_path": sys.path}
        pid: int | None = None
        current = info = failed = None
        done: set[str] = set()
        end: dict[str, Any] = {}
        for message in _messages(job, timeout_s):
            event = message.get("event")
            if event == "ready":
                pid = message["pid"]
                pids.append(message["pid"])
            elif event == "start":
                current = message["workload"]
                say(f"{current} on {label} (process {pid})")
            elif event == "row":
                row = Result(**{k: v for k, v in message["row"].items() if k in _RESULT_FIELDS})
                outcome.rows.append(row)
                done.add(row.workload)
                current = None
            elif event == "info":
                info = message.get("info")
                outcome.info.update(info or {})
            elif event == "unavailable":
                outcome.unavailable = message.get("reason")
            elif event == "failed":
                failed = message.get("reason")
            elif event == "end":
                end = message
        exit_codes.append(end["exit_code"])
        if outcome.unavailable is not None:
            return outcome
        where = "in this row" if current is not None else "before its first row"
        if failed is not None:  # the target itself could not be built: every row says why
            error = failed
        elif end["timed_out"]:
            error = f"timed out: no progress for {timeout_s:g} s {where}, the worker process was killed"
        else:
            error = f"the worker process died {where} ({_exit_text(end['exit_code'])})"
        if end["stderr"] and failed is None:
            error += f": {end['stderr']}"
        if current is not None:  # it crashed or stalled in this row; the rest get a fresh child
            outcome.rows.append(_error_row(current, label, profile, error, pid))
            done.add(current)
        elif info is None and not done or failed is not None:
            # It never got to a row (or the target could not be built): no fresh child would either.
            outcome.rows.extend(_error_row(n, label, profile, error, pid) for n in remaining if n not in done)
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
