"""Numba-specific tests: the vectorised transcendentals, the fused kernels, the compile cache.

The generic comparison of every op with the NumPy backend lives in test_ops.py (the numba backend
joins the ``backend`` fixture); this file covers what only the numba backend has.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import dlaccel
from dlaccel.backends.base import ACTIVATIONS

from .conftest import tol

_reason = dlaccel.available_backends()["numba"]["reason"]
if _reason is not None:
    pytest.skip(f"numba: {_reason}", allow_module_level=True)

import numba  # noqa: E402
from numba import njit  # noqa: E402

from dlaccel.backends import _numba_math, numba_cpu  # noqa: E402

HIDDEN = [a for a in ACTIVATIONS if a != "softmax"]


@pytest.fixture
def nb():
    return dlaccel.get_backend("numba")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@njit
def _exp_all(x, out):
    for i in range(x.size):
        out[i] = _numba_math._exp(x[i])


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How many representable floats lie between ``a`` and ``b``: 0 for equal values, both NaN,
    or +0 and -0; -1 where exactly one is NaN; inf for opposite infinities."""
    bits = {np.dtype(np.float32): np.int32, np.dtype(np.float64): np.int64}[a.dtype]
    lowest = np.int64(np.iinfo(bits).min)
    # sign-magnitude bit patterns -> one integer line on which neighbouring floats differ by 1
    oa, ob = (np.where(i < 0, lowest - i, i) for i in (x.view(bits).astype(np.int64) for x in (a, b)))
    d = np.abs(oa - ob).astype(np.float64)  # wraps negative only for opposite infinities
    d[d < 0] = np.inf
    d[np.isnan(a) & np.isnan(b)] = 0
    d[np.isnan(a) ^ np.isnan(b)] = -1
    return d


def full_range(dtype) -> np.ndarray:
    """Inputs over every regime: both saturated tails, overflow/underflow edges, tiny values,
    subnormal results, signed zeros and non-finite values."""
    finfo = np.finfo(dtype)
    big = 120.0 if dtype == np.float32 else 800.0
    parts = [
        np.linspace(-big, big, 400_001),
        np.geomspace(float(finfo.smallest_subnormal), 1.0, 50_001),
        -np.geomspace(float(finfo.smallest_subnormal), 1.0, 50_001),
        np.linspace(-2.0, 2.0, 100_001),
        [0.0, -0.0, np.inf, -np.inf, np.nan, float(finfo.max), -float(finfo.max)],
    ]
    return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]).astype(dtype)


# Measured here: exp 2 ulp (float32) and 1 ulp (float64) from NumPy's exp, sigmoid and tanh 3 ulp
# from the NumPy backend in both dtypes (against an 80-bit reference: exp 1, tanh 2, sigmoid 3).
ULP_BOUND = {"exp": 2, "sigmoid": 4, "tanh": 4}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_exp_matches_numpy_over_the_whole_range(dtype):
    x = full_range(dtype)
    got = np.empty_like(x)
    _exp_all(x, got)
    with np.errstate(over="ignore"):
        want = np.exp(x)
    d = ulp_distance(got, want)
    assert d.min() >= 0, "NaN where NumPy has a number, or the reverse"
    assert d.max() <= ULP_BOUND["exp"], f"max {d.max()} ulp at x={x[d.argmax()]!r}"
    assert got.dtype == dtype
    # the tails saturate exactly
    assert np.all(got[x < -110 if dtype == np.float32 else x < -750] == 0)
    assert np.all(np.isinf(got[x > 90 if dtype == np.float32 else x > 710]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_sigmoid_and_tanh_match_numpy_over_the_whole_range(nb, reference, activation, dtype):
    x = full_range(dtype).reshape(1, -1)
    got = nb.activation_forward(x, activation)
    want = reference.activation_forward(x, activation)
    d = ulp_distance(got.ravel(), want.ravel())
    assert d.min() >= 0
    assert d.max() <= ULP_BOUND[activation], f"max {d.max()} ulp at z={x.ravel()[d.argmax()]!r}"
    # saturated tails are exact, tiny inputs keep their relative precision
    assert np.all(got[x > 50] == 1)
    tiny = (np.abs(x) < 1e-3) & (x != 0)
    if activation == "tanh":
        np.testing.assert_allclose(got[tiny], want[tiny], rtol=4 * np.finfo(dtype).eps, atol=0)
        assert np.all(got[x < -50] == -1)
    else:
        assert np.all(got[x < -50] >= 0)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="checks x86 SIMD instructions")
def test_activation_loops_are_vectorised():
    """Packed float instructions in the compiled activation loops: exp/tanh are not scalar libm
    calls (which is what math.exp gives with llvmlite builds that lack SVML). A fresh, uncached
    copy of the kernel so the assembly is available."""
    kernel = njit(numba_cpu._activate.py_func)
    kernel.compile("void(float32[::1], float32[::1], int64)")
    asm = kernel.inspect_asm(kernel.signatures[0])
    packed = re.findall(r"\bv?(?:mul|add|fmadd\w*|div)ps\s", asm)
    assert len(packed) >= 20
    assert not re.search(r"call\w*\s+.*\bexpf?\b", asm)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(3, 9000), (40, 7)], ids=["chunked-rows", "small"])
