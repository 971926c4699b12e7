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
    Y = as_2d(Y, "Y", "(n_y, m)")
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


def labels_to_targets(Y: Any, n_y: int, output_activation: str, dtype: Any) -> Any:
    """Check ``Y`` against the output layer and return the training targets in ``dtype``.

    Sigmoid outputs take ``Y`` of shape ``(n_y, m)`` in [0, 1]. Softmax outputs take one-hot (or
    soft) ``(n_y, m)`` targets whose columns sum to 1, or integer class labels ``(1, m)``.
    """
    xp = array_module(Y)
    if output_activation == "softmax" and Y.shape[0] == 1 and n_y > 1:
        labels = Y.astype(np.float64)
        if not bool((labels == xp.round(labels)).all()):
            raise InputError("class labels in Y must be whole numbers 0 .. n_y - 1")
        lo, hi = float(labels.min()), float(labels.max())
        if lo < 0 or hi > n_y - 1:
            raise InputError(
                f"labels in Y must be class indices in [0, {n_y - 1}] for {n_y} classes, "
                f"got values in [{lo:g}, {hi:g}]"
            )
        targets = xp.zeros((n_y, Y.shape[1]), dtype=dtype)
        targets[labels[0].astype(np.int64), xp.arange(Y.shape[1])] = 1
        return targets
    if Y.shape[0] != n_y:
        raise ShapeError(
            f"Y must have n_y = {n_y} rows (shape ({n_y}, m)) to match the output layer, got shape {Y.shape}"
            + ("; or pass integer class labels of shape (1, m)" if output_activation == "softmax" else "")
        )
    lo, hi = float(Y.min()), float(Y.max())
    if lo < 0 or hi > 1:
        raise InputError(
            f"labels in Y must lie in [0, 1] for a {output_activation} output, got values in [{lo:g}, {hi:g}]"
        )
    targets = Y.astype(dtype)
    if output_activation == "softmax" and not bool(xp.allclose(targets.sum(axis=0), 1, atol=1e-3)):
        raise InputError("one-hot Y for a softmax output must have columns that sum to 1")
    return targets


def infer_output(Y: Any) -> tuple[int, str]:
    """``(n_y, output_activation)`` for a model whose output layer is sized from ``Y``."""
    if Y.shape[0] > 1:
        return Y.shape[0], "softmax"
    lo, hi = float(Y.min()), float(Y.max())
    if lo >= 0 and hi <= 1:
        return 1, "sigmoid"
    if lo >= 0 and bool((Y == array_module(Y).round(Y)).all()):
        return int(hi) + 1, "softmax"
    raise InputError(
        f"cannot tell the classes from Y with values in [{lo:g}, {hi:g}]: pass 0/1 labels, "
        "integer class labels 0 .. k-1, or one-hot columns"
    )


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
