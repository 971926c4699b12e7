"""The vectorized NumPy backend: the reference every other backend is tested against.

Written against ``self.xp`` so that a backend for another NumPy-like array module (CuPy) can
subclass it and override only the ops it accelerates.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .._validation import is_cupy as _is_cupy
from ..errors import DeviceMismatchError, DtypeError, InputError, ShapeError
from .base import ACTIVATIONS, LEAKY_RELU_SLOPE, LOSSES, Backend, LayerCache


def unknown_activation(activation: str) -> InputError:
    return InputError(f"unknown activation {activation!r}; expected one of {', '.join(ACTIVATIONS)}")


def unknown_loss(loss: str) -> InputError:
    return InputError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")


class NumpyBackend(Backend):
    """Vectorized ops on ``self.xp`` arrays (NumPy here)."""

    name: ClassVar[str] = "numpy"
    xp: ClassVar[Any] = np
    device_kind: ClassVar[str] = "host"

    # -- argument checks: a type test and a rank test per array, nothing that scans the data ---

    def _check(self, *arrays: Any) -> None:
        array_type = self.xp.ndarray
        for a in arrays:
            if type(a) is not array_type or a.ndim != 2:
                self._reject(a)

    def _reject(self, a: Any) -> None:
        if isinstance(a, self.xp.ndarray) and a.ndim == 2:
            return  # a subclass (np.memmap, a matrix view): fine, just off the fast path
        if _is_cupy(a) and self.device_kind == "host":
            raise DeviceMismatchError(
                f"the {self.name!r} backend computes on the host but got a CuPy array (on the GPU); "
                "move it with backend.to_numpy(x) (or cupy.asnumpy(x)), or use backend='cupy'"
            )
        if isinstance(a, np.ndarray) and self.device_kind == "device":
            raise DeviceMismatchError(
                f"the {self.name!r} backend computes on the GPU but got a NumPy array (on the host); "
                "move it with backend.asarray(x)"
            )
        if not isinstance(a, self.xp.ndarray):
            raise DtypeError(
                f"the {self.name!r} backend expected a {self.xp.__name__}.ndarray, got {type(a).__name__}; "
                "convert it with backend.asarray(x)"
            )
        raise ShapeError(
            f"expected a 2-D array (rows, m) with examples as columns, got shape {a.shape}; "
            "reshape a rank-1 vector v with v.reshape(-1, 1) or v.reshape(1, -1)"
        )

    # -- transfer -----------------------------------------------------------------------------

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        if _is_cupy(x):
            x = x.get()
        a = np.asarray(x, dtype=dtype)
        if a.dtype.kind not in "fiub":
            raise DtypeError(f"expected a numeric (float, int or bool) array, got dtype {a.dtype}")
        return a

    def to_numpy(self, x: Any) -> np.ndarray:
        if _is_cupy(x):
            return x.get()
        return np.asarray(x)

    def all_finite(self, x: Any) -> bool:
        return bool(self.xp.isfinite(x).all())

    # -- ops ----------------------------------------------------------------------------------

    def linear_forward(self, A_prev: Any, W: Any, b: Any) -> Any:
        self._check(A_prev, W, b)
        Z = W @ A_prev
        Z += b
        return Z

    def _sigmoid(self, Z: Any) -> Any:
        xp = self.xp
        # exp(min(Z, 0)) / (1 + exp(-|Z|)): both exponents are <= 0, so nothing overflows, and
        # it is 1/(1+e^-Z) for Z >= 0 and e^Z/(1+e^Z) below. Masked selects (np.where) run
        # about 3x slower than these in-place passes.
        A = xp.minimum(Z, 0)
        xp.exp(A, out=A)
        E = xp.abs(Z)
        xp.negative(E, out=E)
        xp.exp(E, out=E)
        E += 1
        A /= E
        return A

    def _softmax(self, Z: Any) -> Any:
        xp = self.xp
        E = xp.exp(Z - Z.max(axis=0, keepdims=True))
        E /= E.sum(axis=0, keepdims=True)
        return E

    def activation_forward(self, Z: Any, activation: str) -> Any:
        self._check(Z)
        xp = self.xp
        if activation == "sigmoid":
            return self._sigmoid(Z)
        if activation == "tanh":
            return xp.tanh(Z)
        if activation == "relu":
            return xp.maximum(Z, 0)
        if activation == "leaky_relu":
            return xp.maximum(Z, Z * LEAKY_RELU_SLOPE)  # the slope is below 1
        if activation == "softmax":
            return self._softmax(Z)
        if activation == "linear":
            return Z.copy()
        raise unknown_activation(activation)

    def _activation_backward(self, dA: Any, Z: Any, A: Any, activation: str) -> Any:
        xp = self.xp
        if activation == "sigmoid":
            return dA * (A * (1 - A))
        if activation == "tanh":
            return dA * (1 - A * A)
        if activation == "relu":
            return dA * (Z > 0)  # a bool factor keeps dA's dtype and beats a masked select
        if activation == "leaky_relu":
            return xp.where(Z > 0, dA, dA * LEAKY_RELU_SLOPE)
        if activation == "softmax":
            return A * (dA - (dA * A).sum(axis=0, keepdims=True))
        if activation == "linear":
            return dA.copy()
        raise unknown_activation(activation)

    def activation_backward(self, dA: Any, Z: Any, activation: str) -> Any:
        self._check(dA, Z)
        if activation in ("sigmoid", "tanh", "softmax"):
            A = self.activation_forward(Z, activation)
        else:
            A = None
        return self._activation_backward(dA, Z, A, activation)

    def _weight_grads(self, dZ: Any, A_prev: Any, W: Any, need_dA_prev: bool) -> tuple:
        """``(dA_prev or None, dW)``: the two GEMMs of the backward pass (BLAS reads the
        transposed views in place)."""
        dW = dZ @ A_prev.T
        dW *= 1.0 / A_prev.shape[1]
        return (W.T @ dZ if need_dA_prev else None), dW

    def linear_backward(self, dZ: Any, A_prev: Any, W: Any, need_dA_prev: bool = True) -> tuple:
        self._check(dZ, A_prev, W)
        db = dZ.sum(axis=1, keepdims=True)
        db *= 1.0 / A_prev.shape[1]
        dA_prev, dW = self._weight_grads(dZ, A_prev, W, need_dA_prev)
        return dA_prev, dW, db

    def linear_activation_backward(
        self, dA: Any, cache: LayerCache, activation: str, need_dA_prev: bool = True
    ) -> tuple:
        self._check(dA)
        # The cached A gives g'(Z) for sigmoid, tanh and softmax without recomputing g.
        dZ = self._activation_backward(dA, cache.Z, cache.A, activation)
        return self.linear_backward(dZ, cache.A_prev, cache.W, need_dA_prev)

    def compute_cost(self, AL: Any, Y: Any, loss: str) -> float:
        self._check(AL, Y)
        xp = self.xp
        eps = float(np.finfo(AL.dtype).eps) if AL.dtype.kind == "f" else 1e-15
        m = AL.shape[1]
        if loss == "binary_cross_entropy":
            P = xp.clip(AL, eps, 1 - eps)
            return float(-(Y * xp.log(P) + (1 - Y) * xp.log(1 - P)).sum() / m)
        if loss == "cross_entropy":
            P = xp.clip(AL, eps, 1)
            return float(-(Y * xp.log(P)).sum() / m)
        raise unknown_loss(loss)

    def output_backward(self, AL: Any, Y: Any, loss: str) -> Any:
        self._check(AL, Y)
        if loss not in LOSSES:
            raise unknown_loss(loss)
        return self.xp.subtract(AL, Y, dtype=AL.dtype)  # integer or float64 Y must not promote AL
