"""Training a model on one of :mod:`dlaccel.datasets`' data sets: what ``dlaccel train`` runs.

Load the data set, hold out a shuffled test split, build the chosen model; the caller fits it
(and prints around the fit) and reads the accuracies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validation import check_learning_rate
from .backends import get_backend
from .errors import InputError
from .models import DeepNN, LogisticRegression, Model, ShallowNN

MODELS = ("logistic", "shallow", "deep")


def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    from .datasets import LOADERS

    if name not in LOADERS:
        raise InputError(f"unknown data set {name!r}; expected one of {', '.join(LOADERS)}")
    return LOADERS[name]()


def split(X: np.ndarray, Y: np.ndarray, test_fraction: float, seed: int, option: str = "test_fraction") -> tuple:
    """A shuffled train/test split of the columns; ``option`` names the fraction in the error."""
    m = X.shape[1]
    n_test = int(round(m * test_fraction))
    if test_fraction > 0 and n_test == 0:
        n_test = 1
    if n_test >= m:
        raise InputError(f"{option} {test_fraction} leaves no training examples out of {m}")
    order = np.random.default_rng(seed).permutation(m)
    test, train = order[:n_test], order[n_test:]
    return X[:, train], Y[:, train], X[:, test], Y[:, test]


def build_model(kind: str, X: np.ndarray, Y: np.ndarray, layers: list[int], hidden_units: int,
                **common: Any) -> Model:
    if kind == "logistic":
        return LogisticRegression(**common)
    if kind == "shallow":
        return ShallowNN(hidden_units, **common)
    classes = int(Y.max()) + 1
    return DeepNN([X.shape[0], *layers, 1 if classes <= 2 else classes], **common)


@dataclass
class Training:
    """A model built for a data set, with its train/test split and iteration count."""

    dataset: str
    model: Model
    X_train: np.ndarray
    Y_train: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray
    num_iterations: int
    learning_rate: float | None = None

    def fit(self, progress: bool = False) -> Model:
        return self.model.fit(self.X_train, self.Y_train, learning_rate=self.learning_rate,
                              num_iterations=self.num_iterations, cost_every=max(1, self.num_iterations // 100),
                              progress=progress)

    def accuracies(self) -> tuple[float, float | None]:
        """Train accuracy, and test accuracy (None without a test split)."""
        test = self.model.accuracy(self.X_test, self.Y_test) if self.X_test.shape[1] else None
        return self.model.accuracy(self.X_train, self.Y_train), test


def prepare(dataset: str, kind: str, *, layers: list[int], hidden_units: int, backend: Any = None,
            learning_rate: float | None = None, iterations: int | None = None, seed: int = 1,
            dtype: Any = "float64", test_split: float = 0.2, split_option: str = "test_split") -> Training:
    """Everything but the fit: the backend and learning rate are checked before the data set loads."""
    if kind not in MODELS:
        raise InputError(f"unknown model {kind!r}; expected one of {', '.join(MODELS)}")
    be = get_backend(backend)  # unknown or unavailable: raises before any work
    if learning_rate is not None:
        check_learning_rate(learning_rate)
    X, Y = load_dataset(dataset)
    X_train, Y_train, X_test, Y_test = split(X, Y, test_split, seed, split_option)
    model = build_model(kind, X_train, Y_train, layers, hidden_units, seed=seed, dtype=dtype, backend=be)
    n_iter = iterations if iterations is not None else model.default_num_iterations
    return Training(dataset, model, X_train, Y_train, X_test, Y_test, n_iter, learning_rate)
