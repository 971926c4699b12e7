"""Hyperparameter sweeps: one model class, a grid of its settings, every trial trained and compared.

The course's empirical loop in one call: ``dlaccel.sweep(ShallowNN, {"n_h": [1, 2, 4]}, X, Y)``
trains one model per grid point (the Cartesian product, first key slowest), records its cost curve,
accuracies and time, and ranks the trials. Trials run in parallel on a Dask cluster (the one
``client=`` names, the user's current Client, or a LocalCluster started for the sweep; see
:func:`dlaccel.distributed.client_for`), the data sent to each worker once; without ``distributed``
they run in this process, one after another. Each trial is deterministic from its own seed, so
the numbers do not depend on the number of workers or on which worker ran it. A trial that fails
with a dlaccel error (a diverging learning rate) is recorded with its message, never dropped.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import json
import math
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import _validation as v
from ._files import atomic_write, check_writable
from .errors import DlaccelError, InputError, ModelFileError, TrainingDivergedError
from .plots import show_value

# fit's arguments a grid may vary (the rest of fit's, like progress and checkpoints, make no sense per trial).
FIT_KEYS = ("learning_rate", "num_iterations", "cost_every")
INTERRUPTED = "interrupted after"  # how a stopped sweep's ran_on begins

# The command line's option names (``dlaccel train``'s) and what each becomes in a grid.
CLI_KEYS: dict[str, str] = {
    "hidden_units": "n_h", "layers": "layer_dims", "learning_rate": "learning_rate",
    "iterations": "num_iterations", "cost_every": "cost_every", "activation": "hidden_activation",
    "hidden_activation": "hidden_activation", "initialization": "initialization", "seed": "seed",
    "dtype": "dtype", "backend": "backend",
}
_INT_KEYS = {"n_h", "num_iterations", "cost_every", "seed"}
_FLOAT_KEYS = {"learning_rate"}


def valid_keys(model_class: type) -> list[str]:
    """The grid keys ``model_class`` takes: its constructor's arguments, then fit's :data:`FIT_KEYS`."""
    params = inspect.signature(model_class).parameters.values()
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)] + list(FIT_KEYS)


def parse_grid(options: Mapping[str, str], n_x: int | None = None, n_y: int | None = None) -> dict[str, list]:
    """A grid from the command line's comma lists: ``{"hidden_units": "1,2,3", "learning_rate":
    "0.1,1.2"}`` -> ``{"n_h": [1, 2, 3], "learning_rate": [0.1, 1.2]}``.

    Keys are ``dlaccel train``'s option names (dashes or underscores): ``hidden_units`` (``n_h``),
    ``layers``, ``learning_rate``, ``iterations`` (``num_iterations``), ``cost_every``,
    ``activation`` (``hidden_activation``), ``initialization``, ``seed``, ``dtype``, ``backend``.
    ``layers`` lists the hidden sizes of a deep model, alternatives separated by ``;`` (``"8,4;16,8"``);
    with ``n_x`` and ``n_y`` (the data's feature count and output size) they become full ``layer_dims``
    (``[n_x, 8, 4, n_y]``), without them they stay the hidden sizes. Raises :class:`InputError`
    naming the option and the value that could not be read.
    """
    grid: dict[str, list] = {}
    for raw_key, text in options.items():
        key = str(raw_key).strip().lstrip("-").replace("-", "_")
        if key not in CLI_KEYS:
            raise InputError(f"unknown sweep option {raw_key!r}; expected one of {', '.join(sorted(CLI_KEYS))}")
        name = CLI_KEYS[key]
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{key} needs a comma-separated list of values, got {text!r}")
        if name == "layer_dims":
            values: list = []
            for alt in text.split(";"):
                hidden = [_parse_one(key, tok, int) for tok in alt.split(",") if tok.strip()]
                if not hidden:
                    raise InputError(f"{key}: empty alternative in {text!r}; expected hidden sizes like 8,4;16,8")
                values.append([n_x, *hidden, n_y] if n_x is not None and n_y is not None else hidden)
        else:
            kind = int if name in _INT_KEYS else float if name in _FLOAT_KEYS else str
            values = [_parse_one(key, tok, kind) for tok in text.split(",")]
        if name in grid:
            raise InputError(f"{key} is given twice (as {name}); give each setting once")
        grid[name] = values
    return grid


def _parse_one(key: str, token: str, kind: type) -> Any:
    token = token.strip()
    if not token:
        raise InputError(f"{key}: empty value in its comma list")
    if kind is str:
        return token
    try:
        return kind(token)
    except ValueError:
        raise InputError(f"{key}: cannot read {token!r} as {'an integer' if kind is int else 'a number'}") from None


@dataclasses.dataclass
class Trial:
    """One grid point trained: ``params`` holds that trial's grid values only.

    ``error`` is ``None``, or the message of the dlaccel error that ended the trial (then the
    accuracies and ``final_cost`` are ``None``, ``costs`` holds what was recorded before, and
    ``diverged_at`` the iteration for a diverged fit). ``model`` is the fitted model (``None``
    after :meth:`SweepResult.from_json`)."""

    params: dict[str, Any]
    costs: list[tuple[int, float]]
    final_cost: float | None
    train_accuracy: float | None
    val_accuracy: float | None
    seconds: float
    error: str | None = None
    model: Any = dataclasses.field(default=None, repr=False, compare=False)
    diverged_at: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def label(self) -> str:
        """The trial's parameters as ``key=value`` text, for legends and titles."""
        return ", ".join(f"{k}={show_value(val)}" for k, val in self.params.items()) or "trial"

    def to_dict(self) -> dict[str, Any]:
        return {"params": self.params, "costs": [list(c) for c in self.costs], "final_cost": self.final_cost,
                "train_accuracy": self.train_accuracy, "val_accuracy": self.val_accuracy,
                "seconds": self.seconds, "error": self.error, "diverged_at": self.diverged_at}


@dataclasses.dataclass
class SweepResult:
    """Every trial of a sweep, in grid order, and how they compare."""

    model_class: str
    grid: dict[str, list]
    fixed: dict[str, Any]
    trials: list[Trial]
    validation: bool
    ran_on: str = ""  # where the trials ran, or "interrupted after k of n trials"
    seconds: float = 0.0
    # The training data (host arrays), for plot(); not written to JSON.
    data: tuple[Any, Any] | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def best(self) -> Trial | None:
        """The highest validation accuracy (training accuracy without a validation set); ties go to
        the lower final cost, then to the earlier trial. Failed trials never win; ``None`` if all failed."""
        done = [t for t in self.trials if t.ok]
        if not done:
            return None
        return max(done, key=lambda t: (_score(t, self.validation), -(t.final_cost or 0.0)))

    @property
    def interrupted(self) -> bool:
        """Whether Ctrl-C stopped the sweep before every trial ran (see :class:`SweepInterrupted`)."""
        return self.ran_on.startswith(INTERRUPTED)

    @property
    def varied(self) -> list[str]:
        """The grid keys with more than one value (those that tell trials apart)."""
        return [k for k, vals in self.grid.items() if len(vals) > 1] or list(self.grid)

    def table(self) -> str:
        """The trials as a text table, the best marked with ``*``; accuracies in percent."""
        best = self.best
        head = ["", "#", *self.grid, "final cost", "train acc"] + (["val acc"] if self.validation else [])
        head += ["seconds", "status"]
        rows = []
        for i, t in enumerate(self.trials):
            row = ["*" if t is best else "", str(i + 1), *(show_value(t.params[k]) for k in self.grid),
                   "-" if t.final_cost is None else f"{t.final_cost:.6f}", _pct(t.train_accuracy)]
            if self.validation:
                row.append(_pct(t.val_accuracy))
            row += [f"{t.seconds:.2f}", "ok" if t.ok else f"failed: {_first_clause(t.error)}"]
            rows.append(row)
        widths = [max(len(r[j]) for r in [head, *rows]) for j in range(len(head) - 1)]
        numeric = set(range(1, len(head) - 1)) - set(range(2, 2 + len(self.grid)))

        def line(cells: list[str]) -> str:
            out = [c.rjust(w) if j in numeric else c.ljust(w) for j, (c, w) in enumerate(zip(cells, widths))]
            return "  ".join([*out, cells[-1]]).rstrip()

        return "\n".join([line(head), *(line(r) for r in rows)])

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {"model_class": self.model_class, "grid": self.grid, "fixed": self.fixed,
                "validation": self.validation, "ran_on": self.ran_on, "seconds": self.seconds,
                "best": None if best is None else self.trials.index(best),
                "trials": [t.to_dict() for t in self.trials]}

    def to_json(self, path: Any) -> None:
        """Write :meth:`to_dict` as JSON, atomically (a failed write leaves no partial file)."""
        path = check_writable(path, "sweep JSON")
        atomic_write(path, lambda f: f.write(json.dumps(self.to_dict(), indent=2, default=_jsonable).encode()),
                     "sweep JSON")

    @classmethod
    def from_json(cls, path: Any) -> SweepResult:
        """A result read back from :meth:`to_json` (without the fitted models)."""
        try:
            data = json.loads(Path(path).read_text())
            trials = [Trial(params=t["params"], costs=[(int(i), float(c)) for i, c in t["costs"]],
                            final_cost=t["final_cost"], train_accuracy=t["train_accuracy"],
                            val_accuracy=t["val_accuracy"], seconds=t["seconds"], error=t["error"],
                            diverged_at=t.get("diverged_at")) for t in data["trials"]]
            return cls(model_class=data["model_class"], grid=data["grid"], fixed=data["fixed"], trials=trials,
                       validation=data["validation"], ran_on=data.get("ran_on", ""),
                       seconds=data.get("seconds", 0.0))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelFileError(f"{path} is not a sweep JSON written by SweepResult.to_json: "
                                 f"{type(exc).__name__}: {exc}") from exc

    def plot(self, path: Any, X: Any = None, Y: Any = None) -> None:
        """Write the sweep as one PNG, atomically: every trial's cost curve on one axes and, for
        two-dimensional data, one decision-boundary panel per trial (the course's figure). ``X``,
        ``Y`` are the points drawn (by default the training data the sweep ran on)."""
        from .plots import save_png, sweep_figure

        path = check_writable(path, "sweep plot")
        if X is None and self.data is not None:
            X, Y = self.data
        save_png(sweep_figure(self, X, Y), path, "sweep plot")

    def figure(self, X: Any = None, Y: Any = None) -> Any:
        """The matplotlib Figure :meth:`plot` writes."""
        from .plots import sweep_figure

        if X is None and self.data is not None:
            X, Y = self.data
        return sweep_figure(self, X, Y)


def _first_clause(error: str | None) -> str:
    """The error's type and first clause, for one table row (the full message stays in the Trial)."""
    return (error or "").split(";")[0]


def _score(t: Trial, validation: bool) -> float:
    acc = t.val_accuracy if validation else t.train_accuracy
    return -1.0 if acc is None else acc


def _pct(acc: float | None) -> str:
    return "-" if acc is None else f"{100 * acc:.2f} %"


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if hasattr(x, "name") and type(x).__module__.startswith("dlaccel.backends"):
        return x.name
    raise TypeError(f"cannot write {type(x).__name__} {x!r} as JSON")


# -- one trial: the same function in this process and on a worker ----------------------------------


def run_trial(model_class: type, init: dict[str, Any], fit: dict[str, Any], params: dict[str, Any],
              data: tuple[Any, Any, Any, Any]) -> Trial:
    """Build and fit one model; a dlaccel error during the fit is recorded in the Trial."""
    X, Y, X_val, Y_val = data
    # A fresh, aligned copy: NumPy and BLAS choose kernels by alignment, and data that arrived over
    # the wire may sit at any offset; this keeps a trial bit for bit the same wherever it runs.
    X, Y = np.array(X, order="C"), np.array(Y, order="C")
    start = time.perf_counter()
    model = model_class(**init)
    error, diverged_at = None, None
    try:
        model.fit(X, Y, **fit)
    except DlaccelError as exc:
        error = f"{type(exc).__name__}: {exc}"
        diverged_at = exc.iteration if isinstance(exc, TrainingDivergedError) else None
    seconds = time.perf_counter() - start
    costs = [(int(i), float(c)) for i, c in model.costs]
    if error is not None:
        return Trial(params, costs, None, None, None, seconds, error, model, diverged_at)
    return Trial(params, costs, costs[-1][1] if costs else None, float(model.accuracy(X, Y)),
                 None if X_val is None else float(model.accuracy(X_val, Y_val)), seconds, None, model)


# -- the driver ------------------------------------------------------------------------------------


def _check_grid(model_class: Any, grid: Any, fixed: Any) -> tuple[dict[str, list], dict[str, Any]]:
    from .models import Model

    if not (isinstance(model_class, type) and issubclass(model_class, Model)):
        raise InputError(f"sweep needs a model class such as dlaccel.ShallowNN, got {model_class!r}")
    if not isinstance(grid, Mapping) or not grid:
        raise InputError(f"grid must be a non-empty dict of setting -> list of values, got {grid!r}")
    fixed = {} if fixed is None else fixed
    if not isinstance(fixed, Mapping):
        raise InputError(f"fixed must be a dict of setting -> value, got {type(fixed).__name__}")
    valid = valid_keys(model_class)
    unknown = [k for k in [*grid, *fixed] if k not in valid]
    if unknown:
        raise InputError(f"{model_class.__name__} has no setting {', '.join(map(repr, unknown))}; "
                         f"the grid and fixed take {', '.join(valid)}")
    both = [k for k in grid if k in fixed]
    if both:
        raise InputError(f"{', '.join(both)} is in both the grid and fixed; give each setting in one of them")
    out: dict[str, list] = {}
    for key, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence | np.ndarray):
            raise InputError(f"grid[{key!r}] must be a list of values to try, got {values!r}; "
                             f"write [{values!r}] or put it in fixed")
        if len(values) == 0:
            raise InputError(f"grid[{key!r}] is empty; give at least one value to try")
        out[key] = [x.item() if isinstance(x, np.generic) else x for x in values]
    return out, dict(fixed)


