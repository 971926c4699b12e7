"""CUDA plumbing for the CuPy backend: the kernel sources and their compile options, loading and
caching the compiled modules per (source file, dtype) and kernels per device, and launch geometry.

:mod:`.cupy_gpu` holds the ops; everything here is about getting a kernel onto the device and
sizing its grid. Nothing here touches the GPU at import.
"""

from __future__ import annotations

import importlib.resources
import math
import threading
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError
from .base import LEAKY_RELU_SLOPE

try:
    import cupy
except Exception:  # absent or broken: the backend's probe says why
    cupy = None  # type: ignore[assignment]

KERNEL_PACKAGE = "dlaccel.kernels"
COMMON_HEADER = "dlaccel_common.cuh"
KERNEL_FILES = ("bias_activation.cu", "activation_backward.cu", "loss.cu", "sgd.cu")
# The kernels every file defines (one per activation where the name has {act}).
KERNELS = {
    "bias_activation.cu": ("bias_act_forward_{act}", "bias_softmax_forward"),
    "activation_backward.cu": ("act_backward_db_{act}", "finalize_row_sums"),
    "loss.cu": ("output_grad", "bce_cost_partial", "ce_cost_partial"),
    "sgd.cu": ("sgd_update",),
}
FUSED_ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "linear")
C_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}

THREADS = 256  # block size of every launch; a multiple of 32 (block_sum's full-warp shuffles)
ITEMS = 4  # elements per thread per step (DLACCEL_ITEMS in dlaccel_common.cuh)
BLOCKS_PER_SM = 8  # enough resident work to cover memory latency; grid-stride loops do the rest
MAX_GRID_Y = 65535


def kernel_names(filename: str) -> list[str]:
    """Every ``extern "C"`` kernel that ``filename`` defines."""
    names: list[str] = []
    for pattern in KERNELS[filename]:
        if "{act}" in pattern:
            names.extend(pattern.format(act=act) for act in FUSED_ACTIVATIONS)
        else:
            names.append(pattern)
    return names


def kernel_source(filename: str) -> str:
    """The CUDA source of ``filename`` from the ``dlaccel.kernels`` package, with the shared header
    inlined (NVRTC gets no include path, and the package may live inside a zip)."""
    try:
        files = importlib.resources.files(KERNEL_PACKAGE)
        source = (files / filename).read_text(encoding="utf-8")
        header = (files / COMMON_HEADER).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise BackendUnavailableError(
            f"the CUDA kernel sources are missing ({KERNEL_PACKAGE}/{filename}: {exc}); "
            "reinstall dlaccel (from a checkout: pip install -e .)"
        ) from exc
    include = f'#include "{COMMON_HEADER}"'
    if include not in source:
        raise BackendUnavailableError(f"{KERNEL_PACKAGE}/{filename} does not include {COMMON_HEADER}")
    # The header's include guard means nothing once inlined (and nvcc warns about it in a main file).
    return source.replace(include, header.replace("#pragma once\n", ""), 1)


def compile_options(dtype: Any) -> tuple[str, ...]:
    """Compiler options for the module of element type ``dtype`` (NVRTC and nvcc alike)."""
    return (
        "-std=c++17",
        f"-DDLACCEL_T={C_TYPES[np.dtype(dtype)]}",
        f"-DDLACCEL_LEAKY_SLOPE={LEAKY_RELU_SLOPE!r}",
    )


def rows_grid(n: int, m: int, sms: int) -> tuple[int, int, int]:
    """Grid ``(chunks, rows, 1)`` of the row-tiled kernels: enough blocks to fill ``sms`` SMs when
    ``n`` is small, one chunk per row when rows alone fill the GPU, never a chunk of no work."""
    rows = min(n, MAX_GRID_Y)
    target = sms * BLOCKS_PER_SM
    max_chunks = max(1, math.ceil(m / (THREADS * ITEMS)))
    chunks = max(1, min(max_chunks, math.ceil(target / rows)))
    return chunks, rows, 1


def flat_grid(size: int, sms: int) -> tuple[int]:
    """Grid of the flat grid-stride kernels: at most ``BLOCKS_PER_SM`` blocks per SM."""
    return (max(1, min(math.ceil(size / (THREADS * ITEMS)), sms * BLOCKS_PER_SM)),)


def columns_grid(m: int, sms: int) -> tuple[int]:
    """Grid of the one-thread-per-column kernels."""
    return (max(1, min(math.ceil(m / THREADS), sms * BLOCKS_PER_SM)),)


class KernelCache:
    """Compiled modules per (source file, dtype), kernels per (kernel, dtype, device), SM counts per
    device; safe to share between threads."""

    def __init__(self) -> None:
        self._modules: dict[tuple[str, np.dtype], Any] = {}
        self._functions: dict[tuple[str, np.dtype, int], Any] = {}
        self._sms: dict[int, int] = {}
        self._lock = threading.Lock()

    def function(self, filename: str, kernel: str, dtype: np.dtype) -> Any:
        """The compiled kernel; its module is compiled on the first request of any kernel in
        ``filename`` for ``dtype``."""
        device = cupy.cuda.runtime.getDevice()
        key = (kernel, dtype, device)
        function = self._functions.get(key)
        if function is not None:
            return function
        with self._lock:
            module = self._modules.get((filename, dtype))
            if module is None:
                module = cupy.RawModule(code=kernel_source(filename), options=compile_options(dtype))
                self._modules[(filename, dtype)] = module
            try:
                function = module.get_function(kernel)  # compiles (or loads from the disk cache)
            except Exception as exc:
                raise BackendUnavailableError(
                    f"compiling kernel {kernel} from {KERNEL_PACKAGE}/{filename} for {dtype} failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            self._functions[key] = function
        return function

    def sm_count(self) -> int:
        device = cupy.cuda.runtime.getDevice()
        sms = self._sms.get(device)
        if sms is None:
            sms = self._sms[device] = int(cupy.cuda.Device(device).attributes["MultiProcessorCount"])
        return sms
