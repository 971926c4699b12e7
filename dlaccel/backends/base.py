"""The backend interface: the course's building blocks, stated once.

Conventions: examples are columns. ``A_prev`` is ``(n[l-1], m)``, ``W`` is ``(n[l], n[l-1])``,
``b`` is ``(n[l], 1)``, ``Z = W A_prev + b`` is ``(n[l], m)``. Gradients are averaged over the
``m`` examples. Arrays are the backend's own type; no op changes the dtype it was given.

A new backend subclasses :class:`Backend` and implements the primitive ops (those that raise
``NotImplementedError`` here); the composite ops have generic implementations below that it may
override where it can fuse work.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "softmax", "linear")
LOSSES = ("binary_cross_entropy", "cross_entropy")
LEAKY_RELU_SLOPE = 0.01


class LayerCache(NamedTuple):
    """What the backward pass of one layer needs from its forward pass."""

    A_prev: Any
    W: Any
    b: Any
    Z: Any
    A: Any


class Backend:
    """Base class of every backend.

    ``name`` is the registry name. :meth:`unavailable_reason` says why the backend cannot run here,
    or returns ``None`` when it can; it never raises.
    """

    name: ClassVar[str] = "base"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    def __repr__(self) -> str:
        return f"<dlaccel backend {self.name!r}>"

    def __reduce__(self) -> tuple:
        # Pickled by name (to Dask workers, say): the receiving process uses its own instance.
        from . import get_backend

        return (get_backend, (self.name,))

    # -- transfer -----------------------------------------------------------------------------

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        """Return ``x`` as this backend's array (moved to its device), optionally cast to ``dtype``."""
        raise NotImplementedError

    def to_numpy(self, x: Any) -> Any:
        """Return ``x`` as a NumPy array on the host."""
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait until all queued device work has finished (a no-op on the CPU)."""

    def all_finite(self, x: Any) -> bool:
        """True when no element of ``x`` is NaN or +-Inf."""
        import numpy as np

        return bool(np.isfinite(self.to_numpy(x)).all())

    # -- primitive ops -------------------------------------------------------------------------

    def linear_forward(self, A_prev: Any, W: Any, b: Any) -> Any:
        """``Z = W @ A_prev + b``, with ``b`` broadcast across the ``m`` columns."""
        raise NotImplementedError

    def activation_forward(self, Z: Any, activation: str) -> Any:
        """``A = g(Z)`` elementwise; ``softmax`` normalises each column (``exp(Z) / sum exp(Z)``)."""
        raise NotImplementedError

    def activation_backward(self, dA: Any, Z: Any, activation: str) -> Any:
        """``dZ = dA * g'(Z)``; for ``softmax`` the Jacobian-vector product
        ``A * (dA - sum(dA * A, axis=0))`` with ``A = softmax(Z)``."""
        raise NotImplementedError

    def linear_backward(self, dZ: Any, A_prev: Any, W: Any, need_dA_prev: bool = True) -> tuple:
        """``dW = dZ A_prev^T / m``, ``db = sum(dZ, axis=1) / m`` (shape of ``b``),
        ``dA_prev = W^T dZ`` (``None`` when ``need_dA_prev`` is false)."""
        raise NotImplementedError

    def compute_cost(self, AL: Any, Y: Any, loss: str) -> float:
        """The mean loss over the ``m`` examples, as a Python float.

        ``binary_cross_entropy``: ``-mean(Y log AL + (1 - Y) log(1 - AL))``;
        ``cross_entropy``: ``-sum(Y log AL) / m`` with ``Y`` one-hot. Probabilities are clipped
        to ``[eps, 1 - eps]`` (``eps`` of the dtype) so saturated outputs give a finite cost.
        """
        raise NotImplementedError

    def output_backward(self, AL: Any, Y: Any, loss: str) -> Any:
        """``dZL = AL - Y``: the gradient at the output pre-activation for sigmoid with binary
        cross-entropy and for softmax with cross-entropy (the canonical pairings)."""
        raise NotImplementedError

    # -- composite ops (generic; override to fuse) --------------------------------------------

    def linear_activation_forward(self, A_prev: Any, W: Any, b: Any, activation: str) -> tuple:
        """``A = g(W A_prev + b)``; returns ``(A, cache)``."""
        Z = self.linear_forward(A_prev, W, b)
        A = self.activation_forward(Z, activation)
        return A, LayerCache(A_prev, W, b, Z, A)

    def linear_activation_backward(
        self, dA: Any, cache: LayerCache, activation: str, need_dA_prev: bool = True
    ) -> tuple:
        """``dZ = dA * g'(Z)`` then :meth:`linear_backward`; returns ``(dA_prev, dW, db)``."""
        dZ = self.activation_backward(dA, cache.Z, activation)
        return self.linear_backward(dZ, cache.A_prev, cache.W, need_dA_prev)

    def update_parameters(self, parameters: dict, grads: dict, learning_rate: float) -> dict:
        """``W[l] -= learning_rate * dW[l]``, ``b[l] -= learning_rate * db[l]``, in place."""
        for key, value in parameters.items():
            value -= learning_rate * grads["d" + key]
        return parameters

    def logistic_regression_step(
        self, W: Any, b: Any, X: Any, Y: Any, with_cost: bool = True
    ) -> tuple:
        """One gradient step's worth of logistic regression: ``A = sigmoid(W X + b)``, the
        binary cross-entropy cost (``None`` unless ``with_cost``), ``dW`` and ``db``."""
        A, _ = self.linear_activation_forward(X, W, b, "sigmoid")
        cost = self.compute_cost(A, Y, "binary_cross_entropy") if with_cost else None
        dZ = self.output_backward(A, Y, "binary_cross_entropy")
        _, dW, db = self.linear_backward(dZ, X, W, need_dA_prev=False)
        return cost, dW, db
