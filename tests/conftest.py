"""Shared fixtures: one ``backend`` fixture over every registered backend, skipped with its reason."""

from __future__ import annotations

import numpy as np
import pytest

import dlaccel
from dlaccel.backends import REGISTRY, cupy_gpu
from dlaccel.backends.cupy_gpu import CupyBackend

from . import cuda_emulator

# Per-dtype tolerances for comparing a backend with the NumPy reference.
TOL = {np.float32: {"rtol": 2e-4, "atol": 2e-5}, np.float64: {"rtol": 1e-10, "atol": 1e-12}}


def tol(dtype) -> dict:
    return TOL[np.dtype(dtype).type]


@pytest.fixture(params=list(REGISTRY), ids=list(REGISTRY))
def backend(request):
    info = dlaccel.available_backends()[request.param]
    if not info["available"]:
        pytest.skip(f"{request.param}: {info['reason']}")
    return dlaccel.get_backend(request.param)


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
    monkeypatch.setattr(cupy_gpu, "cupy", cuda_emulator.numpy_cupy())
    monkeypatch.setattr(CupyBackend, "xp", np)
    monkeypatch.setattr(cupy_gpu, "THREADS", cuda_emulator.EMU_THREADS)
    monkeypatch.setattr(cupy_gpu, "MAX_GRID_Y", 3)  # rows beyond gridDim.y take the grid-stride path
    monkeypatch.setattr(CupyBackend, "_function", lambda self, filename, kernel, dtype: emulated_kernels(
        filename, kernel, dtype))
    monkeypatch.setattr(CupyBackend, "_sm_count", lambda self: 2)
    monkeypatch.setattr(CupyBackend, "_empty", lambda self, shape, dtype: np.full(shape, np.nan, dtype=dtype))
    return CupyBackend()
