"""pytest-benchmark: a sweep's trials one after another in this process against a 2-worker LocalCluster.

Full size: 8 trials of about a second each (issue 10); ``DLACCEL_BENCH_TINY=1`` shrinks them to a
smoke test. ``python benchmarks/sweep_efficiency.py`` prints the efficiency and the cluster's
start-up time (measured apart) from the same workload.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import dlaccel

distributed = pytest.importorskip("distributed")
sys.path.insert(0, str(Path(__file__).parent))
from sweep_efficiency import workload  # noqa: E402

TINY = os.environ.get("DLACCEL_BENCH_TINY") == "1"
N_WORKERS = 2


@pytest.fixture(scope="module")
def sweep_args():
    return workload(n_trials=4 if TINY else 8, seconds=0.02 if TINY else 1.0)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=N_WORKERS, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", silence_logs=40) as cluster, \
            distributed.Client(cluster, set_as_default=False) as c:
        c.wait_for_workers(N_WORKERS)
        yield c


def _run(w, **where):
    return dlaccel.sweep(w["model_class"], w["grid"], w["X"], w["Y"], fixed=w["fixed"], **where)


@pytest.mark.parametrize("where", ["in-process", "2-worker cluster"])
def test_sweep(benchmark, sweep_args, client, where):
    kwargs = {"n_workers": 0} if where == "in-process" else {"client": client}
    benchmark.group = f"sweep of {len(sweep_args['grid']['learning_rate'])} trials"
    benchmark.extra_info.update({"where": where, "num_iterations": sweep_args["fixed"]["num_iterations"]})
    result = benchmark.pedantic(_run, args=(sweep_args,), kwargs=kwargs, rounds=1 if TINY else 3, iterations=1)
    assert all(t.ok for t in result.trials)
    reference = _run(sweep_args, n_workers=0) if where != "in-process" else result
    assert [t.costs for t in result.trials] == [t.costs for t in reference.trials]
