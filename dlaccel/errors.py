"""Errors raised by dlaccel.

Each derives from :class:`DlaccelError` and from the built-in it refines, so ``except ValueError``
and ``except DlaccelError`` both work. Every one is raised before any work is done.
"""

from __future__ import annotations


class DlaccelError(Exception):
    """Base class of every error dlaccel raises on purpose."""


class ShapeError(DlaccelError, ValueError):
    """An array has the wrong rank or shape; the message names the expected 2-D shape."""


class InputError(DlaccelError, ValueError):
    """Bad values: NaN/Inf, labels outside the classes, invalid hyperparameters."""


class DtypeError(DlaccelError, TypeError):
    """An array has a dtype dlaccel cannot compute with (strings, objects, complex), or an argument
    is not an array of the backend's kind at all."""


class UnknownBackendError(DlaccelError, ValueError):
    """A backend name that no registry entry knows; the message lists the known names."""


class BackendUnavailableError(DlaccelError, RuntimeError):
    """A known backend that cannot run here (library missing, no device); carries the reason."""


class DeviceMismatchError(DlaccelError, TypeError):
    """An array lives on another device than the backend computes on."""


class TrainingDivergedError(DlaccelError, RuntimeError):
    """The cost or the parameters became NaN/Inf during ``fit``, or the cost ran away while
    staying finite; ``iteration`` says where."""

    def __init__(self, message: str, iteration: int):
        super().__init__(message)
        self.iteration = iteration


class WorkerLostError(DlaccelError, RuntimeError):
    """A distributed fit lost workers whose data could not be recomputed; names them and the
    iteration. The model keeps the parameters of its last completed iteration."""

    def __init__(self, message: str, iteration: int, workers: list[str] | None = None):
        super().__init__(message)
        self.iteration = iteration
        self.workers = list(workers or [])


class ClusterError(DlaccelError, RuntimeError):
    """The LocalCluster dlaccel starts for a call (no Client given) could not start."""


class ModelFileError(DlaccelError, ValueError):
    """A model file is missing, truncated, foreign or holds pickled objects."""


class MissingDependencyError(DlaccelError, ImportError):
    """An optional dependency is needed for this call; the message names the extra to install."""


__all__ = [
    "BackendUnavailableError",
    "ClusterError",
    "DeviceMismatchError",
    "DlaccelError",
    "DtypeError",
    "InputError",
    "MissingDependencyError",
    "ModelFileError",
    "ShapeError",
    "TrainingDivergedError",
    "UnknownBackendError",
    "WorkerLostError",
]