def test_fused_layer_matches_numpy(nb, reference, activation, shape, dtype, rng):
    """Bias + activation in one pass forward, dA * g'(Z) with the db sums backward; rows longer
    than a chunk and softmax over several column blocks."""
    n, m = shape
    n_prev = 5
    A_prev = rng.standard_normal((n_prev, m)).astype(dtype)
    W = rng.standard_normal((n, n_prev)).astype(dtype)
    b = rng.standard_normal((n, 1)).astype(dtype)
    A, cache = nb.linear_activation_forward(A_prev, W, b, activation)
    A_ref, cache_ref = reference.linear_activation_forward(A_prev, W, b, activation)
    np.testing.assert_allclose(cache.Z, cache_ref.Z, **tol(dtype))
    np.testing.assert_allclose(A, A_ref, **tol(dtype))
    dA = rng.standard_normal(A.shape).astype(dtype)
    for need_dA_prev in (True, False):
        got = nb.linear_activation_backward(dA, cache, activation, need_dA_prev)
        want = reference.linear_activation_backward(dA, cache_ref, activation, need_dA_prev)
        assert (got[0] is None) == (not need_dA_prev)
        for g, w in zip(got, want):
            if w is not None:
                assert g.dtype == dtype and g.shape == w.shape
                np.testing.assert_allclose(g, w, **tol(dtype))
    dZ = nb.activation_backward(dA, cache_ref.Z, activation)
    np.testing.assert_allclose(dZ, reference.activation_backward(dA, cache_ref.Z, activation), **tol(dtype))


KERNELS = {name: k for name, k in vars(numba_cpu).items() if isinstance(k, numba_cpu.Kernel)}


