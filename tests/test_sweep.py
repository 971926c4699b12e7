"""dlaccel.sweep: grid order, failed trials, ranking, determinism across worker counts, table, JSON, PNG."""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys

import numpy as np
import pytest

import dlaccel
from dlaccel import InputError, ShapeError
from dlaccel.sweep import SweepResult, Trial, parse_grid, run_trial

distributed = pytest.importorskip("distributed")
SWEEP_MODULE = importlib.import_module("dlaccel.sweep")  # dlaccel.sweep itself is the function

FIXED = {"seed": 3, "num_iterations": 60, "cost_every": 20}
# A learning rate that turns a ReLU net's cost into NaN within the first records (diverges today
# and under any stricter rule).
DIVERGING = 1e300


@pytest.fixture(scope="module")
def data():
    X, Y = dlaccel.datasets.planar(m=120, seed=1)
    return X, Y


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=40) \
            as cluster, distributed.Client(cluster, set_as_default=False) as c:
        yield c


def _sweep(data, grid, **kw):
    X, Y = data
    kw.setdefault("fixed", FIXED)
    kw.setdefault("n_workers", 0)
    return dlaccel.sweep(dlaccel.ShallowNN, grid, X, Y, **kw)


def _numbers(trial: Trial):
    return (trial.params, trial.costs, trial.final_cost, trial.train_accuracy, trial.val_accuracy, trial.error,
            {k: p.tobytes() for k, p in trial.model.parameters.items()})


# -- the grid ---------------------------------------------------------------------------------------


def test_trials_are_the_product_in_grid_order_first_key_slowest(data):
    result = _sweep(data, {"n_h": [2, 1], "learning_rate": [0.5, 1.2, 0.1]})
    assert [t.params for t in result.trials] == [
        {"n_h": n, "learning_rate": lr} for n in (2, 1) for lr in (0.5, 1.2, 0.1)]
    # Each trial is the plain fit of its settings (the model is the fitted one, usable at once).
    X, Y = data
    X = np.ascontiguousarray(X)  # trials train on C-ordered copies (planar's X is F-ordered)
    for t in result.trials:
        alone = dlaccel.ShallowNN(t.params["n_h"], seed=3).fit(
            X, Y, learning_rate=t.params["learning_rate"], num_iterations=60, cost_every=20)
        assert t.costs == alone.costs and t.final_cost == alone.costs[-1][1]
        assert t.train_accuracy == alone.accuracy(X, Y) == t.model.accuracy(X, Y)
        assert t.val_accuracy is None and t.error is None and t.seconds > 0
        assert t.model.n_h == t.params["n_h"]


@pytest.mark.parametrize("grid, fixed, match", [
    ({"n_hidden": [1, 2]}, None, "n_hidden.*n_h, hidden_activation"),
    ({"n_h": [1]}, {"learnig_rate": 1.0}, "learnig_rate"),
    ({"n_h": 4}, None, r"grid\['n_h'\] must be a list"),
    ({"n_h": "4"}, None, r"grid\['n_h'\] must be a list"),
    ({"n_h": []}, None, "empty"),
    ({}, None, "non-empty"),
    ({"n_h": [1, 2]}, {"n_h": 3}, "both the grid and fixed"),
    ({"n_h": [2, 0]}, None, r"n_h.*trial \{'n_h': 0\}"),
    ({"hidden_activation": ["tanh", "swish"]}, {"n_h": 2}, "swish"),
    ({"learning_rate": [0.1, -1.0]}, {"n_h": 2}, "learning_rate"),
    ({"seed": [1]}, None, "n_h.*put it in the grid or in fixed"),
])
def test_bad_grids_are_refused_before_any_work(data, monkeypatch, grid, fixed, match):
    def no_fit(*args, **kwargs):
        raise AssertionError("a trial ran before the grid was checked")

    monkeypatch.setattr(SWEEP_MODULE, "run_trial", no_fit)
    with pytest.raises(InputError, match=match):
        dlaccel.sweep(dlaccel.ShallowNN, grid, *data, fixed=fixed, n_workers=0)


