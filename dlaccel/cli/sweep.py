"""``dlaccel sweep``: a grid of ``train``'s settings, every trial trained (in parallel on Dask), the
table with the best marked, the JSON and the picture. The work is :func:`dlaccel.sweep`'s."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .._files import atomic_write
from ..sweep import SweepInterrupted, parse_grid, sweep
from ..training import MODEL_CLASSES, MODELS, load_dataset, output_size, split
from ._common import CommandError, check_output_path, console, handle_errors, require_matplotlib
from .train import DATASETS, check_model_options


@click.command("sweep")
@click.option("--dataset", type=click.Choice(DATASETS), default="planar", show_default=True)
@click.option("--model", "kind", type=click.Choice(MODELS), default="shallow", show_default=True)
@click.option("--hidden-units", metavar="LIST", help="Hidden units of the shallow model, e.g. 1,2,3,4,5,20,50 "
              "(default 4).")
@click.option("--layers", metavar="LIST", help="Hidden sizes of the deep model, candidates separated by ';', "
              "e.g. '8,4;16,8' (default 20,7,5).")
@click.option("--learning-rate", metavar="LIST", help="e.g. 0.01,0.1,1.2 (default: the model's own).")
@click.option("--iterations", metavar="LIST", help="e.g. 1000,5000 (default: the model's own).")
@click.option("--hidden-activation", metavar="LIST", help="e.g. tanh,relu (default: the model's own).")
@click.option("--backend", default=None, help="loops, numpy, numba, cupy or auto (default: $DLACCEL_BACKEND or numpy).")
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True,
              help="Seeds every trial's initial parameters and the train/test split.")
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True)
@click.option("--test-split", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True,
              help="Share of the examples held out; the trials are ranked by their accuracy on it (0: by "
                   "training accuracy).")
@click.option("--workers", type=click.IntRange(min=0),
              help="Run the trials on a LocalCluster of N worker processes (0: one after another in this process; "
                   "default: your current Dask client, else one worker per core).")
@click.option("--cluster", metavar="ADDRESS", help="Run the trials on the Dask scheduler at ADDRESS.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write every trial as JSON.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path),
              help="Write the cost curves (and, for 2-D data, one decision boundary per trial) as PNG.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar over trials.")
@handle_errors
def sweep_command(dataset: str, kind: str, backend: str | None, seed: int, dtype: str, test_split: float,
                  workers: int | None, cluster: str | None, json_path: Path | None, plot_path: Path | None,
                  progress: bool, **lists: str | None) -> None:
    """Train one model per combination of the listed settings and compare them (the course's
    hyperparameter experiments). Options marked LIST take comma-separated candidates."""
    check_output_path(json_path, "--json", "sweep JSON")
    check_output_path(plot_path, "--plot", "sweep plot")
    if plot_path is not None:
        require_matplotlib("--plot")
    check_model_options(kind)
    if kind == "logistic" and lists["hidden_activation"] is not None:
        raise CommandError("--hidden-activation applies to --model shallow or deep, not to --model logistic")
    if workers is not None and cluster is not None:
        raise CommandError("--workers starts a local cluster and --cluster names one; give one of them")
    X, Y = load_dataset(dataset)
    X_train, Y_train, X_test, Y_test = split(X, Y, test_split, seed, "--test-split")
    n_x, n_y = X_train.shape[0], output_size(Y_train)
    grid = parse_grid({k: text for k, text in lists.items() if text is not None}, n_x, n_y)
    fixed: dict[str, Any] = {"seed": seed, "dtype": dtype, "backend": backend}
    if kind == "shallow" and "n_h" not in grid:
        fixed["n_h"] = 4
    if kind == "deep" and "layer_dims" not in grid:
        fixed["layer_dims"] = [n_x, 20, 7, 5, n_y]
    if any(len(values) > 1 for values in grid.values()):  # single values are settings, not a dimension
        for key in [k for k, values in grid.items() if len(values) == 1]:
            fixed[key] = grid.pop(key)[0]
    if not grid:
        raise CommandError("nothing to sweep: give at least one of --hidden-units, --layers, --learning-rate, "
                           "--iterations, --hidden-activation as a comma list")
    validation = (X_test, Y_test) if X_test.shape[1] else None
    out = console()
    total = 1
    for values in grid.values():
        total *= len(values)
    try:
        with _trial_progress(progress, total, validation is not None) as report:
            result = sweep(MODEL_CLASSES[kind], grid, X_train, Y_train, fixed=fixed, validation=validation,
                           client=cluster, n_workers=workers, progress=report)
    except SweepInterrupted as stop:  # Ctrl-C: the finished trials are reported and written all the same
        result = stop.result
        if not result.trials:
            click.echo(f"interrupted before any of the {total} trials finished; nothing is written")
            raise SystemExit(130) from None
    where = f": {result.ran_on}" if result.interrupted else f" on {result.ran_on}"
    out.print(f"{total} trials of {MODEL_CLASSES[kind].__name__} on {dataset} ({X_train.shape[1]} training, "
              f"{X_test.shape[1]} test examples){where}, {result.seconds:.1f} s")
    click.echo(result.table())
    best = result.best
    out.print(f"best: {best.label()}" if best is not None else "every trial failed")
    if json_path is not None:
        text = json.dumps(result.to_dict(), indent=2) + "\n"
        atomic_write(json_path, lambda f: f.write(text.encode("utf-8")), "sweep JSON")
        out.print(f"JSON written to {json_path}")
    if plot_path is not None:
        result.plot(plot_path)
        out.print(f"plot written to {plot_path}")
    if result.interrupted:
        click.echo(f"interrupted: {len(result.trials)} of {total} trials finished, and only those are shown"
                   + (" and written" if json_path or plot_path else ""))
        raise SystemExit(130)


class _trial_progress:
    """A bar over the trials with the best accuracy so far (rich, on stderr)."""

    def __init__(self, enabled: bool, total: int, validation: bool):
        self.enabled, self.total, self.validation = enabled, total, validation
        self.best: float | None = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return lambda trial: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("trials"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[best]}"), TimeElapsedColumn(),
                            console=Console(stderr=True, markup=False))
        self.bar.__enter__()
        self.task = self.bar.add_task("trials", total=self.total, best="")
        return self.update

    def update(self, trial: Any) -> None:
        acc = trial.val_accuracy if self.validation else trial.train_accuracy
        if acc is not None and (self.best is None or acc > self.best):
            self.best = acc
        best = "" if self.best is None else f"best {'val' if self.validation else 'train'} acc {100 * self.best:.2f} %"
        self.bar.update(self.task, advance=1, best=best)

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.bar.__exit__(*exc)