@pytest.mark.parametrize("path", ["serial", "parallel"])
def test_serial_and_parallel_variants_match_numpy(nb, reference, dtype, rng, monkeypatch, path):
    """Every op through one variant of the kernels, picked by moving PARALLEL_MIN_SIZE so that
    small data takes the path large data takes: rows longer than a chunk, several softmax column
    blocks, a layer gradient with and without its db sums."""
    monkeypatch.setattr(numba_cpu, "PARALLEL_MIN_SIZE", 0 if path == "parallel" else 1 << 62)
    n, m = 3, 2 * numba_cpu.CHUNK + 7
    A_prev = rng.standard_normal((5, m)).astype(dtype)
    W = rng.standard_normal((n, 5)).astype(dtype)
    b = rng.standard_normal((n, 1)).astype(dtype)
    dA = rng.standard_normal((n, m)).astype(dtype)
    Y = np.eye(n, dtype=dtype)[:, rng.integers(0, n, m)]
    check = tol(dtype)
    np.testing.assert_allclose(nb.linear_forward(A_prev, W, b), reference.linear_forward(A_prev, W, b), **check)
    np.testing.assert_allclose(nb.linear_backward(dA, A_prev, W)[2], reference.linear_backward(dA, A_prev, W)[2],
                               **check)
    for activation in ACTIVATIONS:
        A, cache = nb.linear_activation_forward(A_prev, W, b, activation)
        A_ref, cache_ref = reference.linear_activation_forward(A_prev, W, b, activation)
        np.testing.assert_allclose(A, A_ref, **check)
        for g, w in zip(nb.linear_activation_backward(dA, cache, activation),
                        reference.linear_activation_backward(dA, cache_ref, activation)):
            np.testing.assert_allclose(g, w, **check)
        Z = cache_ref.Z
        np.testing.assert_allclose(nb.activation_forward(Z, activation), reference.activation_forward(Z, activation),
                                   **check)
        np.testing.assert_allclose(nb.activation_backward(dA, Z, activation),
                                   reference.activation_backward(dA, Z, activation), **check)
    AL = reference.activation_forward(dA, "softmax")
    np.testing.assert_array_equal(nb.output_backward(AL, Y, "cross_entropy"), AL - Y)
    params = {"W1": W.copy(), "b1": b.copy()}
    nb.update_parameters(params, {"dW1": W, "db1": b}, 0.1)
    np.testing.assert_array_equal(params["W1"], W - dtype(0.1) * W)
    # the variant under test is the one that ran, for this dtype, in every kernel
    element = numba.from_dtype(np.dtype(dtype))
    for name, kernel in KERNELS.items():
        signatures = getattr(kernel, path).signatures
        assert any(getattr(t, "dtype", None) == element for sig in signatures for t in sig), (name, path)


def lr_problem(rng, dtype, n_x=300, m=517, scale=0.05):
    X = rng.standard_normal((n_x, m)).astype(dtype)
    W = (rng.standard_normal((1, n_x)) * scale).astype(dtype)
    b = np.full((1, 1), 0.3, dtype)
    Y = (rng.random((1, m)) > 0.5).astype(dtype)
    return W, b, X, Y


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_logistic_regression_step_matches_numpy(nb, reference, dtype, rng, layout):
    W, b, X, Y = lr_problem(rng, dtype)
    want = reference.logistic_regression_step(W, b, X, Y)
    if layout == "F":
        X = np.asfortranarray(X)
    elif layout == "strided":
        X = np.repeat(X, 2, axis=1)[:, ::2]
    assert X.flags.c_contiguous == (layout == "C")
    cost, dW, db = nb.logistic_regression_step(W, b, X, Y)
    assert isinstance(cost, float)
    assert dW.dtype == dtype and dW.shape == W.shape and db.dtype == dtype and db.shape == (1, 1)
    np.testing.assert_allclose(cost, want[0], **tol(dtype))
    np.testing.assert_allclose(dW, want[1], **tol(dtype))
    np.testing.assert_allclose(db, want[2], **tol(dtype))
    assert nb.logistic_regression_step(W, b, X, Y, with_cost=False)[0] is None


def test_logistic_regression_step_saturated_is_finite(nb, reference, dtype, rng):
    W, b, X, Y = lr_problem(rng, dtype, scale=100.0)
    cost, dW, db = nb.logistic_regression_step(W, b, X, Y)
    want = reference.logistic_regression_step(W, b, X, Y)
    assert np.isfinite(cost) and cost > 1
    np.testing.assert_allclose(cost, want[0], **tol(dtype))
    np.testing.assert_allclose(dW, want[1], **tol(dtype))


G = numba_cpu.GROUP


@pytest.mark.parametrize("m", [1, G - 1, G, G + 1, 2 * G, 2 * G + 5, 125 * G + 1])
def test_logistic_regression_step_in_groups_of_examples(nb, reference, dtype, rng, m):
    """F-ordered X through the grouped kernel at its boundaries: fewer examples than a group, one
    group exactly, a short last group, an odd number of groups over the threads; an odd n_x."""
    W, b, X, Y = lr_problem(rng, dtype, n_x=301, m=m)
    want = reference.logistic_regression_step(W, b, X, Y)
    for with_cost in (True, False):
        cost, dW, db = nb.logistic_regression_step(W, b, np.asfortranarray(X), Y, with_cost)
        assert dW.dtype == dtype and db.dtype == dtype
        np.testing.assert_allclose(dW, want[1], **tol(dtype))
        np.testing.assert_allclose(db, want[2], **tol(dtype))
        if with_cost:
            np.testing.assert_allclose(cost, want[0], **tol(dtype))
        else:
            assert cost is None


