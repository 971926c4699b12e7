"""One place that answers "can this optional backend run here?", lazily and without raising.

Each probe returns ``None`` when the backend can run, else a one-line reason. Results are cached
for the life of the process: the answers do not change while it runs.
"""

from __future__ import annotations

import functools
import importlib.util


@functools.cache
def numba() -> str | None:
    if importlib.util.find_spec("numba") is None:
        return "Numba is not installed (pip install 'dlaccel[numba]')"
    try:
        import numba  # noqa: F401
    except Exception as exc:  # a broken install must not break dlaccel
        return f"Numba is installed but failed to import: {type(exc).__name__}: {exc}"
    return None


@functools.cache
def cupy() -> str | None:
    if importlib.util.find_spec("cupy") is None:
        return "CuPy is not installed (pip install 'dlaccel[cuda12]' or 'dlaccel[cuda13]')"
    try:
        import cupy
    except Exception as exc:
        return f"CuPy is installed but failed to import: {type(exc).__name__}: {exc}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, no device, driver too old
        return f"no usable CUDA device: {type(exc).__name__}: {exc}"
    if count < 1:
        return "no CUDA device found"
    try:  # the fused kernels are compiled with NVRTC at first use: fail here, not mid-training
        cupy.cuda.nvrtc.getVersion()
    except Exception as exc:
        return (f"CuPy cannot load NVRTC, which compiles the fused kernels ({type(exc).__name__}: {exc}); "
                "install CuPy with its CUDA components: pip install 'dlaccel[cuda12]' or 'dlaccel[cuda13]'")
    return None
