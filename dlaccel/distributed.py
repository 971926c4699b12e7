"""Data-parallel training on a Dask cluster: the same ``fit``, its examples spread over workers.

``X`` (and ``Y``) are dask arrays chunked along the examples. Each chunk becomes a *shard*: validated,
cast to the model's dtype, turned into training targets and moved to the worker's backend once, then
kept on the worker (persisted from the user's own graph, so the scheduler can recompute a shard whose
worker died). The shards are split into one group of consecutive shards per worker, fixed for the
fit, and held by a Dask actor on that worker. Every iteration calls each actor once, straight from
the client (no scheduler round trip), with the parameters; each shard gives gradient *sums* (its mean
times its example count), the actor adds its shards' in shard order and returns one array per
parameter, and the driver adds the groups' in group order, divides by the global ``m`` once and runs
the model's own update. So a distributed fit equals a local one up to summation order, and two runs
on the same chunks and worker count agree bit for bit, whichever worker computed which group (a lost
worker's group starts again whole elsewhere, its shards recomputed).

Needs the ``distributed`` extra (``dask[array]`` and ``distributed``); nothing here is imported by
``import dlaccel``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from multiprocessing import resource_tracker
from typing import Any

import numpy as np

from .errors import ClusterError, DlaccelError, InputError, MissingDependencyError, ShapeError, WorkerLostError

# How many times one iteration is retried after workers were lost before the fit gives up.
MAX_RETRIES = 3
# How long a lost worker's group may take to start again elsewhere (its shards recomputed) before
# the fit gives up, and how often waits look at the cluster meanwhile.
RECOVERY_S = 120.0
POLL_S = 1.0
# How long a failed call waits for the scheduler to notice that its worker is gone.
NOTICE_S = 30.0

_EXTRA = "pip install 'dlaccel[distributed]'"


def is_dask_array(x: Any) -> bool:
    """Whether ``x`` is a dask array, without importing dask."""
    return type(x).__module__.split(".", 1)[0] == "dask" and hasattr(x, "chunks")


def require_distributed() -> Any:
    try:
        import dask.array  # noqa: F401
        import distributed
    except ImportError as exc:
        raise MissingDependencyError(
            f"training on dask arrays needs dask[array] and distributed ({exc.name} is missing): {_EXTRA}"
        ) from None
    return distributed


@contextlib.contextmanager
def client_for(client: Any = None, n_workers: int | None = None) -> Iterator[Any]:
    """The Client to run on: ``client`` itself, a Client connected to the address ``client``, the
    Client the user already made, else a LocalCluster of single-threaded worker processes (one per
    usable core, or ``n_workers``) started for this block and closed after it."""
    distributed = require_distributed()
    if isinstance(client, distributed.Client):
        yield client
        return
    if isinstance(client, str):
        try:
            connected = distributed.Client(client, timeout="20s", set_as_default=False)
        except OSError as exc:
            raise InputError(f"cannot reach a Dask scheduler at {client!r}: {exc}") from exc
        with connected:
            yield connected
        return
    if client is not None:
        raise InputError(
            f"client must be a distributed.Client, a scheduler address string or None, got {type(client).__name__}"
        )
    if n_workers is None:
        try:
            yield distributed.get_client()
            return
        except ValueError:  # no current client
            pass
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # A worker process importing the caller's unguarded script again, as multiprocessing's own
        # check knows it: a cluster started here would fail with pages of tracebacks. The parent says why.
        raise SystemExit(1)
    workers = n_workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    with contextlib.ExitStack() as stack:
        with _sigint_held_from_workers():
            # Registered for closing before a held Ctrl-C can land, so an early one closes it too.
            # Its workers' log lines are off: what goes wrong on them reaches the caller as an
            # exception, and closing busy workers on Ctrl-C logs tracebacks that read like a crash.
            try:
                cluster = stack.enter_context(distributed.LocalCluster(
                    n_workers=workers or 1, threads_per_worker=1, processes=True, dashboard_address=":0",
                    silence_logs=logging.CRITICAL))
            except Exception as exc:
                raise ClusterError(_start_failure(exc, workers or 1)) from None
        try:
            yield stack.enter_context(distributed.Client(cluster, set_as_default=False))
        except KeyboardInterrupt:
            # A call cut short leaves a cancelled gather's error unretrieved, which asyncio reports
            # with a traceback when it is collected; the run is ending on the user's Ctrl-C.
            logging.getLogger("asyncio").setLevel(logging.CRITICAL)
            raise


def _start_failure(exc: Exception, workers: int) -> str:
    message = f"a LocalCluster of {workers} worker process(es) failed to start ({type(exc).__name__}: {exc})"
    if getattr(sys.modules["__main__"], "__file__", None):
        message += ("; when it is called from a script, the call must sit under `if __name__ == \"__main__\":`, "
                    "since each worker process imports the main script again")
    return message


@contextlib.contextmanager
def _sigint_held_from_workers() -> Iterator[None]:
    """Ctrl-C at a terminal reaches the whole process group, and only this process should act on it
    (stop at the last completed iteration, close the cluster), not every worker with a traceback of
    its own. Processes started in the block inherit a blocked SIGINT, so it never reaches them; a
    Ctrl-C that reaches this process meanwhile is held and acted on when the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # multiprocessing unblocks SIGINT after starting its resource tracker: started first, the
    # block below holds.
    resource_tracker.ensure_running()
    held: list[int] = []
    # Not SIG_IGN: a BLAS thread that does not block SIGINT may take the signal, and would drop it.
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, previous)
        if held:
            signal.raise_signal(signal.SIGINT)  # what this process would have done at once