def test_logistic_regression_step_accumulates_in_float64(nb, reference, rng):
    """float32 inputs, 2M examples: running sums of dW and db in float32 drift by ~1e-5 (relative);
    in float64 they stay at float32 rounding, as NumPy's pairwise sums do. The truth is the NumPy
    backend in float64 on the same float32 numbers."""
    n_x, m = 2, 2_000_000
    X = rng.standard_normal((m, n_x)).astype(np.float32).T  # F-ordered: the one-pass kernel
    W = np.array([[0.5, -0.25]], np.float32)
    b = np.full((1, 1), 0.3, np.float32)
    Y = (rng.random((1, m)) > 0.5).astype(np.float32)
    truth = reference.logistic_regression_step(*(a.astype(np.float64) for a in (W, b, X, Y)))
    got = nb.logistic_regression_step(W, b, X, Y)
    numpy32 = reference.logistic_regression_step(W, b, X, Y)
    bound = {"rtol": 1e-6, "atol": 0}
    np.testing.assert_allclose(numpy32[2], truth[2], **bound)  # the bound is one NumPy float32 meets
    for name, g, t in zip(("cost", "dW", "db"), got, truth):
        assert np.asarray(g).dtype == (np.float64 if name == "cost" else np.float32)
        np.testing.assert_allclose(g, t, **bound, err_msg=name)


def test_every_op_keeps_its_dtype(nb, dtype, rng):
    A_prev = rng.standard_normal((4, 6)).astype(dtype)
    W = rng.standard_normal((3, 4)).astype(dtype)
    b = rng.standard_normal((3, 1)).astype(dtype)
    Y = np.eye(3, dtype=dtype)[:, rng.integers(0, 3, 6)]
    Z = nb.linear_forward(A_prev, W, b)
    outputs = [Z, *(nb.activation_forward(Z, a) for a in ACTIVATIONS)]
    outputs += [nb.activation_backward(Y, Z, a) for a in ACTIVATIONS]
    AL, cache = nb.linear_activation_forward(A_prev, W, b, "softmax")
    outputs += [AL, *cache[3:], nb.output_backward(AL, Y, "cross_entropy")]
    outputs += [g for g in nb.linear_backward(Y, A_prev, W)]
    outputs += [g for g in nb.linear_activation_backward(Y, cache, "softmax")]
    params = {"W1": W.copy(), "b1": b.copy()}
    nb.update_parameters(params, {"dW1": W, "db1": b}, 0.1)
    outputs += list(params.values())
    assert [o.dtype for o in outputs] == [np.dtype(dtype)] * len(outputs)
    assert isinstance(nb.compute_cost(AL, Y, "cross_entropy"), float)


def test_transposed_and_strided_inputs(nb, reference, dtype, rng):
    """Fortran-ordered and strided views give the numbers of their contiguous copies."""
    A_prev = rng.standard_normal((9, 5)).astype(dtype).T  # (5, 9), F-ordered
    W = np.asfortranarray(rng.standard_normal((6, 5)).astype(dtype))
    b = rng.standard_normal((6, 2)).astype(dtype)[:, :1]  # strided column
    for activation in ACTIVATIONS:
        A, cache = nb.linear_activation_forward(A_prev, W, b, activation)
        A_ref, cache_ref = reference.linear_activation_forward(*map(np.ascontiguousarray, (A_prev, W, b)), activation)
        np.testing.assert_allclose(A, A_ref, **tol(dtype))
        dA = rng.standard_normal((A.shape[1], A.shape[0])).astype(dtype).T
        got = nb.linear_activation_backward(dA, cache, activation)
        want = reference.linear_activation_backward(np.ascontiguousarray(dA), cache_ref, activation)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, **tol(dtype))
        Zt = cache_ref.Z.T.copy().T
        np.testing.assert_allclose(nb.activation_forward(Zt, activation), reference.activation_forward(Zt, activation),
                                   **tol(dtype))
    AL = reference.activation_forward(rng.standard_normal((3, 8)).astype(dtype), "softmax").T.copy().T
    Y = np.asfortranarray(np.eye(3, dtype=dtype)[:, rng.integers(0, 3, 8)])
    assert nb.compute_cost(AL, Y, "cross_entropy") == pytest.approx(reference.compute_cost(AL, Y, "cross_entropy"),
                                                                     rel=tol(dtype)["rtol"])
    np.testing.assert_array_equal(nb.output_backward(AL, Y, "cross_entropy"), AL - Y)


