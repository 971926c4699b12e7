"""``dlaccel train``: parse the options, :func:`dlaccel.training.prepare`, fit, print, save, plot."""

from __future__ import annotations

import shlex
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


def command_line(drop: list[str], extra: list[str]) -> str:
    """This command as typed (the options given on the command line), less ``drop``, plus ``extra``."""
    ctx = click.get_current_context()
    words = ["dlaccel", ctx.info_name or "train"]
    for param in ctx.command.params:
        if param.name in drop or not isinstance(param, click.Option) or param.name is None:
            continue
        if ctx.get_parameter_source(param.name) is not ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name]
        if param.is_flag:
            words.append(param.opts[0] if value else param.secondary_opts[0])
        else:
            words += [param.opts[0], str(value)]
    return shlex.join(words + extra)


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
@click.option("--workers", type=click.IntRange(min=1),
              help="Train data-parallel on a LocalCluster of N single-threaded worker processes (Dask).")
@click.option("--cluster", metavar="ADDRESS", help="Train data-parallel on the Dask scheduler at ADDRESS.")
@click.option("--checkpoint", "checkpoint_path", type=click.Path(path_type=Path),
              help="Write the model here every --checkpoint-every iterations, at the end and on Ctrl-C.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), help="Iterations between checkpoints.")
@click.option("--resume", "resume_path", type=click.Path(path_type=Path),
              help="Continue the model saved at PATH (a checkpoint) up to --iterations in total.")
@handle_errors
def train(dataset: str, kind: str, layers: str, hidden_units: int, backend: str | None, learning_rate: float | None,
          iterations: int | None, seed: int, dtype: str, test_split: float, save_path: Path | None,
          plot_path: Path | None, progress: bool, workers: int | None, cluster: str | None,
          checkpoint_path: Path | None, checkpoint_every: int | None, resume_path: Path | None) -> None:
    """Train a logistic, shallow or deep model on a small data set and report its accuracy.

    Ctrl-C stops at the last completed iteration, saves the model (to --checkpoint, else --save, else
    dlaccel-interrupted.npz), prints the command that resumes, and exits with status 130.
    """
    # Every argument is checked before the data set is loaded (digits imports scikit-learn).
    check_output_path(save_path, "--save", "model")
    check_output_path(plot_path, "--plot", "plot")
    check_output_path(checkpoint_path, "--checkpoint", "checkpoint")
    if plot_path is not None:
        require_matplotlib("--plot")
    check_model_options(kind)
    if workers is not None and cluster is not None:
        raise CommandError("--workers starts a local cluster and --cluster names one; give one of them")
    if checkpoint_every is not None and checkpoint_path is None:
        raise CommandError("--checkpoint-every needs --checkpoint PATH, the file to write")
    if workers is not None or cluster is not None:
        from ..distributed import require_distributed

        require_distributed()
    t = prepare(dataset, kind, layers=_parse_layers(layers), hidden_units=hidden_units, backend=backend,
                learning_rate=learning_rate, iterations=iterations, seed=seed, dtype=dtype, test_split=test_split,
                split_option="--test-split", resume=resume_path)
    model = t.model
    out = console()
    where = (f"on the Dask cluster at {cluster}" if cluster else f"on {workers} Dask workers" if workers
             else "in this process")
    resumed = f", resumed at iteration {model.iteration}" if resume_path is not None else ""
    out.print(f"training {type(model).__name__} on {dataset} ({t.X_train.shape[1]} training, "
              f"{t.X_test.shape[1]} test examples) with the {model.backend.name} backend {where}, "
              f"{t.num_iterations} iterations{resumed}")
    note = getattr(model.backend, "first_call_note", None)
    if note:  # otherwise the first iteration looks hung for the seconds it takes
        out.print(f"{model.backend.name}: {note}; the first iteration waits for it")
    try:
        t.fit(progress=progress, client=cluster, workers=workers, checkpoint=checkpoint_path,
              checkpoint_every=checkpoint_every)
    except KeyboardInterrupt:
        if model.iteration == 0:  # e.g. while a cluster starts: no model yet, and nothing to resume
            click.echo("interrupted before the first iteration; nothing to resume (run the command again)")
            raise SystemExit(130) from None
        path = checkpoint_path or save_path or Path("dlaccel-interrupted.npz")
        # Saved here even with a checkpoint: a Ctrl-C before fit's loop (a cluster starting, on a
        # resumed run) finds nothing written yet.
        model.save(path)
        # click.echo, not rich: a command to copy must not be wrapped
        click.echo(f"interrupted at iteration {model.iteration}; the model is saved to {path}")
        click.echo("resume with: " + command_line(["resume_path"], ["--resume", str(path)]))
        raise SystemExit(130) from None
    if t.num_iterations == 0:
        out.print(f"the model is already at iteration {model.iteration} of {t.total_iterations}; nothing to train")
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
