"""Plotting helpers shared by the library and the command line: cost curves, decision boundaries,
the sweep's figure. matplotlib is imported inside each function (the ``plot`` extra), never by
``import dlaccel``; figures use the Agg canvas directly, so no display and no pyplot state."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._files import atomic_write
from .errors import MissingDependencyError

# Class colours of the decision-boundary panels (regions light, points dark), the course's red/blue first.
CLASS_COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf")


def new_figure(width: float, height: float) -> Any:
    """A matplotlib Figure on the Agg canvas (constrained layout), or MissingDependencyError."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependencyError("plotting needs matplotlib: pip install 'dlaccel[plot]'") from None
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Any, path: Any, what: str = "plot", dpi: int = 100) -> None:
    """Write ``fig`` as PNG atomically: a failure while drawing leaves no partial file."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi), what)


def cost_curves(ax: Any, curves: Sequence[tuple[str, Sequence[tuple[int, float]], int | None]]) -> None:
    """Each ``(label, [(iteration, cost), ...], diverged_at or None)`` as one line. A diverged curve
    ends in a red cross at its last finite cost (or at the iteration it diverged, when nothing was
    recorded) and says so in the legend. Log y when the finite costs span more than a decade."""
    finite = [c for _, costs, _ in curves for _, c in costs if math.isfinite(c) and c > 0]
    log = bool(finite) and max(finite) > 10 * min(finite)
    for label, costs, diverged_at in curves:
        its = [i for i, _ in costs]
        vals = [c for _, c in costs]
        if diverged_at is None:
            ax.plot(its, vals, label=label, linewidth=1.5)
            continue
        # The red cross ends the curve and shows in its legend entry.
        if its:
            ax.plot(its, vals, linestyle="--", linewidth=1.2, marker="x", markevery=[len(its) - 1], markersize=10,
                    markeredgewidth=2.5, markeredgecolor="red", label=f"{label} (diverged at {diverged_at})")
        else:
            y = max(finite) if finite else 1.0
            ax.plot([diverged_at], [y], marker="x", markersize=10, markeredgewidth=2.5, markeredgecolor="red",
                    linestyle="none", label=f"{label} (diverged at {diverged_at})")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("cost" + (" (log scale)" if log else ""))
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(fontsize="small", ncols=2 if len(curves) > 6 else 1)


def _labels(Y: np.ndarray) -> np.ndarray:
    """One label per example: ``Y`` itself for ``(1, m)``, the argmax of one-hot columns."""
    Y = np.asarray(Y)
    return Y.reshape(-1) if Y.ndim == 1 or Y.shape[0] == 1 else Y.argmax(axis=0)


def decision_boundary(ax: Any, model: Any, X: np.ndarray, Y: np.ndarray, title: str = "",
                      resolution: int = 200, legend: bool = True, test: tuple[Any, Any] | None = None) -> None:
    """The model's predicted class over the plane of 2-D ``X`` as coloured regions, with the points
    of ``X`` on top coloured by their label ``Y`` (one legend entry per class). With ``test=(X_test,
    Y_test)`` the test points join them as crosses, and the legend says which is which."""
    from matplotlib.colors import ListedColormap

    splits = [(np.asarray(X), _labels(Y), "o", "train")]
    if test is not None and np.asarray(test[0]).shape[1]:
        splits.append((np.asarray(test[0]), _labels(test[1]), "X", "test"))
    everything = np.hstack([Xs for Xs, *_ in splits])
    classes = np.unique(np.concatenate([labels for _, labels, *_ in splits]))
    colors = [CLASS_COLORS[j % len(CLASS_COLORS)] for j in range(len(classes))]
    if model is not None:
        lo, hi = everything.min(axis=1), everything.max(axis=1)
        pad = 0.1 * (hi - lo) + 0.2
        xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution)
        ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution)
        gx, gy = np.meshgrid(xs, ys)
        pred = np.asarray(model.predict(np.vstack([gx.ravel(), gy.ravel()]).astype(everything.dtype)))
        if pred.shape[0] == 1:  # one label per point (multi-label outputs get no regions)
            index = np.searchsorted(classes, pred.reshape(gx.shape)).clip(0, len(classes) - 1)
            ax.contourf(gx, gy, index, levels=np.arange(len(classes) + 1) - 0.5, alpha=0.3,
                        cmap=ListedColormap(colors))
    for j, c in enumerate(classes):
        for Xs, labels, marker, split in splits:
            pts = labels == c
            if not pts.any():
                continue
            name = f"class {_class_name(c)}" + (f" ({split})" if len(splits) > 1 else "")
            ax.scatter(Xs[0, pts], Xs[1, pts], s=9 if split == "train" else 36, color=colors[j], marker=marker,
                       edgecolors="k", linewidths=0.2 if split == "train" else 0.8, label=name)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if title:
        ax.set_title(title, fontsize="medium")
    if legend:
        ax.legend(fontsize="x-small", loc="lower right", markerscale=1.5)


def training_figure(model: Any, train: tuple[Any, Any], test: tuple[Any, Any], title: str) -> Any:
    """One fit in one figure: the cost curve with the accuracies in its title, and for 2-D data the
    decision boundary with training points as dots and test points as crosses."""
    (X, Y), (X_test, Y_test) = train, test
    two_d = np.asarray(X).shape[0] == 2
    fig = new_figure(12 if two_d else 6.5, 5)
    axes = fig.subplots(1, 2 if two_d else 1, squeeze=False)[0]
    scores = [f"train accuracy {100 * model.accuracy(X, Y):.1f} %"]
    if np.asarray(X_test).shape[1]:
        scores.append(f"test accuracy {100 * model.accuracy(X_test, Y_test):.1f} %")
    cost_curves(axes[0], [("cost", model.costs, None)])
    axes[0].get_legend().remove()
    axes[0].set_title(f"{title}\n{', '.join(scores)}")
    if two_d:
        decision_boundary(axes[1], model, X, Y, "decision boundary: shaded by predicted class;\n"
                          "dots training, crosses test examples", test=(X_test, Y_test))
    return fig


def _class_name(c: Any) -> str:
    return f"{c:g}" if isinstance(c, (float, np.floating)) else str(c)


def sweep_figure(result: Any, X: Any = None, Y: Any = None, panel: float = 3.0) -> Any:
    """The sweep in one figure: the cost curves of every trial on one axes (top) and, for 2-D ``X``,
    one decision-boundary panel per trial titled with its parameters and accuracy (below)."""
    trials = result.trials
    varied = result.varied
    two_d = X is not None and np.asarray(X).ndim == 2 and np.asarray(X).shape[0] == 2 and bool(trials)
    cols = min(4, len(trials)) if two_d else 1
    rows = math.ceil(len(trials) / cols) if two_d else 0
    width = max(8.0, panel * cols)
    curve_height = 4.0
    fig = new_figure(width, curve_height + panel * rows)
    top, bottom = fig.subfigures(2, 1, height_ratios=[curve_height, max(panel * rows, 1e-3)]) if two_d \
        else (fig, None)
    ax = top.subplots()
    names = [", ".join(f"{k}={show_value(t.params[k])}" for k in varied) for t in trials]
    cost_curves(ax, [(name, t.costs, t.diverged_at if not t.ok else None) for name, t in zip(names, trials)])
    # Failed trials that did not diverge (no iteration to mark) still get a legend entry.
    for name, t in zip(names, trials):
        if not t.ok and t.diverged_at is None:
            ax.plot([], [], marker="x", color="red", linestyle="none", label=f"{name} (failed)")
    if any(not t.ok and t.diverged_at is None for t in trials):
        ax.legend(fontsize="small")
    ax.set_title(f"{result.model_class}: cost per trial" + (f" ({result.ran_on})" if result.interrupted else ""))
    if two_d and bottom is not None:
        panels = bottom.subplots(rows, cols, squeeze=False).ravel()
        which = "val" if result.validation else "train"
        for j, (name, t) in enumerate(zip(names, trials)):
            acc = t.val_accuracy if result.validation else t.train_accuracy
            status = f"{which} acc {100 * acc:.2f} %" if acc is not None else "diverged" if t.diverged_at \
                is not None else "failed"
            decision_boundary(panels[j], t.model, X, Y, f"{name}\n{status}", legend=j == 0)
        for extra in panels[len(trials):]:
            extra.set_visible(False)
    return fig


def show_value(value: Any) -> str:
    """A setting as short text: ``0.1``, ``[2,8,1]``, a backend by its name."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(show_value(x) for x in value) + "]"
    return str(getattr(value, "name", value))
