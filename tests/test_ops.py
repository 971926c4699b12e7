"""Every op on every backend against the NumPy reference, forward and backward, in both dtypes."""

from __future__ import annotations

import numpy as np
import pytest

import dlaccel
from dlaccel.backends import REGISTRY
from dlaccel.backends.base import ACTIVATIONS, LEAKY_RELU_SLOPE, LOSSES

from .conftest import EMULATED_CUPY, tol

SHAPES = [(1, 1, 1), (3, 5, 4), (7, 2, 33), (16, 9, 130)]  # (n, n_prev, m)


def rand(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def host(backend, x):
    return None if x is None else np.asarray(backend.to_numpy(x))


def assert_close(backend, got, want, dtype):
    got = host(backend, got)
    assert got.shape == want.shape
    assert got.dtype == np.dtype(dtype), f"{backend.name} changed the dtype to {got.dtype}"
    np.testing.assert_allclose(got, want, **tol(dtype))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# conftest's backends (every registered one and the emulated cupy wrappers), plus "numba-parallel":
# the numba backend with its parallel threshold at 0, so these small arrays run the prange kernels
# that large layers run (test_properties.py uses it too).
BACKENDS = [p for name in [*REGISTRY, EMULATED_CUPY]
            for p in ([name, "numba-parallel"] if name == "numba" else [name])]


@pytest.fixture(params=BACKENDS, ids=BACKENDS)
def backend(request, monkeypatch):
    if request.param == EMULATED_CUPY:
        return request.getfixturevalue("emulated")  # skips with the emulator's reason
    name = request.param.removesuffix("-parallel")
    info = dlaccel.available_backends()[name]
    if not info["available"]:
        pytest.skip(f"{name}: {info['reason']}")
    if request.param == "numba-parallel":
        from dlaccel.backends import numba_cpu

        monkeypatch.setattr(numba_cpu, "PARALLEL_MIN_SIZE", 0)
    return dlaccel.get_backend(name)


@pytest.mark.parametrize("n, n_prev, m", SHAPES)
def test_linear_forward(backend, reference, dtype, rng, n, n_prev, m):
    A, W, b = rand(rng, (n_prev, m), dtype), rand(rng, (n, n_prev), dtype), rand(rng, (n, 1), dtype)
    want = reference.linear_forward(A, W, b)
    assert_close(backend, backend.linear_forward(*(backend.asarray(x) for x in (A, W, b))), want, dtype)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(1, 1), (4, 7), (10, 129)])