def test_bad_data_and_arguments_are_refused(data):
    X, Y = data
    with pytest.raises(ShapeError, match="examples"):
        dlaccel.sweep(dlaccel.ShallowNN, {"n_h": [1]}, X, Y[:, :10], n_workers=0)
    with pytest.raises(ShapeError, match="n_x = 2"):
        dlaccel.sweep(dlaccel.ShallowNN, {"n_h": [1]}, X, Y, validation=(X[:1], Y), n_workers=0)
    with pytest.raises(InputError, match=r"layer_dims \[3, 3, 1\] starts with n_x = 3, but X has 2 features"):
        dlaccel.sweep(dlaccel.DeepNN, {"layer_dims": [[2, 3, 1], [3, 3, 1]]}, X, Y, n_workers=0)
    with pytest.raises(InputError, match="model class"):
        dlaccel.sweep(dlaccel.ShallowNN(2), {"n_h": [1]}, X, Y, n_workers=0)
    with pytest.raises(InputError, match="n_workers"):
        dlaccel.sweep(dlaccel.ShallowNN, {"n_h": [1]}, X, Y, n_workers=-1)


def test_parse_grid_reads_the_command_lines_lists():
    grid = parse_grid({"hidden_units": "1,2, 3", "learning_rate": "0.1,1.2", "--iterations": "50",
                       "activation": "tanh,relu"})
    assert grid == {"n_h": [1, 2, 3], "learning_rate": [0.1, 1.2], "num_iterations": [50],
                    "hidden_activation": ["tanh", "relu"]}
    assert parse_grid({"layers": "8,4;16,8"}) == {"layer_dims": [[8, 4], [16, 8]]}
    assert parse_grid({"layers": "8,4;16"}, n_x=2, n_y=1) == {"layer_dims": [[2, 8, 4, 1], [2, 16, 1]]}
    for bad, match in [({"hidden_units": "1,x"}, "hidden_units.*'x'.*integer"), ({"learning-rate": "0.1,"}, "empty"),
                       ({"width": "3"}, "width.*hidden_units"), ({"layers": "8;;4"}, "empty alternative"),
                       ({"seed": ""}, "comma-separated")]:
        with pytest.raises(InputError, match=match):
            parse_grid(bad)


def test_parsed_grid_drives_a_deep_sweep(data):
    X, Y = data
    grid = parse_grid({"layers": "3;4,3", "learning_rate": "0.5"}, n_x=2, n_y=1)
    result = dlaccel.sweep(dlaccel.DeepNN, grid, X, Y, fixed=FIXED, n_workers=0)
    assert [t.model.layer_dims for t in result.trials] == [[2, 3, 1], [2, 4, 3, 1]]


# -- failures and ranking ---------------------------------------------------------------------------


def test_a_diverged_trial_is_recorded_and_the_others_still_run(data):
    result = _sweep(data, {"learning_rate": [0.5, DIVERGING, 1.0]}, fixed={**FIXED, "n_h": 4,
                                                                            "hidden_activation": "relu"})
    ok1, bad, ok2 = result.trials
    assert ok1.error is None and ok2.error is None
    assert bad.error is not None and bad.error.startswith("TrainingDivergedError") and "diverged" in bad.error
    assert bad.diverged_at is not None and bad.model is not None
    assert bad.final_cost is None and bad.train_accuracy is None
    assert all(np.isfinite(c) for _, c in bad.costs)
    assert result.best is not bad
    assert "failed: TrainingDivergedError" in result.table()


def _trial(train, val, cost, error=None):
    return Trial({}, [], cost, train, val, 0.1, error)


def test_best_ranks_by_validation_then_cost_and_never_picks_a_failure():
    with_val = SweepResult("ShallowNN", {"n_h": [1, 2, 3, 4]}, {}, [
        _trial(0.99, 0.70, 0.1), _trial(0.80, 0.90, 0.5), _trial(0.70, 0.90, 0.4), _trial(None, None, None, "x")],
        validation=True)
    assert with_val.best is with_val.trials[2]  # val ties go to the lower cost; train accuracy ignored
    no_val = SweepResult("ShallowNN", {"n_h": [1, 2, 3]}, {}, [
        _trial(0.80, None, 0.3), _trial(0.90, None, 0.5), _trial(0.90, None, 0.2)], validation=False)
    assert no_val.best is no_val.trials[2]
    failed = SweepResult("ShallowNN", {"n_h": [1]}, {}, [_trial(None, None, None, "boom")], validation=False)
    assert failed.best is None


def test_validation_accuracy_is_measured_and_ranks(data):
    X, Y = data
    Xv, Yv = dlaccel.datasets.planar(m=80, seed=7)
    result = _sweep(data, {"n_h": [1, 3]}, validation=(Xv, Yv))
    for t in result.trials:
        assert t.val_accuracy == t.model.accuracy(Xv, Yv)
    assert result.best is max(result.trials, key=lambda t: (t.val_accuracy, -t.final_cost))
    assert "val acc" in result.table()


