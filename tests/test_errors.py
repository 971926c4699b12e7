"""Bad input gets a typed error naming what was wrong and what was expected, before any work."""

from __future__ import annotations

import numpy as np
import pytest

import dlaccel
from dlaccel import errors


@pytest.fixture
def data():
    X, Y = dlaccel.datasets.planar(m=40)
    return X, Y


def test_error_hierarchy_and_exports():
    pairs = {"ShapeError": ValueError, "InputError": ValueError, "BackendUnavailableError": RuntimeError,
             "DeviceMismatchError": TypeError, "TrainingDivergedError": RuntimeError, "ModelFileError": ValueError,
             "DtypeError": TypeError, "UnknownBackendError": ValueError,
             "ClusterError": RuntimeError}
    for name, builtin in pairs.items():
        cls = getattr(dlaccel, name)
        assert cls is getattr(errors, name)
        assert issubclass(cls, dlaccel.DlaccelError) and issubclass(cls, builtin)


@pytest.mark.parametrize("backend_name", ["numpy", "loops"])
def test_ops_reject_rank_1_arrays(backend_name):
    be = dlaccel.get_backend(backend_name)
    with pytest.raises(dlaccel.ShapeError, match="2-D"):
        be.linear_forward(np.ones(3), np.ones((2, 3)), np.ones((2, 1)))
    with pytest.raises(dlaccel.ShapeError, match="reshape"):
        be.activation_forward(np.ones(4), "relu")


def test_ops_reject_unknown_activation_and_loss():
    be = dlaccel.get_backend("numpy")
    with pytest.raises(dlaccel.InputError, match="sigmoid"):
        be.activation_forward(np.ones((2, 2)), "swish")
    with pytest.raises(dlaccel.InputError, match="cross_entropy"):
        be.compute_cost(np.full((1, 2), 0.5), np.ones((1, 2)), "mse")


def test_ops_reject_non_arrays_and_foreign_device_arrays():
    be = dlaccel.get_backend("numpy")
    with pytest.raises(dlaccel.DtypeError, match="asarray") as info:
        be.activation_forward([[1.0, 2.0]], "relu")
    assert isinstance(info.value, TypeError)

    FakeCupy = type("ndarray", (), {"__module__": "cupy._core.core", "ndim": 2})
    with pytest.raises(dlaccel.DeviceMismatchError, match="to_numpy") as info:
        be.activation_forward(FakeCupy(), "relu")
    assert isinstance(info.value, TypeError)


def test_rank_1_and_non_2d_inputs_to_fit(data):
    X, Y = data
    model = dlaccel.ShallowNN(3, seed=0)
    with pytest.raises(dlaccel.ShapeError, match=r"reshape"):
        model.fit(X.ravel(), Y, num_iterations=1)  # a 1-D Y is fine (labels), a 1-D X is not
    with pytest.raises(dlaccel.ShapeError, match=r"\(n_x, m\)"):
        model.fit(X[None], Y, num_iterations=1)


def test_examples_as_rows_says_pass_transpose(data):
    X, Y = data
    with pytest.raises(dlaccel.ShapeError, match=r"X\.T"):
        dlaccel.ShallowNN(3, seed=0).fit(X.T, Y, num_iterations=1)
    deep = dlaccel.DeepNN([2, 3, 1], seed=0)
    with pytest.raises(dlaccel.ShapeError, match=r"X\.T"):
        deep.predict(np.ones((5, 2)))