def test_saturated_outputs_and_extreme_inputs(nb, reference, dtype):
    """Saturated probabilities give NumPy's finite cost; huge pre-activations give no warnings
    (pytest turns RuntimeWarning into an error) and saturate."""
    big = float(np.finfo(dtype).max) / 4
    Z = np.array([[-big, -1e3, 0.0, 1e3, big], [big, 1e3, 0.0, -1e3, -big]], dtype)
    for activation in ("sigmoid", "tanh", "softmax"):
        A = nb.activation_forward(Z, activation)
        assert np.all(np.isfinite(A))
        np.testing.assert_allclose(A, reference.activation_forward(Z, activation), **tol(dtype))
    AL = np.array([[0.0, 1.0, 1.0, 0.0]], dtype)
    Y = np.array([[1.0, 0.0, 1.0, 0.0]], dtype)
    cost = nb.compute_cost(AL, Y, "binary_cross_entropy")
    assert np.isfinite(cost)
    assert cost == pytest.approx(reference.compute_cost(AL, Y, "binary_cross_entropy"), rel=tol(dtype)["rtol"])


def test_other_dtypes_fall_back_to_numpy(nb, reference, rng):
    """float16 and mixed dtypes are not compiled for: they get the NumPy backend's results."""
    Z16 = rng.standard_normal((3, 4)).astype(np.float16)
    for activation in ACTIVATIONS:
        got = nb.activation_forward(Z16, activation)
        want = reference.activation_forward(Z16, activation)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    AL = reference.activation_forward(rng.standard_normal((1, 6)).astype(np.float32), "sigmoid")
    Y = rng.integers(0, 2, (1, 6))
    assert nb.compute_cost(AL, Y, "binary_cross_entropy") == reference.compute_cost(AL, Y, "binary_cross_entropy")


def test_update_parameters_in_place(nb, reference, dtype, rng):
    params = {"W1": rng.standard_normal((4, 3)).astype(dtype), "b1": rng.standard_normal((4, 1)).astype(dtype)}
    grads = {"dW1": rng.standard_normal((4, 3)).astype(dtype), "db1": rng.standard_normal((4, 1)).astype(dtype)}
    want = reference.update_parameters({k: v.copy() for k, v in params.items()}, grads, 0.05)
    W1 = params["W1"]
    got = nb.update_parameters(params, grads, 0.05)
    assert got["W1"] is W1
    for key in params:
        np.testing.assert_array_equal(got[key], want[key])


_CACHE_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    from numba.core import event
    import dlaccel
    from dlaccel.backends import numba_cpu

    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 32)).astype(np.float32)
    Y = (X[:1] > 0).astype(np.float32)
    with event.install_recorder("numba:compile") as compiles:
        dlaccel.DeepNN([4, 3, 1], seed=0, dtype="float32", backend="numba").fit(X, Y, num_iterations=3)
        dlaccel.LogisticRegression(seed=0, dtype="float32", backend="numba").fit(X, Y, num_iterations=3)
    dispatchers = [d for d in vars(numba_cpu).values() if hasattr(d, "stats")]
    dispatchers += [d for k in vars(numba_cpu).values() if isinstance(k, numba_cpu.Kernel) for d in k]
    print(json.dumps({
        "compiles": len(compiles.buffer),
        "hits": sum(sum(d.stats.cache_hits.values()) for d in dispatchers),
        "misses": sum(sum(d.stats.cache_misses.values()) for d in dispatchers),
    }))
    """
)


def test_cached_kernels_follow_edits_to_the_math_they_inline():
    """Numba's cache follows numba_cpu.py alone; its kernels inline _numba_math, so numba_cpu.py carries
    that file's hash and an edit of the math must change it (else stale cached kernels)."""
    source = Path(numba_cpu.__file__).with_name("_numba_math.py").read_bytes().replace(b"\r\n", b"\n")
    digest = hashlib.sha256(source).hexdigest()[:16]
    assert numba_cpu.MATH_SHA256 == digest, f"_numba_math.py changed: set MATH_SHA256 in numba_cpu.py to {digest!r}"