# -- where the trials run ---------------------------------------------------------------------------


def test_cluster_sweep_equals_in_process_sweep_bit_for_bit(data, client):
    grid = {"n_h": [1, 2, 5], "learning_rate": [1.2, 0.3]}
    here = _sweep(data, grid)
    there = _sweep(data, grid, n_workers=None, client=client)
    assert here.ran_on == "this process" and there.ran_on == "2-worker Dask cluster"
    assert [_numbers(t) for t in there.trials] == [_numbers(t) for t in here.trials]
    # Which worker ran which trial does not matter either: a second run (other placement) agrees.
    again = _sweep(data, grid, n_workers=None, client=client)
    assert [_numbers(t) for t in again.trials] == [_numbers(t) for t in here.trials]


def _interrupt_after(n):
    seen = []

    def progress(trial):
        seen.append(trial)
        if len(seen) == n:
            raise KeyboardInterrupt

    return progress


@pytest.mark.parametrize("where", ["in-process", "cluster"])
def test_ctrl_c_keeps_the_finished_trials(data, client, where):
    grid = {"n_h": [1, 2, 5], "learning_rate": [1.2, 0.3]}
    uninterrupted = _sweep(data, grid)
    assert not uninterrupted.interrupted
    full = {tuple(t.params.items()): _numbers(t) for t in uninterrupted.trials}
    on = {"n_workers": None, "client": client} if where == "cluster" else {}
    with pytest.raises(dlaccel.SweepInterrupted) as caught:
        _sweep(data, grid, progress=_interrupt_after(2), **on)
    stop = caught.value
    assert isinstance(stop, KeyboardInterrupt) and stop.planned == 6
    kept = stop.result.trials
    assert stop.result.interrupted and "interrupted after" in stop.result.ran_on
    if where == "in-process" and importlib.util.find_spec("matplotlib"):  # the chart says it too
        assert "interrupted after" in stop.result.figure().axes[0].get_title()
    # The cluster may finish one more before the interrupt lands; each kept trial is the real one,
    # in grid order.
    assert 2 <= len(kept) < 6
    order = [tuple(p.items()) for p in (dict(zip(grid, c)) for c in itertools.product(*grid.values()))]
    assert [order.index(tuple(t.params.items())) for t in kept] == sorted(order.index(tuple(t.params.items()))
                                                                         for t in kept)
    for t in kept:
        assert _numbers(t) == full[tuple(t.params.items())]


def test_data_goes_to_each_worker_once_not_per_trial(data, client, monkeypatch):
    calls: dict[str, list] = {"scatter": [], "submit": []}
    scatter, submit = client.scatter, client.submit

    def spy_scatter(payload, **kw):
        calls["scatter"].append(kw)
        return scatter(payload, **kw)

    def spy_submit(fn, *args, **kw):
        calls["submit"].append(args)
        calls.setdefault("priority", []).append(kw.get("priority"))
        return submit(fn, *args, **kw)

    monkeypatch.setattr(client, "scatter", spy_scatter)
    monkeypatch.setattr(client, "submit", spy_submit)
    _sweep(data, {"n_h": [1, 2, 3, 4]}, n_workers=None, client=client)
    assert len(calls["scatter"]) == 1 and calls["scatter"][0]["broadcast"] is True
    assert len(calls["submit"]) == 4
    for args in calls["submit"]:
        assert not any(isinstance(a, np.ndarray) for a in args)
        assert isinstance(args[-1], distributed.Future)
    assert len({a[-1].key for a in calls["submit"]}) == 1
    # The biggest trials start first, so that no long one runs alone at the end.
    assert calls["priority"] == sorted(calls["priority"]) and len(set(calls["priority"])) == 4


def test_a_diverged_trial_on_the_cluster_is_recorded(data, client):
    result = _sweep(data, {"learning_rate": [DIVERGING, 0.5]}, fixed={**FIXED, "n_h": 3, "hidden_activation": "relu"},
                    n_workers=None, client=client)
    assert result.trials[0].error is not None and result.trials[1].error is None
    assert result.best is result.trials[1]