# -- the worker side ------------------------------------------------------------------------------


def _engine(spec: dict[str, Any]) -> Any:
    """The fit's model without data, on the worker's backend."""
    return spec["build"](spec["config"], backend=spec["backend"])


def _one_layout(a: Any) -> Any:
    """A host array C-contiguous and aligned whatever its history (a view here, a buffer at any
    offset after a transfer): NumPy and BLAS pick their kernels by layout and alignment, so this
    keeps repeated fits bit for bit identical."""
    return np.require(a, requirements=["C", "A"]) if isinstance(a, np.ndarray) else a


def _prepare_shard(spec: dict[str, Any], start: int, X: np.ndarray, Y: np.ndarray) -> tuple[Any, Any, int]:
    """One chunk as the model trains on it: checked (NaN/Inf, labels), in the model's dtype, as
    targets, on the worker's backend."""
    X, Y = _one_layout(X), _one_layout(Y)
    try:
        X, T = _engine(spec)._prepare(X, Y)
    except DlaccelError as exc:  # the same type, saying where
        raise type(exc)(f"{exc} (in examples {start}..{start + X.shape[1] - 1})") from None
    return X, T, int(X.shape[1])


class Group:
    """A Dask actor: one worker's group of shards and the engine that steps over them. Calls to it go
    from the client straight to its worker, with no scheduler round trip: one call per worker per
    iteration is the whole per-iteration traffic."""

    def __init__(self, spec: dict[str, Any], *shards: tuple[Any, Any, int]):
        self.engine = _engine(spec)
        self.shards = [(_one_layout(X), _one_layout(T), m) for X, T, m in shards]

    def sums(self, params: dict[str, np.ndarray], with_cost: bool) -> tuple[float | None, dict[str, np.ndarray]]:
        """The loss and gradient sums over the group's shards, added in shard order (float64), so
        one array per parameter goes back to the client, not one per shard."""
        engine = self.engine
        be = engine.backend
        engine._params = {k: be.asarray(p) for k, p in params.items()}
        total_cost: float | None = 0.0 if with_cost else None
        total: dict[str, np.ndarray] = {}
        for X, T, m in self.shards:
            # As in a local fit: overflow while diverging is the driver's TrainingDivergedError, not warnings.
            with np.errstate(over="ignore", invalid="ignore"):
                cost, grads = engine._step(X, T, with_cost)
            if total_cost is not None and cost is not None:
                total_cost += cost * m
            for k, g in grads.items():
                summed = np.asarray(be.to_numpy(g), dtype=np.float64) * m
                total[k] = total[k] + summed if k in total else summed
        return total_cost, total


def _model(spec: dict[str, Any], params: dict[str, np.ndarray]) -> Any:
    """A model rebuilt from its config and parameters, for a one-off task (no cache to clear)."""
    return spec["build"](spec["config"], parameters=params, backend=spec["backend"])


def _block_sums(spec: dict[str, Any], params: dict[str, np.ndarray], what: str,
                X: np.ndarray, Y: np.ndarray) -> tuple[float, dict[str, np.ndarray], int]:
    """``what`` (``cost``, ``grads`` or ``accuracy``) over one chunk, as sums over its examples."""
    engine = _model(spec, params)
    m = int(X.shape[1])
    if what == "accuracy":
        return engine.accuracy(X, Y) * m, {}, m
    be = engine.backend
    Xs, T = engine._prepare(X, Y)
    if what == "grads":
        _, grads = engine._step(Xs, T, False)
        return 0.0, {k: np.asarray(be.to_numpy(g), dtype=np.float64) * m for k, g in grads.items()}, m
    AL, _ = engine._forward(Xs)
    return be.compute_cost(AL, T, engine.loss) * m, {}, m


