"""The ``dlaccel`` commands: ``info``, ``bench``, ``train`` (click + rich, the ``cli`` extra).

Every error a user can cause (unknown names, unwritable paths, missing optional libraries, a
diverged training run) ends as one ``Error:`` line and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np
from click.core import ParameterSource
from rich import box
from rich.console import Console
from rich.table import Table

from .. import __version__
from .._files import atomic_write, check_writable
from .._validation import check_learning_rate
from ..backends import get_backend
from ..errors import DlaccelError, InputError, MissingDependencyError
from . import report as rep
from . import sysinfo
from .runner import ROW_TIMEOUT_S, resolve_targets, run
from .workloads import PROFILES, WORKLOADS, select_workloads

DATASETS = ("planar", "moons", "circles", "blobs", "gaussian_quantiles", "digits")  # dlaccel.datasets.LOADERS
MODELS = ("logistic", "shallow", "deep")


class CommandError(click.ClickException):
    """Printed by click as one ``Error: ...`` line; exit status 1."""


def _handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (DlaccelError, OSError) as exc:
            raise CommandError(str(exc)) from None

    return wrapper


def _console() -> Console:
    # Off a terminal (pipes, CI logs, tests) rich would wrap at 80 columns unless COLUMNS says
    # otherwise. markup=False: messages carry brackets ('dlaccel[cuda12]', a backend's error) that
    # rich would otherwise eat as markup.
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
    return Console(width=width, highlight=False, markup=False)


def check_output_path(path: Path | None, option: str, what: str) -> None:
    """Fail before any work when ``path`` cannot be written (``what`` names it in the message)."""
    if path is None:
        return
    try:
        check_writable(path, what)
    except OSError as exc:
        raise CommandError(f"{option}: {exc}") from None


def require_matplotlib(option: str) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CommandError(f"{option} needs matplotlib: pip install 'dlaccel[plot]'") from None


def _split(value: str | None) -> list[str] | None:
    return [v for v in (s.strip() for s in value.split(",")) if v] if value else None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dlaccel")
def cli() -> None:
    """dlaccel: the building blocks of fully-connected nets on loops, NumPy, Numba and CuPy, measured.

    \b
    dlaccel info     versions, backends, BLAS, CPU and GPU
    dlaccel bench    the ladder loops -> numpy -> numba -> cupy (and PyTorch) side by side
    dlaccel train    train a model on a small data set, with a progress bar
    """


# -- info -----------------------------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the information as JSON.")
@_handle_errors
def info(as_json: bool) -> None:
    """Versions, every backend (available or why not), BLAS kernel and threads, CPU and GPU."""
    system = sysinfo.collect()
    if as_json:
        click.echo(json.dumps(system, indent=2))
        return
    console = _console()
    versions = Table(title="versions", show_header=False)
    for name, version in system["versions"].items():
        versions.add_row(name, version or "not installed")
    console.print(versions)
    backends = Table(title="backends")
    for column in ("backend", "available", "why not"):
        backends.add_column(column)
    for name, state in system["backends"].items():
        backends.add_row(name, "yes" if state["available"] else "no", state["reason"] or "")
    console.print(backends)
    pools = Table(title="thread pools (threadpoolctl)")
    for column in ("api", "library", "version", "kernel", "threads"):
        pools.add_column(column)
    for pool in system["thread_pools"]:
        pools.add_row(*(str(pool[k]) for k in ("api", "library", "version", "kernel", "threads")))
    console.print(pools)
    if system["thread_pools_reason"]:
        console.print(system["thread_pools_reason"])
    cpu = system["cpu"]
    console.print(f"CPU: {cpu['model']} ({cpu['machine']}), {cpu['logical_cores']} logical cores, "
                  f"{cpu['usable_cores']} usable by this process")
    if system["numba_threads"] is not None:
        console.print(f"Numba threads: {system['numba_threads']}")
    for gpu in system["gpus"]:
        memory = f"{gpu['memory_bytes'] / 2**30:.1f} GiB" if gpu["memory_bytes"] else "memory unknown"
        console.print(f"GPU {gpu['index']}: {gpu['name']}, {memory} (via {gpu['source']})")
    if not system["gpus"]:
        console.print(f"GPU: none found ({system['gpu_reason'] or 'no CUDA device'})")
    for key, value in system["env"].items():
        console.print(f"environment: {key}={value}")


# -- bench ----------------------------------------------------------------------------------------

BENCH_HELP = f"""Run the workloads on every available backend and PyTorch, print the table.

