"""What this machine and this installation are: versions, backends, BLAS, CPU, GPU.

Nothing here raises: a missing or broken optional library becomes a ``None`` version or a reason
string, so ``dlaccel info`` works on any machine.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from typing import Any

import numpy as np

from ._version import __version__
from .backends import available_backends

# Environment variables that change which kernels or how many threads the libraries use.
THREAD_ENV = (
    "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "DLACCEL_BACKEND", "CUDA_VISIBLE_DEVICES",
)


def dist_version(*names: str) -> str | None:
    """The installed version of the first of ``names`` that is installed (nothing is imported)."""
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _cupy_version() -> str | None:
    # CuPy ships as cupy-cuda12x, cupy-cuda13x, ...: ask which distribution provides the module.
    dists = metadata.packages_distributions().get("cupy", [])
    return dist_version(*dists) if dists else None


def package_versions() -> dict[str, str | None]:
    """Versions from the installed metadata; nothing is imported."""
    return {
        "dlaccel": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": dist_version("numba"),
        "cupy": _cupy_version(),
        "torch": dist_version("torch"),
        "threadpoolctl": dist_version("threadpoolctl"),
        "matplotlib": dist_version("matplotlib"),
        "scikit-learn": dist_version("scikit-learn"),
    }


def cpu_info() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": model, "logical_cores": os.cpu_count(), "usable_cores": usable, "machine": platform.machine()}


def thread_pools() -> tuple[list[dict[str, Any]], str | None]:
    """The BLAS and OpenMP libraries loaded in this process, with kernel and thread count."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [], "threadpoolctl is not installed (pip install 'dlaccel[cli]')"
    pools = [
        {"api": pool.get("user_api"), "library": pool.get("internal_api"), "version": pool.get("version"),
         "kernel": pool.get("architecture"), "threads": pool.get("num_threads"),
         "threading_layer": pool.get("threading_layer"), "path": pool.get("filepath")}
        for pool in threadpool_info()
    ]
    return pools, None


def blas_threads() -> int:
    """The BLAS thread count NumPy runs with (the CPU count when it cannot be read)."""
    pools, _ = thread_pools()
    threads = [p["threads"] for p in pools if p["api"] == "blas" and p["threads"]]
    return threads[0] if threads else (cpu_info()["usable_cores"] or 1)


def limit_blas(threads: int) -> Any:
    """NumPy's BLAS held to ``threads``: as a context manager for a block, else for good; a no-op
    without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


def numba_threads() -> int | None:
    """Numba's thread count, only when something already imported Numba (asking would import it)."""
    numba = sys.modules.get("numba")
    try:
        return int(numba.get_num_threads()) if numba is not None else None
    except Exception:
        return None


def gpus() -> tuple[list[dict[str, Any]], str | None]:
    """GPUs through CuPy when it is usable, else through ``nvidia-smi``; never raises."""
    from .backends import _probe

    reason = _probe.cupy()
    if reason is None:
        try:
            import cupy

            found = []
            for i in range(cupy.cuda.runtime.getDeviceCount()):
                props = cupy.cuda.runtime.getDeviceProperties(i)
                name = props["name"]
                found.append({"index": i, "name": name.decode() if isinstance(name, bytes) else str(name),
                              "memory_bytes": int(props["totalGlobalMem"]), "sms": int(props["multiProcessorCount"]),
                              "compute_capability": f"{props['major']}.{props['minor']}", "source": "cupy"})
            return found, None
        except Exception as exc:
            reason = f"CuPy could not query the device: {type(exc).__name__}: {exc}"
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return [], reason
    try:
        out = subprocess.run([smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return [], f"{reason}; nvidia-smi failed: {exc}"
    found = []
    for i, line in enumerate(l for l in out.splitlines() if l.strip()):
        name, _, mib = line.rpartition(",")
        try:
            memory = int(float(mib)) * 2**20
        except ValueError:
            memory = None
        found.append({"index": i, "name": name.strip(), "memory_bytes": memory, "sms": None,
                      "compute_capability": None, "source": "nvidia-smi"})
    return found, reason


def collect() -> dict[str, Any]:
    """Everything ``dlaccel info`` shows, as plain data (the ``system`` field of the bench JSON)."""
    pools, pools_reason = thread_pools()
    gpu_list, gpu_reason = gpus()
    return {
        "versions": package_versions(),
        "platform": platform.platform(),
        "cpu": cpu_info(),
        "thread_pools": pools,
        "thread_pools_reason": pools_reason,
        "numba_threads": numba_threads(),
        "env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
        "backends": available_backends(),
        "gpus": gpu_list,
        "gpu_reason": gpu_reason,
    }