def test_mismatched_m_and_empty_data(data):
    X, Y = data
    with pytest.raises(dlaccel.ShapeError, match="m = 40"):
        dlaccel.ShallowNN(3).fit(X, Y[:, :30], num_iterations=1)
    with pytest.raises(dlaccel.ShapeError, match="m == 0"):
        dlaccel.ShallowNN(3).fit(np.ones((2, 0)), np.ones((1, 0)), num_iterations=1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs(data, bad):
    X, Y = data
    X = X.copy()
    X[1, 7] = bad
    model = dlaccel.ShallowNN(3, seed=0)
    with pytest.raises(dlaccel.InputError, match="NaN or Inf"):
        model.fit(X, Y, num_iterations=1)
    assert model.layer_dims is None  # nothing was built
    Yf = Y.astype(float)
    Yf[0, 3] = bad
    with pytest.raises(dlaccel.InputError, match="NaN or Inf"):
        model.fit(data[0], Yf, num_iterations=1)


def test_labels_outside_the_classes(data):
    X, Y = data
    with pytest.raises(dlaccel.InputError, match=r"\[0, 1\]"):
        dlaccel.DeepNN([2, 3, 1]).fit(X, Y * 2.0 - 0.5, num_iterations=1)
    with pytest.raises(dlaccel.InputError, match=r"\[0, 2\]"):
        dlaccel.DeepNN([2, 3, 3]).fit(X, (Y * 3).astype(int), num_iterations=1)
    with pytest.raises(dlaccel.InputError, match="whole-number"):
        dlaccel.DeepNN([2, 3, 3]).fit(X, Y * 1.5, num_iterations=1)
    with pytest.raises(dlaccel.InputError, match=r"3 units.*\[0, 5\]"):
        dlaccel.DeepNN([2, 3, 3]).fit(X, Y * 5, num_iterations=1)
    with pytest.raises(dlaccel.InputError, match=r"two classes.*\[0, 1, 2\]"):
        dlaccel.DeepNN([2, 3, 1]).fit(X, np.arange(40) % 3, num_iterations=1)
    with pytest.raises(dlaccel.InputError, match="soft targets"):
        dlaccel.DeepNN([2, 3, 3]).fit(X, Y * 0.5, num_iterations=1)
    with pytest.raises(dlaccel.ShapeError, match="n_y = 3"):
        dlaccel.DeepNN([2, 3, 3]).fit(X, np.vstack([Y, Y]), num_iterations=1)


@pytest.mark.parametrize("make", [
    lambda: dlaccel.ShallowNN(3, output_activation="sigmoid"),
    lambda: dlaccel.ShallowNN(3),
    lambda: dlaccel.LogisticRegression(),
])
def test_a_failed_first_fit_builds_nothing(data, make):
    X, Y = data
    model = make()
    bad = [Y * 0 + 7, Y * 2.5]  # a single class; neither whole-number labels nor probabilities
    for Y_bad in bad:
        with pytest.raises(dlaccel.InputError):
            model.fit(X, Y_bad, num_iterations=1)
        assert model.layer_dims is None
    model.fit(X, Y, num_iterations=1)  # the model is still usable with good labels
    assert model.layer_dims[-1] == 1


def test_one_hot_columns_must_sum_to_one(data):
    X, Y = data
    model = dlaccel.ShallowNN(3)
    with pytest.raises(dlaccel.InputError, match="sum to 1"):
        model.fit(X, np.vstack([Y, Y, Y]) * 0.5, num_iterations=1)
    assert model.layer_dims is None


def test_softmax_needs_two_units():
    with pytest.raises(dlaccel.InputError, match="2 units"):
        dlaccel.DeepNN([3, 2, 1], output_activation="softmax")


def test_non_numeric_dtypes(data):
    X, Y = data
    with pytest.raises(dlaccel.DtypeError) as info:
        dlaccel.ShallowNN(3).fit(X.astype(str), Y, num_iterations=1)
    assert isinstance(info.value, TypeError) and "numeric" in str(info.value)
    with pytest.raises(dlaccel.DtypeError):
        dlaccel.ShallowNN(3).fit(X, Y.astype(object), num_iterations=1)
    with pytest.raises(dlaccel.InputError, match="float32 or float64"):
        dlaccel.DeepNN([2, 1], dtype="int32")


@pytest.mark.parametrize("dims", [[], [3], [3, 0, 1], [3, -2, 1], [3, 2.5, 1], "abc", None, [3, True]])
def test_invalid_layer_dims(dims):
    with pytest.raises(ValueError, match="layer_dims"):
        dlaccel.DeepNN(dims)


@pytest.mark.parametrize("lr", [0, -0.1, float("nan"), float("inf"), "fast", True])
def test_invalid_learning_rate(data, lr):
    model = dlaccel.DeepNN([2, 3, 1], seed=0)
    before = model.parameters
    with pytest.raises(dlaccel.InputError, match="learning_rate"):
        model.fit(*data, learning_rate=lr, num_iterations=5)
    assert model.iteration == 0 and model.costs == []
    np.testing.assert_array_equal(model.parameters["W1"], before["W1"])


@pytest.mark.parametrize("n", [-1, 2.5, "10"])
def test_invalid_iteration_counts(data, n):
    with pytest.raises(dlaccel.InputError, match="num_iterations"):
        dlaccel.DeepNN([2, 3, 1]).fit(*data, num_iterations=n)
    with pytest.raises(dlaccel.InputError, match="cost_every"):
        dlaccel.DeepNN([2, 3, 1]).fit(*data, num_iterations=3, cost_every=0)


def test_invalid_model_settings():
    with pytest.raises(dlaccel.InputError, match="hidden_activation"):
        dlaccel.DeepNN([2, 1], hidden_activation="softmax")
    with pytest.raises(dlaccel.InputError, match="output_activation"):
        dlaccel.DeepNN([2, 1], output_activation="relu")
    with pytest.raises(dlaccel.InputError, match="initialization"):
        dlaccel.DeepNN([2, 1], initialization="glorot")
    with pytest.raises(dlaccel.InputError, match="seed"):
        dlaccel.DeepNN([2, 1], seed=-3)
    with pytest.raises(dlaccel.InputError, match="n_h"):
        dlaccel.ShallowNN(0)
    with pytest.raises(dlaccel.UnknownBackendError):
        dlaccel.DeepNN([2, 1], backend="gpu")


def test_predict_before_fit():
    with pytest.raises(dlaccel.InputError, match="fit"):
        dlaccel.ShallowNN(3).predict(np.ones((2, 3)))


def test_divergence_names_the_iteration_and_keeps_finite_parameters(data):
    X, Y = data
    model = dlaccel.DeepNN([2, 8, 1], hidden_activation="linear", initialization="he", seed=1)
    with pytest.raises(dlaccel.TrainingDivergedError, match="iteration") as info:
        model.fit(X * 1e3, Y, learning_rate=1e3, num_iterations=500, cost_every=10)
    assert isinstance(info.value, RuntimeError)
    assert info.value.iteration > 0
    assert all(np.isfinite(p).all() for p in model.parameters.values())
    assert all(np.isfinite(c) for _, c in model.costs)
