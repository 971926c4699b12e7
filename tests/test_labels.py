"""Labels as scikit-learn users know them: the classes are the sorted unique labels of Y."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import dlaccel
from dlaccel import datasets


@pytest.fixture
def flower():
    return datasets.planar(m=100)


@pytest.fixture
def blobs():
    return datasets.blobs(m=90, centers=3, seed=2)


def assert_same_parameters(a, b):
    for k, want in b.parameters.items():
        np.testing.assert_array_equal(a.parameters[k], want)


@pytest.mark.parametrize("pair", [(1, 2), (-1, 1), (3, 7)])
def test_two_labels_make_a_binary_sigmoid_model(flower, pair):
    X, Y01 = flower
    Y = np.where(Y01 == 1, pair[1], pair[0])
    model = dlaccel.ShallowNN(3, seed=1).fit(X, Y, learning_rate=1.0, num_iterations=50)
    ref = dlaccel.ShallowNN(3, seed=1).fit(X, Y01, learning_rate=1.0, num_iterations=50)
    assert model.layer_dims == [2, 3, 1] and model.output_activation == "sigmoid"  # no phantom class
    np.testing.assert_array_equal(model.classes_, pair)
    assert_same_parameters(model, ref)
    np.testing.assert_array_equal(model.predict(X), np.where(ref.predict(X) == 1, pair[1], pair[0]))
    assert model.accuracy(X, Y) == ref.accuracy(X, Y01)
    assert model.cost(X, Y) == ref.cost(X, Y01)
    for k, g in ref.gradients(X, Y01).items():
        np.testing.assert_array_equal(model.gradients(X, Y)[k], g)


def test_labels_one_to_three_on_a_three_unit_output(blobs):
    X, Y0 = blobs
    model = dlaccel.DeepNN([2, 5, 3], seed=4).fit(X, Y0 + 1, learning_rate=0.1, num_iterations=30)
    ref = dlaccel.DeepNN([2, 5, 3], seed=4).fit(X, Y0, learning_rate=0.1, num_iterations=30)
    np.testing.assert_array_equal(model.classes_, [1, 2, 3])
    assert_same_parameters(model, ref)
    np.testing.assert_array_equal(model.predict(X), ref.predict(X) + 1)
    assert model.accuracy(X, Y0 + 1) == ref.accuracy(X, Y0)
    # One-hot columns still work, over the classes in order.
    assert model.accuracy(X, np.eye(3)[Y0[0]].T) == ref.accuracy(X, Y0)


def test_sparse_labels_make_as_many_classes_as_there_are_labels(blobs):
    X, Y0 = blobs
    labels = np.array([-5, 4, 10])
    model = dlaccel.LogisticRegression().fit(X, labels[Y0], learning_rate=0.1, num_iterations=20)
    ref = dlaccel.LogisticRegression().fit(X, Y0, learning_rate=0.1, num_iterations=20)
    assert model.layer_dims == [2, 3]
    np.testing.assert_array_equal(model.classes_, labels)
    assert_same_parameters(model, ref)
    np.testing.assert_array_equal(model.predict(X), labels[ref.predict(X)])


def test_zero_one_labels_as_before(flower):
    X, Y = flower
    model = dlaccel.ShallowNN(3, seed=1).fit(X, Y.astype(bool), num_iterations=5)
    np.testing.assert_array_equal(model.classes_, [0, 1])
    assert model.predict(X).dtype == np.int64
    # A batch with only one of the two labels is still 0/1, not a single class.
    dlaccel.LogisticRegression().fit(X, np.ones_like(Y), num_iterations=2)


def test_one_dimensional_labels_are_read_as_a_row(flower):
    X, Y = flower
    ref = dlaccel.ShallowNN(3, seed=1).fit(X, Y, num_iterations=10)
    for labels in (Y.ravel(), list(Y.ravel() + 1)):
        model = dlaccel.ShallowNN(3, seed=1).fit(X, labels, num_iterations=10)
        assert_same_parameters(model, ref)
        assert model.accuracy(X, labels) == ref.accuracy(X, Y)


def test_a_pandas_series_is_accepted(flower):
    pd = pytest.importorskip("pandas")
    X, Y = flower
    series = pd.Series(np.where(Y.ravel() == 1, 2, 1))
    model = dlaccel.ShallowNN(3, seed=1).fit(X, series, num_iterations=10)
    np.testing.assert_array_equal(model.classes_, [1, 2])
    assert model.accuracy(X, series) == dlaccel.ShallowNN(3, seed=1).fit(X, Y, num_iterations=10).accuracy(X, Y)


def test_labels_outside_the_classes_are_named(flower):
    X, Y = flower
    model = dlaccel.ShallowNN(3, seed=1).fit(X, Y + 1, num_iterations=2)  # classes 1, 2
    Y_bad = (Y + 1).copy()
    Y_bad[0, :3] = [0, 5, 5]
    for call in (lambda: model.fit(X, Y_bad, num_iterations=1), lambda: model.cost(X, Y_bad),
                 lambda: model.accuracy(X, Y_bad), lambda: model.gradients(X, Y_bad)):
        with pytest.raises(dlaccel.InputError, match=r"labels \[0, 5\] .* classes \[1, 2\]"):
            call()
    assert model.iteration == 2


def test_soft_targets_train_a_sigmoid_output(flower):
    X, Y = flower
    soft = np.where(Y == 1, 0.9, 0.2)
    model = dlaccel.LogisticRegression().fit(X, soft, num_iterations=0)
    assert model.layer_dims == [2, 1]
    np.testing.assert_array_equal(model.classes_, [0, 1])
    # At zero weights A = 0.5 everywhere: dW = (A - Y) X^T / m, the course's formula.
    m = X.shape[1]
    np.testing.assert_allclose(model.gradients(X, soft)["dW1"], (0.5 - soft) @ X.T / m, rtol=1e-12)


def test_multi_label_sigmoid_has_no_classes(flower):
    X, Y = flower
    Y3 = np.vstack([Y, 1 - Y, Y])
    model = dlaccel.DeepNN([2, 4, 3], output_activation="sigmoid", seed=0).fit(X, Y3, num_iterations=5)
    assert model.classes_ is None
    pred = model.predict(X)
    assert pred.shape == (3, X.shape[1]) and set(np.unique(pred)) <= {0, 1}
    assert model.accuracy(X, Y3) == float((pred == Y3).mean())


@pytest.mark.parametrize("labels", [np.array([1, 2]), np.array([2.0, 5.0]), np.array([0, 1])])
def test_classes_are_saved_and_loaded(tmp_path, flower, labels):
    X, Y = flower
    model = dlaccel.ShallowNN(3, seed=1).fit(X, labels[Y], num_iterations=10)
    model.save(tmp_path / "m.npz")
    loaded = dlaccel.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.classes_, labels)
    assert loaded.classes_.dtype == labels.dtype
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    with pytest.raises(dlaccel.InputError, match="not among"):
        loaded.fit(X, labels[Y] + 100, num_iterations=1)


def rewrite_header(src, dst, change):
    with np.load(src) as data, zipfile.ZipFile(dst, "w") as z:
        for name in data.files:
            arr = data[name]
            if name == "__dlaccel__":
                header = json.loads(str(arr))
                change(header)
                arr = np.array(json.dumps(header))
            with z.open(name + ".npy", "w") as f:
                np.lib.format.write_array(f, arr, allow_pickle=False)


def test_files_written_before_classes_still_load(tmp_path, flower, blobs):
    def version_1(header):
        header["version"] = 1
        del header["classes"], header["classes_dtype"]

    for (X, Y), make in [(flower, lambda: dlaccel.ShallowNN(3, seed=1)), (blobs, lambda: dlaccel.LogisticRegression())]:
        model = make().fit(X, Y, num_iterations=5)
        model.save(tmp_path / "new.npz")
        rewrite_header(tmp_path / "new.npz", tmp_path / "old.npz", version_1)
        old = dlaccel.load(tmp_path / "old.npz")
        np.testing.assert_array_equal(old.classes_, np.arange(max(2, int(Y.max()) + 1)))
        np.testing.assert_array_equal(old.predict(X), model.predict(X))


def test_classes_that_do_not_fit_the_output_are_refused(tmp_path, flower):
    X, Y = flower
    dlaccel.ShallowNN(3, seed=1).fit(X, Y, num_iterations=2).save(tmp_path / "m.npz")
    for change in ({"classes": [1, 2, 3]}, {"classes": [2, 1]}, {"classes_dtype": "|O"}, {"classes": None}):
        rewrite_header(tmp_path / "m.npz", tmp_path / "bad.npz", lambda h, c=change: h.update(c))
        with pytest.raises(dlaccel.ModelFileError):
            dlaccel.load(tmp_path / "bad.npz")


@pytest.mark.parametrize("name, content, looks", [
    ("model.json", b'{"W1": [[1, 2]]}', "JSON"),
    ("notes.txt", b"hello, world\n", "text"),
    ("picture.png", b"\x89PNG\r\n\x1a\n" + bytes(40), "PNG"),
    ("empty.npz", b"", "empty"),
])
def test_loading_a_file_that_is_not_a_model_says_so(tmp_path, name, content, looks):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(dlaccel.ModelFileError, match="not a dlaccel model file") as info:
        dlaccel.load(path)
    message = str(info.value)
    assert looks in message
    assert "pickle" not in message and "allow_pickle" not in message
