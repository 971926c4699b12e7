"""pytest-benchmark rows over the distributed benchmark's measurements (dlaccel.bench.distributed).

Each benchmark times one whole ``fit`` of the longer length; ``extra_info`` carries the time per
iteration from the slope between the short and the long fit (which cancels the fit's set-up) and the
size. ``DLACCEL_BENCH_TINY=1`` uses the tiny profile, so ``--benchmark-disable`` is a smoke test.
The full report, with the scaling model, the peer and the client's memory, is
``dlaccel bench -w distributed``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("dask.array")
pytest.importorskip("distributed")

from dlaccel.bench import distributed as db  # noqa: E402

PROFILE_NAME = "tiny" if os.environ.get("DLACCEL_BENCH_TINY") == "1" else "full"
PROFILE = db.PROFILES[PROFILE_NAME]
WORKERS = (1, 2)
DIMS = (db.N_X, db.HIDDEN, db.N_CLASSES)


@pytest.fixture(scope="module", params=WORKERS, ids=lambda w: f"{w}w")
def client(request):
    with db.client_for(n_workers=request.param) as c:
        yield c


def _record(benchmark, fit, iterations, repeats, **info):
    timing = db.per_iteration(fit, iterations, repeats)
    benchmark.extra_info.update(per_iteration_s=timing["per_iteration_s"], **info)
    benchmark.pedantic(fit, args=(iterations[1],), rounds=repeats, iterations=1)


@pytest.mark.parametrize("hidden", PROFILE["overhead_hidden"], ids=lambda h: f"h{h}")
def test_overhead(benchmark, client, hidden):
    w = len(client.scheduler_info(n_workers=-1)["workers"])
    X, Y = client.persist(list(db._random_data(PROFILE["overhead_m_per_worker"] * w, w, seed=0)))
    dims = (db.N_X, hidden, db.N_CLASSES)
    benchmark.group = "distributed overhead"
    _record(benchmark, db._deep_fit(dims, X, Y, client), PROFILE["overhead_iterations"], PROFILE["repeats"],
            workers=w, param_bytes=db._param_bytes(dims))


@pytest.mark.parametrize("m", PROFILE["m"], ids=lambda m: f"m{m}")
def test_scaling_workers(benchmark, client, m):
    w = len(client.scheduler_info(n_workers=-1)["workers"])
    X, Y = client.persist(list(db._random_data(m, db._chunk_count(WORKERS), seed=1)))
    benchmark.group = f"distributed scaling m={m}"
    _record(benchmark, db._deep_fit(DIMS, X, Y, client), PROFILE["iterations"], PROFILE["repeats"],
            config=db._workers_label(w), m=m)


@pytest.mark.parametrize("m", PROFILE["m"], ids=lambda m: f"m{m}")
def test_scaling_one_process(benchmark, m):
    from threadpoolctl import threadpool_limits

    X, Y = db._random_data(m, db._chunk_count(WORKERS), seed=1)
    Xn, Yn = np.asarray(X.compute(scheduler="threads")), np.asarray(Y.compute(scheduler="threads"))
    benchmark.group = f"distributed scaling m={m}"
    with threadpool_limits(limits=2, user_api="blas"):
        _record(benchmark, db._deep_fit(DIMS, Xn, Yn), PROFILE["iterations"], PROFILE["repeats"],
                config=db.ONE_PROCESS, m=m)


def test_peer_dask_ml(benchmark, client):
    row = db.measure_peer(client, PROFILE)
    benchmark.group = "distributed peer"
    benchmark.extra_info.update({k: v for k, v in row.items() if isinstance(v, (int, float, str))})
    assert np.isfinite(row["dlaccel_cost"])
    if row["peer"] is None:
        pytest.skip(row["note"])
    assert np.isfinite(row["peer_cost"])
    benchmark(lambda: None)  # the row's numbers are in extra_info; the slope timing is not pytest-benchmark's


def test_client_memory(client):
    row = db.measure_memory(client, PROFILE, len(client.scheduler_info(n_workers=-1)["workers"]))
    # Not a timing: the data must stay on the workers however loaded the machine is.
    assert row["growth_bytes"] < db.TARGETS["memory_growth_bytes"], row
