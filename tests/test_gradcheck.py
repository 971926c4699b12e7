"""The NumPy reference against centred finite differences, in float64."""

from __future__ import annotations

import numpy as np
import pytest

import dlaccel
from dlaccel.backends.base import ACTIVATIONS

HIDDEN = [a for a in ACTIVATIONS if a != "softmax"]


def numeric_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in range(x.size):
        old = x.flat[i]
        x.flat[i] = old + eps
        up = f()
        x.flat[i] = old - eps
        down = f()
        x.flat[i] = old
        g.flat[i] = (up - down) / (2 * eps)
    return g


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_backward_is_the_derivative(activation):
    """dZ = dA * g'(Z) is the gradient of sum(dA * g(Z)) with respect to Z (the full JVP for softmax)."""
    be = dlaccel.get_backend("numpy")
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((4, 6)) * 2
    Z[np.abs(Z) < 1e-3] = 0.5  # keep away from the kinks of relu and leaky_relu
    dA = rng.standard_normal((4, 6))
    want = numeric_grad(lambda: float((dA * be.activation_forward(Z, activation)).sum()), Z)
    np.testing.assert_allclose(be.activation_backward(dA, Z, activation), want, rtol=1e-6, atol=1e-8)


def test_linear_backward_is_the_derivative_of_the_mean():
    be = dlaccel.get_backend("numpy")
    rng = np.random.default_rng(1)
    A, W, b = rng.standard_normal((5, 7)), rng.standard_normal((3, 5)), rng.standard_normal((3, 1))
    G = rng.standard_normal((3, 7))
    m = A.shape[1]

    def J():  # d J / d Z = G / m, so linear_backward(G, ...) must give the exact gradients below
        return float((G * be.linear_forward(A, W, b)).sum() / m)

    dA_prev, dW, db = be.linear_backward(G, A, W)
    np.testing.assert_allclose(dW, numeric_grad(J, W), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(db, numeric_grad(J, b), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dA_prev / m, numeric_grad(J, A), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("loss, act", [("binary_cross_entropy", "sigmoid"), ("cross_entropy", "softmax")])
def test_output_backward_is_the_derivative_of_the_cost(loss, act):
    be = dlaccel.get_backend("numpy")
    rng = np.random.default_rng(2)
    ZL = rng.standard_normal((3 if act == "softmax" else 1, 8))
    Y = np.eye(3)[rng.integers(0, 3, 8)].T if act == "softmax" else rng.integers(0, 2, (1, 8)).astype(float)
    m = ZL.shape[1]
    want = numeric_grad(lambda: be.compute_cost(be.activation_forward(ZL, act), Y, loss), ZL)
    np.testing.assert_allclose(be.output_backward(be.activation_forward(ZL, act), Y, loss) / m, want,
                               rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("n_y", [1, 3])
def test_gradient_check_on_deep_nets(hidden, n_y):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((4, 9))
    Y = rng.integers(0, 2, (1, 9)) if n_y == 1 else rng.integers(0, 3, (1, 9))
    model = dlaccel.DeepNN([4, 5, 3, n_y], hidden_activation=hidden, initialization="xavier", seed=1)
    assert dlaccel.gradient_check(model, X, Y) < 2e-7


def test_gradient_check_catches_a_wrong_backward(monkeypatch):
    """The check itself must fail when backprop is wrong."""
    rng = np.random.default_rng(4)
    X, Y = rng.standard_normal((3, 6)), rng.integers(0, 2, (1, 6))
    model = dlaccel.DeepNN([3, 4, 1], hidden_activation="tanh", seed=0)
    be = model.backend
    real = be.linear_backward

    def off_by_two(dZ, A_prev, W, need_dA_prev=True):
        dA, dW, db = real(dZ, A_prev, W, need_dA_prev)
        return dA, dW * 2, db

    monkeypatch.setattr(be, "linear_backward", off_by_two)
    assert dlaccel.gradient_check(model, X, Y) > 1e-2


def test_gradient_check_on_every_backend(backend):
    rng = np.random.default_rng(5)
    X, Y = rng.standard_normal((3, 7)), rng.integers(0, 2, (1, 7))
    model = dlaccel.DeepNN([3, 4, 1], hidden_activation="tanh", seed=0, dtype="float32", backend=backend)
    before = model.parameters
    assert dlaccel.gradient_check(model, X, Y) < 2e-7  # checked in float64 on the same backend
    assert model.dtype == np.float32 and model.parameters["W1"].dtype == np.float32
    np.testing.assert_array_equal(model.parameters["W1"], before["W1"])


def test_gradient_check_on_an_unfitted_shallow_net_and_sampled_checks():
    X, Y = dlaccel.datasets.planar(m=30)
    model = dlaccel.ShallowNN(4, seed=2)
    assert dlaccel.gradient_check(model, X, Y, max_checks=5) < 1e-6
    assert model.layer_dims == [2, 4, 1]
    with pytest.raises(dlaccel.InputError, match="epsilon"):
        dlaccel.gradient_check(model, X, Y, epsilon=0)
