"""Small two-dimensional data sets of the course, as ``X (n_x, m)``, ``Y (1, m)``.

Every generator draws from its own ``RandomState(seed)``, so the same seed gives the same data.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .errors import InputError, MissingDependencyError


def _check_m(m: int, minimum: int = 2) -> int:
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < minimum:
        raise InputError(f"m must be an integer >= {minimum}, got {m!r}")
    return int(m)


def planar(m: int = 400, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The course's two-class "flower": ``m / 2`` points per class on the petals of
    ``r = 4 sin(4t)``, with noise on the angle and the radius."""
    m = _check_m(m)
    rng = np.random.RandomState(seed)
    N = m // 2
    a = 4
    X = np.zeros((2 * N, 2))
    Y = np.zeros((2 * N, 1), dtype=np.uint8)
    for j in range(2):
        ix = slice(N * j, N * (j + 1))
        t = np.linspace(j * 3.12, (j + 1) * 3.12, N) + rng.randn(N) * 0.2
        r = a * np.sin(4 * t) + rng.randn(N) * 0.2
        X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        Y[ix] = j
    return X.T, Y.T


def noisy_circles(m: int = 200, factor: float = 0.5, noise: float = 0.3, seed: int = 0):
    """Two concentric circles (inner radius ``factor``) with Gaussian noise; the inner one is class 1."""
    m = _check_m(m)
    rng = np.random.RandomState(seed)
    outer, inner = m - m // 2, m // 2
    t_out = np.linspace(0, 2 * np.pi, outer, endpoint=False)
    t_in = np.linspace(0, 2 * np.pi, inner, endpoint=False)
    X = np.r_[np.c_[np.cos(t_out), np.sin(t_out)], factor * np.c_[np.cos(t_in), np.sin(t_in)]]
    Y = np.r_[np.zeros(outer), np.ones(inner)].astype(np.uint8)
    X += rng.normal(scale=noise, size=X.shape)
    order = rng.permutation(m)
    return X[order].T, Y[order].reshape(1, -1)


def noisy_moons(m: int = 200, noise: float = 0.2, seed: int = 0):
    """Two interleaving half circles with Gaussian noise."""
    m = _check_m(m)
    rng = np.random.RandomState(seed)
    outer, inner = m - m // 2, m // 2
    t_out = np.linspace(0, np.pi, outer)
    t_in = np.linspace(0, np.pi, inner)
    X = np.r_[np.c_[np.cos(t_out), np.sin(t_out)], np.c_[1 - np.cos(t_in), 0.5 - np.sin(t_in)]]
    Y = np.r_[np.zeros(outer), np.ones(inner)].astype(np.uint8)
    X += rng.normal(scale=noise, size=X.shape)
    order = rng.permutation(m)
    return X[order].T, Y[order].reshape(1, -1)


def blobs(m: int = 200, centers: int = 2, spread: float = 1.0, seed: int = 0):
    """``centers`` Gaussian blobs with centres drawn in [-10, 10]^2; labels ``0 .. centers-1``."""
    m = _check_m(m)
    if isinstance(centers, bool) or not isinstance(centers, (int, np.integer)) or centers < 2:
        raise InputError(f"centers must be an integer >= 2, got {centers!r}")
    rng = np.random.RandomState(seed)
    means = rng.uniform(-10, 10, size=(centers, 2))
    Y = np.arange(m) % centers
    X = means[Y] + rng.normal(scale=spread, size=(m, 2))
    order = rng.permutation(m)
    return X[order].T, Y[order].astype(np.uint8).reshape(1, -1)


def gaussian_quantiles(m: int = 200, cov: float = 0.5, seed: int = 0):
    """An isotropic Gaussian split by radius into two classes of equal size (inside: 0, outside: 1)."""
    m = _check_m(m)
    rng = np.random.RandomState(seed)
    X = rng.normal(scale=np.sqrt(cov), size=(m, 2))
    r = np.einsum("ij,ij->i", X, X)
    Y = np.zeros(m, dtype=np.uint8)
    Y[np.argsort(r)[m // 2:]] = 1
    return X.T, Y.reshape(1, -1)


def digits():
    """scikit-learn's 8x8 handwritten digits: ``X (64, 1797)`` scaled to [0, 1], ``Y (1, 1797)``
    labels 0..9. Needs scikit-learn (ships with the data; nothing is downloaded)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise MissingDependencyError(
            "the digits data set needs scikit-learn: pip install 'dlaccel[datasets]'"
        ) from None
    data = load_digits()
    return (data.data / 16.0).T, data.target.astype(np.int64).reshape(1, -1)


LOADERS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "planar": planar,
    "circles": noisy_circles,
    "moons": noisy_moons,
    "blobs": blobs,
    "gaussian_quantiles": gaussian_quantiles,
    "digits": digits,
}
