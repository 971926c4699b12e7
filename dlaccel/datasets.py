"""Small two-dimensional data sets of the course, as ``X (n_x, m)``, ``Y (1, m)``.

Every generator draws from its own ``RandomState(seed)``, so the same seed gives the same data.
With ``chunks=`` (a chunk size, or the sizes of every chunk) a generator returns dask arrays instead,
chunked along the examples: each chunk is drawn by a task of its own, on the workers, from its own
stream seeded by ``(seed, chunk index)``, so a data set far larger than the client's memory never
passes through it, and the same ``seed`` and ``chunks`` give the same data. Each chunk is a small
copy of the data set's shape (a whole flower, both circles), so the chunked data set differs from the
in-memory one of the same ``m``; it follows the same distribution.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .errors import InputError, MissingDependencyError


def _check_m(m: int, minimum: int = 2) -> int:
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < minimum:
        raise InputError(f"m must be an integer >= {minimum}, got {m!r}")
    return int(m)


Chunks = int | Sequence[int] | None


def _chunk_sizes(m: int, chunks: int | Sequence[int]) -> list[int]:
    if isinstance(chunks, (int, np.integer)) and not isinstance(chunks, bool):
        if chunks < 2:
            raise InputError(f"chunks must be at least 2 examples, got {chunks}")
        sizes = [int(chunks)] * (m // chunks) + ([m % chunks] if m % chunks else [])
        if len(sizes) > 1 and sizes[-1] < 2:  # a 1-example tail joins the chunk before it
            sizes[-2] += sizes.pop()
        return sizes
    try:
        sizes = [int(c) for c in chunks]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise InputError(f"chunks must be a chunk size or a sequence of sizes, got {chunks!r}") from None
    if sum(sizes) != m or min(sizes) < 2:
        raise InputError(f"chunk sizes must each be >= 2 and add up to m = {m}, got {sizes}")
    return sizes


def _chunked(generator: Callable[..., tuple[np.ndarray, np.ndarray]], m: int, chunks: int | Sequence[int],
             seed: int, **kwargs: Any) -> tuple[Any, Any]:
    """``generator``'s data set as dask arrays whose chunks are drawn by tasks, each from its own stream."""
    try:
        import dask.array as da
        from dask import delayed
    except ImportError:
        raise MissingDependencyError("chunks= needs dask: pip install 'dlaccel[distributed]'") from None
    sizes = _chunk_sizes(m, chunks)
    streams = np.random.SeedSequence(seed).spawn(len(sizes))
    draw = delayed(generator, pure=True, nout=2)
    Xs, Ys = [], []
    for size, stream in zip(sizes, streams):
        X, Y = draw(m=size, seed=int(stream.generate_state(1)[0]), **kwargs)
        Xs.append(da.from_delayed(X, shape=(2, size), dtype=np.float64))
        Ys.append(da.from_delayed(Y, shape=(1, size), dtype=np.uint8))
    return da.concatenate(Xs, axis=1), da.concatenate(Ys, axis=1)


def planar(m: int = 400, seed: int = 1, chunks: Chunks = None) -> tuple[Any, Any]:
    """The course's two-class "flower": ``m / 2`` points per class on the petals of
    ``r = 4 sin(4t)``, with noise on the angle and the radius."""
    m = _check_m(m)
    if chunks is not None:
        return _chunked(planar, m, chunks, seed)
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


def noisy_circles(m: int = 200, factor: float = 0.5, noise: float = 0.3, seed: int = 0, chunks: Chunks = None):
    """Two concentric circles (inner radius ``factor``) with Gaussian noise; the inner one is class 1."""
    m = _check_m(m)
    if chunks is not None:
        return _chunked(noisy_circles, m, chunks, seed, factor=factor, noise=noise)
    rng = np.random.RandomState(seed)
    outer, inner = m - m // 2, m // 2
    t_out = np.linspace(0, 2 * np.pi, outer, endpoint=False)
    t_in = np.linspace(0, 2 * np.pi, inner, endpoint=False)
    X = np.r_[np.c_[np.cos(t_out), np.sin(t_out)], factor * np.c_[np.cos(t_in), np.sin(t_in)]]
    Y = np.r_[np.zeros(outer), np.ones(inner)].astype(np.uint8)
    X += rng.normal(scale=noise, size=X.shape)
    order = rng.permutation(m)
    return X[order].T, Y[order].reshape(1, -1)


def noisy_moons(m: int = 200, noise: float = 0.2, seed: int = 0, chunks: Chunks = None):
    """Two interleaving half circles with Gaussian noise."""
    m = _check_m(m)
    if chunks is not None:
        return _chunked(noisy_moons, m, chunks, seed, noise=noise)
    rng = np.random.RandomState(seed)
    outer, inner = m - m // 2, m // 2
    t_out = np.linspace(0, np.pi, outer)
    t_in = np.linspace(0, np.pi, inner)
    X = np.r_[np.c_[np.cos(t_out), np.sin(t_out)], np.c_[1 - np.cos(t_in), 0.5 - np.sin(t_in)]]
    Y = np.r_[np.zeros(outer), np.ones(inner)].astype(np.uint8)
    X += rng.normal(scale=noise, size=X.shape)
    order = rng.permutation(m)
    return X[order].T, Y[order].reshape(1, -1)


def blobs(m: int = 200, centers: int = 2, spread: float = 1.0, seed: int = 0, chunks: Chunks = None):
    """``centers`` Gaussian blobs with centres drawn in [-10, 10]^2; labels ``0 .. centers-1``.
    Chunked, every chunk shares the centres drawn from ``seed``."""
    m = _check_m(m)
    if isinstance(centers, bool) or not isinstance(centers, (int, np.integer)) or centers < 2:
        raise InputError(f"centers must be an integer >= 2, got {centers!r}")
    rng = np.random.RandomState(seed)
    means = rng.uniform(-10, 10, size=(centers, 2))
    if chunks is not None:
        return _chunked(_blobs_around, m, chunks, seed, means=means, spread=spread)
    return _blobs_around(m, means, spread, rng=rng)


def _blobs_around(m: int, means: np.ndarray, spread: float, seed: int = 0,
                  rng: np.random.RandomState | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = rng if rng is not None else np.random.RandomState(seed)
    centers = len(means)
    Y = np.arange(m) % centers
    X = means[Y] + rng.normal(scale=spread, size=(m, 2))
    order = rng.permutation(m)
    return X[order].T, Y[order].astype(np.uint8).reshape(1, -1)


def gaussian_quantiles(m: int = 200, cov: float = 0.5, seed: int = 0, chunks: Chunks = None):
    """An isotropic Gaussian split by radius into two classes of equal size (inside: 0, outside: 1).
    Chunked, the split is at the distribution's median radius (``r^2 = 2 ln 2 cov``) rather than
    at the sample's, so every chunk draws the same boundary."""
    m = _check_m(m)
    if chunks is not None:
        return _chunked(_gaussian_split, m, chunks, seed, cov=cov)
    rng = np.random.RandomState(seed)
    X = rng.normal(scale=np.sqrt(cov), size=(m, 2))
    r = np.einsum("ij,ij->i", X, X)
    Y = np.zeros(m, dtype=np.uint8)
    Y[np.argsort(r)[m // 2:]] = 1
    return X.T, Y.reshape(1, -1)


def _gaussian_split(m: int, cov: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    X = np.random.RandomState(seed).normal(scale=np.sqrt(cov), size=(m, 2))
    Y = (np.einsum("ij,ij->i", X, X) > 2 * np.log(2) * cov).astype(np.uint8)
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
