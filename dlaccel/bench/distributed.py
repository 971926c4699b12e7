"""The distributed benchmark: what the data-parallel fit costs and buys, measured on a LocalCluster.

Five measurements in one run (issue 9):

1. overhead per iteration with near-zero compute (a few examples per worker), against the size of the
   parameters (``DeepNN([784, h, 10])`` float32 with ``h`` = 1, 32, 1000: about 3 KB, 100 KB, 3 MB)
   and the number of workers;
2. time per iteration of ``DeepNN([784, 256, 10])`` float32 against ``m``: one process with 2 BLAS
   threads (NumPy data in this process) against 1 and 2 single-threaded workers; the scaling model
   ``t = c * m / workers + o`` fitted to each, the break-even ``m`` and the efficiency at the largest
   ``m``;
3. dask-ml's ``LogisticRegression(solver="gradient_descent")`` beside dlaccel's on the same dask
   arrays (skipped with a note when dask-ml is not installed);
4. the client process's peak memory while training on a data set generated on the workers;
5. a log-log chart of time per iteration against ``m`` for each configuration.

Time per iteration is the slope between a short and a longer fit (``(t(n2) - t(n1)) / (n2 - n1)``,
median over repeats, after a warm-up fit), so the per-fit set-up (shards persisted, labels sampled,
released) cancels out. Nothing here asserts a target: the result carries each target and whether it
was met, and the machine's load, so a number from a busy machine reads as one.

``run_distributed`` returns a dict (schema ``dlaccel-bench-distributed/1``); ``format_table`` turns it
into text; ``dlaccel bench -w distributed [--quick] [--workers 1,2] [--json P] [--plot P]`` runs both.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import statistics
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write, check_writable
from ..distributed import client_for
from ..errors import InputError, MissingDependencyError
from ..plots import new_figure, save_png
from ..sysinfo import blas_threads, cpu_info, dist_version, package_versions
from .report import fmt_time

SCHEMA = "dlaccel-bench-distributed/1"
DTYPE = np.dtype(np.float32)
N_X, N_CLASSES, HIDDEN = 784, 10, 256  # the scaling workload: DeepNN([784, 256, 10])
LEARNING_RATE = 0.01

PROFILES: dict[str, dict[str, Any]] = {
    "full": {
        "overhead_hidden": (1, 32, 1000), "overhead_m_per_worker": 4,
        "m": (10_000, 20_000, 50_000, 100_000, 200_000), "at_m": 200_000,
        "iterations": (2, 7), "overhead_iterations": (5, 45), "repeats": 3,
        "peer_n_x": N_X, "peer_m": 200_000, "memory_bytes": 1.5e9, "memory_iterations": 3,
    },
    "quick": {
        "overhead_hidden": (1, 32, 1000), "overhead_m_per_worker": 4,
        "m": (5_000, 10_000, 20_000, 40_000), "at_m": 200_000,
        "iterations": (1, 4), "overhead_iterations": (3, 23), "repeats": 3,
        "peer_n_x": N_X, "peer_m": 20_000, "memory_bytes": 3e8, "memory_iterations": 2,
    },
    # CI smoke test: every code path, seconds of work.
    "tiny": {
        "overhead_hidden": (1, 4), "overhead_m_per_worker": 2,
        "m": (200, 400), "at_m": 400,
        "iterations": (1, 2), "overhead_iterations": (1, 2), "repeats": 1,
        "peer_n_x": 20, "peer_m": 400, "memory_bytes": 2e6, "memory_iterations": 1,
    },
}

# Issue 9's targets; reported beside the numbers, never asserted.
TARGETS = {
    "overhead_small_s": 0.010,  # at <= 100 KB of parameters
    "overhead_large_s": 0.040,  # at 3 MB
    "small_bytes": 100 * 1024 + 4096,  # "100 KB" as the h=32 net rounds it (101.8 KB)
    "efficiency": 0.85,
    "peer_speedup": 5.0,
    "memory_growth_bytes": 200e6,
}
PREDICT_WORKERS = (8, 64)
ONE_PROCESS = "1 process x 2 BLAS threads"


def _workers_label(w: int) -> str:
    return f"{w} worker{'s' if w > 1 else ''} x 1 thread"


# -- validation -----------------------------------------------------------------------------------


def _check_args(profile: str, workers: Sequence[int], json_path: Any, plot_path: Any) -> tuple[int, ...]:
    if profile not in PROFILES:
        raise InputError(f"profile must be one of {sorted(PROFILES)}, got {profile!r}")
    try:
        counts = tuple(workers)
    except TypeError:
        raise InputError(f"workers must be a sequence of worker counts such as (1, 2), got {workers!r}") from None
    if not counts or any(isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1 for w in counts):
        raise InputError(f"workers must be positive integers such as (1, 2), got {workers!r}")
    counts = tuple(sorted({int(w) for w in counts}))
    if json_path is not None:
        check_writable(json_path, "JSON report")
    if plot_path is not None:
        check_writable(plot_path, "chart")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise MissingDependencyError("plot_path needs matplotlib: pip install 'dlaccel[plot]'") from None
    try:
        import dask.array  # noqa: F401
        import distributed  # noqa: F401
        import threadpoolctl  # noqa: F401  (the one-process baseline's 2 BLAS threads)
    except ImportError as exc:
        raise MissingDependencyError(
            f"the distributed benchmark needs dask[array], distributed and threadpoolctl ({exc.name} is "
            "missing): pip install 'dlaccel[distbench]'") from None
    return counts


# -- measuring ------------------------------------------------------------------------------------


def _timed(fit: Callable[[int], Any], n: int) -> float:
    t0 = time.perf_counter()
    fit(n)
    return time.perf_counter() - t0


def per_iteration(fit: Callable[[int], Any], iterations: tuple[int, int], repeats: int) -> dict[str, Any]:
    """Seconds per iteration of ``fit(n)``: ``(fastest t(n2) - fastest t(n1)) / (n2 - n1)`` over
    ``repeats`` pairs after a warm-up, so that what a fit costs once (shards, label sample, release)
    cancels. The fastest rather than the median: on a shared machine the noise only ever adds time,
    and a fit's set-up is noisier than its iterations. The median of the pairwise slopes is kept too."""
    n1, n2 = iterations
    fit(n1)  # warm-up: imports, worker engines, BLAS pools
    short, long = [], []
    for _ in range(repeats):
        short.append(_timed(fit, n1))
        long.append(_timed(fit, n2))
    return {"per_iteration_s": (min(long) - min(short)) / (n2 - n1),
            "median_slope_s": statistics.median((b - a) / (n2 - n1) for a, b in zip(short, long)),
            "short_s": short, "long_s": long, "iterations": [n1, n2]}


