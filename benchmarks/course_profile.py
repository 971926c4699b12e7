#!/usr/bin/env python3
"""Where the time of the two slow CPU workloads goes (issue 13): each large product alone, at 1 and
at 2 BLAS threads, against the machine's limits measured in the same run, beside the whole step on
the numpy and numba backends.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/course_profile.py [--quick]

(those variables may be set on shared machines and slow OpenBLAS; unset them for this command only).

Workloads (float32): ``deep_course`` ``[12288, 20, 7, 5, 1]``, m = 2048, with ``X`` F-ordered as the
course makes it (``images.reshape(m, -1).T``), and ``logreg`` n_x = 12288, m = 2000, ``X`` F- and
C-ordered. A product's floor is the larger of its GEMM work at the measured GEMM rate and its bytes
(``X`` read once) at the measured read bandwidth; "% floor" is floor / time. Times are the median
of ``dlaccel.bench.measure``'s samples, with the interquartile range over the median.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dlaccel import backends  # noqa: E402
from dlaccel.bench import WORKLOADS, Case, measure, measure_limits  # noqa: E402

DTYPE = np.dtype(np.float32)


def timed(fn: Any, samples: int) -> tuple[float, float]:
    """Median seconds per call and the IQR over the median."""
    timing = measure(Case(step=fn, outputs=dict), samples, 0.3)
    q1, q3 = timing.quartiles()
    return timing.median_s, (q3 - q1) / timing.median_s


def read_bandwidth(X: np.ndarray, samples: int) -> float | None:
    """GB/s of one streaming read of ``X`` on every thread (a Numba reduction), or None without Numba."""
    try:
        from numba import njit, prange
    except ImportError:
        return None

    @njit(parallel=True, fastmath=True, cache=False)
    def total(flat: Any) -> float:
        s = 0.0
        for i in prange(flat.size):
            s += flat[i]
        return s

    flat = X.reshape(-1, order="A")
    total(flat)
    return X.nbytes / timed(lambda: total(flat), samples)[0] / 1e9


def blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    pools = [p for p in threadpool_info() if p["user_api"] == "blas"]
    return "; ".join(f"{p['internal_api']} {p.get('version')} {p.get('architecture')} "
                     f"num_threads={p['num_threads']}" for p in pools) or "no BLAS pool found"


def with_threads(n: int) -> Any:
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n, user_api="blas")


def product_rows(products: dict[str, tuple[Any, float, float]], limits: dict[str, float], samples: int) -> list[str]:
    """``products``: name -> (call, GEMM FLOP, bytes of X read); the copy row's bytes are read + written."""
    rows = ["| product | threads | time | IQR | GFLOP/s | GB/s | floor | % floor |", "|" + " --- |" * 8]
    for name, (fn, flops, nbytes) in products.items():
        bandwidth = limits["copy_gbps"] if name.startswith("copy") else limits["read_gbps"]
        floor = max(flops / (limits["gemm_gflops"] * 1e9), nbytes / (bandwidth * 1e9))
        for threads in (1, 2):
            with with_threads(threads):
                t, iqr = timed(fn, samples)
            rows.append(f"| {name} | {threads} | {t * 1e3:.2f} ms | {iqr:.0%} | {flops / t / 1e9:.0f} | "
                        f"{nbytes / t / 1e9:.1f} | {floor * 1e3:.2f} ms | {floor / t:.0%} |")
    return rows


def step_rows(names: list[str], profile: str, samples: int, floors: dict[str, float]) -> list[str]:
    rows = ["| workload | backend | time | IQR | x numpy | % floor |", "|" + " --- |" * 6]
    for name in names:
        workload = WORKLOADS[name]
        size = workload.size(profile)
        data = workload.data(size, DTYPE)
        base = None
        for backend in ("numpy", "numba"):
            if not backends.available_backends()[backend]["available"]:
                rows.append(f"| {name} | {backend} | unavailable | | | |")
                continue
            case = workload.build(backends.get_backend(backend), size, data)
            case.step()  # compile or warm
            t, iqr = timed(case.step, samples)
            base = base or t
            rows.append(f"| {name} | {backend} | {t * 1e3:.2f} ms | {iqr:.0%} | {t / base:.2f} | "
                        f"{floors[name] / t:.0%} |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer samples")
    args = parser.parse_args()
    profile, samples = ("quick", 5) if args.quick else ("full", 15)
    rng = np.random.default_rng(0)
    layers, m = list(WORKLOADS["deep_course"].size(profile)["layers"]), WORKLOADS["deep_course"].size(profile)["m"]
    n_x = layers[0]
    X = rng.standard_normal((m, n_x), dtype=np.float32).T  # the course's F-ordered (n_x, m) view
    W1 = rng.standard_normal((layers[1], n_x), dtype=np.float32)
    dZ1 = rng.standard_normal((layers[1], m), dtype=np.float32)

    limits = measure_limits(profile, DTYPE)
    limits["read_gbps"] = read_bandwidth(X, samples) or limits["copy_gbps"] / 2
    print(f"BLAS: {blas_info()}")
    print(f"limits: GEMM {limits['gemm_gflops']:.0f} GFLOP/s (n = {limits['gemm_n']}), copy "
          f"{limits['copy_gbps']:.1f} GB/s (read + write), streaming read of X {limits['read_gbps']:.1f} GB/s\n")

    gemm = 2.0 * layers[1] * n_x * m
    print(f"## deep_course {layers}, m = {m}: the two products with X (X is {X.nbytes / 1e6:.0f} MB)\n")
    print("\n".join(product_rows({
        "Z1 = W1 X": (lambda: W1 @ X, gemm, X.nbytes),
        "dW1 = dZ1 X^T": (lambda: dZ1 @ X.T, gemm, X.nbytes),
        "copy of X (for scale)": (lambda: np.copy(X, order="F"), 0.0, 2 * X.nbytes),
    }, limits, samples)))

    size = WORKLOADS["logreg"].size(profile)
    lx, lm = size["n_x"], size["m"]
    w = rng.standard_normal((1, lx), dtype=np.float32)
    dz = rng.standard_normal((1, lm), dtype=np.float32)
    products = {}
    for order, Xl in (("F", rng.standard_normal((lm, lx), dtype=np.float32).T),
                      ("C", rng.standard_normal((lx, lm), dtype=np.float32))):
        products[f"w X ({order})"] = (lambda Xl=Xl: w @ Xl, 2.0 * lx * lm, Xl.nbytes)
        products[f"dz X^T ({order})"] = (lambda Xl=Xl: dz @ Xl.T, 2.0 * lx * lm, Xl.nbytes)
    print(f"\n## logreg n_x = {lx}, m = {lm}: the forward product and dW\n")
    print("\n".join(product_rows(products, limits, samples)))

    def floor(name: str) -> float:
        workload = WORKLOADS[name]
        s = workload.size(profile)
        assert workload.gemm_flops is not None and workload.min_bytes is not None
        return max(workload.gemm_flops(s, DTYPE) / (limits["gemm_gflops"] * 1e9),
                   workload.min_bytes(s, DTYPE) / (limits["read_gbps"] * 1e9))

    names = ["deep_course", "logreg", "logreg_c"]
    print("\n## whole training steps (2 threads)\n")
    print("\n".join(step_rows(names, profile, samples, {n: floor(n) for n in names})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
