"""dlaccel: the building blocks of fully-connected nets on pluggable backends, measured.

``import dlaccel`` imports NumPy only; Numba and CuPy are imported when their backend is first used.
"""

from __future__ import annotations

from . import datasets, errors
from ._version import __version__ as __version__  # explicit re-export
from .backends import Backend, available_backends, get_backend, set_backend, set_num_threads, use_backend
from .errors import (
    BackendUnavailableError,
    ClusterError,
    DeviceMismatchError,
    DlaccelError,
    DtypeError,
    InputError,
    MissingDependencyError,
    ModelFileError,
    ShapeError,
    TrainingDivergedError,
    UnknownBackendError,
    WorkerLostError,
)
from .gradcheck import gradient_check
from .models import DeepNN, LogisticRegression, Model, ShallowNN, initialize_parameters
from .models import load_model as load
from .sweep import SweepInterrupted, SweepResult, Trial, sweep  # the function shadows the module name, like load

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "ClusterError",
    "DeepNN",
    "DeviceMismatchError",
    "DlaccelError",
    "DtypeError",
    "InputError",
    "LogisticRegression",
    "MissingDependencyError",
    "Model",
    "ModelFileError",
    "ShallowNN",
    "ShapeError",
    "SweepInterrupted",
    "SweepResult",
    "TrainingDivergedError",
    "Trial",
    "UnknownBackendError",
    "WorkerLostError",
    "available_backends",
    "datasets",
    "errors",
    "get_backend",
    "gradient_check",
    "initialize_parameters",
    "load",
    "set_backend",
    "set_num_threads",
    "sweep",
    "use_backend",
]