def _chunk_count(workers: Sequence[int], per_worker: int = 4) -> int:
    """Chunks along the examples: a multiple of every worker count, several per worker, so the
    shards spread evenly whichever configuration runs."""
    return math.lcm(*workers) * per_worker


def _random_data(m: int, n_chunks: int, seed: int, n_x: int = N_X, classes: int = N_CLASSES) -> tuple[Any, Any]:
    """Random float32 ``(n_x, m)`` and labels ``0 .. classes-1``, drawn chunk by chunk where computed."""
    import dask.array as da

    size = max(1, math.ceil(m / n_chunks))
    rng = da.random.default_rng(seed)
    X = rng.standard_normal((n_x, m), chunks=(n_x, size), dtype=np.float32)
    Y = rng.integers(0, classes, size=(1, m), chunks=(1, size), dtype=np.uint8)
    return X, Y


def _linear_labels(m: int, n_chunks: int, seed: int, n_x: int) -> tuple[Any, Any]:
    """Random float32 ``(n_x, m)`` with 0/1 labels from a random hyperplane (a problem logistic
    regression can learn, so the final costs mean something)."""
    import dask.array as da

    X, _ = _random_data(m, n_chunks, seed, n_x)
    w = np.random.default_rng(seed).standard_normal(n_x).astype(np.float32)
    Y = (da.dot(w, X) > 0).astype(np.uint8)[None, :]
    return X, Y


def _placement(client: Any, X: Any) -> list[int]:
    """How many chunks of ``X`` each worker holds (after ``persist``), sorted, for the record."""
    from distributed import futures_of, wait

    futures = futures_of(X)
    with client.as_current():
        wait(futures)  # who_has knows only finished chunks
    who = client.who_has(futures)
    counts: dict[str, int] = {}
    for holders in who.values():
        for h in sorted(holders)[:1]:
            counts[h] = counts.get(h, 0) + 1
    return sorted(counts.values(), reverse=True)