@pytest.mark.slow
def test_second_process_loads_kernels_from_the_cache(tmp_path):
    """cache=True: a fresh process with the cache filled compiles nothing."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    env["PYTHONPATH"] = os.pathsep.join([str(Path(dlaccel.__file__).parents[1]), env.get("PYTHONPATH", "")])

    def run() -> dict:
        out = subprocess.run([sys.executable, "-c", _CACHE_SCRIPT], env=env, capture_output=True, text=True,
                             check=True, timeout=600)
        return json.loads(out.stdout.strip().splitlines()[-1])

    first = run()
    assert first["compiles"] > 0 and first["misses"] > 0
    assert list(tmp_path.rglob("*.nbi")), "no cache index written"
    second = run()
    assert second == {"compiles": 0, "hits": second["hits"], "misses": 0}
    assert second["hits"] > 0


# -- threads: several Python threads at once, thread counts, reproducibility -------------------------


def ops_from_threads(n_threads: int = 4, rounds: int = 3) -> None:
    """``n_threads`` Python threads run parallel-size numba ops at the same time; every result must
    match the NumPy backend. Also run in a subprocess under each threading layer (an unsafe layer
    aborts the whole process), so it takes no fixtures."""
    nb, ref = dlaccel.get_backend("numba"), dlaccel.get_backend("numpy")
    rng = np.random.default_rng(7)
    shape = (4, numba_cpu.PARALLEL_MIN_SIZE // 4)  # elementwise ops on these take the parallel kernels
    Z, dA = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    A_prev, W = rng.standard_normal((2, shape[1])).astype(np.float32), rng.standard_normal((4, 2)).astype(np.float32)
    X = rng.standard_normal((shape[1], 4)).astype(np.float32).T  # F-ordered: the one-pass LR kernel
    w, b = rng.standard_normal((1, 4)).astype(np.float32), np.full((1, 1), 0.1, np.float32)
    Y = (rng.random((1, shape[1])) > 0.5).astype(np.float32)
    work = [
        (lambda: nb.activation_forward(Z, "relu"), ref.activation_forward(Z, "relu")),
        (lambda: nb.activation_forward(Z, "sigmoid"), ref.activation_forward(Z, "sigmoid")),
        (lambda: nb.activation_backward(dA, Z, "tanh"), ref.activation_backward(dA, Z, "tanh")),
        (lambda: nb.linear_backward(dA, A_prev, W)[2], ref.linear_backward(dA, A_prev, W)[2]),
        (lambda: nb.logistic_regression_step(w, b, X, Y)[1], ref.logistic_regression_step(w, b, X, Y)[1]),
    ]
    start = threading.Barrier(n_threads)
    failures: list[str] = []

    def run(i: int) -> None:
        start.wait()
        try:
            for r in range(rounds):
                for k, (op, want) in enumerate(work):
                    np.testing.assert_allclose(op(), want, **tol(np.float32), err_msg=f"thread {i} round {r} op {k}")
        except BaseException as exc:  # reported by the main thread
            failures.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures


def test_parallel_kernels_from_several_threads(nb):
    ops_from_threads()


@pytest.mark.parametrize("layer", ["workqueue", "default"])
def test_parallel_kernels_from_several_threads_under_each_layer(tmp_path, layer):
    """In a fresh process with NUMBA_THREADING_LAYER forced: the workqueue layer is not thread-safe
    and aborts the process on concurrent parallel regions unless the backend serialises them."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, NUMBA_THREADING_LAYER=layer)
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    script = ("import numba; from tests.test_numba import ops_from_threads; ops_from_threads(); "
              "print(numba.threading_layer())")
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=root, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    if layer != "default":
        assert out.stdout.split()[-1] == layer