def _check_data(X: Any, Y: Any, validation: Any) -> tuple[Any, Any, Any, Any]:
    from .distributed import is_dask_array

    if is_dask_array(X) or is_dask_array(Y):
        raise InputError("sweep trains each trial on one worker and needs NumPy arrays; pass X.compute(), "
                         "Y.compute() (use fit(client=...) to spread one model's data over a cluster)")

    def pair(A: Any, B: Any, n_x: int | None) -> tuple[Any, Any]:
        B = np.asarray(B) if not v.is_cupy(B) else B
        return v.check_XY(A, B.reshape(1, -1) if B.ndim == 1 else B, n_x)

    X, Y = pair(X, Y, None)
    if validation is None:
        return X, Y, None, None
    if not isinstance(validation, (tuple, list)) or len(validation) != 2:
        raise InputError(f"validation must be None or a pair (X_val, Y_val), got {type(validation).__name__}")
    X_val, Y_val = pair(validation[0], validation[1], X.shape[0])
    return X, Y, X_val, Y_val


def _plan(model_class: type, grid: dict[str, list], fixed: dict[str, Any],
          n_x: int) -> list[tuple[dict[str, Any], dict[str, Any], dict[str, Any], int]]:
    """Every trial's (constructor args, fit args, grid values), each model built once here so that a
    bad value in any trial is refused before any training starts."""
    plan = []
    for combo in itertools.product(*grid.values()):
        params = dict(zip(grid, combo))
        settings = {**fixed, **params}
        init = {k: x for k, x in settings.items() if k not in FIT_KEYS}
        fit = {k: x for k, x in settings.items() if k in FIT_KEYS}
        where = f" (trial {params})"
        try:
            model = model_class(**init)
            if "learning_rate" in fit:
                v.check_learning_rate(fit["learning_rate"])
            for key, minimum in (("num_iterations", 0), ("cost_every", 1)):
                if key in fit:
                    v.check_count(fit[key], key, minimum)
        except DlaccelError as exc:
            raise type(exc)(f"{exc}{where}") from None
        except TypeError as exc:  # a missing required argument, such as ShallowNN's n_h
            raise InputError(f"{model_class.__name__}: {exc}{where}; put it in the grid or in fixed") from None
        if model.layer_dims is not None and model.layer_dims[0] != n_x:
            raise InputError(f"layer_dims {model.layer_dims} starts with n_x = {model.layer_dims[0]}, but X has "
                             f"{n_x} features (shape ({n_x}, m)){where}")
        plan.append((init, fit, params, _work(model, fit, n_x)))
    return plan


