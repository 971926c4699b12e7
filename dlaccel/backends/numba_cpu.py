"""The Numba backend: the course's explicit loops, compiled, fused and run on every core.

NumPy makes one pass over memory (and one temporary) per elementwise operation; the kernels here
make one pass per layer: the bias and the activation are applied together right after the GEMM, and
``dZ = dA * g'(Z)`` is formed together with its ``db`` row sums. The GEMMs stay with NumPy's BLAS
(measured as fast as ``np.dot`` inside ``@njit``, which would also need SciPy and a second BLAS
thread pool). Logistic regression on the course's example-contiguous ``X`` gets one kernel that
reads ``X`` from memory once for the forward pass, the cost and both gradients.

Every kernel is compiled for float32 and float64 separately and computes in that dtype; other
dtypes, mixed dtypes and unusual shapes fall back to the NumPy backend. ``cache=True`` everywhere,
so a second process loads machine code instead of compiling.
"""

from __future__ import annotations

import math
import threading
from types import FunctionType
from typing import Any, ClassVar, NamedTuple

import numba
import numpy as np
from numba import njit, prange

from ._numba_math import NUMPY_ERRORS, _exp, _leaky_relu, _relu, _sigmoid, _tanh
from .base import ACTIVATIONS, LEAKY_RELU_SLOPE, LOSSES, LayerCache
from .numpy_backend import NumpyBackend, unknown_activation, unknown_loss

# Numba's cache sees edits to this file only: the kernels inline _numba_math, whose hash is kept here
# (tests/test_numba.py checks it) so that an edit there changes this file and recompiles them.
MATH_SHA256 = "63623ef376b821af"

SIGMOID, TANH, RELU, LEAKY_RELU, SOFTMAX, LINEAR = (ACTIVATIONS.index(a) for a in (
    "sigmoid", "tanh", "relu", "leaky_relu", "softmax", "linear"))

# Elementwise kernels split each row into chunks of this many columns so that any shape, (1, 16M)
# as well as (4096, 4096), spreads over the threads; a chunk's rows stay in L1.
CHUNK = 4096
# Softmax works on blocks of this many columns: its per-column max and sum stay in L1 while the
# rows stream past, and the inner loop runs along contiguous rows.
COLUMN_BLOCK = 256
# Reassociation only, and only where a sum is vectorised: it changes the order of additions (an
# error bound of the same order as the sequential sum), never NaN/Inf semantics.
REDUCTION = {"reassoc"}
FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
# Kernels touching fewer elements than this run their serial variant, on the calling thread.
# Measured here: a 2-thread kernel launched right after a threaded BLAS call (what every layer
# does) waits milliseconds for OpenBLAS's spinning workers to give up the other core; a 1024 x 1024
# layer is done in less on one thread. The serial variant also skips the parallel launch and the
# thread-count juggling a 1-thread parallel region would need (about 5 us per op, more than a
# tiny op costs). Large elementwise work (4M elements and up) still uses every thread.
PARALLEL_MIN_SIZE = 1 << 22

# -- elementwise building blocks (inlined by LLVM into the parallel kernels below) -------------


@njit(cache=True, **NUMPY_ERRORS)
def _activate(Z, A, code):
    """``A = g(Z)`` along 1-D views; the branch is outside the loops so each loop vectorises."""
    if code == SIGMOID:
        for j in range(Z.size):
            A[j] = _sigmoid(Z[j])
    elif code == TANH:
        for j in range(Z.size):
            A[j] = _tanh(Z[j])
    elif code == RELU:
        for j in range(Z.size):
            A[j] = _relu(Z[j])
    elif code == LEAKY_RELU:
        for j in range(Z.size):
            A[j] = _leaky_relu(Z[j])
    else:
        A[:] = Z


