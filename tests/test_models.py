"""Model behaviour: initialisation, the cost history, continuing fits, moving, saving, loading."""

from __future__ import annotations

import json
import os
import stat
import zipfile

import numpy as np
import pytest

import dlaccel
from dlaccel import datasets

from .conftest import on_emulator


@pytest.fixture
def flower():
    return datasets.planar(m=100)


def test_initialisation_schemes_draw_in_layer_order_from_one_stream():
    dims = [5, 4, 3]
    for scheme, scale in [("course", [0.01, 0.01]), ("he", [np.sqrt(2 / 5), np.sqrt(2 / 4)]),
                          ("xavier", [np.sqrt(1 / 5), np.sqrt(1 / 4)])]:
        p = dlaccel.initialize_parameters(dims, scheme, seed=3)
        rng = np.random.RandomState(3)
        np.testing.assert_array_equal(p["W1"], rng.randn(4, 5) * scale[0])
        np.testing.assert_array_equal(p["W2"], rng.randn(3, 4) * scale[1])
        assert not p["b1"].any() and not p["b2"].any()


def test_default_initialisations():
    assert dlaccel.DeepNN([3, 2, 1]).initialization is None
    relu = dlaccel.DeepNN([50, 40, 1], seed=0).parameters["W1"]
    tanh = dlaccel.DeepNN([50, 40, 1], hidden_activation="tanh", seed=0).parameters["W1"]
    np.testing.assert_allclose(relu, np.random.RandomState(0).randn(40, 50) * np.sqrt(2 / 50))
    np.testing.assert_allclose(tanh, np.random.RandomState(0).randn(40, 50) * np.sqrt(1 / 50))
    X, Y = datasets.planar(m=20)
    lr = dlaccel.LogisticRegression().fit(X, Y, num_iterations=0)
    assert not lr.parameters["W1"].any()
    shallow = dlaccel.ShallowNN(4, seed=2).fit(X, Y, num_iterations=0)
    np.testing.assert_allclose(shallow.parameters["W1"], np.random.RandomState(2).randn(4, 2) * 0.01)


def test_output_activation_defaults():
    assert dlaccel.DeepNN([4, 3, 1]).output_activation == "sigmoid"
    assert dlaccel.DeepNN([4, 3, 5]).output_activation == "softmax"


def test_cost_history_records_first_every_and_last(flower):
    X, Y = flower
    model = dlaccel.ShallowNN(3, seed=1).fit(X, Y, learning_rate=0.5, num_iterations=250, cost_every=100)
    assert [i for i, _ in model.costs] == [0, 100, 200, 249]
    model.fit(X, Y, learning_rate=0.5, num_iterations=60, cost_every=100)
    assert [i for i, _ in model.costs] == [0, 100, 200, 249, 250, 300, 309]
    assert model.iteration == 310
    # The cost recorded at iteration i is from its forward pass, before its update.
    fresh = dlaccel.ShallowNN(3, seed=1).fit(X, Y, learning_rate=0.5, num_iterations=100, cost_every=100)
    assert fresh.cost(X, Y) == pytest.approx(model.costs[1][1], rel=1e-12)
    model.reset()
    assert model.costs == [] and model.iteration == 0


def test_fit_continues_from_the_current_parameters(flower):
    X, Y = flower
    once = dlaccel.ShallowNN(3, seed=1).fit(X, Y, learning_rate=0.5, num_iterations=40)
    twice = dlaccel.ShallowNN(3, seed=1).fit(X, Y, learning_rate=0.5, num_iterations=25)
    twice.fit(X, Y, learning_rate=0.5, num_iterations=15)
    for k, v in once.parameters.items():
        np.testing.assert_allclose(twice.parameters[k], v, rtol=1e-12)
    before = twice.parameters
    twice.fit(X, Y, num_iterations=0)
    for k, v in before.items():
        np.testing.assert_array_equal(twice.parameters[k], v)
    twice.reset()
    np.testing.assert_allclose(twice.parameters["W1"], np.random.RandomState(1).randn(3, 2) * 0.01)


def test_parameters_are_copies(flower):
    X, Y = flower
    model = dlaccel.ShallowNN(3, seed=1).fit(X, Y, num_iterations=1)
    p = model.parameters
    p["W1"][:] = 123.0
    assert not (model.parameters["W1"] == 123.0).any()