def _param_bytes(layer_dims: Sequence[int], dtype: np.dtype = DTYPE) -> int:
    return sum((a + 1) * b for a, b in zip(layer_dims[:-1], layer_dims[1:])) * dtype.itemsize


def _deep_fit(dims: Sequence[int], X: Any, Y: Any, client: Any = None) -> Callable[[int], Any]:
    import dlaccel

    def fit(n: int) -> Any:
        model = dlaccel.DeepNN(list(dims), seed=0, dtype=DTYPE)
        kw = {} if client is None else {"client": client}
        return model.fit(X, Y, learning_rate=LEARNING_RATE, num_iterations=n, cost_every=n, **kw)

    return fit


def measure_overhead(client: Any, workers: int, profile: dict[str, Any], seed: int = 0) -> list[dict[str, Any]]:
    """Time per iteration with a few examples per worker: all of it is the distributed fit's overhead."""
    rows = []
    m = profile["overhead_m_per_worker"] * workers
    X, Y = _random_data(m, workers, seed)
    X, Y = client.persist([X, Y])
    for h in profile["overhead_hidden"]:
        dims = (N_X, h, N_CLASSES)
        timing = per_iteration(_deep_fit(dims, X, Y, client), profile["overhead_iterations"], profile["repeats"])
        rows.append({"workers": workers, "hidden": h, "layer_dims": list(dims), "param_bytes": _param_bytes(dims),
                     "m": m, **timing})
    return rows


def measure_scaling(fit_for: Callable[[int], Callable[[int], Any]], config: str, cores: int,
                    profile: dict[str, Any], progress: Callable[[str], None] = lambda s: None) -> list[dict[str, Any]]:
    rows = []
    for m in profile["m"]:
        progress(f"{config}: m = {m:,}")
        timing = per_iteration(fit_for(m), profile["iterations"], profile["repeats"])
        rows.append({"config": config, "cores": cores, "m": m, **timing})
    return rows


class PeakRSS:
    """The largest resident set size of this process while the block runs, sampled by a thread."""

    def __init__(self, interval_s: float = 0.005):
        self.interval_s = interval_s
        self.start = self.peak = 0
        self.method = "psutil"
        self._stop = threading.Event()

    def _rss(self) -> int:
        try:
            import psutil
        except ImportError:  # ru_maxrss is the peak over the whole process life, in KiB on Linux
            import resource

            self.method = "ru_maxrss"
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return int(psutil.Process().memory_info().rss)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = self._rss()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def growth(self) -> int:
        return self.peak - self.start