def test_activation_forward_backward(backend, reference, dtype, rng, activation, shape):
    Z, dA = rand(rng, shape, dtype, 3.0), rand(rng, shape, dtype)
    assert_close(backend, backend.activation_forward(backend.asarray(Z), activation),
                 reference.activation_forward(Z, activation), dtype)
    assert_close(backend, backend.activation_backward(backend.asarray(dA), backend.asarray(Z), activation),
                 reference.activation_backward(dA, Z, activation), dtype)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activations_saturate_without_warnings(backend, reference, dtype, activation):
    """Inputs at the dtype's extremes: finite outputs, no overflow (RuntimeWarning is an error)."""
    big = float(np.finfo(dtype).max) / 4
    Z = np.array([[-big, -1000.0, -50.0, 0.0, 50.0, 1000.0, big]], dtype=dtype).repeat(3, axis=0)
    A = host(backend, backend.activation_forward(backend.asarray(Z), activation))
    if activation not in ("relu", "leaky_relu", "linear"):
        assert np.isfinite(A).all()
    want = reference.activation_forward(Z, activation)
    np.testing.assert_allclose(A, want, **tol(dtype))
    if activation == "sigmoid":
        assert A[0, 0] == 0 and A[0, -1] == 1 and A[0, 3] == 0.5


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_nan_and_inf_propagate_like_numpy(backend, reference, dtype, activation):
    """NaN in Z and NaN/inf in dA end up exactly where NumPy puts them, forward and backward, through
    the separate ops and the fused layer ops (whose backward reads the cached A instead of Z)."""
    nan, inf = np.nan, np.inf
    Z = np.array([[0.5, nan, -1.0, 0.0, 2.0, -2.0], [nan, -3.0, 1.0, -0.0, 4.0, 0.25]], dtype)
    dA = np.array([[nan, 1.0, nan, inf, -inf, 2.0], [1.0, nan, -inf, inf, 0.5, nan]], dtype)
    # A NaN feature of one example poisons its column of Z, a NaN bias its row.
    A_prev = np.array([[1.0, nan, -1.0, 0.5, 2.0, -0.5], [0.5, 1.0, 2.0, -1.0, 0.0, 1.5]], dtype)
    W = np.array([[1.0, -2.0], [0.5, 1.0], [-1.0, 0.25]], dtype)
    b = np.array([[0.1], [nan], [-0.2]], dtype)
    dA_layer = np.vstack([dA, dA[:1, ::-1]])

    def check(got, want):
        got = host(backend, got)
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{backend.name} NaN positions")
        np.testing.assert_allclose(got, want, **tol(dtype))  # equal_nan: NaN and +-inf in the same places

    on = backend.asarray
    with np.errstate(invalid="ignore"):  # NumPy's inf * 0 = NaN is the point here, not a mistake
        check(backend.activation_forward(on(Z), activation), reference.activation_forward(Z, activation))
        check(backend.activation_backward(on(dA), on(Z), activation), reference.activation_backward(dA, Z, activation))
        A, cache = backend.linear_activation_forward(on(A_prev), on(W), on(b), activation)
        A_ref, cache_ref = reference.linear_activation_forward(A_prev, W, b, activation)
        check(A, A_ref)
        got = backend.linear_activation_backward(on(dA_layer), cache, activation)
        for g, w in zip(got, reference.linear_activation_backward(dA_layer, cache_ref, activation)):
            check(g, w)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_relu_derivative_at_zero_is_numpys(backend, reference, dtype, activation):
    """ReLU'(0) = 0 (and leaky ReLU'(0) = the slope), as the NumPy reference has it: ``Z > 0``."""
    Z = np.array([[0.0, -0.0, 1.0, -1.0]] * 3, dtype)
    dA = np.full(Z.shape, 3.0, dtype)
    at_zero = dtype(0) if activation == "relu" else dtype(3) * dtype(LEAKY_RELU_SLOPE)
    want = reference.activation_backward(dA, Z, activation)
    assert np.all(want[:, :2] == at_zero)
    got = host(backend, backend.activation_backward(backend.asarray(dA), backend.asarray(Z), activation))
    np.testing.assert_array_equal(got, want)
    # Through the fused ops: zero inputs and a zero bias make every Z exactly 0.
    A_prev, W, b = np.zeros((2, 4), dtype), np.ones((3, 2), dtype), np.zeros((3, 1), dtype)
    _, cache = backend.linear_activation_forward(*(backend.asarray(x) for x in (A_prev, W, b)), activation)
    db = host(backend, backend.linear_activation_backward(backend.asarray(dA), cache, activation)[2])
    np.testing.assert_allclose(db, np.full((3, 1), at_zero, dtype), **tol(dtype))


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("need_dA_prev", [True, False])
def test_linear_activation_forward_backward(backend, reference, dtype, rng, activation, need_dA_prev):
    n, n_prev, m = 6, 5, 37
    A_prev, W, b = rand(rng, (n_prev, m), dtype), rand(rng, (n, n_prev), dtype), rand(rng, (n, 1), dtype)
    dA = rand(rng, (n, m), dtype)
    A_ref, cache_ref = reference.linear_activation_forward(A_prev, W, b, activation)
    A, cache = backend.linear_activation_forward(*(backend.asarray(x) for x in (A_prev, W, b)), activation)
    assert_close(backend, A, A_ref, dtype)
    want = reference.linear_activation_backward(dA, cache_ref, activation, need_dA_prev)
    got = backend.linear_activation_backward(backend.asarray(dA), cache, activation, need_dA_prev)
    for g, w in zip(got, want):
        if w is None:
            assert g is None
        else:
            assert_close(backend, g, w, dtype)


@pytest.mark.parametrize("n, n_prev, m", SHAPES)
def test_linear_backward(backend, reference, dtype, rng, n, n_prev, m):
    dZ, A_prev, W = rand(rng, (n, m), dtype), rand(rng, (n_prev, m), dtype), rand(rng, (n, n_prev), dtype)
    want = reference.linear_backward(dZ, A_prev, W)
    got = backend.linear_backward(*(backend.asarray(x) for x in (dZ, A_prev, W)))
    for g, w in zip(got, want):
        assert_close(backend, g, w, dtype)
    assert want[2].shape == (n, 1)  # db has the shape of b


def _probabilities(rng, loss, n, m, dtype):
    if loss == "binary_cross_entropy":
        AL = rng.uniform(0.01, 0.99, (n, m))
        Y = rng.integers(0, 2, (n, m))
    else:
        AL = rng.uniform(0.01, 1, (n, m))
        AL /= AL.sum(axis=0)
        Y = np.eye(n)[rng.integers(0, n, m)].T
    return AL.astype(dtype), Y.astype(dtype)


