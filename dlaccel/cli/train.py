"""``dlaccel train``: parse the options, :func:`dlaccel.training.prepare`, fit, print, save, plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import numpy as np
from click.core import ParameterSource

from .._files import atomic_write
from ..errors import MissingDependencyError
from ..training import MODELS, prepare
from ._common import CommandError, check_output_path, console, handle_errors, require_matplotlib

DATASETS = ("planar", "moons", "circles", "blobs", "gaussian_quantiles", "digits")  # dlaccel.datasets.LOADERS


def _parse_layers(text: str) -> list[int]:
    try:
        layers = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        layers = []
    if not layers or min(layers) < 1:
        raise CommandError(f"--layers must be comma-separated hidden-layer sizes >= 1, like 20,7,5; got {text!r}")
    return layers


# The options that size one model only; given with another model they would be silently ignored.
MODEL_OPTIONS = {"layers": ("--layers", "deep"), "hidden_units": ("--hidden-units", "shallow")}


def check_model_options(kind: str) -> None:
    ctx = click.get_current_context()
    for param, (option, model) in MODEL_OPTIONS.items():
        if kind != model and ctx.get_parameter_source(param) not in (None, ParameterSource.DEFAULT):
            raise CommandError(f"{option} applies only to --model {model}, not to --model {kind}; "
                               "drop it or choose that model")


def training_figure(model: Any, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                    title: str) -> Any:
    """The cost curve, with the accuracies in its title, and for 2-D data the decision boundary:
    regions and points coloured by class (named in the legend), training points as dots, test
    points as crosses."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.colors import ListedColormap
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependencyError("--plot needs matplotlib: pip install 'dlaccel[plot]'") from None
    (X, Y), (X_test, Y_test) = train, test
    two_d = X.shape[0] == 2
    fig = Figure(figsize=(12 if two_d else 6.5, 5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if two_d else 1, squeeze=False)[0]
    iterations, costs = zip(*model.costs) if model.costs else ((), ())
    scores = [f"train accuracy {100 * model.accuracy(X, Y):.1f} %"]
    if X_test.shape[1]:
        scores.append(f"test accuracy {100 * model.accuracy(X_test, Y_test):.1f} %")
    axes[0].plot(iterations, costs, marker=".")
    axes[0].set_xlabel("iteration")
    axes[0].set_ylabel("cost")
    axes[0].set_title(f"{title}\n{', '.join(scores)}")
    if two_d:
        ax = axes[1]
        both = np.hstack([X, X_test])
        classes = np.unique(np.concatenate([Y.ravel(), Y_test.ravel()]))
        colors = [f"C{i % 10}" for i in range(len(classes))]
        pad = 0.5
        xs = np.linspace(both[0].min() - pad, both[0].max() + pad, 200)
        ys = np.linspace(both[1].min() - pad, both[1].max() + pad, 200)
        gx, gy = np.meshgrid(xs, ys)
        predicted = model.predict(np.vstack([gx.ravel(), gy.ravel()])).reshape(gx.shape)
        region = np.searchsorted(classes, predicted)  # class index per grid point
        ax.contourf(gx, gy, region, levels=np.arange(len(classes) + 1) - 0.5, cmap=ListedColormap(colors),
                    alpha=0.25)
        for i, c in enumerate(classes):
            for (Xs, Ys), marker, split in (((X, Y), "o", "train"), ((X_test, Y_test), "X", "test")):
                mask = Ys.ravel() == c
                if mask.any():
                    ax.scatter(Xs[0, mask], Xs[1, mask], c=colors[i], marker=marker, s=18 if split == "train" else 40,
                               edgecolors="k", linewidths=0.3 if split == "train" else 0.8,
                               label=f"class {c} ({split})")
        ax.set_xlabel("feature x1 (row 0 of X)")
        ax.set_ylabel("feature x2 (row 1 of X)")
        ax.set_title("decision boundary: shaded by predicted class;\ndots training, crosses test examples")
        ax.legend(loc="best", fontsize="small", framealpha=0.8)
    return fig


def plot_training(model: Any, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                  path: Path, title: str) -> None:
    fig = training_figure(model, train, test, title)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110), "plot")


@click.command()
@click.option("--dataset", type=click.Choice(DATASETS), default="planar", show_default=True)
@click.option("--model", "kind", type=click.Choice(MODELS), default="shallow", show_default=True)
@click.option("--layers", default="20,7,5", show_default=True, help="Hidden-layer sizes of the deep model.")
@click.option("--hidden-units", type=click.IntRange(min=1), default=4, show_default=True,
              help="Hidden units of the shallow model.")
@click.option("--backend", default=None, help="loops, numpy, numba, cupy or auto (default: $DLACCEL_BACKEND or numpy).")
@click.option("--learning-rate", type=float, default=None, help="Default: the model's own (the course's).")
@click.option("--iterations", type=click.IntRange(min=1), default=None, help="Default: the model's own.")
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True,
              help="Seeds the initial parameters and the train/test split.")
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True)
@click.option("--test-split", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True,
              help="Share of the examples held out for the test accuracy.")
@click.option("--save", "save_path", type=click.Path(path_type=Path), help="Write the trained model (.npz).")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path),
              help="Write the cost curve (and the decision boundary for 2-D data) as PNG.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
@handle_errors
def train(dataset: str, kind: str, layers: str, hidden_units: int, backend: str | None, learning_rate: float | None,
          iterations: int | None, seed: int, dtype: str, test_split: float, save_path: Path | None,
          plot_path: Path | None, progress: bool) -> None:
    """Train a logistic, shallow or deep model on a small data set and report its accuracy."""
    # Every argument is checked before the data set is loaded (digits imports scikit-learn).
    check_output_path(save_path, "--save", "model")
    check_output_path(plot_path, "--plot", "plot")
    if plot_path is not None:
        require_matplotlib("--plot")
    check_model_options(kind)
    t = prepare(dataset, kind, layers=_parse_layers(layers), hidden_units=hidden_units, backend=backend,
                learning_rate=learning_rate, iterations=iterations, seed=seed, dtype=dtype, test_split=test_split,
                split_option="--test-split")
    model = t.model
    out = console()
    out.print(f"training {type(model).__name__} on {dataset} ({t.X_train.shape[1]} training, "
              f"{t.X_test.shape[1]} test examples) with the {model.backend.name} backend, {t.num_iterations} "
              "iterations")
    note = getattr(model.backend, "first_call_note", None)
    if note:  # otherwise the first iteration looks hung for the seconds it takes
        out.print(f"{model.backend.name}: {note}; the first iteration waits for it")
    t.fit(progress=progress)
    train_acc, test_acc = t.accuracies()
    out.print(f"model: {model!r}")
    out.print(f"final cost: {model.costs[-1][1]:.6f}")
    out.print(f"train accuracy: {100 * train_acc:.2f} %")
    if test_acc is not None:
        out.print(f"test accuracy: {100 * test_acc:.2f} %")
    if save_path is not None:
        model.save(save_path)
        out.print(f"model written to {save_path}")
    if plot_path is not None:
        try:
            plot_training(model, (t.X_train, t.Y_train), (t.X_test, t.Y_test), plot_path,
                          f"{type(model).__name__} on {dataset}, {model.backend.name} backend")
        except Exception as exc:  # the results are out already; say what the plot hit, in one line
            raise CommandError(f"the plot could not be written to {plot_path}: {type(exc).__name__}: {exc}") \
                from None
        out.print(f"plot written to {plot_path}")