@pytest.fixture
def restore_thread_counts():
    """The BLAS and Numba thread counts (and dlaccel's record of them) as they were."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    blas = {p["prefix"]: p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"}
    numba_threads, recorded = numba.get_num_threads(), numba_cpu._num_threads
    yield threadpoolctl
    threadpoolctl.threadpool_limits(limits=blas)
    numba.set_num_threads(numba_threads)
    numba_cpu._num_threads = recorded


def test_set_num_threads_sets_blas_and_numba(nb, restore_thread_counts):
    threadpoolctl = restore_thread_counts
    assert dlaccel.set_num_threads(1) == {"blas": 1, "numba": 1}
    blas = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    assert blas and set(blas) == {1}  # every BLAS library loaded (NumPy's, and any other's)
    assert numba.get_num_threads() == 1
    # Numba's count is per Python thread: the backend applies it in threads started afterwards too.
    seen = []

    def other() -> None:
        Z = np.ones((1, numba_cpu.PARALLEL_MIN_SIZE), np.float32)
        nb.activation_forward(Z, "relu")
        seen.append(numba.get_num_threads())

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen == [1]
    top = numba.config.NUMBA_NUM_THREADS
    assert dlaccel.set_num_threads(top) == {"blas": top, "numba": top}
    assert numba.get_num_threads() == top


@pytest.mark.parametrize("n", [0, -1, "too many", 1.5, True, "2", None])
def test_set_num_threads_rejects_bad_counts(restore_thread_counts, n):
    if n == "too many":
        n = numba.config.NUMBA_NUM_THREADS + 1
    before = numba.get_num_threads(), numba_cpu._num_threads
    with pytest.raises(dlaccel.InputError, match="thread"):
        dlaccel.set_num_threads(n)
    assert (numba.get_num_threads(), numba_cpu._num_threads) == before  # nothing was set


def test_set_num_threads_without_threadpoolctl_or_numba(restore_thread_counts, monkeypatch):
    from dlaccel import backends

    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import threadpoolctl now raises ImportError
    result = dlaccel.set_num_threads(1)
    assert result["numba"] == 1 and "threadpoolctl" in result["blas"]
    assert numba.get_num_threads() == 1
    monkeypatch.setitem(backends._PROBES, "numba", lambda: "Numba is not installed")
    with pytest.raises(dlaccel.MissingDependencyError, match="threadpoolctl"):
        dlaccel.set_num_threads(1)
    monkeypatch.delitem(sys.modules, "threadpoolctl")
    result = dlaccel.set_num_threads(1)
    assert result["blas"] == 1 and "Numba is not installed" in result["numba"]


def test_results_are_bitwise_reproducible_and_close_across_thread_counts(nb, reference, rng, restore_thread_counts):
    """What the README promises: same settings, the same bits; another thread count, the same numbers
    within the dtype tolerance."""
    m = numba_cpu.PARALLEL_MIN_SIZE // 4
    X = rng.standard_normal((m, 4)).astype(np.float32).T
    w, b, Y = rng.standard_normal((1, 4)).astype(np.float32), np.zeros((1, 1), np.float32), (
        rng.random((1, m)) > 0.5).astype(np.float32)
    dA, Z = rng.standard_normal((4, m)).astype(np.float32), rng.standard_normal((4, m)).astype(np.float32)

    def results() -> list:
        A, cache = nb.linear_activation_forward(X, np.ascontiguousarray(w.repeat(4, axis=0)), b.repeat(4, axis=0),
                                                "tanh")
        return [*nb.logistic_regression_step(w, b, X, Y)[1:], A, *nb.linear_activation_backward(dA, cache, "tanh"),
                nb.activation_backward(dA, Z, "relu")]

    dlaccel.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    first, again = results(), results()
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)
    dlaccel.set_num_threads(1)
    for x, y in zip(first, results()):
        np.testing.assert_allclose(x, y, **tol(np.float32))
