"""Runaway training is caught even when the cost stays finite; the course's own runs never trip it."""

from __future__ import annotations

import numpy as np
import pytest

import dlaccel
from dlaccel import datasets


def course_flower(**kwargs):
    return dlaccel.ShallowNN(4, initialization="course", seed=2, backend="numpy", **kwargs)


@pytest.mark.parametrize("cost_every", [1, 100])
def test_the_course_flower_run_never_trips(cost_every):
    # lr 1.2 for 10,000 iterations: the course's run, with its small real cost bump near 9,000.
    X, Y = datasets.planar()
    model = course_flower().fit(X, Y, learning_rate=1.2, num_iterations=10000, cost_every=cost_every)
    assert model.iteration == 10000 and model.costs[-1][0] == 9999
    costs = np.array([c for _, c in model.costs])
    assert (np.diff(costs) > 0).any() or cost_every > 1  # the bump is there and was checked
    model.fit(X, Y, learning_rate=1.2, num_iterations=1000, cost_every=cost_every)  # continuing is fine
    assert model.iteration == 11000


@pytest.mark.parametrize("lr", [1e3, 1e6, 1e308])
def test_logistic_regression_with_a_huge_learning_rate_raises(lr):
    X, Y = datasets.planar()
    model = dlaccel.LogisticRegression()
    with pytest.raises(dlaccel.TrainingDivergedError, match="learning rate") as info:
        model.fit(X, Y, learning_rate=lr, num_iterations=2000)
    assert info.value.iteration == 100  # the first record after the start (cost_every=100)
    assert "iteration 100" in str(info.value)
    assert np.abs(model.parameters["W1"]).max() < 1e6 * lr  # not left at the runaway weights
    assert [i for i, _ in model.costs] == [0]


def test_shallow_runaway_keeps_the_last_good_parameters():
    X, Y = datasets.planar()
    model = course_flower()
    with pytest.raises(dlaccel.TrainingDivergedError, match=r"iteration 3\b.*[Ll]ower the learning rate"):
        model.fit(X, Y, learning_rate=1e6, num_iterations=50, cost_every=3)
    # Iteration 0's check passed; iteration 3's saw the run away: the model is back at iteration 0.
    start = course_flower().fit(X, Y, num_iterations=0)
    for k, want in start.parameters.items():
        np.testing.assert_array_equal(model.parameters[k], want)
    assert [i for i, _ in model.costs] == [0]


def test_a_continued_fit_from_a_trained_model_is_still_checked():
    # Its starting cost is small; "twice the starting cost" would trip on noise, but a runaway
    # is still far above it.
    X, Y = datasets.planar()
    model = course_flower().fit(X, Y, learning_rate=1.2, num_iterations=3000)
    with pytest.raises(dlaccel.TrainingDivergedError, match="ran away") as info:
        model.fit(X, Y, learning_rate=1e6, num_iterations=20, cost_every=1)
    assert 3000 < info.value.iteration < 3010
    # The parameters kept are those of the last check that passed: their cost is the one recorded.
    last_it, last_cost = model.costs[-1]
    assert last_it == info.value.iteration - 1
    assert model.cost(X, Y) == pytest.approx(last_cost, rel=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softmax_with_many_classes(dtype):
    # The starting cost is about log 10; float32 saturates at -log(eps) = 15.9, float64 at 36.
    X, Y = datasets.blobs(m=300, centers=10, seed=0)
    X = (X - X.mean(axis=1, keepdims=True)) / X.std(axis=1, keepdims=True)
    ok = dlaccel.DeepNN([2, 16, 10], seed=0, dtype=dtype).fit(X, Y, learning_rate=0.5, num_iterations=300,
                                                              cost_every=1)
    assert ok.costs[-1][1] < ok.costs[0][1] / 5
    with pytest.raises(dlaccel.TrainingDivergedError, match="iteration 1: the cost ran away"):
        dlaccel.DeepNN([2, 16, 10], seed=0, dtype=dtype).fit(X, Y, learning_rate=100, num_iterations=300,
                                                              cost_every=1)


def test_the_cli_prints_one_error_line():
    pytest.importorskip("click")
    pytest.importorskip("rich")
    from click.testing import CliRunner

    from dlaccel.cli import load_app

    result = CliRunner().invoke(load_app(), ["train", "--learning-rate", "1e6", "--iterations", "300",
                                             "--no-progress"])
    assert isinstance(result.exception, SystemExit) and result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    assert "diverged at iteration" in lines[0] and "learning rate" in lines[0]
    assert "accuracy" not in result.stdout