Each backend (and PyTorch) is timed in a fresh process of its own, one after the other, so that
one runtime's thread pool cannot slow another's rows; this process measures the machine's limits
and prints the table. Each result is checked against the NumPy backend before it is timed; the
first call (Numba's compilation or cache load, CuPy's kernel build) is reported apart from the warm
median. Rates are GFLOP/s or GB/s (bytes read + written), shares are of this machine's limits
measured in the same run.

\b
Workloads: {", ".join(WORKLOADS)}
Groups: elementwise (the six activations), deep (both DeepNN steps)

\b
JSON (--json): schema "dlaccel-bench/1"; created, profile, dtype, threads; isolation (mode
"process" or "in-process", parent_pid, row_timeout_s, workers per backend: pid, pids, exit_codes,
blas_threads, numba_threads, thread_pools, wall_s, torch_version/torch_threads for the peer);
system (versions, platform, cpu, thread_pools with BLAS library/kernel/threads,
thread_pools_reason, numba_threads, env, backends, gpus, gpu_reason); limits.host (and .device,
with device_backends naming the backends held to it): dtype, gemm_n, gemm_gflops, copy_bytes,
copy_gbps; peer (name, available, version, threads); workloads (title, group, unit, size,
describe); results[] with workload, group, backend, unit, size, measured_size, extrapolation,
first_call_s, median_s, q1_s, q3_s, min_s, max_s, samples, calls_per_sample, check (passed,
max_rel_error, tolerance, message), rate, rate_unit, limit, share_of_limit, speedup_vs_loops,
speedup_vs_numpy, overhead_us, error, pid; notes; wall_s.
"""


@cli.command(help=BENCH_HELP)
@click.option("--backends", "-b", metavar="NAMES",
              help="Comma-separated backends, 'torch' for the PyTorch peer (default: every available one + torch).")
@click.option("--workloads", "-w", metavar="NAMES", help="Comma-separated workloads or groups (default: all).")
@click.option("--quick", is_flag=True, help="Smaller sizes and fewer samples (well under 90 s on 2 cores).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the full report as JSON.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path),
              help="Write a PNG bar chart of the speed-ups (log scale).")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--repeat", type=click.IntRange(min=1),
              help="Fewest timed samples per row (default 3; fast rows take more).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True), default=ROW_TIMEOUT_S,
              show_default=True, help="Seconds a backend's process may spend on one row before it is killed "
              "and the row reported as timed out.")
@click.option("--wide", is_flag=True,
              help="Every column in the table (size, first call, spread, notes); the default fits 80 columns.")
@click.option("--in-process", is_flag=True,
              help="Time every backend in this one process (rows then interfere through the runtimes' thread "
                   "pools; for debugging).")
@click.option("--profile", type=click.Choice(PROFILES), hidden=True, help="Size profile; 'tiny' is for tests.")
@_handle_errors
def bench(backends: str | None, workloads: str | None, quick: bool, json_path: Path | None, plot_path: Path | None,
          dtype: str, repeat: int | None, timeout_s: float, wide: bool, in_process: bool, profile: str | None) -> None:
    check_output_path(json_path, "--json", "JSON report")
    check_output_path(plot_path, "--plot", "chart")
    if plot_path is not None:
        require_matplotlib("--plot")
    chosen = select_workloads(_split(workloads))
    # Unknown or unavailable names fail here, before any work; run() takes these targets as they are.
    targets = resolve_targets(_split(backends))
    profile = profile or ("quick" if quick else "full")
    console, status_console = _console(), Console(stderr=True, markup=False)
    with status_console.status("starting") as status:
        result = run(targets, chosen, profile, dtype, repeat, progress=status.update, isolate=not in_process,
                     timeout_s=timeout_s)
    show_bench(result, console, wide)
    if json_path is not None:
        text = json.dumps(result, indent=2) + "\n"
        atomic_write(json_path, lambda f: f.write(text.encode("utf-8")), "JSON report")
        console.print(f"JSON written to {json_path}")
    failed = [r for r in result["results"] if r["error"]]
    problems = [f"{len(failed)} row(s) failed, see the table"] if failed else []
    if not result["results"]:  # every target dropped out (PyTorch failed to import in its child)
        problems.append("nothing was timed: " + ("; ".join(result["notes"]) or "no backend ran"))
    if plot_path is not None:
        try:
            rep.plot_speedups(result, plot_path)
            console.print(f"chart written to {plot_path}")
        except Exception as exc:  # the table and the JSON are out already; say what the chart hit
            problems.append(f"the chart could not be written to {plot_path}: {type(exc).__name__}: {exc}")
    if problems:
        raise CommandError("; ".join(problems))


def show_bench(result: dict[str, Any], console: Console, wide: bool = False) -> None:
    for line in rep.summary_lines(result):
        console.print(line)
    columns, cells = (rep.COLUMNS, rep.rows(result)) if wide else (rep.NARROW, rep.narrow_rows(result))
    # Light rules and single gaps: the narrow table fits 80 columns with room for long backend names.
    table = Table(title="dlaccel bench", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  collapse_padding=True)
    for column in columns:
        words = column in ("size", "note")  # wrap at spaces; numbers are never split
        table.add_column(column, justify="left" if column in ("workload", "backend", "size", "note") else "right",
                         no_wrap=not words, overflow="fold" if words else "ellipsis")
    previous = None
    for row in cells:
        if previous is not None and row[0] != previous:
            table.add_section()
        table.add_row(*row)
        previous = row[0]
    console.print(table)
    if not wide:
        for line in rep.footnotes(result):
            console.print(line)
    console.print("x loops, x numpy: speed-up over that backend's median in this run; "
                  + ("loops times marked 'extrapolated' scale linearly from the smaller size they ran at; "
                     "IQR/med: spread" if wide else "--wide adds sizes, first calls (compilation), spread, notes"))
    for note in result["notes"]:
        console.print(f"note: {note}")
    console.print(f"finished in {result['wall_s']:.1f} s")


# -- train ----------------------------------------------------------------------------------------


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


def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    from ..datasets import LOADERS

    return LOADERS[name]()


def split(X: np.ndarray, Y: np.ndarray, test_fraction: float, seed: int) -> tuple:
    """A shuffled train/test split of the columns."""
    m = X.shape[1]
    n_test = int(round(m * test_fraction))
    if test_fraction > 0 and n_test == 0:
        n_test = 1
    if n_test >= m:
        raise InputError(f"--test-split {test_fraction} leaves no training examples out of {m}")
    order = np.random.default_rng(seed).permutation(m)
    test, train = order[:n_test], order[n_test:]
    return X[:, train], Y[:, train], X[:, test], Y[:, test]


def build_model(kind: str, X: np.ndarray, Y: np.ndarray, layers: list[int], hidden_units: int, **common: Any) -> Any:
    from ..models import DeepNN, LogisticRegression, ShallowNN

    if kind == "logistic":
        return LogisticRegression(**common)
    if kind == "shallow":
        return ShallowNN(hidden_units, **common)
    classes = int(Y.max()) + 1
    return DeepNN([X.shape[0], *layers, 1 if classes <= 2 else classes], **common)


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


@cli.command()
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
@_handle_errors
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
    hidden = _parse_layers(layers)
    be = get_backend(backend)  # unknown or unavailable: one line, before any work
    if learning_rate is not None:
        check_learning_rate(learning_rate)
    X, Y = load_dataset(dataset)
    X_train, Y_train, X_test, Y_test = split(X, Y, test_split, seed)
    model = build_model(kind, X_train, Y_train, hidden, hidden_units, seed=seed, dtype=dtype, backend=be)
    n_iter = iterations if iterations is not None else model.default_num_iterations
    console = _console()
    console.print(f"training {type(model).__name__} on {dataset} ({X_train.shape[1]} training, "
                  f"{X_test.shape[1]} test examples) with the {model.backend.name} backend, {n_iter} iterations")
    note = getattr(model.backend, "first_call_note", None)
    if note:  # otherwise the first iteration looks hung for the seconds it takes
        console.print(f"{model.backend.name}: {note}; the first iteration waits for it")
    model.fit(X_train, Y_train, learning_rate=learning_rate, num_iterations=n_iter,
              cost_every=max(1, n_iter // 100), progress=progress)
    console.print(f"model: {model!r}")
    console.print(f"final cost: {model.costs[-1][1]:.6f}")
    console.print(f"train accuracy: {100 * model.accuracy(X_train, Y_train):.2f} %")
    if X_test.shape[1]:
        console.print(f"test accuracy: {100 * model.accuracy(X_test, Y_test):.2f} %")
    if save_path is not None:
        model.save(save_path)
        console.print(f"model written to {save_path}")
    if plot_path is not None:
        try:
            plot_training(model, (X_train, Y_train), (X_test, Y_test), plot_path,
                          f"{type(model).__name__} on {dataset}, {model.backend.name} backend")
        except Exception as exc:  # the results are out already; say what the plot hit, in one line
            raise CommandError(f"the plot could not be written to {plot_path}: {type(exc).__name__}: {exc}") \
                from None
        console.print(f"plot written to {plot_path}")


__all__ = ["cli"]
