"""One benchmark per (workload, backend): checked against the NumPy backend, then timed."""

from __future__ import annotations

import numpy as np
import pytest

from dlaccel import bench
from dlaccel.bench.record import Data, build_case, run_one

# Issue 3's list plus the course's dot product and the shallow net; the dispatch overhead is a
# paired measurement that `dlaccel bench` reports.
WORKLOADS = [w for w in bench.WORKLOADS.values() if w.unit != "overhead"]
DTYPE = np.dtype(np.float32)  # the benchmarks' dtype (issue 3); conftest measures limits in it too
_store = Data(DTYPE)


@pytest.mark.parametrize("workload", WORKLOADS, ids=[w.name for w in WORKLOADS])
def test_workload(benchmark, workload, target, profile, limits, torch_module):
    # Check first (run_one compares with NumPy and takes a minimal sample), then let
    # pytest-benchmark time the same case.
    checked = run_one(workload, target, profile, _store, torch_module[0], 1, 0.0, {"host": limits})
    assert checked.error is None, checked.error
    name = checked.backend
    size = workload.size(profile, name)
    case = build_case(workload, target, size, _store.data(workload, size), torch_module[0])

    def call():
        case.step()
        case.sync()

    # Rows are compared within a group, so a group holds one size: the loops backend runs smaller.
    benchmark.group = f"{workload.name} {workload.describe(size)}"
    benchmark.extra_info.update({
        "backend": name, "dtype": DTYPE.name, "size": workload.describe(size),
        "extrapolation_to_full": checked.extrapolation, "first_call_s": checked.first_call_s,
        "check_rel_error": checked.check["max_rel_error"], "unit": checked.rate_unit,
        "limit": checked.limit,
    })
    benchmark(call)
    stats = getattr(benchmark, "stats", None)
    if stats is not None:  # None under --benchmark-disable
        median = stats.stats.median
        rate = workload.work(size, DTYPE) / median / 1e9
        benchmark.extra_info.update({"rate": rate, "share_of_limit": rate / checked.limit if checked.limit else None})