def _predict_block(spec: dict[str, Any], params: dict[str, np.ndarray], proba: bool, X: np.ndarray) -> np.ndarray:
    engine = _model(spec, params)
    return engine.predict_proba(X) if proba else engine.predict(X)


# -- the driver side ------------------------------------------------------------------------------


def _aligned(model: Any, X: Any, Y: Any | None) -> tuple[Any, Any | None]:
    """``X`` with its features in one chunk, and ``Y`` as a dask array chunked like ``X``'s
    columns; metadata checks only (the values are checked on the workers)."""
    import dask.array as da

    if X.ndim != 2:
        raise ShapeError(f"X must be 2-D with shape (n_x, m), got shape {X.shape}")
    if any(np.isnan(s) for s in X.shape):
        raise ShapeError("X has unknown chunk sizes; call X.compute_chunk_sizes() first")
    n_x = model.layer_dims[0] if model.layer_dims else None
    if n_x is not None and X.shape[0] != n_x:
        raise ShapeError(f"X must have n_x = {n_x} rows (shape ({n_x}, m)), got shape {X.shape}")
    X = X.rechunk({0: -1})
    if Y is None:
        return X, None
    if not is_dask_array(Y):
        Y = np.asarray(Y)
        if Y.ndim == 1:
            Y = Y.reshape(1, -1)
        if Y.ndim != 2 or Y.shape[1] != X.shape[1]:
            raise _y_shape_error(X, Y)
        Y = da.from_array(Y, chunks=(Y.shape[0], X.chunks[1]))
    elif Y.ndim == 1:
        Y = Y.reshape(1, -1)
    if Y.ndim != 2 or Y.shape[1] != X.shape[1]:
        raise _y_shape_error(X, Y)
    return X, Y.rechunk({0: -1, 1: X.chunks[1]})


def _y_shape_error(X: Any, Y: Any) -> ShapeError:
    if Y.ndim != 2:
        return ShapeError(f"Y must be 2-D with shape (n_y, m) or 1-D (m,), got shape {Y.shape}")
    return ShapeError(f"X has m = {X.shape[1]} examples but Y has {Y.shape[1]} (shape {Y.shape}); "
                      f"expected (n_y, {X.shape[1]})")


def _label_sample(Y: Any, client: Any = None) -> np.ndarray:
    """A small host array holding every distinct label of ``Y`` (or a few one-hot columns), so that
    the model can size its output layer and learn its classes without seeing all of ``Y``. Computed
    on ``client`` when given: only it can see data persisted on its workers."""
    import dask.array as da

    sample = da.unique(Y) if Y.shape[0] == 1 else Y[:, : min(Y.shape[1], 16)]
    values = sample.compute() if client is None else client.compute(sample, sync=True)
    return np.asarray(values).reshape(1, -1) if Y.shape[0] == 1 else np.asarray(values)


def build_from_data(model: Any, X: Any, Y: Any, client: Any = None) -> tuple[Any, Any]:
    """Align ``X``/``Y`` and build the model's layers (and classes) from a sample of the labels."""
    X, Y = _aligned(model, X, Y)
    sample = _label_sample(Y, client)
    # The model's own checks and building run on the sample; every shard is checked again on its worker.
    model._prepare(np.zeros((X.shape[0], sample.shape[1]), dtype=model.dtype), sample)
    return X, Y


def spec_of(model: Any, token: str | None = None) -> dict[str, Any]:
    # "build" is Model.from_config, handed over so that this module never imports models (no circle).
    return {"token": token or uuid.uuid4().hex, "config": model.config(), "backend": model.backend.name,
            "build": model.from_config}


def host_params(model: Any) -> dict[str, np.ndarray]:
    be = model.backend
    return {k: np.asarray(be.to_numpy(p)) for k, p in model._require_built().items()}