def test_without_distributed_the_trials_run_here_and_it_says_so_once(data, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.warns(UserWarning, match="distributed is not installed.*2 trials.*one after another") as caught:
        result = _sweep(data, {"n_h": [1, 2]}, n_workers=None)
    assert len([w for w in caught if "distributed" in str(w.message)]) == 1
    assert result.ran_on == "this process" and all(t.ok for t in result.trials)


def test_run_trial_records_only_dlaccel_errors(data):
    X, Y = data
    with pytest.raises(ZeroDivisionError):
        run_trial(_Broken, {}, {}, {}, (X, Y, None, None))


class _Broken(dlaccel.ShallowNN):
    def __init__(self):
        super().__init__(2)

    def fit(self, *args, **kwargs):
        raise ZeroDivisionError("a bug, not a failed trial")


# -- table, JSON, PNG -------------------------------------------------------------------------------


def test_table_shows_each_trial_with_percentages(data):
    result = _sweep(data, {"n_h": [1, 4]})
    lines = result.table().splitlines()
    assert lines[0].split()[:3] == ["#", "n_h", "final"]
    assert len(lines) == 3
    for line, t in zip(lines[1:], result.trials):
        assert f"{100 * t.train_accuracy:.2f} %" in line and f"{t.final_cost:.6f}" in line
        assert line.startswith("*") == (t is result.best)


def test_json_round_trips_and_is_written_atomically(data, tmp_path):
    result = _sweep(data, {"n_h": [1, 2]})
    path = tmp_path / "sweep.json"
    result.to_json(path)
    back = SweepResult.from_json(path)
    assert back.trials == result.trials and back.grid == result.grid and back.fixed == result.fixed
    assert back.best == result.best
    assert json.loads(path.read_text())["best"] == result.trials.index(result.best)
    # A value that cannot be written fails the whole write: the old file stays, no partial one appears.
    before = path.read_bytes()
    result.trials[-1].params["n_h"] = object()
    with pytest.raises(TypeError, match="object"):
        result.to_json(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.json"]
    with pytest.raises(FileNotFoundError, match="no/such"):
        result.to_json(tmp_path / "no" / "such" / "x.json")


def test_from_json_refuses_other_files(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"trials": 3}')
    with pytest.raises(dlaccel.ModelFileError, match="sweep JSON"):
        SweepResult.from_json(path)


@pytest.fixture(scope="module")
def mixed(data):
    return _sweep(data, {"n_h": [1, 3, 5], "learning_rate": [1.2, DIVERGING]},
                  fixed={**FIXED, "hidden_activation": "relu"})


def test_figure_has_cost_curves_and_one_boundary_panel_per_trial(mixed, data):
    pytest.importorskip("matplotlib")
    fig = mixed.figure()
    axes = [ax for ax in fig.get_axes() if ax.get_visible()]
    curves, panels = axes[0], axes[1:]
    assert curves.get_xlabel() == "iteration" and curves.get_ylabel().startswith("cost")
    labels = [t.get_text() for t in curves.get_legend().get_texts()]
    assert len(labels) == 6 and sum("diverged at" in x for x in labels) == 3
    assert labels[0] == "n_h=1, learning_rate=1.2"
    assert len(panels) == 6
    for ax, t in zip(panels, mixed.trials):
        title = ax.get_title()
        assert f"n_h={t.params['n_h']}" in title
        assert (f"{100 * t.train_accuracy:.2f} %" in title) if t.ok else ("diverged" in title)
        assert ax.get_xlabel() == "$x_1$" and ax.get_ylabel() == "$x_2$"
    legend = panels[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["class 0", "class 1"]


def test_cost_axis_goes_log_when_the_curves_span_a_decade():
    pytest.importorskip("matplotlib")
    from dlaccel.plots import cost_curves, new_figure

    ax = new_figure(4, 3).subplots()
    cost_curves(ax, [("a", [(0, 0.7), (100, 0.05)], None), ("b", [(0, 0.7), (100, 0.5)], None)])
    assert ax.get_yscale() == "log"
    ax = new_figure(4, 3).subplots()
    cost_curves(ax, [("a", [(0, 0.7), (100, 0.08)], None)])
    assert ax.get_yscale() == "linear"


def test_no_boundary_panels_for_data_that_is_not_two_dimensional():
    pytest.importorskip("matplotlib")
    X = np.random.default_rng(0).normal(size=(3, 60))
    Y = (X[0] > 0).astype(int).reshape(1, -1)
    result = dlaccel.sweep(dlaccel.ShallowNN, {"n_h": [1, 2]}, X, Y, fixed=FIXED, n_workers=0)
    assert len(result.figure().get_axes()) == 1


def test_plot_writes_a_png_atomically(mixed, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    path = tmp_path / "sweep.png"
    mixed.plot(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def broken(self, *args, **kwargs):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", broken)
    with pytest.raises(RuntimeError, match="drawing failed"):
        mixed.plot(tmp_path / "other.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.png"]
    with pytest.raises(IsADirectoryError):
        mixed.plot(tmp_path)