@njit(cache=True, **NUMPY_ERRORS)
def _activation_grad(dA, A, dZ, code):
    """``dZ = dA * g'(Z)`` along 1-D views, with ``g'`` read from ``A = g(Z)``: relu and leaky relu
    need only the sign of ``Z``, which ``A`` shares. ``dZ`` may be ``A`` itself."""
    one = dA.dtype.type(1)
    zero = dA.dtype.type(0)
    slope = dA.dtype.type(LEAKY_RELU_SLOPE)
    if code == SIGMOID:
        for j in range(dZ.size):
            dZ[j] = dA[j] * (A[j] * (one - A[j]))
    elif code == TANH:
        for j in range(dZ.size):
            dZ[j] = dA[j] * (one - A[j] * A[j])
    elif code == RELU:
        for j in range(dZ.size):
            d = dA[j]  # loaded unconditionally: LLVM cannot if-convert (vectorise) a conditional load
            dZ[j] = d if A[j] > zero else d * zero  # NumPy's dA * (Z > 0): NaN and inf dA give NaN
    elif code == LEAKY_RELU:
        for j in range(dZ.size):
            d = dA[j]
            dZ[j] = d if A[j] > zero else d * slope
    else:
        dZ[:] = dA


@njit(cache=True, fastmath=REDUCTION, **NUMPY_ERRORS)
def _sum(x):
    s = x.dtype.type(0)
    for j in range(x.size):
        s += x[j]
    return s


@njit(cache=True, fastmath=REDUCTION, **NUMPY_ERRORS)
def _dot(x, y):
    s = x.dtype.type(0)
    for j in range(x.size):
        s += x[j] * y[j]
    return s


@njit(cache=True, **NUMPY_ERRORS)
def _axpy(alpha, x, y):
    """``y += alpha * x``."""
    for j in range(x.size):
        y[j] += alpha * x[j]


# -- layer kernels -----------------------------------------------------------------------------


class Kernel(NamedTuple):
    """One kernel body compiled twice: ``serial`` (``prange`` runs as ``range``) and ``parallel``."""

    serial: Any
    parallel: Any


def _kernel(fn: Any) -> Kernel:
    """Compile ``fn`` with and without ``parallel=True``, lazily, each on first use. Numba's cache
    index is keyed on the function's bytecode, not its compile flags, so the serial variant is a
    copy of the function under its own qualname: its own cache file, no collision."""
    serial_fn = FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__, fn.__closure__)
    serial_fn.__qualname__ = fn.__qualname__ + "_serial"
    serial_fn.__doc__ = fn.__doc__
    return Kernel(njit(cache=True, **NUMPY_ERRORS)(serial_fn), njit(parallel=True, cache=True, **NUMPY_ERRORS)(fn))


