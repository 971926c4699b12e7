"""``dlaccel train``: parse the options, :func:`dlaccel.training.prepare`, fit, print, save, plot."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from ..plots import save_png, training_figure
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
            fig = training_figure(model, (t.X_train, t.Y_train), (t.X_test, t.Y_test),
                                  f"{type(model).__name__} on {dataset}, {model.backend.name} backend")
            save_png(fig, plot_path, dpi=110)
        except Exception as exc:  # the results are out already; say what the plot hit, in one line
            raise CommandError(f"the plot could not be written to {plot_path}: {type(exc).__name__}: {exc}") \
                from None
        out.print(f"plot written to {plot_path}")