def test_cost_decreases_on_every_model(backend, flower):
    X, Y = flower
    for model in (dlaccel.LogisticRegression(backend=backend), dlaccel.ShallowNN(4, seed=0, backend=backend),
                  dlaccel.DeepNN([2, 6, 4, 1], seed=0, backend=backend)):
        iterations = 30 if on_emulator(backend) else 150
        model.fit(X, Y, learning_rate=0.3, num_iterations=iterations, cost_every=iterations // 3)
        assert model.costs[-1][1] < model.costs[0][1]


@pytest.mark.parametrize("Y_kind", ["bool", "int", "float", "uint8"])
def test_label_types(flower, Y_kind):
    X, Y = flower
    Yk = {"bool": Y.astype(bool), "int": Y.astype(int), "float": Y.astype(float), "uint8": Y}[Y_kind]
    model = dlaccel.ShallowNN(3, seed=1).fit(X, Yk, learning_rate=1.0, num_iterations=20)
    ref = dlaccel.ShallowNN(3, seed=1).fit(X, Y.astype(float), learning_rate=1.0, num_iterations=20)
    np.testing.assert_array_equal(model.parameters["W1"], ref.parameters["W1"])


def test_integer_pixels_are_converted_to_the_model_dtype():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (12, 30), dtype=np.uint8)
    Y = (X[:1] > 127).astype(int)
    # Raw 0..255 pixels need a small learning rate: the default one makes the cost run away.
    model = dlaccel.LogisticRegression(dtype="float32").fit(X, Y, learning_rate=1e-5, num_iterations=3)
    assert model.parameters["W1"].dtype == np.float32
    assert model.predict(X).shape == (1, 30)


def test_softmax_accepts_labels_or_one_hot():
    X, Y = datasets.blobs(m=90, centers=3, seed=2)
    by_label = dlaccel.DeepNN([2, 5, 3], seed=4).fit(X, Y, learning_rate=0.1, num_iterations=30)
    one_hot = np.eye(3)[Y[0]].T
    by_onehot = dlaccel.DeepNN([2, 5, 3], seed=4).fit(X, one_hot, learning_rate=0.1, num_iterations=30)
    for k, v in by_label.parameters.items():
        np.testing.assert_allclose(by_onehot.parameters[k], v, rtol=1e-12)
    pred = by_label.predict(X)
    assert pred.shape == (1, 90) and set(np.unique(pred)) <= {0, 1, 2}
    proba = by_label.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=0), 1.0)
    assert by_label.accuracy(X, Y) == by_label.accuracy(X, one_hot)


def test_shallow_and_logistic_infer_softmax_from_labels():
    X, Y = datasets.blobs(m=60, centers=4, seed=1)
    model = dlaccel.ShallowNN(5, seed=0).fit(X, Y, learning_rate=0.5, num_iterations=200)
    assert model.layer_dims == [2, 5, 4] and model.output_activation == "softmax"
    assert model.accuracy(X, Y) > 0.5
    lr = dlaccel.LogisticRegression().fit(X, Y, learning_rate=0.1, num_iterations=50)
    assert lr.layer_dims == [2, 4]


def test_predict_labels_are_thresholded_probabilities(flower):
    X, Y = flower
    model = dlaccel.ShallowNN(4, seed=2).fit(X, Y, num_iterations=500)
    P = model.predict_proba(X)
    pred = model.predict(X)
    assert pred.shape == (1, X.shape[1]) and P.shape == (1, X.shape[1])
    np.testing.assert_array_equal(pred, (P > 0.5).astype(int))


def test_gradients_are_numpy_and_match_backprop_by_hand(flower):
    X, Y = flower
    model = dlaccel.ShallowNN(3, seed=1, hidden_activation="tanh").fit(X, Y, num_iterations=0)
    grads = model.gradients(X, Y)
    p = model.parameters
    # The course's shallow backprop, written out.
    A1 = np.tanh(p["W1"] @ X + p["b1"])
    A2 = 1 / (1 + np.exp(-(p["W2"] @ A1 + p["b2"])))
    m = X.shape[1]
    dZ2 = A2 - Y
    dZ1 = p["W2"].T @ dZ2 * (1 - A1**2)
    want = {"dW2": dZ2 @ A1.T / m, "db2": dZ2.sum(1, keepdims=True) / m, "dW1": dZ1 @ X.T / m,
            "db1": dZ1.sum(1, keepdims=True) / m}
    assert set(grads) == set(want)
    for k, v in want.items():
        assert isinstance(grads[k], np.ndarray)
        np.testing.assert_allclose(grads[k], v, rtol=1e-10, atol=1e-14)


def test_float32_models_stay_float32(backend, flower):
    X, Y = flower
    model = dlaccel.DeepNN([2, 5, 1], seed=0, dtype="float32", backend=backend).fit(X, Y, num_iterations=5)
    assert all(p.dtype == np.float32 for p in model.parameters.values())
    assert model.predict_proba(X).dtype == np.float32


def test_to_moves_between_backends(flower):
    X, Y = flower
    model = dlaccel.ShallowNN(3, seed=1, backend="numpy").fit(X, Y, num_iterations=10)
    before = model.predict_proba(X)
    assert model.to("loops") is model and model.backend.name == "loops"
    np.testing.assert_allclose(model.predict_proba(X), before, rtol=1e-12)
    model.fit(X, Y, num_iterations=2)
    assert model.iteration == 12


