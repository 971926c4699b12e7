"""The Numba backend's vectorisable scalar math: exp, expm1, tanh, sigmoid, relu and leaky ReLU in
float32 and float64, callable from any ``@njit`` kernel as ``_exp(x)``, ``_tanh(x)``, ... (resolved
per dtype at compile time).

llvmlite from PyPI has no SVML, so ``math.exp`` compiles to a scalar libm call per element. Here
``exp(x) = 2**k * exp(r)`` with ``k = round(x / ln2)`` and ``|r| <= ln2 / 2``: ``exp(r)`` is a Taylor
polynomial (degree 7 for float32, 13 for float64: truncation error below half an ulp), and ``2**k``
is built from integer bits. Every step is plain arithmetic, compares and bit casts, so LLVM
vectorises the loops that call it. No fastmath: rounding through SHIFTER and the two-part ln2
(Cody-Waite) rely on the exact order of operations.

Numba's on-disk cache follows the kernel's own file only, and the kernels in ``numba_cpu.py`` inline
these functions: ``numba_cpu.MATH_SHA256`` holds this file's hash (tests/test_numba.py checks it), so
an edit here must change that file too, and the kernels compile again.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload, register_jitable

from .base import LEAKY_RELU_SLOPE

# NumPy's error model: x / 0 is inf/nan as in NumPy, not a ZeroDivisionError check per division,
# a branch that stops LLVM from vectorising any loop with a division in it.
NUMPY_ERRORS: dict[str, Any] = {"error_model": "numpy"}


@intrinsic
def _ldexp_shifted(typingctx, p, s):
    """``p * 2**k`` where ``s = t + SHIFTER`` holds ``k = round(t)`` in its low mantissa bits.

    ``k`` is applied as ``2**(k // 2) * 2**(k - k // 2)`` so results that are subnormal or that
    overflow to inf round once, correctly, instead of wrapping the exponent field.
    """
    if not isinstance(p, types.Float) or p != s:
        return None
    bits, mantissa, bias, shifter = (32, 23, 127, 0x4B400000) if p.bitwidth == 32 else (
        64, 52, 1023, 0x4338000000000000)

    def codegen(context, builder, signature, args):
        pv, sv = args
        int_t = ir.IntType(bits)
        k = builder.sub(builder.bitcast(sv, int_t), ir.Constant(int_t, shifter))
        k_half = builder.ashr(k, ir.Constant(int_t, 1))

        def pow2(e):
            biased = builder.add(e, ir.Constant(int_t, bias))
            return builder.bitcast(builder.shl(biased, ir.Constant(int_t, mantissa)), pv.type)

        return builder.fmul(builder.fmul(pv, pow2(k_half)), pow2(builder.sub(k, k_half)))

    return p(p, s), codegen


def _scalar_math(T: type, lo: float, hi: float, ln2_hi: float, ln2_lo: float, shifter: float, degree: int):
    """The scalar functions in dtype ``T``: every constant is a ``T`` so float32 stays float32."""
    coefficients = tuple(T(1 / math.factorial(n)) for n in range(degree, 1, -1))  # Horner order
    LO, HI, LOG2E, LN2_HI, LN2_LO, SHIFTER = (T(c) for c in (lo, hi, 1 / math.log(2), ln2_hi, ln2_lo, shifter))
    ZERO, ONE, TWO, SLOPE = T(0), T(1), T(2), T(LEAKY_RELU_SLOPE)

    @register_jitable(**NUMPY_ERRORS)
    def reduce(x):
        # Clamp so the tails saturate to 0 and inf (NaN fails both tests and propagates).
        x = LO if x < LO else x
        x = HI if x > HI else x
        s = x * LOG2E + SHIFTER
        k = s - SHIFTER
        r = (x - k * LN2_HI) - k * LN2_LO
        p = ZERO
        for c in coefficients:
            p = p * r + c
        return r + r * r * p, s  # expm1(r), and k inside s

    @register_jitable(**NUMPY_ERRORS)
    def exp(x):
        q, s = reduce(x)
        return _ldexp_shifted(ONE + q, s)

    @register_jitable(**NUMPY_ERRORS)
    def expm1(x):
        # 2**k * (1 + q) - 1 = 2**k * q + (2**k - 1): no cancellation when k = 0, where it matters.
        q, s = reduce(x)
        return _ldexp_shifted(q, s) + (_ldexp_shifted(ONE, s) - ONE)

    def sigmoid(x):
        e = exp(-abs(x))  # in (0, 1]: no overflow for any finite x
        a = ONE / (ONE + e)
        return a if x >= ZERO else e * a

    def tanh(x):
        # tanh|x| = -expm1(-2|x|) / (2 + expm1(-2|x|)): exact at small |x|, saturates to 1.
        e = expm1(-TWO * abs(x))
        t = -e / (TWO + e)
        return -t if x < ZERO else t

    def relu(x):
        return ZERO if x < ZERO else x  # NaN (and -0.0) pass through, as in np.maximum(x, 0)

    def leaky_relu(x):
        return x if x > ZERO else x * SLOPE

    return {"exp": exp, "tanh": tanh, "sigmoid": sigmoid, "relu": relu, "leaky_relu": leaky_relu}


_MATH = {
    32: _scalar_math(np.float32, -104.0, 89.0, 0.693359375, -2.12194440e-4, 1.5 * 2**23, 7),
    64: _scalar_math(np.float64, -746.0, 710.0, 0.693145751953125, 1.42860682030941723212e-6, 1.5 * 2**52, 13),
}


def _dtype_overload(name: str):
    """A stub usable in kernels that resolves to ``_MATH[bits][name]`` for the argument's dtype."""

    def stub(x):
        raise NotImplementedError("only callable from compiled code")

    stub.__name__ = stub.__qualname__ = f"_{name}"

    @overload(stub, jit_options=NUMPY_ERRORS)  # type: ignore[arg-type]
    def _resolve(x):
        if isinstance(x, types.Float) and x.bitwidth in _MATH:
            return _MATH[x.bitwidth][name]
        return None

    return stub


_exp, _tanh, _sigmoid, _relu, _leaky_relu = (
    _dtype_overload(name) for name in ("exp", "tanh", "sigmoid", "relu", "leaky_relu"))
