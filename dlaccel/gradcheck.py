"""Backprop against centred finite differences."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from .errors import InputError


def gradient_check(model: Any, X: Any, Y: Any, epsilon: float = 1e-7, max_checks: int | None = None,
                   seed: int = 0) -> float:
    """The relative difference ``|g - g_approx| / (|g| + |g_approx|)`` between the model's
    backprop gradients and centred finite differences ``(J(p + eps) - J(p - eps)) / (2 eps)``.

    Runs in float64 on a copy of the model on its own backend, so a backend's backward pass is
    what is checked; the model is left unchanged. Each checked parameter costs two forward
    passes: ``max_checks`` checks that many, drawn at random, instead of all of them.
    Values under about 1e-7 mean backprop is right.
    """
    from .models import Model

    if not isinstance(model, Model):
        raise TypeError(f"gradient_check expects a dlaccel model, got {type(model).__name__}")
    if not (isinstance(epsilon, float | int) and 0 < epsilon < 1):
        raise InputError(f"epsilon must be a small positive number (1e-7 is usual), got {epsilon!r}")
    model._prepare(X, Y)  # an unfitted model takes its layer sizes from the data, as in fit
    probe = copy.copy(model)
    probe.dtype = np.dtype(np.float64)
    params = {k: p.astype(np.float64) for k, p in model.parameters.items()}
    probe.parameters = params
    X, Y = probe._prepare(X, Y)
    be = probe.backend
    _, grads = probe._step(X, Y, with_cost=False)
    backprop = {k: np.asarray(be.to_numpy(v)) for k, v in grads.items()}
    base = dict(probe._require_built())

    def cost_with(key: str, value: np.ndarray) -> float:
        probe._params = {**base, key: be.asarray(value)}
        AL, _ = probe._forward(X)
        return be.compute_cost(AL, Y, probe.loss)

    flat_index = [(k, i) for k, p in params.items() for i in range(p.size)]
    if max_checks is not None and max_checks < len(flat_index):
        rng = np.random.RandomState(seed)
        flat_index = [flat_index[j] for j in rng.choice(len(flat_index), max_checks, replace=False)]
    g = np.empty(len(flat_index))
    approx = np.empty(len(flat_index))
    for n, (key, i) in enumerate(flat_index):
        costs = []
        for sign in (1, -1):
            shifted = params[key].copy()
            shifted.flat[i] += sign * epsilon
            costs.append(cost_with(key, shifted))
        approx[n] = (costs[0] - costs[1]) / (2 * epsilon)
        g[n] = backprop["d" + key].flat[i]
    denom = np.linalg.norm(g) + np.linalg.norm(approx)
    return 0.0 if denom == 0 else float(np.linalg.norm(g - approx) / denom)
