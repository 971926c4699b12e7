"""The backend registry and backend selection.

``REGISTRY`` maps each backend name to ``"module:Class"``; modules are imported only when a backend
is first asked for, so ``import dlaccel`` never imports Numba or CuPy. Third-party packages add
names through the ``dlaccel.backends`` entry-point group.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import numbers
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import BackendUnavailableError, InputError, MissingDependencyError, UnknownBackendError
from . import _probe
from .base import Backend

REGISTRY: dict[str, str] = {
    "loops": "dlaccel.backends.loops:LoopsBackend",
    "numpy": "dlaccel.backends.numpy_backend:NumpyBackend",
    "numba": "dlaccel.backends.numba_cpu:NumbaBackend",
    "cupy": "dlaccel.backends.cupy_gpu:CupyBackend",
}
# Built-in backends whose dependencies are optional are probed without importing their module.
_PROBES: dict[str, Callable[[], str | None]] = {"numba": _probe.numba, "cupy": _probe.cupy}
AUTO_ORDER = ("cupy", "numba", "numpy")
DEFAULT = "numpy"
ENV_VAR = "DLACCEL_BACKEND"

_instances: dict[str, Backend] = {}
_lock = threading.Lock()
_entry_points_loaded = False
_global_choice: str | None = None
_context_choice: contextvars.ContextVar[str | Backend | None] = contextvars.ContextVar(
    "dlaccel_backend", default=None
)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    from importlib.metadata import entry_points

    for ep in entry_points(group="dlaccel.backends"):
        REGISTRY.setdefault(ep.name, ep.value)
    _entry_points_loaded = True


def _known() -> str:
    return ", ".join([*REGISTRY, "auto"])


def _load_class(name: str) -> type[Backend]:
    module_name, _, class_name = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def _unavailable_reason(name: str) -> str | None:
    probe = _PROBES.get(name)
    if probe is not None:
        reason = probe()
        if reason is not None:
            return reason
    try:
        cls = _load_class(name)
    except Exception as exc:
        return f"backend module failed to load: {type(exc).__name__}: {exc}"
    try:
        return cls.unavailable_reason()
    except Exception as exc:
        return f"availability probe failed: {type(exc).__name__}: {exc}"


def available_backends() -> dict[str, dict[str, Any]]:
    """Every known backend, in registry order: ``{name: {"available": bool, "reason": str|None}}``."""
    _load_entry_points()
    result = {}
    for name in REGISTRY:
        reason = _unavailable_reason(name)
        result[name] = {"available": reason is None, "reason": reason}
    return result


def _resolve_name(name: str) -> str:
    if not isinstance(name, str):
        raise UnknownBackendError(f"a backend name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key == "auto":
        for candidate in AUTO_ORDER:
            if _unavailable_reason(candidate) is None:
                return candidate
        return DEFAULT
    if key not in REGISTRY:
        _load_entry_points()
    if key not in REGISTRY:
        raise UnknownBackendError(f"unknown backend {name!r}; known backends: {_known()}")
    return key


def get_backend(name: str | Backend | None = None) -> Backend:
    """The backend called ``name``, or the current one when ``name`` is None.

    Selection, innermost wins: this argument, :func:`use_backend`, :func:`set_backend`, the
    ``DLACCEL_BACKEND`` environment variable, then ``"numpy"``. Instances are shared.
    """
    if isinstance(name, Backend):
        return name
    source = ""
    if name is None:
        chosen = _context_choice.get()
        if isinstance(chosen, Backend):
            return chosen
        name, source = _current_choice(chosen)
    try:
        key = _resolve_name(name)
        backend = _instances.get(key)
        if backend is not None:
            return backend
        with _lock:
            if key not in _instances:
                reason = _unavailable_reason(key)
                if reason is not None:
                    raise BackendUnavailableError(f"backend {key!r} is not available: {reason}")
                _instances[key] = _load_class(key)()
            return _instances[key]
    except (UnknownBackendError, BackendUnavailableError) as exc:
        if not source:
            raise
        # A choice nobody passed in is hard to trace: say where it came from.
        raise type(exc)(f"{exc} (chosen {source})") from None


def _current_choice(chosen: str | None) -> tuple[str, str]:
    """The innermost name set outside the call, and where it was set (for error messages)."""
    if chosen:
        return chosen, "by dlaccel.use_backend"
    if _global_choice:
        return _global_choice, "by dlaccel.set_backend"
    env = os.environ.get(ENV_VAR)
    if env:
        return env, f"by the {ENV_VAR} environment variable; unset it or choose another backend"
    return DEFAULT, "as the default"


def set_backend(name: str | None) -> None:
    """Make ``name`` the process-wide default (``None`` restores the environment/default)."""
    global _global_choice
    if name is not None:
        get_backend(name)  # fail now, not at first use
    _global_choice = name


@contextlib.contextmanager
def use_backend(name: str | Backend) -> Iterator[Backend]:
    """Within the block (this thread or async context only), ops and new models use ``name``."""
    backend = get_backend(name)
    token = _context_choice.set(backend)
    try:
        yield backend
    finally:
        _context_choice.reset(token)


def set_num_threads(n: int) -> dict[str, int | str]:
    """Use ``n`` threads, process-wide, in BLAS (NumPy's matrix products, which every CPU backend
    uses; set through threadpoolctl) and in the Numba backend's parallel kernels (in every Python
    thread). Returns ``{"blas": ..., "numba": ...}``: ``n`` where it was set, else why not (the
    library is not installed). Raises :class:`MissingDependencyError` when neither could be set.

    Importing Numba here is fine: ``import dlaccel`` does not, and this call asks for Numba's
    threads. Results are bitwise reproducible at a fixed thread count; across counts they agree
    within the dtype tolerance (sums are split and added in another order).
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise InputError(f"the number of threads must be a positive integer, got {n!r}")
    numba_reason = _PROBES["numba"]()
    if numba_reason is None:
        import numba

        limit, what = int(numba.config.NUMBA_NUM_THREADS), "NUMBA_NUM_THREADS, the threads Numba starts"
    else:
        limit, what = os.cpu_count() or 1, "the CPU count"
    if not 1 <= n <= limit:
        raise InputError(f"the number of threads must be between 1 and {limit} ({what}), got {n}")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        blas_reason = "threadpoolctl is not installed (pip install 'dlaccel[cli]'), so BLAS keeps its threads"
        if numba_reason is not None:
            raise MissingDependencyError(
                f"set_num_threads has nothing to set: {blas_reason}, and {numba_reason}") from None
        result: dict[str, int | str] = {"blas": blas_reason}
    else:
        threadpool_limits(limits=int(n), user_api="blas")
        result = {"blas": int(n)}
    if numba_reason is None:
        _load_class("numba").use_threads(int(n))  # type: ignore[attr-defined]
        result["numba"] = int(n)
    else:
        result["numba"] = numba_reason
    return result


__all__ = [
    "REGISTRY",
    "Backend",
    "available_backends",
    "get_backend",
    "set_backend",
    "set_num_threads",
    "use_backend",
]
