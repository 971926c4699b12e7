"""Explicit Python for-loops over examples and features: the course's loop versions.

Slow by design: the left end of every benchmark and an oracle nobody vectorized. Each op reads its
arrays into nested Python lists (so element access is cheap and arithmetic is in double precision),
loops, and writes a NumPy array of the input's dtype.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from .base import LEAKY_RELU_SLOPE, LOSSES, LayerCache
from .numpy_backend import NumpyBackend, unknown_activation, unknown_loss


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _clip(p: float, low: float, high: float) -> float:
    return low if p < low else high if p > high else p


class LoopsBackend(NumpyBackend):
    """Every op as explicit loops. Array handling (checks, transfer) is the NumPy backend's."""

    name: ClassVar[str] = "loops"

    @staticmethod
    def _out(rows: list, like: Any) -> np.ndarray:
        return np.array(rows, dtype=like.dtype).reshape(len(rows), -1)

    def linear_forward(self, A_prev: Any, W: Any, b: Any) -> np.ndarray:
        self._check(A_prev, W, b)
        n, n_prev = W.shape
        m = A_prev.shape[1]
        Wl, Al, bl = W.tolist(), A_prev.tolist(), b.tolist()
        Z = [[0.0] * m for _ in range(n)]
        for i in range(n):
            for j in range(m):
                z = bl[i][0]
                for k in range(n_prev):
                    z += Wl[i][k] * Al[k][j]
                Z[i][j] = z
        return self._out(Z, W)

    def _forward_list(self, Zl: list, activation: str) -> list:
        n, m = len(Zl), len(Zl[0])
        A = [[0.0] * m for _ in range(n)]
        if activation == "softmax":
            for j in range(m):
                top = max(Zl[i][j] for i in range(n))
                total = 0.0
                for i in range(n):
                    A[i][j] = math.exp(Zl[i][j] - top)
                    total += A[i][j]
                for i in range(n):
                    A[i][j] /= total
            return A
        for i in range(n):
            for j in range(m):
                z = Zl[i][j]
                if activation == "sigmoid":
                    A[i][j] = _sigmoid(z)
                elif activation == "tanh":
                    A[i][j] = math.tanh(z)
                elif activation == "relu":
                    A[i][j] = 0.0 if z < 0 else z  # NaN passes through, as in np.maximum(z, 0)
                elif activation == "leaky_relu":
                    A[i][j] = z if z > 0 else LEAKY_RELU_SLOPE * z
                elif activation == "linear":
                    A[i][j] = z
                else:
                    raise unknown_activation(activation)
        return A

    def activation_forward(self, Z: Any, activation: str) -> np.ndarray:
        self._check(Z)
        return self._out(self._forward_list(Z.tolist(), activation), Z)

    def activation_backward(self, dA: Any, Z: Any, activation: str) -> np.ndarray:
        self._check(dA, Z)
        dAl, Zl = dA.tolist(), Z.tolist()
        n, m = len(Zl), len(Zl[0])
        A = self._forward_list(Zl, activation)
        dZ = [[0.0] * m for _ in range(n)]
        if activation == "softmax":
            for j in range(m):
                s = 0.0
                for i in range(n):
                    s += dAl[i][j] * A[i][j]
                for i in range(n):
                    dZ[i][j] = A[i][j] * (dAl[i][j] - s)
            return self._out(dZ, dA)
        for i in range(n):
            for j in range(m):
                z, a, da = Zl[i][j], A[i][j], dAl[i][j]
                if activation == "sigmoid":
                    dZ[i][j] = da * a * (1.0 - a)
                elif activation == "tanh":
                    dZ[i][j] = da * (1.0 - a * a)
                elif activation == "relu":
                    dZ[i][j] = da if z > 0 else da * 0.0  # NumPy's dA * (Z > 0): NaN/inf dA give NaN
                elif activation == "leaky_relu":
                    dZ[i][j] = da if z > 0 else LEAKY_RELU_SLOPE * da
                else:  # linear
                    dZ[i][j] = da
        return self._out(dZ, dA)

    def linear_backward(self, dZ: Any, A_prev: Any, W: Any, need_dA_prev: bool = True) -> tuple:
        self._check(dZ, A_prev, W)
        n, n_prev = W.shape
        m = A_prev.shape[1]
        dZl, Al, Wl = dZ.tolist(), A_prev.tolist(), W.tolist()
        dW = [[0.0] * n_prev for _ in range(n)]
        db = [[0.0] for _ in range(n)]
        for i in range(n):
            for j in range(m):
                db[i][0] += dZl[i][j]
                for k in range(n_prev):
                    dW[i][k] += dZl[i][j] * Al[k][j]
            db[i][0] /= m
            for k in range(n_prev):
                dW[i][k] /= m
        dA_prev = None
        if need_dA_prev:
            dA_prev_l = [[0.0] * m for _ in range(n_prev)]
            for k in range(n_prev):
                for j in range(m):
                    s = 0.0
                    for i in range(n):
                        s += Wl[i][k] * dZl[i][j]
                    dA_prev_l[k][j] = s
            dA_prev = self._out(dA_prev_l, dZ)
        return dA_prev, self._out(dW, dZ), self._out(db, dZ)

    def linear_activation_backward(
        self, dA: Any, cache: LayerCache, activation: str, need_dA_prev: bool = True
    ) -> tuple:
        dZ = self.activation_backward(dA, cache.Z, activation)
        return self.linear_backward(dZ, cache.A_prev, cache.W, need_dA_prev)

    def compute_cost(self, AL: Any, Y: Any, loss: str) -> float:
        self._check(AL, Y)
        if loss not in LOSSES:
            raise unknown_loss(loss)
        eps = float(np.finfo(AL.dtype).eps)
        ALl, Yl = AL.tolist(), Y.tolist()
        n, m = len(ALl), len(ALl[0])
        total = 0.0
        for i in range(n):
            for j in range(m):
                y = Yl[i][j]
                if loss == "binary_cross_entropy":
                    p = _clip(ALl[i][j], eps, 1.0 - eps)
                    total += y * math.log(p) + (1.0 - y) * math.log(1.0 - p)
                else:
                    total += y * math.log(_clip(ALl[i][j], eps, 1.0))
        return -total / m

    def output_backward(self, AL: Any, Y: Any, loss: str) -> np.ndarray:
        self._check(AL, Y)
        if loss not in LOSSES:
            raise unknown_loss(loss)
        ALl, Yl = AL.tolist(), Y.tolist()
        dZ = [[a - y for a, y in zip(arow, yrow)] for arow, yrow in zip(ALl, Yl)]
        return self._out(dZ, AL)

    def update_parameters(self, parameters: dict, grads: dict, learning_rate: float) -> dict:
        for key, P in parameters.items():
            dP = grads["d" + key]
            Pl, dPl = P.tolist(), dP.tolist()
            for i in range(len(Pl)):
                for k in range(len(Pl[i])):
                    Pl[i][k] -= learning_rate * dPl[i][k]
            P[...] = Pl
        return parameters
