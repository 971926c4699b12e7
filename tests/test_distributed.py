"""Data-parallel fit on a real LocalCluster of worker processes, compared with one machine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import dlaccel
from dlaccel import datasets

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

RTOL = {np.float64: 1e-9, np.float32: 2e-4}


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=40) as cluster, \
            distributed.Client(cluster, set_as_default=False) as c:
        yield c


def worker_keys(client):
    """What the workers hold, after the scheduler has had a moment to release finished work."""
    for _ in range(50):
        held = client.run(lambda dask_worker: len(dask_worker.data))
        if not any(held.values()):
            break
        time.sleep(0.05)
    return held


def assert_same_fit(local, dist, dtype):
    rtol = RTOL[np.dtype(dtype).type]
    assert [i for i, _ in dist.costs] == [i for i, _ in local.costs]
    np.testing.assert_allclose([c for _, c in dist.costs], [c for _, c in local.costs], rtol=rtol)
    assert dist.iteration == local.iteration
    for k, p in local.parameters.items():
        np.testing.assert_allclose(dist.parameters[k], p, rtol=rtol, atol=rtol * 1e-3, err_msg=k)
        assert dist.parameters[k].dtype == p.dtype


def multiclass(m=240, seed=0):
    return datasets.blobs(m=m, centers=3, seed=seed)


CASES = {
    "logistic": (lambda dt: dlaccel.LogisticRegression(dtype=dt), datasets.planar, 0.1),
    "shallow": (lambda dt: dlaccel.ShallowNN(4, seed=2, dtype=dt), datasets.planar, 1.2),
    "deep-sigmoid": (lambda dt: dlaccel.DeepNN([2, 5, 3, 1], hidden_activation="tanh", seed=1, dtype=dt),
                     datasets.planar, 0.3),
    "deep-softmax": (lambda dt: dlaccel.DeepNN([2, 6, 3], seed=1, dtype=dt), multiclass, 0.05),
    "logistic-softmax": (lambda dt: dlaccel.LogisticRegression(dtype=dt), multiclass, 0.01),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", list(CASES))
def test_fit_equals_one_machine(client, case, dtype):
    make, data, lr = CASES[case]
    X, Y = data()
    local = make(dtype).fit(X, Y, learning_rate=lr, num_iterations=30, cost_every=7)
    # Uneven chunks along the examples, and the features split too (merged by fit).
    Xd = da.from_array(X, chunks=(1, (97, 50, X.shape[1] - 147)))
    dist = make(dtype).fit(Xd, Y, learning_rate=lr, num_iterations=30, cost_every=7, client=client)
    assert_same_fit(local, dist, dtype)
    # Continuing across calls, with Y as a dask array this time.
    local.fit(X, Y, learning_rate=lr, num_iterations=5)
    dist.fit(Xd, da.from_array(Y, chunks=(1, 60)), learning_rate=lr, num_iterations=5, client=client)
    assert_same_fit(local, dist, dtype)


def test_repeated_runs_are_identical(client):
    X, Y = datasets.planar()
    Xd = da.from_array(X, chunks=(2, 64))
    a = dlaccel.ShallowNN(4, seed=2).fit(Xd, Y, num_iterations=20, client=client)
    b = dlaccel.ShallowNN(4, seed=2).fit(Xd, Y, num_iterations=20, client=client)
    for k in a.parameters:
        np.testing.assert_array_equal(a.parameters[k], b.parameters[k])
    assert a.costs == b.costs


def test_numba_on_the_workers(client):
    pytest.importorskip("numba")
    X, Y = datasets.planar()
    local = dlaccel.DeepNN([2, 6, 1], hidden_activation="relu", seed=0, backend="numba").fit(
        X, Y, learning_rate=0.1, num_iterations=10)
    dist = dlaccel.DeepNN([2, 6, 1], hidden_activation="relu", seed=0, backend="numba").fit(
        da.from_array(X, chunks=(2, 150)), Y, learning_rate=0.1, num_iterations=10, client=client)
    assert_same_fit(local, dist, "float64")
    used = client.run(lambda: "numba" in __import__("dlaccel.backends", fromlist=["_instances"])._instances)
    assert all(used.values())


def test_workers_hold_nothing_after_fit(client):
    X, Y = datasets.planar()
    dlaccel.ShallowNN(3, seed=1).fit(da.from_array(X, chunks=(2, 100)), Y, num_iterations=3, client=client)
    assert not any(worker_keys(client).values())
    actors = client.run(lambda dask_worker: len(dask_worker.state.actors))
    assert not any(actors.values())


def test_predict_cost_accuracy_gradients_on_dask_input(client):
    X, Y = multiclass()
    model = dlaccel.DeepNN([2, 6, 3], seed=1).fit(X, Y, learning_rate=0.05, num_iterations=20)
    Xd = da.from_array(X, chunks=(2, 70))
    with client.as_current():
        labels = model.predict(Xd)
        assert isinstance(labels, da.Array)
        np.testing.assert_array_equal(labels.compute(), model.predict(X))
        proba = model.predict_proba(Xd)
        assert isinstance(proba, da.Array) and proba.shape == (3, X.shape[1])
        np.testing.assert_allclose(proba.compute(), model.predict_proba(X), rtol=1e-12)
        assert model.accuracy(Xd, Y) == model.accuracy(X, Y)
        assert model.cost(Xd, Y) == pytest.approx(model.cost(X, Y), rel=1e-12)
        grads = model.gradients(Xd, da.from_array(Y, chunks=(1, 50)))
    for k, g in model.gradients(X, Y).items():
        np.testing.assert_allclose(grads[k], g, rtol=1e-9, atol=1e-15)


def test_bad_dask_input_gets_the_typed_errors(client):
    X, Y = datasets.planar()
    bad = X.copy()
    bad[1, 333] = np.nan
    with pytest.raises(dlaccel.InputError, match="NaN or Inf"):
        dlaccel.ShallowNN(4).fit(da.from_array(bad, chunks=(2, 100)), Y, num_iterations=2, client=client)
    with pytest.raises(dlaccel.ShapeError, match="m = 400 examples but Y has 399"):
        dlaccel.ShallowNN(4).fit(da.from_array(X, chunks=(2, 100)), Y[:, :399], num_iterations=2, client=client)
    model = dlaccel.DeepNN([3, 4, 1])
    with pytest.raises(dlaccel.ShapeError, match="n_x = 3"):
        model.fit(da.from_array(X, chunks=(2, 100)), Y, num_iterations=2, client=client)
    fitted = dlaccel.ShallowNN(4, seed=0).fit(X, Y, num_iterations=2)
    with pytest.raises(dlaccel.InputError):
        fitted.fit(da.from_array(X, chunks=(2, 100)), Y + 5, num_iterations=2, client=client)
    with pytest.raises(dlaccel.InputError, match="dask array"):
        dlaccel.ShallowNN(4).fit(X, Y, num_iterations=2, client=client)
    assert not any(worker_keys(client).values())


def test_a_killed_worker_costs_time_not_results(client):
    X, Y = datasets.planar(m=2000)
    Xd = da.from_array(X, chunks=(2, 250))
    undisturbed = dlaccel.ShallowNN(4, seed=2).fit(Xd, Y, num_iterations=60, client=client)
    victim = sorted(client.scheduler_info()["workers"])[0]
    killed = threading.Event()
    disturbed = dlaccel.ShallowNN(4, seed=2)

    def kill_once_training():
        deadline = time.monotonic() + 60
        while disturbed.iteration < 5 and time.monotonic() < deadline:
            time.sleep(0.005)
        client.run(os._exit, 1, workers=[victim], on_error="ignore")
        killed.set()

    killer = threading.Thread(target=kill_once_training)
    killer.start()
    disturbed.fit(Xd, Y, num_iterations=60, client=client)
    killer.join()
    assert killed.is_set()
    for k, p in undisturbed.parameters.items():
        np.testing.assert_array_equal(disturbed.parameters[k], p)
    assert disturbed.costs == undisturbed.costs
    client.wait_for_workers(2, timeout=30)


def test_a_local_cluster_is_started_when_there_is_no_client():
    with pytest.raises(ValueError):
        distributed.get_client()
    X, Y = datasets.planar()
    local = dlaccel.LogisticRegression().fit(X, Y, num_iterations=5)
    dist = dlaccel.LogisticRegression().fit(da.from_array(X, chunks=(2, 200)), Y, num_iterations=5)
    assert_same_fit(local, dist, "float64")
    with pytest.raises(ValueError):  # and closed again
        distributed.get_client()


def test_an_unguarded_script_gets_one_clear_error(tmp_path):
    # The LocalCluster's spawned workers import the script again; without the __main__ guard each
    # would start a cluster of its own, and the user would read pages of multiprocessing tracebacks.
    script = tmp_path / "unguarded.py"
    script.write_text("import dask.array as da\nimport dlaccel\nX, Y = dlaccel.datasets.planar(m=40)\n"
                      "dlaccel.LogisticRegression().fit(da.from_array(X, chunks=(2, 20)), Y, num_iterations=2)\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert run.returncode == 1
    assert "dlaccel.errors.ClusterError: a LocalCluster of" in run.stderr
    assert 'if __name__ == "__main__":' in run.stderr.splitlines()[-1]
    assert run.stderr.count("Traceback") == 1 and "bootstrapping phase" not in run.stderr


@pytest.mark.parametrize("where", ["local", "distributed"])
def test_checkpoint_and_resume_equal_an_uninterrupted_run(client, tmp_path, where):
    X, Y = datasets.planar()
    data = X if where == "local" else da.from_array(X, chunks=(2, 128))
    kw = {"client": client} if where == "distributed" else {}
    full = dlaccel.ShallowNN(4, seed=2).fit(X, Y, num_iterations=50)
    path = tmp_path / "run.npz"
    first = dlaccel.ShallowNN(4, seed=2).fit(data, Y, num_iterations=30, checkpoint=path, checkpoint_every=10, **kw)
    saved = dlaccel.load(path)
    assert saved.iteration == 30 == first.iteration
    resumed = saved.fit(data, Y, num_iterations=20, **kw)
    for k, p in full.parameters.items():
        np.testing.assert_allclose(resumed.parameters[k], p, rtol=1e-9)
    assert resumed.iteration == 50


def test_checkpoint_every_writes_as_it_goes(tmp_path, monkeypatch):
    X, Y = datasets.planar(m=100)
    path = tmp_path / "run.npz"
    seen = []
    write = dlaccel.models.write_model_file

    def spy(p, header, arrays):
        write(p, header, arrays)
        seen.append(dlaccel.load(p).iteration)

    monkeypatch.setattr(dlaccel.models, "write_model_file", spy)
    dlaccel.ShallowNN(3, seed=0).fit(X, Y, num_iterations=25, checkpoint=path, checkpoint_every=10)
    assert seen == [10, 20, 25]
    with pytest.raises(dlaccel.InputError, match="checkpoint"):
        dlaccel.ShallowNN(3).fit(X, Y, num_iterations=5, checkpoint_every=10)
    with pytest.raises(dlaccel.InputError, match="does not exist"):
        dlaccel.ShallowNN(3).fit(X, Y, num_iterations=5, checkpoint=tmp_path / "no" / "such.npz")


def test_ctrl_c_inside_an_update_lands_after_it(tmp_path):
    """SIGINT delivered half-way through an in-place update: the update completes, the model stops
    at that iteration, the checkpoint is written, KeyboardInterrupt propagates."""
    X, Y = datasets.planar(m=100)
    reference = dlaccel.get_backend("numpy")

    class Interrupting(type(reference)):
        calls = 0

        def update_parameters(self, parameters, grads, learning_rate):
            type(self).calls += 1
            for n, key in enumerate(parameters):
                parameters[key] -= learning_rate * grads["d" + key]
                if type(self).calls == 7 and n == 1:
                    signal.raise_signal(signal.SIGINT)
            return parameters

    path = tmp_path / "ckpt.npz"
    model = dlaccel.ShallowNN(3, seed=0, backend=Interrupting())
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, Y, num_iterations=50, checkpoint=path)
    assert model.iteration == 7
    expected = dlaccel.ShallowNN(3, seed=0).fit(X, Y, num_iterations=7)
    for k, p in expected.parameters.items():
        np.testing.assert_array_equal(model.parameters[k], p)
        np.testing.assert_array_equal(dlaccel.load(path).parameters[k], p)
    assert dlaccel.load(path).iteration == 7


def test_ctrl_c_during_a_distributed_fit(client, tmp_path):
    X, Y = datasets.planar(m=1000)
    Xd = da.from_array(X, chunks=(2, 250))
    path = tmp_path / "ckpt.npz"
    model = dlaccel.ShallowNN(4, seed=2)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        model.fit(Xd, Y, num_iterations=100_000, checkpoint=path, client=client)
    timer.cancel()
    done = model.iteration
    assert 0 < done < 100_000
    expected = dlaccel.ShallowNN(4, seed=2).fit(X, Y, num_iterations=done)
    for k, p in expected.parameters.items():
        np.testing.assert_allclose(model.parameters[k], p, rtol=1e-9)
    assert dlaccel.load(path).iteration == done
    assert not any(worker_keys(client).values())


def test_file_backed_data(client, tmp_path):
    X, Y = datasets.planar()
    da.to_npy_stack(tmp_path / "X", da.from_array(X, chunks=(2, 100)), axis=1)
    Xf = da.from_npy_stack(tmp_path / "X")
    local = dlaccel.ShallowNN(4, seed=2).fit(X, Y, num_iterations=10)
    dist = dlaccel.ShallowNN(4, seed=2).fit(Xf, Y, num_iterations=10, client=client)
    assert_same_fit(local, dist, "float64")


def test_chunked_datasets_are_drawn_by_tasks(client):
    X, Y = datasets.blobs(m=10_000, centers=3, seed=4, chunks=3000)
    assert isinstance(X, da.Array) and X.shape == (2, 10_000) and X.chunks[1] == (3000, 3000, 3000, 1000)
    assert Y.shape == (1, 10_000) and Y.dtype == np.uint8
    # The graph holds no data, only the recipe: far smaller than the arrays it makes.
    import pickle

    assert len(pickle.dumps(dict(X.__dask_graph__()))) < X.nbytes / 20
    Xa, Ya = client.compute([X, Y], sync=True)
    Xb, Yb = client.compute(list(datasets.blobs(m=10_000, centers=3, seed=4, chunks=3000)), sync=True)
    np.testing.assert_array_equal(Xa, Xb)
    np.testing.assert_array_equal(Ya, Yb)
    assert set(np.unique(Ya)) == {0, 1, 2}
    # Each chunk from its own stream: no two chunks repeat each other.
    assert not np.array_equal(Xa[:, :1000], Xa[:, 3000:4000])
    # Every chunk shares the data set's centres: the class means agree across chunks.
    for label in range(3):
        first = Xa[:, :3000][:, Ya[0, :3000] == label].mean(axis=1)
        last = Xa[:, 6000:][:, Ya[0, 6000:] == label].mean(axis=1)
        np.testing.assert_allclose(first, last, atol=0.2)
    model = dlaccel.LogisticRegression().fit(X, Y, learning_rate=0.05, num_iterations=30, client=client)
    assert model.accuracy(Xa, Ya) > 0.9


@pytest.mark.parametrize("name", ["planar", "circles", "moons", "gaussian_quantiles"])
def test_every_generator_takes_chunks(name):
    X, Y = datasets.LOADERS[name](m=1000, chunks=(400, 600))
    Xc, Yc = X.compute(scheduler="synchronous"), Y.compute(scheduler="synchronous")
    assert Xc.shape == (2, 1000) and np.isfinite(Xc).all()
    assert set(np.unique(Yc)) == {0, 1}
    assert 0.3 < Yc.mean() < 0.7
    with pytest.raises(dlaccel.InputError, match="add up to m = 1000"):
        datasets.LOADERS[name](m=1000, chunks=(400, 500))


def test_lost_data_that_cannot_be_recomputed_is_a_typed_error(client):
    X, Y = datasets.planar(m=2000)
    workers = sorted(client.scheduler_info()["workers"])
    # Chunks scattered by hand exist only in worker memory: nothing can recompute them.
    parts = [client.scatter(X[:, j:j + 500], workers=[workers[(j // 500) % 2]]) for j in range(0, 2000, 500)]
    Xd = da.concatenate([da.from_delayed(p, shape=(2, 500), dtype=X.dtype) for p in parts], axis=1)
    model = dlaccel.ShallowNN(4, seed=2)
    victim = workers[0]

    def kill_once_training():
        deadline = time.monotonic() + 60
        while model.iteration < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        client.run(os._exit, 1, workers=[victim], on_error="ignore")

    killer = threading.Thread(target=kill_once_training)
    killer.start()
    with pytest.raises(dlaccel.WorkerLostError) as info:
        model.fit(Xd, Y, num_iterations=100_000, client=client)
    killer.join()
    assert info.value.iteration == model.iteration > 0
    assert victim in str(info.value)
    expected = dlaccel.ShallowNN(4, seed=2).fit(X, Y, num_iterations=model.iteration)
    for k, p in expected.parameters.items():
        np.testing.assert_allclose(model.parameters[k], p, rtol=1e-9)
    client.wait_for_workers(2, timeout=30)


def test_fit_on_data_persisted_on_a_client_that_is_not_the_default(client):
    # The label sample must be computed on the fit's client: the default scheduler cannot see the
    # workers' data (it used to fail with "Missing dependency").
    X, Y = client.persist(list(datasets.blobs(m=300, centers=3, seed=4, chunks=100)))
    dist = dlaccel.DeepNN([2, 5, 3], seed=1).fit(X, Y, learning_rate=0.05, num_iterations=5, client=client)
    Xn, Yn = client.compute([X, Y], sync=True)
    local = dlaccel.DeepNN([2, 5, 3], seed=1).fit(Xn, Yn, learning_rate=0.05, num_iterations=5)
    assert_same_fit(local, dist, "float64")


def test_the_data_never_comes_to_the_client(client, monkeypatch):
    # Everything that comes back to the client (gradient sums, costs, labels) is small next to the
    # data; the shards themselves used to be gathered once to surface bad values.
    from dask.sizeof import sizeof
    from distributed.actor import ActorFuture

    received = []

    def spy(method):
        def wrapper(*args, **kwargs):
            out = method(*args, **kwargs)
            received.append(sizeof(out))
            return out
        return wrapper

    monkeypatch.setattr(client, "gather", spy(client.gather))
    monkeypatch.setattr(ActorFuture, "result", spy(ActorFuture.result))
    X = da.random.default_rng(0).standard_normal((64, 8000), chunks=(64, 1000))
    Y = (X[:1] > 0).astype(np.uint8)
    dlaccel.LogisticRegression().fit(X, Y, num_iterations=2, client=client)
    assert len(received) >= 2 * 2, "the spies saw too little: the fit no longer replies through them"
    assert sum(received) < X.nbytes / 20, (sum(received), X.nbytes)


def test_shards_are_spread_evenly_over_the_workers(client):
    X, Y = datasets.planar(m=800)
    model = dlaccel.ShallowNN(3, seed=0).fit(X, Y, num_iterations=0)
    from dlaccel.distributed import ShardedData, build_from_data

    Xd, Yd = build_from_data(model, da.from_array(X, chunks=(2, 100)), Y, client)
    data = ShardedData(client, model, Xd, Yd)
    try:
        held = [len(g) for g in data.groups]
        assert sorted(held) == [4, 4], held
    finally:
        data.release()


def test_one_call_per_worker_per_iteration(client, monkeypatch):
    # The per-iteration traffic is one actor call per worker, not one task per chunk.
    from distributed.actor import Actor

    calls = []
    getattr_ = Actor.__getattr__

    def spy(self, key):
        if key == "sums":
            calls.append(self.key)
        return getattr_(self, key)

    monkeypatch.setattr(Actor, "__getattr__", spy)
    X, Y = datasets.planar()
    Xd = da.from_array(X, chunks=(2, 50))
    dist = dlaccel.ShallowNN(4, seed=2).fit(Xd, Y, num_iterations=3, client=client)
    local = dlaccel.ShallowNN(4, seed=2).fit(X, Y, num_iterations=3)
    assert len(calls) == 3 * 2 and len(set(calls)) == 2, calls
    assert_same_fit(local, dist, "float64")