@pytest.mark.parametrize("make", [
    lambda: dlaccel.DeepNN([2, 4, 3, 1], hidden_activation="leaky_relu", seed=3, dtype="float32"),
    lambda: dlaccel.ShallowNN(5, seed=1),
    lambda: dlaccel.LogisticRegression(),
])
def test_save_and_load_round_trip(tmp_path, flower, make):
    X, Y = flower
    model = make().fit(X, Y, learning_rate=0.1, num_iterations=30, cost_every=10)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = dlaccel.load(path)
    assert type(loaded) is type(model)
    assert loaded.config() == model.config()
    assert loaded.costs == model.costs and loaded.iteration == model.iteration
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    with np.load(path, allow_pickle=False) as data:  # readable without pickle
        assert "W1" in data.files
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary left behind
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # readable like any other file


def test_load_can_choose_the_backend(tmp_path, flower):
    X, Y = flower
    path = tmp_path / "m.npz"
    dlaccel.ShallowNN(2, seed=0).fit(X, Y, num_iterations=3).save(path)
    assert dlaccel.load(path, backend="loops").backend.name == "loops"


def test_corrupt_model_files(tmp_path, flower):
    X, Y = flower
    good = tmp_path / "good.npz"
    dlaccel.ShallowNN(2, seed=0).fit(X, Y, num_iterations=3).save(good)
    raw = good.read_bytes()

    cases = {}
    cases["missing"] = tmp_path / "nope.npz"
    (truncated := tmp_path / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    cases["truncated"] = truncated
    (text := tmp_path / "text.npz").write_text("hello")
    cases["foreign text"] = text
    np.savez(foreign := tmp_path / "foreign.npz", a=np.ones(3))
    cases["foreign npz"] = foreign
    np.savez(pickled := tmp_path / "pickled.npz", __dlaccel__=np.array([{"a": 1}], dtype=object))
    cases["pickled"] = pickled
    with zipfile.ZipFile(wrong := tmp_path / "wrong_shapes.npz", "w") as z:
        with np.load(good) as data:
            for name in data.files:
                arr = data[name] if name != "W1" else np.ones((7, 7))
                with z.open(name + ".npy", "w") as f:
                    np.lib.format.write_array(f, arr, allow_pickle=False)
    cases["wrong shapes"] = wrong
    np.save(npy := tmp_path / "array.npz", np.ones(3))
    cases["single array"] = npy
    with zipfile.ZipFile(short := tmp_path / "short_dims.npz", "w") as z:
        with np.load(good) as data:
            header = json.loads(str(data["__dlaccel__"]))
            header["layer_dims"] = [2]
            for name in data.files:
                arr = np.array(json.dumps(header)) if name == "__dlaccel__" else data[name]
                with z.open(name + ".npy", "w") as f:
                    np.lib.format.write_array(f, arr, allow_pickle=False)
    cases["too few layer sizes"] = short
    for what, path in cases.items():
        with pytest.raises(dlaccel.ModelFileError) as info:
            dlaccel.load(path)
        assert isinstance(info.value, ValueError), what


def test_save_to_a_missing_folder_writes_nothing(tmp_path, flower):
    X, Y = flower
    model = dlaccel.ShallowNN(2, seed=0).fit(X, Y, num_iterations=3)
    with pytest.raises(dlaccel.ModelFileError, match="does not exist"):
        model.save(tmp_path / "no" / "such" / "m.npz")
    assert list(tmp_path.iterdir()) == []


def test_parameters_setter_validates_shapes():
    model = dlaccel.DeepNN([3, 2, 1])
    with pytest.raises(dlaccel.ShapeError, match="W1"):
        model.parameters = {"W1": np.ones((3, 2)), "b1": np.zeros((2, 1)), "W2": np.ones((1, 2)),
                            "b2": np.zeros((1, 1))}
    with pytest.raises(dlaccel.ShapeError, match="keys"):
        model.parameters = {"W1": np.ones((2, 3))}
    with pytest.raises(dlaccel.ShapeError, match="ShallowNN has"):
        dlaccel.ShallowNN(4).parameters = {"W1": np.ones((3, 2)), "b1": np.zeros((3, 1)),
                                           "W2": np.ones((1, 3)), "b2": np.zeros((1, 1))}
    with pytest.raises(dlaccel.ShapeError, match="dict"):
        dlaccel.LogisticRegression().parameters = [np.ones((1, 2))]
    lr = dlaccel.LogisticRegression()
    lr.parameters = {"W1": np.ones((1, 3)), "b1": np.zeros((1, 1))}
    assert lr.layer_dims == [3, 1] and lr.output_activation == "sigmoid"
