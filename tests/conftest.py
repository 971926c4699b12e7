"""Shared fixtures: one ``backend`` fixture over every registered backend, skipped with its reason."""

from __future__ import annotations

import numpy as np
import pytest

import dlaccel
from dlaccel.backends import REGISTRY
from dlaccel.backends.cupy_gpu import CupyBackend

from . import cuda_emulator

# Per-dtype tolerances for comparing a backend with the NumPy reference.
TOL = {np.float32: {"rtol": 2e-4, "atol": 2e-5}, np.float64: {"rtol": 1e-10, "atol": 1e-12}}


def tol(dtype) -> dict:
    return TOL[np.dtype(dtype).type]


# Every registered backend, and the cupy backend's wrappers and kernels on the CPU emulator (a
# GPU machine runs the real "cupy" parameter; gpu_check deselects "emulated" there).
EMULATED_CUPY = "emulated-cupy"


@pytest.fixture(params=[*REGISTRY, EMULATED_CUPY], ids=[*REGISTRY, EMULATED_CUPY])
def backend(request):
    if request.param == EMULATED_CUPY:
        return request.getfixturevalue("emulated")  # skips with the emulator's reason
    info = dlaccel.available_backends()[request.param]
    if not info["available"]:
        pytest.skip(f"{request.param}: {info['reason']}")
    return dlaccel.get_backend(request.param)


def on_emulator(backend) -> bool:
    """Whether ``backend`` is the emulated cupy backend, whose every kernel launch starts hundreds of
    CPU threads: long training runs give it fewer iterations."""
    return backend.name == "cupy" and backend.xp is np


@pytest.fixture
def reference():
    return dlaccel.get_backend("numpy")


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


def pytest_collection_modifyitems(config, items):
    gpu_reason = dlaccel.available_backends().get("cupy", {}).get("reason")
    if gpu_reason is None:
        return
    skip = pytest.mark.skip(reason=f"gpu: {gpu_reason}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def emulated_kernels(tmp_path_factory):
    reason = cuda_emulator.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    return cuda_emulator.KernelEmulator(tmp_path_factory.mktemp("emulated_kernels"))


@pytest.fixture
def emulated(monkeypatch, emulated_kernels):
    """A CupyBackend whose kernels run on the CPU emulator, on NumPy arrays; kernel outputs are
    poisoned with NaN. Patched on the class, so every CupyBackend made during the test is one."""
    cuda_emulator.patch_backend(monkeypatch.setattr, emulated_kernels)
    return CupyBackend()
