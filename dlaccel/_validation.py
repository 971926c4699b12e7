"""Input checks run before any work: metadata first, then one finiteness scan of the data."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .errors import DtypeError, InputError, ShapeError


def is_cupy(x: Any) -> bool:
    """Whether ``x`` is a CuPy array, without importing CuPy."""
    return type(x).__module__.split(".", 1)[0] in ("cupy", "cupy_backends")


def array_module(x: Any) -> Any:
    """NumPy, or CuPy for a CuPy array, without importing CuPy otherwise."""
    if is_cupy(x):
        import cupy

        return cupy
    return np


def to_host(x: Any) -> np.ndarray:
    return x.get() if array_module(x) is not np else np.asarray(x)


def as_2d(x: Any, name: str, expected: str) -> Any:
    """``x`` as a 2-D numeric array of its own module (NumPy or CuPy), or a clear error."""
    xp = array_module(x)
    if xp is np:
        try:
            x = np.asarray(x)
        except Exception as exc:
            raise DtypeError(f"{name} must be a numeric array, got {type(x).__name__}: {exc}") from exc
    if x.dtype.kind not in "fiub":
        raise DtypeError(f"{name} must be numeric (float, int or bool), got dtype {x.dtype}")
    if x.ndim != 2:
        hint = f"; reshape it with {name}.reshape({expected.strip('()')})" if x.ndim == 1 else ""
        raise ShapeError(f"{name} must be 2-D with shape {expected}, got shape {x.shape}{hint}")
    if x.shape[1] == 0:
        raise ShapeError(f"{name} has no examples (m == 0); expected shape {expected} with m >= 1")
    if x.dtype.kind == "f" and not bool(xp.isfinite(x).all()):
        raise InputError(f"{name} contains NaN or Inf; every value must be finite")
    return x


def check_X(X: Any, n_x: int | None) -> Any:
    X = as_2d(X, "X", "(n_x, m)")
    if n_x is not None and X.shape[0] != n_x:
        if X.shape[1] == n_x:
            raise ShapeError(
                f"X has shape {X.shape}, which looks like examples as rows; examples are columns: "
                f"pass X.T, of shape ({n_x}, {X.shape[0]})"
            )
        raise ShapeError(f"X must have n_x = {n_x} rows (shape ({n_x}, m)), got shape {X.shape}")
    return X


def check_XY(X: Any, Y: Any, n_x: int | None) -> tuple[Any, Any]:
    X = check_X(X, n_x)
    Y = as_2d(_labels_as_row(Y), "Y", "(n_y, m)")
    m = X.shape[1]
    if Y.shape[1] != m:
        if X.shape[0] == Y.shape[1]:
            raise ShapeError(
                f"X has shape {X.shape}, which looks like examples as rows; examples are columns: "
                f"pass X.T, of shape ({X.shape[1]}, {X.shape[0]})"
            )
        if Y.shape[0] == m:
            raise ShapeError(f"Y has shape {Y.shape}; examples are columns: pass Y.T, of shape (n_y, {m})")
        raise ShapeError(f"X has m = {m} examples but Y has {Y.shape[1]} (shape {Y.shape}); expected (n_y, {m})")
    return X, Y


def _labels_as_row(Y: Any) -> Any:
    """A 1-D ``Y`` (a list, an array of shape ``(m,)``, a pandas Series) as ``(1, m)``."""
    if array_module(Y) is np:
        try:
            Y = np.asarray(Y)
        except Exception:
            return Y  # as_2d says what is wrong with it
    return Y.reshape(1, -1) if Y.ndim == 1 else Y


def _show(values: Any, limit: int = 10) -> str:
    items = [v.item() if hasattr(v, "item") else v for v in list(values)[:limit]]
    return str(items)[:-1] + (", ...]" if len(values) > limit else "]")


def find_classes(Y: Any, n_y: int | None, output: str | None) -> tuple[np.ndarray | None, int, str]:
    """``(classes, n_y, output_activation)`` for a model that meets labels for the first time.

    ``n_y`` and ``output`` are the model's when known. ``Y`` of several rows is one-hot (softmax,
    classes ``0 .. n_y-1``) or several 0/1 labels per example (a sigmoid output, no classes). A row
    of labels: 0/1 labels (any dtype) give classes ``[0, 1]``; other values in [0, 1] are soft
    targets (probabilities of class 1) for a sigmoid output, also ``[0, 1]``; otherwise the classes
    are the sorted unique whole-number labels: two make one sigmoid unit, more a softmax. A softmax
    layer of known size ``n_y`` takes ``n_y`` distinct labels, or class indices ``0 .. n_y-1``.
    """
    if Y.shape[0] > 1:  # the targets themselves; labels_to_targets checks them against n_y
        rows = Y.shape[0] if n_y is None else n_y
        if output == "sigmoid":
            return (np.arange(2) if rows == 1 else None), rows, "sigmoid"
        return np.arange(rows), rows, "softmax"
    labels = to_host(array_module(Y).unique(Y))
    if labels.dtype.kind == "b":
        labels = labels.astype(np.int64)
    whole = labels == np.round(labels)
    in_unit = bool(labels.min() >= 0 and labels.max() <= 1)
    softmax = output == "softmax" or (n_y is not None and n_y > 1)
    if not whole.all():
        if not in_unit:
            raise InputError(
                "Y must hold whole-number class labels, or probabilities in [0, 1] (soft targets for a "
                f"sigmoid output); got values such as {_show(labels[~whole])}"
            )
        if softmax:
            raise InputError(
                "soft targets (probabilities in [0, 1] in one row) need a sigmoid output of one unit; for a "
                "softmax pass one-hot (or soft) columns of shape (n_y, m), or whole-number class labels"
            )
        return np.array([0, 1]), 1, "sigmoid"
    if in_unit and not (softmax and n_y is not None and n_y > 2):  # 0/1 labels, as always
        return np.array([0, 1]), (2 if softmax else 1), ("softmax" if softmax else "sigmoid")
    if n_y is not None and n_y > 1:
        if len(labels) == n_y:
            return labels, n_y, "softmax"
        if labels.min() >= 0 and labels.max() <= n_y - 1:
            return np.arange(n_y), n_y, "softmax"  # class indices, some absent from this Y
        raise InputError(
            f"the output layer has {n_y} units, one per class, but Y holds {len(labels)} distinct labels "
            f"{_show(labels)}: pass {n_y} distinct labels, or class indices in [0, {n_y - 1}]"
        )
    if output == "sigmoid" or n_y == 1:
        if len(labels) == 2:
            return labels, 1, "sigmoid"
        raise InputError(
            f"a sigmoid output of one unit takes two classes (0/1 or any two labels), but Y holds "
            f"{len(labels)}: {_show(labels)}; labels in [0, 1] are also accepted as soft targets"
        )
    if len(labels) < 2:
        raise InputError(f"Y holds a single class ({_show(labels)}); a classifier needs at least two")
    if len(labels) == 2 and not softmax:
        return labels, 1, "sigmoid"
    return labels, len(labels), "softmax"


def labels_to_targets(Y: Any, classes: np.ndarray | None, n_y: int, output_activation: str, dtype: Any) -> Any:
    """Check ``Y`` against the output layer and its classes; return the training targets in ``dtype``.

    A row of labels must hold only ``classes`` (or, for classes ``[0, 1]`` and one sigmoid unit,
    probabilities in [0, 1]); sigmoid targets are then the index of the class (0/1), softmax
    targets one-hot columns. ``Y`` of ``n_y`` rows is taken as the targets themselves: in [0, 1],
    with columns summing to 1 for a softmax.
    """
    xp = array_module(Y)
    soft = n_y == 1 and classes is not None and _is_01(classes) and _in_unit(Y)  # 0/1 or probabilities
    if Y.shape[0] == 1 and classes is not None and not soft:
        known = xp.asarray(classes)
        index = xp.clip(xp.searchsorted(known, Y[0]), 0, len(classes) - 1)
        if not bool((known[index] == Y[0]).all()):
            unknown = np.setdiff1d(to_host(xp.unique(Y)), classes)
            raise InputError(
                f"Y holds labels {_show(unknown)} that are not among this model's classes {_show(classes)}"
            )
        if output_activation == "sigmoid":
            return index.reshape(1, -1).astype(dtype)
        targets = xp.zeros((n_y, Y.shape[1]), dtype=dtype)
        targets[index, xp.arange(Y.shape[1])] = 1
        return targets
    if Y.shape[0] != n_y:
        raise ShapeError(
            f"Y must have n_y = {n_y} rows (shape ({n_y}, m)) to match the output layer, got shape {Y.shape}"
            + ("; or pass class labels of shape (1, m) or (m,)" if output_activation == "softmax" else "")
        )
    if not _in_unit(Y):
        lo, hi = float(Y.min()), float(Y.max())
        raise InputError(
            f"labels in Y must lie in [0, 1] for a {output_activation} output, got values in [{lo:g}, {hi:g}]"
        )
    targets = Y.astype(dtype)
    if output_activation == "softmax" and not bool(xp.allclose(targets.sum(axis=0), 1, atol=1e-3)):
        raise InputError("one-hot Y for a softmax output must have columns that sum to 1")
    return targets


def _is_01(classes: np.ndarray) -> bool:
    return len(classes) == 2 and classes.dtype.kind in "iufb" and classes.tolist() == [0, 1]


def _in_unit(Y: Any) -> bool:
    return bool(Y.min() >= 0) and bool(Y.max() <= 1)


def check_output_path(path: Any, what: str) -> Any:
    """``path`` as a Path that can be written, else ``InputError`` saying why, before any work."""
    from ._files import check_writable

    try:
        return check_writable(path, what)
    except (OSError, TypeError) as exc:
        raise InputError(f"{what}: {exc}") from None


def check_learning_rate(learning_rate: Any) -> float:
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real):
        raise InputError(f"learning_rate must be a positive number, got {learning_rate!r}")
    lr = float(learning_rate)
    if not math.isfinite(lr) or lr <= 0:
        raise InputError(f"learning_rate must be a finite number > 0, got {learning_rate!r}")
    return lr


def check_dtype(dtype: Any) -> np.dtype:
    """float32 or float64, as a NumPy dtype."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise InputError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise InputError(f"dtype must be float32 or float64, got {dt.name}")
    return dt


def check_count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_layer_dims(layer_dims: Any) -> list[int]:
    try:
        dims = list(layer_dims)
    except TypeError:
        raise InputError(f"layer_dims must be a list of layer sizes, got {layer_dims!r}") from None
    if len(dims) < 2:
        raise InputError(
            f"layer_dims needs at least two sizes [n_x, ..., n_y] (input and output), got {dims!r}"
        )
    for n in dims:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise InputError(f"every entry of layer_dims must be an integer >= 1, got {dims!r}")
    return [int(n) for n in dims]