class ShardedData:
    """A fit's shards, persisted on the cluster and held by one :class:`Group` actor per worker, and
    one training step over them."""

    def __init__(self, client: Any, model: Any, X: Any, Y: Any):
        from dask import delayed

        self.client, self.model = client, model
        self.spec = spec_of(model)
        xs, ys = X.to_delayed().ravel(), Y.to_delayed().ravel()
        prepare = delayed(_prepare_shard, pure=True)
        starts = np.cumsum((0, *X.chunks[1][:-1]))
        shards = [prepare(self.spec, int(starts[j]), x, y, dask_key_name=f"dlaccel-shard-{self.spec['token']}-{j}")
                  for j, (x, y) in enumerate(zip(xs, ys))]
        # One group of consecutive shards per worker, fixed for the whole fit: each group's sums are
        # added on a worker in shard order, and the groups' on the client in group order, so the result
        # depends on the chunks and the worker count, never on which worker holds what (a group moves
        # whole when its worker dies). Placement is a hint, not a pin.
        workers = self._workers()
        n = len(shards)
        self.groups = [list(range(g * n // len(workers), (g + 1) * n // len(workers))) for g in range(len(workers))]
        self.groups = [g for g in self.groups if g]
        self.m = int(X.shape[1])
        self._workers_seen = set(workers)
        self.futures = [client.compute(shard, **self._hint(workers[i]))
                        for i, group in enumerate(self.groups) for shard in (shards[j] for j in group)]
        self.actor_futures: list[Any] = [None] * len(self.groups)
        self.actors: list[Any] = [None] * len(self.groups)
        self.where: list[str] = [""] * len(self.groups)  # each actor's worker
        try:
            # Bad values (NaN/Inf, unknown labels) surface here, as the typed error the worker raised;
            # waiting (not gathering) keeps the shards on the workers.
            for fut in self.futures:
                if fut.exception() is not None:  # waits for the shard; fetches only an error
                    fut.result()
            for i in range(len(self.groups)):
                self._start_group(i, workers[i])
            for i in range(len(self.groups)):
                self._await_group(i, iteration=model.iteration)
        except BaseException:
            self.release()
            raise

    def _workers(self) -> list[str]:
        workers = sorted(self.client.scheduler_info(n_workers=-1)["workers"])
        if not workers:  # a cluster still starting, or restarting a lost worker
            self.client.wait_for_workers(1, timeout=RECOVERY_S)
            workers = sorted(self.client.scheduler_info(n_workers=-1)["workers"])
        return workers

    @staticmethod
    def _hint(worker: str) -> dict[str, Any]:
        """Run on ``worker`` by preference only, so that a lost worker's work can go elsewhere."""
        return {"workers": [worker], "allow_other_workers": True}

    def _start_group(self, i: int, worker: str) -> None:
        shards = [self.futures[j] for j in self.groups[i]]
        self.actor_futures[i] = self.client.submit(Group, self.spec, *shards, actor=True, pure=False,
                                                   **self._hint(worker))

    def _await_group(self, i: int, iteration: int, cause: BaseException | None = None) -> None:
        """Wait for group ``i``'s actor, watching its shards: data that cannot be recomputed (its
        futures cancelled or erred) is a :class:`WorkerLostError`, not a wait without end."""
        future = self.actor_futures[i]
        deadline = time.monotonic() + RECOVERY_S
        while True:
            try:
                self.actors[i] = future.result(timeout=POLL_S)
                # The scheduler's record of where the actor lives, else the address the proxy holds.
                held = self.client.who_has(future).get(future.key) or [getattr(self.actors[i], "_address", "")]
                self.where[i] = held[0]
                return
            except TimeoutError:
                pass
            except Exception as exc:
                if not self._recoverable(exc):
                    raise
                raise self._lost(exc, iteration) from exc
            if time.monotonic() > deadline or any(self.futures[j].status in ("cancelled", "error")
                                                  for j in self.groups[i]):
                reason = cause or TimeoutError(f"group {i} did not restart within {RECOVERY_S:.0f} s")
                raise self._lost(reason, iteration) from cause

    def step(self, params: Any, with_cost: bool, iteration: int) -> tuple[float | None, dict[str, Any]]:
        """The mean cost (when asked) and mean gradients over every shard, on the model's backend."""
        be, model = self.model.backend, self.model
        host = {k: np.asarray(be.to_numpy(p)) for k, p in params.items()}
        for attempt in range(MAX_RETRIES + 1):
            try:
                parts = self._run(host, with_cost)
                break
            except Exception as exc:
                if not self._recoverable(exc):
                    raise
                if attempt == MAX_RETRIES:
                    raise self._lost(exc, iteration) from exc
                self._restart_lost_groups(exc, iteration)
        total_cost, grads = 0.0, None
        for cost, sums in parts:  # group order
            if cost is not None:
                total_cost += cost
            if grads is None:
                grads = {k: g.copy() for k, g in sums.items()}
            else:
                for k, g in sums.items():
                    grads[k] += g
        assert grads is not None
        mean = {k: be.asarray(g / self.m, dtype=model.dtype) for k, g in grads.items()}
        return (total_cost / self.m if with_cost else None), mean

    def _run(self, host: dict[str, np.ndarray], with_cost: bool) -> list[tuple[float | None, dict[str, np.ndarray]]]:
        """One actor call per group, all in flight at once; each returns its group's sums. The
        parameters go to every worker once (what a broadcast sends), in the call itself."""
        with self.client.as_current():  # an actor binds to the current client, which need not be the default
            calls = [actor.sums(host, with_cost) for actor in self.actors]
        return [self._result(i, call) for i, call in enumerate(calls)]

    def _result(self, i: int, call: Any) -> Any:
        """A call's result; a worker that vanished without closing its connection fails the call
        (as a lost worker), rather than hanging the fit."""
        while True:
            try:
                return call.result(timeout=POLL_S)
            except TimeoutError:
                if self.where[i] not in self.client.scheduler_info(n_workers=-1)["workers"]:
                    raise OSError(f"the worker of group {i} left the cluster") from None

    def _restart_lost_groups(self, exc: BaseException, iteration: int) -> None:
        """Start the actors whose worker is gone again on the workers there are; the scheduler
        recomputes their shards from the user's graph."""
        deadline = time.monotonic() + NOTICE_S
        while True:  # the scheduler may not have noticed the loss yet
            alive = set(self._workers())
            lost = [i for i, w in enumerate(self.where) if w not in alive]
            if lost or time.monotonic() > deadline:
                break
            time.sleep(POLL_S / 10)
        workers = sorted(alive)
        for n, i in enumerate(lost):
            with contextlib.suppress(Exception):
                self.actor_futures[i].release()
            self._start_group(i, workers[n % len(workers)])
        for i in lost:
            self._await_group(i, iteration, exc)

    @staticmethod
    def _recoverable(exc: BaseException) -> bool:
        """Whether ``exc`` says workers or their data went away (worth restarting and retrying)."""
        return (isinstance(exc, OSError)
                or (isinstance(exc, RuntimeError) and "Actor was lost" in str(exc))
                or type(exc).__name__ in ("KilledWorker", "CommClosedError", "FutureCancelledError",
                                          "FuturesCancelledError", "CancelledError"))

    def _lost(self, exc: BaseException, iteration: int) -> WorkerLostError:
        try:
            now = set(self.client.scheduler_info(n_workers=-1)["workers"])
        except Exception:
            now = set()
        gone = sorted(self._workers_seen - now)
        who = ", ".join(gone) if gone else "a worker"
        return WorkerLostError(
            f"lost {who} at iteration {iteration} and its shards could not be recomputed "
            f"({type(exc).__name__}: {exc}); the model keeps the parameters of its last completed iteration",
            iteration, gone)

    def release(self) -> None:
        """Drop the actors and the shards: after the fit, the workers hold nothing of it."""
        self.actors = []
        with contextlib.suppress(Exception):
            self.client.cancel([f for f in self.actor_futures if f is not None] + self.futures, force=True)
        self.actor_futures, self.futures = [], []


def dask_sums(model: Any, X: Any, Y: Any, what: str) -> tuple[float, dict[str, np.ndarray]]:
    """The mean of ``what`` (``cost``, ``grads`` or ``accuracy``) over dask arrays: one task per
    chunk of examples, summed in chunk order, on the current scheduler."""
    import dask
    from dask import delayed

    X, Y = build_from_data(model, X, Y)
    spec, params = spec_of(model), host_params(model)
    block = delayed(_block_sums, pure=True)
    parts = dask.compute(*[block(spec, params, what, x, y)
                           for x, y in zip(X.to_delayed().ravel(), Y.to_delayed().ravel())])
    m = sum(p[2] for p in parts)
    grads: dict[str, np.ndarray] = {}
    for _, sums, _ in parts:
        for k, g in sums.items():
            grads[k] = grads[k] + g if k in grads else g.copy()
    return sum(p[0] for p in parts) / m, {k: (g / m).astype(model.dtype) for k, g in grads.items()}


def dask_predict(model: Any, X: Any, proba: bool) -> Any:
    """Predictions over a dask array, lazily: one task per chunk of examples."""
    import dask.array as da

    X, _ = _aligned(model, X, None)
    model._require_built()
    n_out = model.layer_dims[-1] if proba or model.output_activation == "sigmoid" else 1
    dtype = model.dtype if proba else (np.int64 if model.classes_ is None else model.classes_.dtype)
    return da.map_blocks(_predict_block, spec_of(model), host_params(model), proba, X,
                         dtype=dtype, chunks=((n_out,), X.chunks[1]))

