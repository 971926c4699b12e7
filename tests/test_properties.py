"""Property tests over random shapes and values (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dlaccel
from dlaccel.backends.base import ACTIVATIONS

from . import test_ops
from .conftest import tol

backend = test_ops.backend  # every backend plus the numba parallel path

dims = st.integers(min_value=1, max_value=12)
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(n=dims, n_prev=dims, m=dims, activation=st.sampled_from(ACTIVATIONS), seed=st.integers(0, 2**31 - 1),
       scale=st.floats(1e-3, 30.0))
def test_layer_forward_backward_agree_with_numpy(backend, reference, dtype, n, n_prev, m, activation, seed, scale):
    rng = np.random.default_rng(seed)
    A_prev = (rng.standard_normal((n_prev, m)) * scale).astype(dtype)
    W = rng.standard_normal((n, n_prev)).astype(dtype)
    b = rng.standard_normal((n, 1)).astype(dtype)
    dA = rng.standard_normal((n, m)).astype(dtype)
    A_ref, cache_ref = reference.linear_activation_forward(A_prev, W, b, activation)
    A, cache = backend.linear_activation_forward(*(backend.asarray(x) for x in (A_prev, W, b)), activation)
    # Z's rounding error grows with its magnitude; compare relative to that scale.
    scale_out = 1.0 + float(np.abs(cache_ref.Z).max())
    t = tol(dtype)
    np.testing.assert_allclose(backend.to_numpy(A), A_ref, rtol=t["rtol"], atol=t["rtol"] * scale_out * np.sqrt(n_prev))
    grads_ref = reference.linear_activation_backward(dA, cache_ref, activation)
    grads = backend.linear_activation_backward(backend.asarray(dA), cache, activation)
    for g, w in zip(grads, grads_ref):
        g = backend.to_numpy(g)
        assert g.shape == w.shape and g.dtype == np.dtype(dtype)
        # A k-term sum's rounding error grows like sqrt(k) times its terms' scale.
        big = 1.0 + float(np.abs(w).max())
        atol = t["rtol"] * 4 * big * np.sqrt(max(n, m, n_prev))
        np.testing.assert_allclose(g, w, rtol=t["rtol"] * 4, atol=atol)


@settings(max_examples=20, deadline=None)
@given(layer_dims=st.lists(st.integers(1, 6), min_size=2, max_size=5), m=st.integers(1, 20),
       seed=st.integers(0, 10_000))
def test_gradients_have_the_parameters_shapes(layer_dims, m, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((layer_dims[0], m))
    n_y = layer_dims[-1]
    Y = rng.integers(0, 2, (1, m)) if n_y == 1 else rng.integers(0, n_y, (1, m))
    model = dlaccel.DeepNN(layer_dims, seed=seed)
    grads = model.gradients(X, Y)
    params = model.parameters
    assert set(grads) == {"d" + k for k in params}
    for k, p in params.items():
        assert grads["d" + k].shape == p.shape
        assert np.isfinite(grads["d" + k]).all()
    P = model.predict_proba(X)
    assert P.shape == (n_y, m) and ((P >= 0) & (P <= 1)).all()


@settings(max_examples=30, deadline=None)
@given(z=st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_sigmoid_is_in_the_unit_interval_for_any_finite_input(z):
    A = dlaccel.get_backend("numpy").activation_forward(np.array([[z]]), "sigmoid")
    assert 0.0 <= A[0, 0] <= 1.0


@pytest.mark.parametrize("n_y", [2, 5])
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), shift=st.floats(-1e6, 1e6))
def test_softmax_columns_sum_to_one_and_ignore_shifts(n_y, seed, shift):
    be = dlaccel.get_backend("numpy")
    Z = np.random.default_rng(seed).standard_normal((n_y, 7)) * 5
    A = be.activation_forward(Z, "softmax")
    np.testing.assert_allclose(A.sum(axis=0), 1.0, rtol=1e-12)
    if abs(shift) < 1e3:  # larger shifts lose Z's digits to rounding, as they must
        np.testing.assert_allclose(be.activation_forward(Z + shift, "softmax"), A, rtol=1e-9, atol=1e-12)
