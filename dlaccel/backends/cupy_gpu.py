"""The CuPy backend: the NumPy backend's code on CuPy arrays, cuBLAS for the GEMMs, and fused
kernels from ``kernels/*.cu`` for the elementwise work around them.

Each fused op checks dtype (float32/float64), contiguity and shapes, and hands anything else to
the NumPy-backend code (``super()``), which runs on CuPy through ``self.xp``. Loading, compiling
and caching the kernels and sizing their grids is :mod:`._cuda`'s job. Nothing here touches the GPU at import.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import DtypeError
from . import _cuda, _probe
from .base import ACTIVATIONS, LOSSES, LayerCache
from .numpy_backend import NumpyBackend, unknown_activation, unknown_loss

try:
    import cupy
except Exception:  # absent or broken: the probe says why; the module stays importable for CPU tests
    cupy = None  # type: ignore[assignment]

_NULL = np.uint64(0)  # a null pointer argument


class CupyBackend(NumpyBackend):
    """CuPy arrays on the current CUDA device, with fused kernels for the elementwise work."""

    name: ClassVar[str] = "cupy"
    xp: ClassVar[Any] = cupy
    device_kind: ClassVar[str] = "device"

    def __init__(self) -> None:
        self._kernels = _cuda.KernelCache()

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return _probe.cupy()

    # -- kernels (tests swap these two for the CPU emulator) --------------------------------------

    def _function(self, filename: str, kernel: str, dtype: np.dtype) -> Any:
        return self._kernels.function(filename, kernel, dtype)

    def _sm_count(self) -> int:
        return self._kernels.sm_count()

    def _empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """Every kernel output is allocated here (tests poison it to catch unwritten elements)."""
        return cupy.empty(shape, dtype=dtype)

    @staticmethod
    def _fast(*arrays: Any) -> bool:
        """Whether the kernels cover these arrays: one float dtype, C-contiguous, not empty."""
        dtype = arrays[0].dtype
        return dtype in _cuda.C_TYPES and all(
            a.dtype == dtype and a.flags.c_contiguous and a.size > 0 for a in arrays
        )

    @staticmethod
    def _gemm_operands(dtype: Any, *arrays: Any) -> bool:
        """Whether the GEMM operands share the kernels' dtype. Their layout is free: cuBLAS reads
        them as they are, and no kernel does (so an F-ordered X, the course's layout, is fused too)."""
        return all(a.dtype == dtype and a.size > 0 for a in arrays)

    @staticmethod
    def _layer(dZ: Any, A_prev: Any, W: Any) -> bool:
        """Whether ``dZ`` (or ``Z``) is ``W @ A_prev``'s shape: the fused backward's precondition."""
        return W.shape[1] == A_prev.shape[0] and dZ.shape == (W.shape[0], A_prev.shape[1])

    def _fused_loss(self, AL: Any, Y: Any, loss: str) -> bool:
        """Checks the output-layer arguments; whether the loss kernels cover them."""
        self._check(AL, Y)
        if loss not in LOSSES:
            raise unknown_loss(loss)
        return self._fast(AL, Y) and AL.shape == Y.shape

    # -- transfer -----------------------------------------------------------------------------

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        if dtype is not None and np.dtype(dtype).kind not in "fiub":
            raise DtypeError(f"expected a numeric (float, int or bool) dtype, got {np.dtype(dtype)}")
        if isinstance(x, cupy.ndarray) and (dtype is None or np.dtype(dtype) == x.dtype):
            a = x  # already there: no copy, like np.asarray
        elif isinstance(x, cupy.ndarray) or hasattr(x, "__cuda_array_interface__"):
            a = cupy.asarray(x, dtype=dtype)  # already on a device: no host round trip
        else:
            # The NumPy backend's checks on the host, then one explicit host -> device copy.
            a = cupy.asarray(NumpyBackend.asarray(self, x, dtype))
        if a.dtype.kind not in "fiub":
            raise DtypeError(f"expected a numeric (float, int or bool) array, got dtype {a.dtype}")
        return a

    def synchronize(self) -> None:
        cupy.cuda.Device().synchronize()

    # -- forward ------------------------------------------------------------------------------

    def _bias_activation(self, Z: Any, b: Any, activation: str) -> Any:
        """``A = g(Z + b)`` in one pass, ``Z`` updated to ``Z + b``; ``b=None``: ``A = g(Z)``."""
        n, m = Z.shape
        A = self._empty(Z.shape, Z.dtype)
        bias = _NULL if b is None else b
        if activation == "softmax":
            kernel = self._function("bias_activation.cu", "bias_softmax_forward", Z.dtype)
            grid: tuple[int, ...] = _cuda.columns_grid(m, self._sm_count())
        else:
            kernel = self._function("bias_activation.cu", f"bias_act_forward_{activation}", Z.dtype)
            grid = _cuda.rows_grid(n, m, self._sm_count())
        kernel(grid, (_cuda.THREADS,), (Z, bias, A, np.int64(n), np.int64(m)))
        return A

    def activation_forward(self, Z: Any, activation: str) -> Any:
        self._check(Z)
        if activation not in ACTIVATIONS:
            raise unknown_activation(activation)
        if not self._fast(Z):
            return super().activation_forward(Z, activation)
        return self._bias_activation(Z, None, activation)

    def linear_activation_forward(self, A_prev: Any, W: Any, b: Any, activation: str) -> tuple:
        self._check(A_prev, W, b)
        if activation not in ACTIVATIONS:
            raise unknown_activation(activation)
        if not (self._fast(b) and self._gemm_operands(b.dtype, A_prev, W) and b.shape == (W.shape[0], 1)
                and W.shape[1] == A_prev.shape[0]):
            return super().linear_activation_forward(A_prev, W, b, activation)
        Z = cupy.ascontiguousarray(W @ A_prev)  # cuBLAS; already C-contiguous in practice
        A = self._bias_activation(Z, b, activation)
        return A, LayerCache(A_prev, W, b, Z, A)

    # -- backward -----------------------------------------------------------------------------

    def _backward_db(self, dA: Any, V: Any, v_is_Z: bool, activation: str, want_dZ: bool, want_db: bool) -> tuple:
        """``dZ = dA * g'(.)`` and/or ``db = sum(dZ, axis=1) / m`` in one pass over ``dA`` and ``V``
        (``A`` for sigmoid/tanh unless ``v_is_Z``; ``Z`` otherwise; unused for linear)."""
        n, m = dA.shape
        dtype = dA.dtype
        dZ = self._empty(dA.shape, dtype) if want_dZ else None
        chunks, rows, _ = grid = _cuda.rows_grid(n, m, self._sm_count())
        partial = self._empty((n, chunks), np.float64) if want_db else None
        kernel = self._function("activation_backward.cu", f"act_backward_db_{activation}", dtype)
        kernel(
            grid,
            (_cuda.THREADS,),
            (dA, _NULL if V is None else V, _NULL if dZ is None else dZ, _NULL if partial is None else partial,
             np.int64(n), np.int64(m), np.int32(v_is_Z)),
        )
        db = None
        if want_db:
            db = self._empty((n, 1), dtype)
            finalize = self._function("activation_backward.cu", "finalize_row_sums", dtype)
            finalize(_cuda.columns_grid(n, self._sm_count()), (_cuda.THREADS,),
                     (partial, db, np.int64(n), np.int64(chunks), np.float64(1.0 / m)))
        return dZ, db

    def activation_backward(self, dA: Any, Z: Any, activation: str) -> Any:
        self._check(dA, Z)
        if activation not in _cuda.FUSED_ACTIVATIONS or not self._fast(dA, Z) or dA.shape != Z.shape:
            return super().activation_backward(dA, Z, activation)
        dZ, _ = self._backward_db(dA, Z, True, activation, want_dZ=True, want_db=False)
        return dZ

    def linear_backward(self, dZ: Any, A_prev: Any, W: Any, need_dA_prev: bool = True) -> tuple:
        self._check(dZ, A_prev, W)
        if not (self._fast(dZ) and self._gemm_operands(dZ.dtype, A_prev, W) and self._layer(dZ, A_prev, W)):
            return super().linear_backward(dZ, A_prev, W, need_dA_prev)
        _, db = self._backward_db(dZ, None, False, "linear", want_dZ=False, want_db=True)
        dA_prev, dW = self._weight_grads(dZ, A_prev, W, need_dA_prev)
        return dA_prev, dW, db

    def linear_activation_backward(
        self, dA: Any, cache: LayerCache, activation: str, need_dA_prev: bool = True
    ) -> tuple:
        self._check(dA)
        A_prev, W, Z, A = cache.A_prev, cache.W, cache.Z, cache.A
        self._check(A_prev, W, Z)
        if not (activation in _cuda.FUSED_ACTIVATIONS and self._fast(dA, Z) and self._gemm_operands(dA.dtype, A_prev, W)
                and dA.shape == Z.shape and self._layer(Z, A_prev, W)):
            return super().linear_activation_backward(dA, cache, activation, need_dA_prev)
        # sigmoid and tanh take g' from the cached A (no exp recomputed), the rest from Z.
        use_A = activation in ("sigmoid", "tanh") and isinstance(A, cupy.ndarray) and A.shape == Z.shape \
            and self._fast(dA, A)
        dZ, db = self._backward_db(dA, A if use_A else Z, not use_A, activation, want_dZ=True, want_db=True)
        dA_prev, dW = self._weight_grads(dZ, A_prev, W, need_dA_prev)
        return dA_prev, dW, db

    # -- output layer -------------------------------------------------------------------------

    def compute_cost(self, AL: Any, Y: Any, loss: str) -> float:
        if not self._fused_loss(AL, Y, loss):
            return super().compute_cost(AL, Y, loss)
        name = "bce_cost_partial" if loss == "binary_cross_entropy" else "ce_cost_partial"
        kernel = self._function("loss.cu", name, AL.dtype)
        grid = _cuda.flat_grid(AL.size, self._sm_count())
        partial = self._empty(grid, np.float64)
        eps = AL.dtype.type(np.finfo(AL.dtype).eps)
        kernel(grid, (_cuda.THREADS,), (AL, Y, partial, np.int64(AL.size), eps))
        return float(-float(partial.sum()) / AL.shape[1])

    def output_backward(self, AL: Any, Y: Any, loss: str) -> Any:
        if not self._fused_loss(AL, Y, loss):
            return super().output_backward(AL, Y, loss)
        dZ = self._empty(AL.shape, AL.dtype)
        kernel = self._function("loss.cu", "output_grad", AL.dtype)
        kernel(_cuda.flat_grid(AL.size, self._sm_count()), (_cuda.THREADS,), (AL, Y, dZ, np.int64(AL.size)))
        return dZ

    # -- update -------------------------------------------------------------------------------

    def update_parameters(self, parameters: dict, grads: dict, learning_rate: float) -> dict:
        for key, P in parameters.items():
            G = grads["d" + key]
            self._check(P, G)
            if self._fast(P, G) and P.shape == G.shape:
                kernel = self._function("sgd.cu", "sgd_update", P.dtype)
                kernel(_cuda.flat_grid(P.size, self._sm_count()), (_cuda.THREADS,),
                       (P, G, P.dtype.type(learning_rate), np.int64(P.size)))
            else:
                P -= learning_rate * G
        return parameters