def _work(model: Any, fit: dict[str, Any], n_x: int) -> int:
    """A trial's rough cost (iterations x weights), so the cluster starts the longest trials first and
    a big one does not run alone at the end."""
    dims = model.layer_dims or [n_x, getattr(model, "n_h", 1), 1]
    weights = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    return int(fit.get("num_iterations", model.default_num_iterations)) * weights


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep, with the trials that finished: ``result`` (a :class:`SweepResult` of
    those, in grid order) out of ``planned``."""

    def __init__(self, result: SweepResult, planned: int):
        super().__init__(f"sweep interrupted after {len(result.trials)} of {planned} trials")
        self.result, self.planned = result, planned


def sweep(model_class: type, grid: Mapping[str, Sequence[Any]], X: Any, Y: Any, *,
          fixed: Mapping[str, Any] | None = None, validation: tuple[Any, Any] | None = None,
          client: Any = None, n_workers: int | None = None,
          progress: Callable[[Trial], None] | None = None) -> SweepResult:
    """Train ``model_class`` at every point of ``grid`` and compare.

    ``grid`` maps settings to the values to try: the model's constructor arguments (``n_h``,
    ``layer_dims``, ``hidden_activation``, ``initialization``, ``seed``, ``dtype``, ``backend``, ...)
    and fit's ``learning_rate``, ``num_iterations``, ``cost_every``; ``fixed`` holds settings shared by
    every trial. Trials are the Cartesian product in the grid's key order (first key slowest).
    ``validation=(X_val, Y_val)`` ranks by validation accuracy. Everything is checked before any
    work: unknown keys, bad values in any trial, the data; each is an :class:`InputError` (or the
    data's :class:`ShapeError`/:class:`DtypeError`).

    Trials run on ``client`` (a ``distributed.Client`` or scheduler address), else the current
    Client, else a LocalCluster of ``n_workers`` single-threaded processes (default: one per core)
    started for the sweep. ``n_workers=0`` runs them here, one after another, as does a machine
    without ``distributed`` (with a warning saying so). ``progress(trial)`` is called as each trial
    finishes (in the order they finish). Ctrl-C raises :class:`SweepInterrupted`, a
    ``KeyboardInterrupt`` that carries the trials finished so far.
    """
    grid, fixed_ = _check_grid(model_class, grid, fixed)
    X, Y, X_val, Y_val = _check_data(X, Y, validation)
    if n_workers is not None and (isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 0):
        raise InputError(f"n_workers must be a non-negative integer or None, got {n_workers!r}")
    plan = _plan(model_class, grid, fixed_, X.shape[0])
    data = (X, Y, X_val, Y_val)

    start = time.perf_counter()
    local = n_workers == 0 and client is None
    if not local and client is None and n_workers is None:
        try:
            import distributed  # noqa: F401
        except ImportError:
            warnings.warn(f"distributed is not installed: running the {len(plan)} trials in this process, one "
                          "after another (pip install 'dlaccel[distributed]' runs them in parallel)", stacklevel=2)
            local = True
    report = progress or (lambda trial: None)
    done: dict[int, Trial] = {}  # by grid position, as they finish

    def result(ran_on: str) -> SweepResult:
        return SweepResult(model_class.__name__, grid, fixed_, [done[i] for i in sorted(done)], X_val is not None,
                           ran_on, time.perf_counter() - start, (v.to_host(X), v.to_host(Y)))

    try:
        if local:
            for i, (init, fit, params, _) in enumerate(plan):
                done[i] = run_trial(model_class, init, fit, params, data)
                report(done[i])
            ran_on = "this process"
        else:
            ran_on = _on_cluster(model_class, plan, data, client, n_workers, report, done)
    except KeyboardInterrupt:
        raise SweepInterrupted(result(f"{INTERRUPTED} {len(done)} of {len(plan)} trials"), len(plan)) from None
    return result(ran_on)


def _on_cluster(model_class: type, plan: list, data: tuple, client: Any, n_workers: int | None,
                report: Callable[[Trial], None], done: dict[int, Trial]) -> str:
    from distributed import as_completed

    from .distributed import client_for

    with client_for(client, n_workers) as connected:
        n = len(connected.scheduler_info(n_workers=-1)["workers"])
        # The data goes to every worker once; each trial task names it by its future.
        token = uuid.uuid4().hex
        [shared] = connected.scatter([data], broadcast=True, hash=False)
        futures = [connected.submit(run_trial, model_class, init, fit, params, shared, pure=False,
                                    key=f"dlaccel-trial-{token}-{i}", priority=work)
                   for i, (init, fit, params, work) in enumerate(plan)]
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for future, trial in as_completed(futures, with_results=True, loop=connected.loop):
                done[index[future.key]] = trial
                report(trial)
        finally:
            connected.cancel([*futures, shared], force=True)
    return f"{n}-worker Dask cluster"


def total_seconds(trials: Sequence[Trial]) -> float:
    """The trials' own run time added up: what running them one after another costs."""
    return math.fsum(t.seconds for t in trials)