@pytest.mark.parametrize("loss", LOSSES)
def test_cost_and_output_backward(backend, reference, dtype, rng, loss):
    AL, Y = _probabilities(rng, loss, 4, 50, dtype)
    cost = backend.compute_cost(backend.asarray(AL), backend.asarray(Y), loss)
    assert type(cost) is float
    assert cost == pytest.approx(reference.compute_cost(AL, Y, loss), rel=tol(dtype)["rtol"] * 10)
    assert_close(backend, backend.output_backward(backend.asarray(AL), backend.asarray(Y), loss), AL - Y, dtype)


@pytest.mark.parametrize("loss", LOSSES)
def test_cost_is_finite_for_saturated_outputs(backend, dtype, loss):
    AL = np.array([[0.0, 1.0, 1.0, 0.0]], dtype=dtype)
    Y = np.array([[1.0, 0.0, 1.0, 0.0]], dtype=dtype)
    if loss == "cross_entropy":
        AL, Y = np.vstack([AL, 1 - AL]), np.vstack([Y, 1 - Y])
    cost = backend.compute_cost(backend.asarray(AL), backend.asarray(Y), loss)
    assert np.isfinite(cost) and cost > 1  # wrong, confident predictions cost a lot, but finitely


def test_update_parameters_in_place(backend, reference, dtype, rng):
    params = {"W1": rand(rng, (3, 4), dtype), "b1": rand(rng, (3, 1), dtype)}
    grads = {"dW1": rand(rng, (3, 4), dtype), "db1": rand(rng, (3, 1), dtype)}
    want = {k: p - np.asarray(0.1, dtype) * grads["d" + k] for k, p in params.items()}
    on_backend = {k: backend.asarray(p.copy()) for k, p in params.items()}
    same_objects = dict(on_backend)
    out = backend.update_parameters(on_backend, {k: backend.asarray(g) for k, g in grads.items()}, 0.1)
    for k in params:
        assert_close(backend, out[k], want[k], dtype)
        assert out[k] is same_objects[k]


def test_logistic_regression_step(backend, reference, dtype, rng):
    n_x, m = 37, 301
    X, W = rand(rng, (n_x, m), dtype), rand(rng, (1, n_x), dtype, 0.1)
    b, Y = np.full((1, 1), 0.3, dtype), rng.integers(0, 2, (1, m)).astype(dtype)
    cost_ref, dW_ref, db_ref = reference.logistic_regression_step(W, b, X, Y)
    cost, dW, db = backend.logistic_regression_step(*(backend.asarray(x) for x in (W, b, X, Y)))
    assert cost == pytest.approx(cost_ref, rel=tol(dtype)["rtol"] * 10)
    assert_close(backend, dW, dW_ref, dtype)
    assert_close(backend, db, db_ref, dtype)
    assert backend.logistic_regression_step(*(backend.asarray(x) for x in (W, b, X, Y)), with_cost=False)[0] is None


def test_non_contiguous_inputs(backend, reference, dtype, rng):
    """Transposed views (Fortran order) must give the same numbers as contiguous arrays."""
    A = rand(rng, (29, 6), dtype).T  # (6, 29) view
    W = rand(rng, (5, 6), dtype)
    b = rand(rng, (5, 1), dtype)
    Z = backend.linear_forward(backend.asarray(A), backend.asarray(W), backend.asarray(b))
    assert_close(backend, Z, reference.linear_forward(np.ascontiguousarray(A), W, b), dtype)
    for act in ("sigmoid", "relu", "softmax"):
        A_out, _ = backend.linear_activation_forward(backend.asarray(A), backend.asarray(W), backend.asarray(b), act)
        assert_close(backend, A_out, reference.activation_forward(reference.linear_forward(A, W, b), act), dtype)


def test_output_backward_keeps_the_dtype_of_AL_for_integer_labels(backend, dtype):
    AL = np.array([[0.2, 0.9, 0.5]], dtype=dtype)
    Y = np.array([[0, 1, 1]])
    dZ = backend.output_backward(backend.asarray(AL), backend.asarray(Y), "binary_cross_entropy")
    assert_close(backend, dZ, (AL - Y).astype(dtype), dtype)


def test_ndarray_subclasses_are_accepted(tmp_path, reference, dtype):
    Z = np.lib.format.open_memmap(tmp_path / "z.npy", mode="w+", dtype=dtype, shape=(3, 4))
    Z[:] = np.arange(12).reshape(3, 4) - 6
    np.testing.assert_array_equal(reference.activation_forward(Z, "relu"), np.maximum(np.asarray(Z), 0))


def test_all_finite(backend, dtype):
    x = np.ones((3, 3), dtype)
    assert backend.all_finite(backend.asarray(x))
    x[1, 2] = np.nan
    assert not backend.all_finite(backend.asarray(x))
    x[1, 2] = np.inf
    assert not backend.all_finite(backend.asarray(x))
