"""How well a sweep uses a LocalCluster: the same trials one after another in this process, then on an
n-worker cluster; efficiency = serial time / (workers x parallel time). The cluster's start-up (and
its first, module-importing task) is measured apart, as the fixed cost a sweep pays once.

    python benchmarks/sweep_efficiency.py [--trials 8] [--seconds 1.0] [--workers 2]

Run it on a quiet machine: other processes on the cores lower the efficiency it reports (it prints
the load average before and after for that reason).
"""

from __future__ import annotations

import argparse
import importlib
import os
import time
from typing import Any

import dlaccel

LEARNING_RATES = [0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.5, 0.3, 0.5, 0.7, 0.9, 1.1, 1.3, 1.4, 1.6]


def workload(n_trials: int, seconds: float) -> dict[str, Any]:
    """Sweep arguments for ``n_trials`` ShallowNN trials on the planar flower, each sized to take about
    ``seconds`` here (the iteration count is calibrated on one short fit)."""
    X, Y = dlaccel.datasets.planar(m=400)
    probe = 1000
    dlaccel.ShallowNN(20, seed=1).fit(X, Y, num_iterations=50)  # warm: first calls out of the calibration
    start = time.perf_counter()
    dlaccel.ShallowNN(20, seed=1).fit(X, Y, num_iterations=probe, cost_every=probe)
    per_iteration = (time.perf_counter() - start) / probe
    iterations = max(10, round(seconds / per_iteration))
    rates = (LEARNING_RATES * (n_trials // len(LEARNING_RATES) + 1))[:n_trials]
    return {"model_class": dlaccel.ShallowNN, "grid": {"learning_rate": rates}, "X": X, "Y": Y,
            "fixed": {"n_h": 20, "seed": 1, "num_iterations": iterations, "cost_every": max(1, iterations // 50)}}


def measure(n_trials: int = 8, seconds: float = 1.0, n_workers: int = 2) -> dict[str, float]:
    """Serial time, cluster start-up time, parallel time and efficiency, in seconds."""
    import distributed

    w = workload(n_trials, seconds)
    args = (w["model_class"], w["grid"], w["X"], w["Y"])
    start = time.perf_counter()
    serial = dlaccel.sweep(*args, fixed=w["fixed"], n_workers=0)
    serial_s = time.perf_counter() - start

    start = time.perf_counter()
    with distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", silence_logs=40) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(n_workers)
        # Importing dlaccel on every worker is part of the fixed cost, not of the sweep.
        client.run(importlib.import_module, "dlaccel.sweep")
        startup_s = time.perf_counter() - start
        start = time.perf_counter()
        parallel = dlaccel.sweep(*args, fixed=w["fixed"], client=client)
        parallel_s = time.perf_counter() - start

    # The cluster computes the same numbers (each trial is deterministic from its seed).
    assert [t.costs for t in parallel.trials] == [t.costs for t in serial.trials]
    return {"trials": n_trials, "workers": n_workers, "num_iterations": w["fixed"]["num_iterations"],
            "trial_s_mean": sum(t.seconds for t in serial.trials) / n_trials,
            # The same trials' own times on the workers: above the serial ones when the cores are shared.
            "trial_s_mean_on_workers": sum(t.seconds for t in parallel.trials) / n_trials,
            "serial_s": serial_s, "parallel_s": parallel_s, "startup_s": startup_s,
            "efficiency": serial_s / (n_workers * parallel_s),
            # The share of the workers' wall time spent inside trials: what Dask's scheduling and
            # transfers cost, whatever else runs on the machine.
            "busy_share": sum(t.seconds for t in parallel.trials) / (n_workers * parallel_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=1.0, help="about how long one trial takes")
    parser.add_argument("--workers", type=int, default=2)
    a = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    r = measure(a.trials, a.seconds, a.workers)
    print(f"{r['trials']} trials of ShallowNN(20) x {r['num_iterations']} iterations "
          f"(~{r['trial_s_mean']:.2f} s each, serially)")
    print(f"one trial on a worker:     {r['trial_s_mean_on_workers']:7.2f} s (mean; "
          f"{r['trial_s_mean']:.2f} s serially: above it, the workers did not get a core each)")
    print(f"serial, in this process:   {r['serial_s']:7.2f} s")
    print(f"parallel, {r['workers']} workers:       {r['parallel_s']:7.2f} s")
    print(f"cluster start-up (apart):  {r['startup_s']:7.2f} s")
    print(f"efficiency:                {r['efficiency']:7.2f}  (serial / (workers x parallel); target >= 0.8)")
    print(f"workers busy in trials:    {r['busy_share']:7.2f}  (the rest is scheduling, transfers, imbalance)")
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
