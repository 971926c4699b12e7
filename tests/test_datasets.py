"""The data sets: shapes, labels, determinism, and that each is learnable as the course shows."""

from __future__ import annotations

import numpy as np
import pytest

import dlaccel
from dlaccel import datasets

TWO_CLASS = ["planar", "circles", "moons", "gaussian_quantiles", "blobs"]


@pytest.mark.parametrize("name", TWO_CLASS)
def test_shapes_labels_and_seeds(name):
    load = datasets.LOADERS[name]
    X, Y = load(m=120, seed=3)
    assert X.shape == (2, 120) and Y.shape == (1, 120)
    assert np.isfinite(X).all()
    assert set(np.unique(Y)) == {0, 1}
    assert abs(int(Y.sum()) - 60) <= 1  # balanced classes
    X2, Y2 = load(m=120, seed=3)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(Y, Y2)
    X3, _ = load(m=120, seed=4)
    assert not np.array_equal(X, X3)


def test_circles_have_the_inner_class_inside():
    X, Y = datasets.noisy_circles(m=400, noise=0.0)
    r = np.hypot(*X)
    np.testing.assert_allclose(r[Y[0] == 0], 1.0)
    np.testing.assert_allclose(r[Y[0] == 1], 0.5)


def test_blobs_with_several_centers():
    X, Y = datasets.blobs(m=90, centers=3)
    assert set(np.unique(Y)) == {0, 1, 2}
    with pytest.raises(dlaccel.InputError, match="centers"):
        datasets.blobs(centers=1)


@pytest.mark.parametrize("m", [0, 1, -5, 2.5, "10"])
def test_bad_sizes(m):
    with pytest.raises(dlaccel.InputError, match="m must be"):
        datasets.planar(m=m)


def test_a_hidden_layer_beats_logistic_regression_on_the_circles():
    X, Y = datasets.noisy_circles(m=300, noise=0.1, seed=1)
    lr = dlaccel.LogisticRegression().fit(X, Y, learning_rate=0.5, num_iterations=500)
    net = dlaccel.ShallowNN(5, seed=1).fit(X, Y, learning_rate=1.0, num_iterations=3000)
    assert lr.accuracy(X, Y) < 0.7 < 0.9 < net.accuracy(X, Y)


def test_digits_needs_scikit_learn(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError("No module named 'sklearn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(dlaccel.MissingDependencyError, match=r"dlaccel\[datasets\]") as info:
        datasets.digits()
    assert isinstance(info.value, ImportError)


def test_digits_when_scikit_learn_is_installed():
    pytest.importorskip("sklearn", reason="scikit-learn is not installed")
    X, Y = datasets.digits()
    assert X.shape == (64, 1797) and Y.shape == (1, 1797)
    assert 0 <= X.min() and X.max() <= 1
    assert set(np.unique(Y)) == set(range(10))