@njit(cache=True, **NUMPY_ERRORS)
def _n_chunks(m):
    return max(1, (m + CHUNK - 1) // CHUNK)


@_kernel
def _bias_activation(Z, b, A, code):
    """``Z += b`` (when ``b`` is given) and ``A = g(Z)`` in one pass, chunk by chunk."""
    n, m = Z.shape
    nc = _n_chunks(m)
    for t in prange(n * nc):
        i = t // nc
        j0 = (t % nc) * CHUNK
        j1 = min(j0 + CHUNK, m)
        Z_row = Z[i, j0:j1]
        if b is not None:
            b_i = b[i, 0]
            for j in range(Z_row.size):
                Z_row[j] += b_i
        _activate(Z_row, A[i, j0:j1], code)


@_kernel
def _bias_softmax(Z, b, A):
    """``Z += b`` (when ``b`` is given) and ``A = exp(Z - max) / sum exp(Z - max)`` per column."""
    n, m = Z.shape
    n_blocks = (m + COLUMN_BLOCK - 1) // COLUMN_BLOCK
    for t in prange(n_blocks):
        j0 = t * COLUMN_BLOCK
        j1 = min(j0 + COLUMN_BLOCK, m)
        Z_max = np.full(j1 - j0, -np.inf, Z.dtype)
        for i in range(n):
            Z_row = Z[i, j0:j1]
            if b is not None:
                b_i = b[i, 0]
                for j in range(Z_row.size):
                    Z_row[j] += b_i
            for j in range(Z_row.size):
                z = Z_row[j]
                # written so that a NaN anywhere in the column makes the column NaN, like NumPy
                Z_max[j] = z if (z > Z_max[j] or z != z) else Z_max[j]
        E_sum = np.zeros(j1 - j0, Z.dtype)
        for i in range(n):
            Z_row, A_row = Z[i, j0:j1], A[i, j0:j1]
            for j in range(Z_row.size):
                e = _exp(Z_row[j] - Z_max[j])
                A_row[j] = e
                E_sum[j] += e
        for i in range(n):
            A_row = A[i, j0:j1]
            for j in range(A_row.size):
                A_row[j] /= E_sum[j]


@_kernel
def _softmax_grad(dA, A, dZ):
    """``dZ = A * (dA - sum(dA * A, axis=0))``, per block of columns."""
    n, m = A.shape
    n_blocks = (m + COLUMN_BLOCK - 1) // COLUMN_BLOCK
    for t in prange(n_blocks):
        j0 = t * COLUMN_BLOCK
        j1 = min(j0 + COLUMN_BLOCK, m)
        s = np.zeros(j1 - j0, A.dtype)
        for i in range(n):
            dA_row, A_row = dA[i, j0:j1], A[i, j0:j1]
            for j in range(s.size):
                s[j] += dA_row[j] * A_row[j]
        for i in range(n):
            dA_row, A_row, dZ_row = dA[i, j0:j1], A[i, j0:j1], dZ[i, j0:j1]
            for j in range(s.size):
                dZ_row[j] = A_row[j] * (dA_row[j] - s[j])


@_kernel
def _grad_row_sums(dA, A, Z, dZ, db, code, inv_m):
    """``dZ = dA * g'(Z)`` from ``A`` or from ``Z`` (the other is None; both None: ``dZ`` is given) and
    ``db = inv_m * sum(dZ, axis=1)`` in one pass: each chunk's sum is taken while it is in L1.
    ``db`` None: no sums (the ``is not None`` branches are compiled out)."""
    n, m = dZ.shape
    nc = _n_chunks(m)
    partial = np.empty((n, nc), dZ.dtype)
    for t in prange(n * nc):
        i = t // nc
        j0 = (t % nc) * CHUNK
        j1 = min(j0 + CHUNK, m)
        dZ_row = dZ[i, j0:j1]
        if A is not None:
            _activation_grad(dA[i, j0:j1], A[i, j0:j1], dZ_row, code)
        if Z is not None:
            # A = g(Z) goes into dZ first and is used while the chunk is in L1: one memory pass
            _activate(Z[i, j0:j1], dZ_row, code)
            _activation_grad(dA[i, j0:j1], dZ_row, dZ_row, code)
        if db is not None:
            partial[i, t % nc] = _sum(dZ_row)
    if db is not None:
        for i in range(n):
            db[i, 0] = _sum(partial[i]) * inv_m


@_kernel
def _subtract(X, Y, out):
    """``out = X - Y`` over flat arrays."""
    for c in prange(_n_chunks(X.size)):
        for k in range(c * CHUNK, min((c + 1) * CHUNK, X.size)):
            out[k] = X[k] - Y[k]


@_kernel
def _descend(P, dP, learning_rate):
    """``P -= learning_rate * dP`` in place, over flat arrays."""
    for c in prange(_n_chunks(P.size)):
        for k in range(c * CHUNK, min((c + 1) * CHUNK, P.size)):
            P[k] -= learning_rate * dP[k]


@njit(cache=True, **NUMPY_ERRORS)
def _log_loss(a, y, eps, binary):
    """One example's loss in float64, ``a`` clipped to ``[eps, 1 - eps]`` (binary) or ``[eps, 1]``
    like the NumPy backend."""
    p = max(float(a), float(eps))
    if binary:
        p = min(p, 1.0 - eps)
        return -(y * math.log(p) + (1.0 - y) * math.log(1.0 - p))
    # y log p is exactly 0 for y == 0 (p >= eps is finite): skip most logs of a one-hot Y
    return -y * math.log(p) if y != 0 else 0.0


@njit(cache=True, **NUMPY_ERRORS)
def _cost_sum(AL, Y, eps, binary):
    """The summed loss over flat arrays; small (n_y x m), so serial."""
    total = 0.0
    for k in range(AL.size):
        total += _log_loss(AL[k], Y[k], eps, binary)
    return total


# -- logistic regression: forward, cost and gradients in one read of X ---------------------------


@njit(cache=True, **NUMPY_ERRORS)
def _sigmoid_bce(z, y, eps, with_cost):
    """``(a - y, loss)`` of one example with ``a = sigmoid(z)``; ``loss`` is 0 unless ``with_cost``."""
    a = _sigmoid(z)
    return a - y, (_log_loss(a, y, eps, True) if with_cost else 0.0)


# Examples per dW update. Each example is read from memory once, for z, and again from L2 for dW.
# One column at a time makes 5 memory accesses per element of X (x and W for z; x, and dW's load and store
# for dW); a group shares one pass over W for its z and one read-modify-write of dW for its dz x,
# so that falls to 2 + 3 / GROUP. Eight is what the unrolled kernels below take: LLVM interleaves
# their loops twice, 16 AVX-512 accumulators and no spills, and the group (8 x 48 KB for 64x64x3
# images) stays in a 1 MB L2 until its dW pass. Measured (12288 x 2000 float32, 2 threads):
# one column at a time 26 GB/s, groups of 4 36 GB/s, of 8 37 GB/s; a read-only pass 45 GB/s.
GROUP = 8
# a * x + y as one FMA in the group kernels: one rounding instead of two, half the FP instructions
GROUP_MATH = {"reassoc", "contract"}


@njit(cache=True, fastmath=GROUP_MATH, **NUMPY_ERRORS)
def _group_dots(w, XT, j, z):
    """``z[g] = w . XT[j + g]`` for the GROUP rows from ``j``: one pass over ``w`` for all eight."""
    x0, x1, x2, x3, x4, x5, x6, x7 = (XT[j], XT[j + 1], XT[j + 2], XT[j + 3],
                                      XT[j + 4], XT[j + 5], XT[j + 6], XT[j + 7])
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = w.dtype.type(0)
    for k in range(w.size):
        w_k = w[k]
        s0 += w_k * x0[k]
        s1 += w_k * x1[k]
        s2 += w_k * x2[k]
        s3 += w_k * x3[k]
        s4 += w_k * x4[k]
        s5 += w_k * x5[k]
        s6 += w_k * x6[k]
        s7 += w_k * x7[k]
    z[0], z[1], z[2], z[3], z[4], z[5], z[6], z[7] = s0, s1, s2, s3, s4, s5, s6, s7


@njit(cache=True, fastmath=GROUP_MATH, **NUMPY_ERRORS)
def _group_axpy(dz, XT, j, y):
    """``y += sum_g dz[g] * XT[j + g]`` over the GROUP rows from ``j``: one read-modify-write of ``y``."""
    x0, x1, x2, x3, x4, x5, x6, x7 = (XT[j], XT[j + 1], XT[j + 2], XT[j + 3],
                                      XT[j + 4], XT[j + 5], XT[j + 6], XT[j + 7])
    a0, a1, a2, a3, a4, a5, a6, a7 = dz[0], dz[1], dz[2], dz[3], dz[4], dz[5], dz[6], dz[7]
    for k in range(y.size):
        y[k] += ((a0 * x0[k] + a1 * x1[k]) + (a2 * x2[k] + a3 * x3[k])) + (
            (a4 * x4[k] + a5 * x5[k]) + (a6 * x6[k] + a7 * x7[k]))


@njit(parallel=True, cache=True, fastmath=REDUCTION, **NUMPY_ERRORS)
def _logistic_regression_columns(W, b, XT, Y, eps, with_cost, n_threads):
    """X is F-ordered (``XT = X.T`` C-ordered, one example per row, as the course's flattened
    images ``x.reshape(m, -1).T`` are). Per group of GROUP examples: their ``z`` in one pass that
    reads them from memory, then their ``dz x`` added to dW in one pass that re-reads them from L2,
    so X is read from memory once. Each thread takes whole groups (only the last group of all may
    be short, and takes the one-column kernels) and keeps its own partial dW, summed at the end.
    The partials are float64 whatever the dtype: a float32 running sum over a million examples
    drifts by 1e-5 (relative), where NumPy's pairwise sums stay near float32 rounding."""
    m, n_x = XT.shape
    n_groups = (m + GROUP - 1) // GROUP
    n_parts = max(1, min(n_threads, n_groups))
    dW_parts = np.zeros((n_parts, n_x))
    db_parts = np.zeros(n_parts)
    cost_parts = np.zeros(n_parts)
    for p in prange(n_parts):
        dW = dW_parts[p]
        dz = np.empty(GROUP, XT.dtype)
        for group in range(p * n_groups // n_parts, (p + 1) * n_groups // n_parts):
            j0 = group * GROUP
            size = min(GROUP, m - j0)
            if size == GROUP:
                _group_dots(W[0], XT, j0, dz)
            else:
                for g in range(size):
                    dz[g] = _dot(W[0], XT[j0 + g])
            for g in range(size):
                dz[g], loss = _sigmoid_bce(dz[g] + b[0, 0], Y[0, j0 + g], eps, with_cost)
                cost_parts[p] += loss
                db_parts[p] += dz[g]
            if size == GROUP:
                _group_axpy(dz, XT, j0, dW)
            else:
                for g in range(size):
                    _axpy(dz[g], XT[j0 + g], dW)
    return _combine(dW_parts, db_parts, cost_parts, m, W)


@njit(cache=True, **NUMPY_ERRORS)
def _combine(dW_parts, db_parts, cost_parts, m, like):
    """Sum the per-thread float64 partials, in thread order, average over the ``m`` examples and
    round once to the dtype of ``like``."""
    inv_m = 1.0 / m
    dW = np.empty((1, dW_parts.shape[1]), like.dtype)
    for k in range(dW.shape[1]):
        s = 0.0
        for p in range(dW_parts.shape[0]):
            s += dW_parts[p, k]
        dW[0, k] = s * inv_m
    db = np.full((1, 1), db_parts.sum() * inv_m, like.dtype)
    return cost_parts.sum() / m, dW, db


# -- the backend ---------------------------------------------------------------------------------

COMPILE_NOTE = "compiling Numba kernels, once; cached afterwards"


def _dispatchers() -> list[Any]:
    """Every ``@njit`` dispatcher of this module (both variants of each :class:`Kernel`)."""
    objs = [d for obj in list(globals().values()) for d in (obj if isinstance(obj, Kernel) else (obj,))]
    return [d for d in objs if hasattr(d, "signatures") and hasattr(d, "py_func")]



# dlaccel.set_num_threads(n) records n here. Numba keeps its thread count per Python thread, so
# every parallel launch applies it on the calling thread. None: Numba's own default.
_num_threads: int | None = None
# Numba's workqueue threading layer (its fallback without TBB or OpenMP, or when the user picks it)
# aborts the whole process when two Python threads run parallel regions at once. Under any layer
# but these, parallel regions take turns. The layer is fixed at the first launch: None until then.
THREAD_SAFE_LAYERS = ("tbb", "omp")
_serialise: bool | None = None
_launch_lock = threading.Lock()


def use_threads(n: int) -> None:
    """Run the parallel kernels on ``n`` threads, in every Python thread (``n`` checked by the caller)."""
    global _num_threads
    numba.set_num_threads(n)
    _num_threads = n


def _thread_count() -> int:
    """The calling thread's Numba thread count, set to dlaccel's first where one was chosen."""
    n = _num_threads
    if n is not None and numba.get_num_threads() != n:
        numba.set_num_threads(n)
    return numba.get_num_threads()


def _launch(parallel_kernel: Any, *args: Any) -> Any:
    """``parallel_kernel(*args)`` with dlaccel's thread count, alone while the layer is thread-unsafe."""
    global _serialise
    _thread_count()
    if _serialise is False:
        return parallel_kernel(*args)
    with _launch_lock:
        result = parallel_kernel(*args)
        _serialise = numba.threading_layer() not in THREAD_SAFE_LAYERS
    return result


def _run(kernel: Kernel, size: int, *args: Any) -> Any:
    """``kernel(*args)``: the serial variant when ``size`` (elements touched) is below
    PARALLEL_MIN_SIZE, the parallel one on every thread from there."""
    if size < PARALLEL_MIN_SIZE:
        return kernel.serial(*args)
    return _launch(kernel.parallel, *args)


_CODES = {activation: code for code, activation in enumerate(ACTIVATIONS)}

# The two checks below run on every op: written for a tiny op's overhead (a dict lookup instead of
# two list scans, a plain loop instead of all() over a generator: about 0.4 us an op together).


def _code(activation: str) -> int:
    try:
        return _CODES[activation]
    except (KeyError, TypeError):  # TypeError: not hashable, so not an activation's name
        raise unknown_activation(activation) from None


def _kernel_dtype(*arrays: Any) -> bool:
    """True when the compiled kernels cover these arrays: one dtype, float32 or float64."""
    dtype = arrays[0].dtype
    if dtype not in FLOATS:
        return False
    for a in arrays:
        if a.dtype != dtype:
            return False
    return True


class NumbaBackend(NumpyBackend):
    """Fused, parallel ``@njit`` kernels on NumPy arrays; argument checks, transfers and the
    fallback for dtypes the kernels do not cover are the NumPy backend's."""

    name: ClassVar[str] = "numba"
    use_threads = staticmethod(use_threads)  # for dlaccel.set_num_threads, which finds us by name

    @property
    def first_call_note(self) -> str | None:
        """What a first call waits for (progress bars show it): None once this process has
        compiled or loaded any kernel."""
        ready = any(getattr(d, "signatures", None) for d in _dispatchers())
        return None if ready else COMPILE_NOTE

    def linear_forward(self, A_prev: Any, W: Any, b: Any) -> Any:
        self._check(A_prev, W, b)
        Z = W @ A_prev
        if not _kernel_dtype(Z, b) or b.shape != (Z.shape[0], 1):
            Z += b
            return Z
        _run(_bias_activation, Z.size, Z, b, Z, LINEAR)
        return Z

    def _forward(self, Z: Any, b: Any, code: int) -> Any:
        A = np.empty_like(Z)
        if code == SOFTMAX:
            _run(_bias_softmax, Z.size, Z, b, A)
        else:
            _run(_bias_activation, Z.size, Z, b, A, code)
        return A

    def activation_forward(self, Z: Any, activation: str) -> Any:
        self._check(Z)
        code = _code(activation)
        if not _kernel_dtype(Z):
            return super().activation_forward(Z, activation)
        return self._forward(np.ascontiguousarray(Z), None, code)

    def _grad(self, dA: Any, A: Any, Z: Any, code: int, inv_m: Any, with_db: bool = True) -> tuple:
        """``(dZ, db)`` from the upstream gradient and the activation's output ``A`` or, when ``A``
        is None, its input ``Z``; ``db`` is None unless ``with_db``."""
        dZ = np.empty_like(dA)
        db = np.empty((dA.shape[0], 1), dA.dtype) if with_db else None
        if code == SOFTMAX:
            _run(_softmax_grad, dZ.size, dA, A, dZ)
            if with_db:
                _run(_grad_row_sums, dZ.size, None, None, None, dZ, db, code, inv_m)
        else:
            _run(_grad_row_sums, dZ.size, dA, A, Z, dZ, db, code, inv_m)
        return dZ, db

    def activation_backward(self, dA: Any, Z: Any, activation: str) -> Any:
        self._check(dA, Z)
        code = _code(activation)
        if not _kernel_dtype(dA, Z) or dA.shape != Z.shape:
            return super().activation_backward(dA, Z, activation)
        Z = np.ascontiguousarray(Z)
        A = self._forward(Z, None, code) if code == SOFTMAX else None
        dZ, _ = self._grad(np.ascontiguousarray(dA), A, Z, code, Z.dtype.type(1), with_db=False)
        return dZ

    def linear_backward(self, dZ: Any, A_prev: Any, W: Any, need_dA_prev: bool = True) -> tuple:
        self._check(dZ, A_prev, W)
        if not _kernel_dtype(dZ, A_prev, W):
            return super().linear_backward(dZ, A_prev, W, need_dA_prev)
        m = A_prev.shape[1]
        dA_prev, dW = self._weight_grads(dZ, A_prev, W, need_dA_prev)
        db = np.empty((dZ.shape[0], 1), dZ.dtype)
        _run(_grad_row_sums, dZ.size, None, None, None, np.ascontiguousarray(dZ), db, LINEAR, dZ.dtype.type(1 / m))
        return dA_prev, dW, db

    def linear_activation_forward(self, A_prev: Any, W: Any, b: Any, activation: str) -> tuple:
        self._check(A_prev, W, b)
        code = _code(activation)
        if not _kernel_dtype(A_prev, W, b) or b.shape != (W.shape[0], 1):
            return super().linear_activation_forward(A_prev, W, b, activation)
        Z = W @ A_prev  # C-ordered whatever the layout of W and A_prev
        A = self._forward(Z, b, code)  # Z += b in place, A = g(Z), one pass
        return A, LayerCache(A_prev, W, b, Z, A)

    def linear_activation_backward(
        self, dA: Any, cache: LayerCache, activation: str, need_dA_prev: bool = True
    ) -> tuple:
        self._check(dA)
        code = _code(activation)
        A_prev, W, A = cache.A_prev, cache.W, cache.A
        self._check(A_prev, W, A)
        if not _kernel_dtype(dA, A_prev, W, A) or dA.shape != A.shape:
            return super().linear_activation_backward(dA, cache, activation, need_dA_prev)
        m = A_prev.shape[1]
        dZ, db = self._grad(np.ascontiguousarray(dA), np.ascontiguousarray(A), None, code, A.dtype.type(1 / m))
        dA_prev, dW = self._weight_grads(dZ, A_prev, W, need_dA_prev)
        return dA_prev, dW, db

    def compute_cost(self, AL: Any, Y: Any, loss: str) -> float:
        self._check(AL, Y)
        if loss not in LOSSES:
            raise unknown_loss(loss)
        if not _kernel_dtype(AL, Y) or AL.shape != Y.shape:
            return super().compute_cost(AL, Y, loss)
        eps = AL.dtype.type(np.finfo(AL.dtype).eps)
        binary = loss == "binary_cross_entropy"
        total = _cost_sum(np.ascontiguousarray(AL).reshape(-1), np.ascontiguousarray(Y).reshape(-1), eps, binary)
        return float(total / AL.shape[1])

    def output_backward(self, AL: Any, Y: Any, loss: str) -> Any:
        self._check(AL, Y)
        if loss not in LOSSES:
            raise unknown_loss(loss)
        if not _kernel_dtype(AL, Y) or AL.shape != Y.shape:
            return super().output_backward(AL, Y, loss)
        AL, Y = np.ascontiguousarray(AL), np.ascontiguousarray(Y)
        dZ = np.empty_like(AL)
        _run(_subtract, dZ.size, AL.reshape(-1), Y.reshape(-1), dZ.reshape(-1))
        return dZ

    def update_parameters(self, parameters: dict, grads: dict, learning_rate: float) -> dict:
        for key, P in parameters.items():
            dP = grads["d" + key]
            if (_kernel_dtype(P, dP) and P.shape == dP.shape and P.flags.c_contiguous
                    and dP.flags.c_contiguous):
                _run(_descend, P.size, P.reshape(-1), dP.reshape(-1), P.dtype.type(learning_rate))
            else:
                P -= learning_rate * dP
        return parameters

    def logistic_regression_step(self, W: Any, b: Any, X: Any, Y: Any, with_cost: bool = True) -> tuple:
        self._check(W, b, X, Y)
        n_x, m = X.shape
        if (not _kernel_dtype(W, b, X, Y) or W.shape != (1, n_x) or b.shape != (1, 1)
                or Y.shape != (1, m)):
            return super().logistic_regression_step(W, b, X, Y, with_cost)
        if not (X.flags.f_contiguous and not X.flags.c_contiguous):
            # Features as rows: blocks of columns read at a stride were measured 2x slower than two
            # streaming BLAS GEMVs, so this layout takes the generic path (GEMV, the fused sigmoid
            # and cost kernels, GEMV).
            return super().logistic_regression_step(W, b, X, Y, with_cost)
        eps = X.dtype.type(np.finfo(X.dtype).eps)
        cost, dW, db = _launch(_logistic_regression_columns, W, b, X.T, Y, eps, with_cost, _thread_count())
        return (cost if with_cost else None), dW, db