def measure_memory(client: Any, profile: dict[str, Any], workers: int, seed: int = 2) -> dict[str, Any]:
    """Client peak RSS growth while a softmax regression trains on a data set generated on the workers."""
    import dlaccel

    m = int(profile["memory_bytes"] // (N_X * DTYPE.itemsize))
    X, Y = _random_data(m, max(2 * workers, math.ceil(m / 25_000)), seed)
    model = dlaccel.LogisticRegression(dtype=DTYPE)
    with PeakRSS() as rss:
        model.fit(X, Y, learning_rate=LEARNING_RATE, num_iterations=profile["memory_iterations"], client=client)
    return {"m": m, "data_bytes": int(X.nbytes + Y.nbytes), "workers": workers,
            "iterations": profile["memory_iterations"], "rss_start_bytes": rss.start, "rss_peak_bytes": rss.peak,
            "growth_bytes": rss.growth, "method": rss.method}


def _exp_overflow_warnings(shown: bool) -> None:
    """Hide NumPy's exp overflow warnings in this process, or show them again as before."""
    message = "overflow encountered in exp"
    if shown:
        ours = [f for f in warnings.filters
                if f[0] == "ignore" and f[2] is RuntimeWarning and getattr(f[1], "pattern", None) == message]
        for f in ours:
            warnings.filters.remove(f)  # type: ignore[attr-defined]  # a list at run time
    else:
        warnings.filterwarnings("ignore", message, RuntimeWarning)


def measure_peer(client: Any, profile: dict[str, Any], seed: int = 3) -> dict[str, Any]:
    """dask-ml's gradient-descent logistic regression beside dlaccel's, on the same dask arrays."""
    import dlaccel

    n_x, m = profile["peer_n_x"], profile["peer_m"]
    X, Y = _linear_labels(m, _chunk_count([len(client.scheduler_info(n_workers=-1)["workers"])]), seed, n_x)
    X, Y = client.persist([X, Y])
    iterations, repeats = profile["iterations"], profile["repeats"]
    row: dict[str, Any] = {"m": m, "n_x": n_x, "iterations": iterations[1]}

    def ours(n: int) -> Any:
        return dlaccel.LogisticRegression(dtype=DTYPE).fit(X, Y, learning_rate=0.5, num_iterations=n,
                                                           cost_every=n, client=client)

    row["dlaccel_s"] = per_iteration(ours, iterations, repeats)["per_iteration_s"]
    final = ours(iterations[1])
    with client.as_current():
        row["dlaccel_cost"] = final.cost(X, Y)
    try:
        from dask_ml.linear_model import LogisticRegression as DaskMLLogistic
    except ImportError:
        row.update(peer=None, note="dask-ml is not installed (pip install dask-ml); peer row skipped")
        return row
    import dask_ml

    Xt, y = X.T, Y[0]

    def theirs(n: int) -> Any:
        # tol=-1: never stop early, so every call runs its n iterations
        with client.as_current():
            return DaskMLLogistic(solver="gradient_descent", max_iter=n, tol=-1.0).fit(Xt, y)

    # dask-glm's sigmoid overflows exp on its line search's trial steps, on the workers (harmlessly:
    # 1 / (1 + inf) = 0); not a warning for this report to print.
    client.run(_exp_overflow_warnings, False)
    try:
        row["peer_s"] = per_iteration(theirs, iterations, repeats)["per_iteration_s"]
        peer = theirs(iterations[1])
    finally:
        client.run(_exp_overflow_warnings, True)
    as_ours = dlaccel.Model.from_config(final.config(), parameters={
        "W1": np.asarray(peer.coef_, dtype=DTYPE).reshape(1, n_x),
        "b1": np.asarray(peer.intercept_, dtype=DTYPE).reshape(1, 1)})
    with client.as_current():
        row["peer_cost"] = as_ours.cost(X, Y)
    row.update(peer=f"dask-ml {dask_ml.__version__}", speedup=row["peer_s"] / row["dlaccel_s"],
               note="both make two passes over X per iteration (dask-glm adds one every 10th, and a line search)")
    return row


# -- the scaling model ----------------------------------------------------------------------------


def _nonneg_lstsq(A: np.ndarray, t: np.ndarray, free: Sequence[int] = ()) -> tuple[np.ndarray, list[int]]:
    """Least squares with every coefficient >= 0 except those in ``free``, and the indices of the
    coefficients held at zero: an overhead or a latency cannot be negative, and the unconstrained fit
    only makes one so when the timings' noise is larger than the term. Exact (every active set is
    tried), for the two or three terms fitted here."""
    n = A.shape[1]
    best: tuple[float, np.ndarray, list[int]] | None = None
    for mask in range(1 << n):
        zero = [j for j in range(n) if mask >> j & 1]
        if any(j in free for j in zero):
            continue
        keep = [j for j in range(n) if j not in zero]
        coef = np.zeros(n)
        if keep:
            coef[keep] = np.linalg.lstsq(A[:, keep], t, rcond=None)[0]
        if any(coef[j] < 0 for j in keep if j not in free):
            continue
        residual = float(np.sum((A @ coef - t) ** 2))
        if best is None or residual < best[0] - 1e-30:
            best = (residual, coef, zero)
    assert best is not None  # the all-zero set is always feasible
    return best[1], best[2]


def fit_line(ms: Sequence[float], ts: Sequence[float]) -> tuple[float, float, bool]:
    """Least squares ``t = a * m + o`` with ``o >= 0``: ``(a, o, o_held_at_zero)``. The slope is
    left free, so timings that fall with m show as a non-positive slope (flagged as noise)."""
    A = np.column_stack([np.asarray(ms, dtype=float), np.ones(len(ms))])
    (a, o), zero = _nonneg_lstsq(A, np.asarray(ts, dtype=float), free=(0,))
    return float(a), float(o), 1 in zero


def fit_overhead(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Least squares ``o(w, B) = alpha + w * (beta + gamma * B)``, every term >= 0: a fixed cost per
    iteration, and per worker a call's latency plus its parameters out and gradient sums back (``B``
    bytes each). ``held_at_zero`` names the terms the noise would have made negative."""
    w = np.array([r["workers"] for r in rows], dtype=float)
    B = np.array([r["param_bytes"] for r in rows], dtype=float)
    t = np.array([r["per_iteration_s"] for r in rows], dtype=float)
    A = np.column_stack([np.ones_like(w), w, w * B])
    (alpha, beta, gamma), zero = _nonneg_lstsq(A, t)
    names = ("alpha_s", "beta_s", "gamma_s_per_byte")
    return {"alpha_s": float(alpha), "beta_s": float(beta), "gamma_s_per_byte": float(gamma),
            "held_at_zero": [names[j] for j in zero]}


def overhead_at(model: dict[str, float], workers: float, param_bytes: float) -> float:
    return model["alpha_s"] + workers * (model["beta_s"] + model["gamma_s_per_byte"] * param_bytes)


def analyse(result: dict[str, Any]) -> dict[str, Any]:
    """The scaling model fitted to the measurements, and what it says (break-even, efficiency,
    predictions for more workers)."""
    at_m = result["at_m"]
    configs: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["config"] for r in result["scaling"]):
        rows = [r for r in result["scaling"] if r["config"] == name]
        a, o, o_zero = fit_line([r["m"] for r in rows], [r["per_iteration_s"] for r in rows])
        cores = rows[0]["cores"]
        measured = next((r["per_iteration_s"] for r in rows if r["m"] == at_m), None)
        configs[name] = {"workers": rows[0].get("workers"), "cores": cores, "per_example_s": a, "overhead_s": o,
                         "compute_per_example_1core_s": a * cores, "t_at_m_s": a * at_m + o,
                         "t_at_m_measured_s": measured, "overhead_held_at_zero": o_zero}
    out: dict[str, Any] = {"configs": configs}
    # Time that does not grow with m is not compute: the timings were too noisy to fit.
    # and no time per iteration is zero or less.
    out["unphysical"] = sorted(name for name, cfg in configs.items() if cfg["per_example_s"] <= 0
                               or any(r["per_iteration_s"] <= 0 for r in result["scaling"] if r["config"] == name))
    one = configs.get(ONE_PROCESS)
    by_workers = {c["workers"]: c for c in configs.values() if c["workers"] is not None}
    top = max(by_workers) if by_workers else None
    if one is not None and top is not None:
        dist = by_workers[top]
        if dist["per_example_s"] < one["per_example_s"]:
            out["break_even_m"] = max(0.0, (dist["overhead_s"] - one["overhead_s"])
                                      / (one["per_example_s"] - dist["per_example_s"]))
        else:
            out["break_even_m"] = None  # per example the workers are no faster: distributing never pays
        t1 = one["t_at_m_measured_s"] or one["t_at_m_s"]
        t2 = dist["t_at_m_measured_s"] or dist["t_at_m_s"]
        # Same cores on both sides, so the ideal speed-up is cores / cores = 1 and efficiency = speed-up.
        ideal = (dist["cores"]) / one["cores"]
        out["efficiency"] = {"workers": top, "m": at_m, "speedup": t1 / t2, "ideal_speedup": ideal,
                             "value": t1 / t2 / ideal,
                             "measured": one["t_at_m_measured_s"] is not None and dist["t_at_m_measured_s"] is not None}
    if 1 in by_workers and top is not None and top > 1:
        t1w = by_workers[1]["t_at_m_measured_s"] or by_workers[1]["t_at_m_s"]
        tw = by_workers[top]["t_at_m_measured_s"] or by_workers[top]["t_at_m_s"]
        out["parallel_efficiency"] = {"workers": top, "m": at_m, "value": t1w / (top * tw)}
    if result["overhead"] and by_workers:
        omodel = fit_overhead(result["overhead"])
        out["overhead_model"] = omodel
        c = statistics.median(cfg["compute_per_example_1core_s"] for cfg in by_workers.values())
        B = _param_bytes((N_X, HIDDEN, N_CLASSES))
        o1 = overhead_at(omodel, 1, B)
        preds = []
        for w in PREDICT_WORKERS:
            ow = overhead_at(omodel, w, B)
            pays = (ow - o1) / (c * (1 - 1 / w)) if ow > o1 else 0.0
            # efficiency (c m + o1) / (w t(w, m)) >= E  <=>  m >= (E w o_w - o1) / ((1 - E) c)
            e = TARGETS["efficiency"]
            preds.append({"workers": w, "overhead_s": ow, "t_at_m_s": c * at_m / w + ow,
                          "efficiency_at_m": (c * at_m + o1) / (w * (c * at_m / w + ow)),
                          "pays_above_m": pays, "efficiency_85_above_m": max(0.0, (e * w * ow - o1) / ((1 - e) * c))})
        out["predictions"] = {"param_bytes": B, "compute_per_example_1core_s": c, "rows": preds}
    return out


def check_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each of issue 9's targets beside what was measured (``met`` is ``None`` when not measured)."""
    checks = []
    for r in result["overhead"]:
        small = r["param_bytes"] <= TARGETS["small_bytes"]
        limit = TARGETS["overhead_small_s"] if small else TARGETS["overhead_large_s"]
        t = r["per_iteration_s"]
        # A negative slope is noise larger than the overhead: no time is a pass.
        checks.append({"what": f"overhead, {r['param_bytes'] / 1024:.0f} KB, {r['workers']} worker(s)",
                       "value": t, "target": f"<= {limit * 1e3:.0f} ms", "met": t <= limit if t > 0 else None})
    eff = result["analysis"].get("efficiency")
    if eff:
        checks.append({"what": f"efficiency at m = {eff['m']:,}" + ("" if eff["measured"] else " (predicted)"),
                       "value": eff["value"], "target": f">= {TARGETS['efficiency']}",
                       "met": eff["value"] >= TARGETS["efficiency"]})
    peer = result.get("peer")
    if peer:
        speedup = peer.get("speedup")
        checks.append({"what": "dlaccel vs dask-ml per iteration", "value": speedup,
                       "target": f">= {TARGETS['peer_speedup']:.0f}x",
                       "met": None if speedup is None else speedup >= TARGETS["peer_speedup"]})
    mem = result.get("memory")
    if mem:
        checks.append({"what": f"client memory growth, {mem['data_bytes'] / 1e9:.2g} GB data set",
                       "value": mem["growth_bytes"], "target": f"< {TARGETS['memory_growth_bytes'] / 1e6:.0f} MB",
                       "met": mem["growth_bytes"] < TARGETS["memory_growth_bytes"]})
    return checks


# -- the run --------------------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    versions = {**package_versions(), **{name: dist_version(name) for name in ("dask", "distributed", "dask-ml")}}
    return {"cpu": cpu_info(), "load_average": list(load) if load else None, "versions": versions}


def run_distributed(profile: str = "full", workers: Sequence[int] = (1, 2), json_path: Any = None,
                    plot_path: Any = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the distributed benchmark and return its result (see the module docstring); write it as
    JSON to ``json_path`` and the log-log chart to ``plot_path`` when given. Arguments are checked
    before any cluster starts."""
    counts = _check_args(profile, workers, json_path, plot_path)
    say = progress or (lambda s: None)
    prof = PROFILES[profile]
    n_chunks = _chunk_count(counts)
    result: dict[str, Any] = {
        "schema": SCHEMA, "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "profile": profile, "dtype": DTYPE.name, "workers": list(counts), "at_m": prof["at_m"],
        "workload": {"layer_dims": [N_X, HIDDEN, N_CLASSES], "param_bytes": _param_bytes((N_X, HIDDEN, N_CLASSES)),
                     "learning_rate": LEARNING_RATE, "chunks": n_chunks},
        "machine": _machine(), "targets": TARGETS, "overhead": [], "scaling": [], "peer": None, "memory": None,
    }

    # The baseline: one process, NumPy data, BLAS on 2 threads.
    from threadpoolctl import threadpool_limits

    def local_fit(m: int) -> Callable[[int], Any]:
        X, Y = _random_data(m, n_chunks, seed=1)
        Xn, Yn = (np.asarray(a) for a in __import__("dask").compute(X, Y, scheduler="threads"))
        return _deep_fit((N_X, HIDDEN, N_CLASSES), Xn, Yn)

    with threadpool_limits(limits=2, user_api="blas"):
        result["scaling"] += measure_scaling(local_fit, ONE_PROCESS, 2, prof, progress=say)

    for w in counts:
        say(f"starting a LocalCluster of {w} worker(s)")
        with client_for(n_workers=w) as client:
            blas = list(client.run(blas_threads).values())
            say(f"{w} worker(s): overhead")
            result["overhead"] += measure_overhead(client, w, prof)
            held: dict[int, list[int]] = {}

            def dist_fit(m: int, client: Any = client, held: dict[int, list[int]] = held) -> Callable[[int], Any]:
                X, Y = client.persist(list(_random_data(m, n_chunks, seed=1)))
                held[m] = _placement(client, X)
                return _deep_fit((N_X, HIDDEN, N_CLASSES), X, Y, client)

            rows = measure_scaling(dist_fit, _workers_label(w), w, prof, progress=say)
            for r in rows:
                r.update(workers=w, worker_blas_threads=blas, chunks_per_worker=held.get(r["m"]))
            result["scaling"] += rows
            if w == counts[-1]:
                say(f"{w} worker(s): peer row")
                result["peer"] = measure_peer(client, prof)
                say(f"{w} worker(s): client memory on a {prof['memory_bytes'] / 1e9:.2g} GB data set")
                result["memory"] = measure_memory(client, prof, w)
    result["analysis"] = analyse(result)
    result["checks"] = check_targets(result)
    if json_path is not None:
        text = json.dumps(result, indent=2) + "\n"
        atomic_write(json_path, lambda f: f.write(text.encode("utf-8")), "JSON report")
    if plot_path is not None:
        plot_scaling(result, Path(plot_path))
    return result


# -- reporting ------------------------------------------------------------------------------------


def _kb(n: float) -> str:
    return f"{n / 1e6:.3g} MB" if n >= 1e6 else f"{n / 1e3:.3g} KB"


def format_table(result: dict[str, Any]) -> str:
    """The result as plain text: machine, overhead, scaling, model, peer, memory, targets."""
    lines = []
    mach = result["machine"]
    load = mach.get("load_average")
    lines.append(f"dlaccel distributed bench, profile {result['profile']}, {result['dtype']}; CPU "
                 f"{mach['cpu']['model']}, {mach['cpu']['usable_cores']} usable cores"
                 + (f"; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}" if load else ""))
    lines += ["", "1. Overhead per iteration, near-zero compute (DeepNN [784, h, 10])",
              f"  {'h':>5} {'params':>9} {'workers':>7} {'m':>6} {'per iter':>10}"]
    lines += [f"  {r['hidden']:>5} {_kb(r['param_bytes']):>9} {r['workers']:>7} {r['m']:>6} "
              f"{fmt_time(r['per_iteration_s']):>10}" for r in result["overhead"]]
    configs = list(dict.fromkeys(r["config"] for r in result["scaling"]))
    ms = sorted({r["m"] for r in result["scaling"]})
    lines += ["", f"2. Time per iteration, DeepNN {result['workload']['layer_dims']} {result['dtype']}",
              "  " + f"{'m':>8} " + " ".join(f"{c:>28}" for c in configs)]
    for m in ms:
        cells = []
        for c in configs:
            r = next((r for r in result["scaling"] if r["config"] == c and r["m"] == m), None)
            cells.append(f"{fmt_time(r['per_iteration_s']) if r else '-':>28}")
        lines.append("  " + f"{m:>8,} " + " ".join(cells))
    an = result["analysis"]
    lines.append("  model t = a m + o:")
    for name, cfg in an["configs"].items():
        lines.append(f"    {name}: a = {cfg['per_example_s'] * 1e6:.3g} us/example, o = {fmt_time(cfg['overhead_s'])}"
                     f" (compute per example on one core c = {cfg['compute_per_example_1core_s'] * 1e6:.3g} us)")
    if "break_even_m" in an:
        be = an["break_even_m"]
        lines.append("  break-even m (workers vs one process): "
                     + ("never (the workers are no faster per example)" if be is None else f"{be:,.0f}"))
    eff = an.get("efficiency")
    if eff:
        lines.append(f"  efficiency at m = {eff['m']:,}{'' if eff['measured'] else ' (from the model)'}: "
                     f"{eff['value']:.2f} = speed-up {eff['speedup']:.2f} / ideal {eff['ideal_speedup']:.2g} "
                     f"({eff['workers']} workers on the same cores as the one process)")
    pe = an.get("parallel_efficiency")
    if pe:
        lines.append(f"  parallel efficiency vs 1 worker at m = {pe['m']:,}: {pe['value']:.2f} (ideal 1)")
    peer = result.get("peer")
    lines += ["", "3. Peer: logistic regression by gradient descent on the same dask arrays"]
    if peer:
        lines.append(f"  m = {peer['m']:,}, n_x = {peer['n_x']}: dlaccel {fmt_time(peer['dlaccel_s'])}/iter, "
                     f"cost {peer['dlaccel_cost']:.4g} after {peer['iterations']}")
        if peer.get("peer"):
            lines.append(f"  {peer['peer']}: {fmt_time(peer['peer_s'])}/iter, cost {peer['peer_cost']:.4g}; "
                         f"dlaccel {peer['speedup']:.3g}x faster per iteration")
        lines.append(f"  note: {peer['note']}")
    mem = result.get("memory")
    if mem:
        lines += ["", f"4. Client memory: {mem['data_bytes'] / 1e9:.3g} GB generated on {mem['workers']} worker(s), "
                      f"{mem['iterations']} iteration(s): peak RSS grew by {mem['growth_bytes'] / 1e6:.1f} MB "
                      f"({mem['method']})"]
    pred = an.get("predictions")
    if pred:
        om = an["overhead_model"]
        lines += ["", f"Overhead model o(w, B) = {om['alpha_s'] * 1e3:.3g} ms + w * ({om['beta_s'] * 1e3:.3g} ms "
                      f"+ B * {om['gamma_s_per_byte'] * 1e9:.3g} ms/MB); "
                      f"predictions at B = {_kb(pred['param_bytes'])}:"]
        for p in pred["rows"]:
            lines.append(f"  {p['workers']:>3} workers: o = {fmt_time(p['overhead_s'])}, t(m={result['at_m']:,}) = "
                         f"{fmt_time(p['t_at_m_s'])}, efficiency {p['efficiency_at_m']:.2f}; pays over 1 worker above "
                         f"m = {p['pays_above_m']:,.0f}, 85 % efficient above m = {p['efficiency_85_above_m']:,.0f}")
    held = [f"{name}: o" for name, cfg in an["configs"].items() if cfg.get("overhead_held_at_zero")]
    held += [f"overhead model: {term}" for term in an.get("overhead_model", {}).get("held_at_zero", [])]
    if held:
        lines += ["", "Held at zero (the unconstrained fit made them negative, i.e. smaller than the noise): "
                  + "; ".join(held)]
    if an.get("unphysical"):
        lines += ["", "WARNING: time per iteration does not grow with m, or came out zero or negative, in "
                  + ", ".join(an["unphysical"]) + ": the "
                  "timings were too noisy for the model (a loaded machine?); the derived numbers above mean nothing, "
                  "re-run quiet."]
    lines += ["", "Targets (issue 9):"]
    for c in result["checks"]:
        v = c["value"]
        shown = "-" if v is None else (fmt_time(v) if "overhead" in c["what"] else
                                       f"{v / 1e6:.1f} MB" if "memory" in c["what"] else f"{v:.3g}")
        met = {True: "met", False: "NOT met", None: "not measured"}[c["met"]]
        if c["met"] is None and v is not None:
            met = "too noisy to tell (the slope came out negative)"
        lines.append(f"  {c['what']}: {shown} (target {c['target']}): {met}")
    return "\n".join(lines)


def scaling_figure(result: dict[str, Any]) -> Any:
    """Log-log time per iteration against ``m``, one line per configuration, the fitted model dashed."""
    fig = new_figure(7, 4.8)
    ax = fig.add_subplot()
    for name, cfg in result["analysis"]["configs"].items():
        rows = [r for r in result["scaling"] if r["config"] == name]
        ms = np.array([r["m"] for r in rows], dtype=float)
        ts = np.array([r["per_iteration_s"] for r in rows])
        shown = ts > 0  # a slope that noise made zero or negative has no place on a log axis
        dropped = f" ({np.count_nonzero(~shown)} point(s) <= 0 left out: noise)" if not shown.all() else ""
        (line,) = ax.plot(ms[shown], ts[shown], marker="o", label=name + dropped)
        grid = np.geomspace(ms.min(), ms.max(), 50)
        ax.plot(grid, cfg["per_example_s"] * grid + cfg["overhead_s"], linestyle="--", color=line.get_color(),
                linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("m (examples)")
    ax.set_ylabel("time per iteration (s)")
    ax.set_title(f"DeepNN {result['workload']['layer_dims']} {result['dtype']}, profile {result['profile']} "
                 "(dashed: t = a m + o)")
    ax.legend()
    return fig


def plot_scaling(result: dict[str, Any], path: Path) -> None:
    """:func:`scaling_figure` as a PNG."""
    save_png(scaling_figure(result), path, "chart", dpi=110)
