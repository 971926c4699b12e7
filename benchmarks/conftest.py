"""pytest-benchmark suite over dlaccel.bench's workloads, every backend and the PyTorch peer.

Full sizes (issue 3) by default; ``DLACCEL_BENCH_TINY=1`` shrinks every workload so that
``pytest benchmarks/ --benchmark-disable`` is a quick smoke test in CI. The machine's limits are
measured once per session and printed in the summary; each benchmark's ``extra_info`` carries its
size, first-call time, check error, rate (GFLOP/s or GB/s) and share of the limit.

pytest-benchmark times everything in this one process, where runtimes interfere (OpenBLAS's workers
spin after each GEMM and hold the cores PyTorch's or Numba's thread pool waits for). So the
``target`` fixture is module-scoped: pytest then runs each backend's benchmarks contiguously
(loops, numpy, numba, cupy, then PyTorch), never interleaved, and the NumPy reference each check
needs runs with BLAS on one thread. Ratios across backends are still best taken from
``dlaccel bench``, which times every backend in a fresh process of its own.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import dlaccel
from dlaccel import bench, sysinfo
from dlaccel.backends import REGISTRY

DTYPE = np.dtype(np.float32)
PROFILE = "tiny" if os.environ.get("DLACCEL_BENCH_TINY") == "1" else "full"
TARGETS = [*REGISTRY, bench.PEER]
_session: dict = {}


@pytest.fixture(scope="session")
def profile():
    return PROFILE


@pytest.fixture(scope="session")
def limits():
    if "limits" not in _session:
        _session["limits"] = bench.measure_limits(PROFILE, DTYPE)
    return _session["limits"]


@pytest.fixture(scope="session")
def torch_module():
    torch, reason = bench.load_torch(sysinfo.blas_threads())
    return torch, reason


@pytest.fixture(scope="module", params=TARGETS)
def target(request, torch_module):
    """A dlaccel backend, or the string "torch" (skipped with the reason when not installed).

    Module scope makes pytest group the tests by backend: one backend's benchmarks run one after
    the other, then the next backend's."""
    if request.param == bench.PEER:
        torch, reason = torch_module
        if torch is None:
            pytest.skip(reason)
        return bench.PEER
    state = dlaccel.available_backends()[request.param]
    if not state["available"]:
        pytest.skip(f"{request.param}: {state['reason']}")
    return dlaccel.get_backend(request.param)


def pytest_terminal_summary(terminalreporter):
    if "limits" not in _session:
        return
    lim = _session["limits"]
    pools, _ = sysinfo.thread_pools()
    terminalreporter.write_sep("-", "dlaccel machine limits (same session)")
    terminalreporter.write_line(f"profile {PROFILE}, {lim['dtype']}: GEMM {lim['gemm_gflops']:.1f} GFLOP/s "
                                f"(n={lim['gemm_n']}), copy {lim['copy_gbps']:.1f} GB/s (read + write)")
    for pool in pools:
        terminalreporter.write_line(f"{pool['api']}: {pool['library']} {pool['version']}, kernel {pool['kernel']}, "
                                    f"{pool['threads']} threads")
