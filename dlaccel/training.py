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
from .models import DeepNN, LogisticRegression, Model, ShallowNN, load_model

MODELS = ("logistic", "shallow", "deep")
MODEL_CLASSES: dict[str, type[Model]] = {"logistic": LogisticRegression, "shallow": ShallowNN, "deep": DeepNN}


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


def output_size(Y: np.ndarray) -> int:
    """The output layer a data set's labels need: one sigmoid unit for two classes, else one per class."""
    classes = len(np.unique(Y))
    return 1 if classes <= 2 else classes


def build_model(kind: str, X: np.ndarray, Y: np.ndarray, layers: list[int], hidden_units: int,
                **common: Any) -> Model:
    if kind == "logistic":
        return LogisticRegression(**common)
    if kind == "shallow":
        return ShallowNN(hidden_units, **common)
    return DeepNN([X.shape[0], *layers, output_size(Y)], **common)


@dataclass
class Training:
    """A model built for a data set, with its train/test split and iteration count."""

    dataset: str
    model: Model
    X_train: np.ndarray
    Y_train: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray
    num_iterations: int  # still to run (all of them, unless resumed)
    learning_rate: float | None = None
    total_iterations: int = 0  # where the run ends, counted from the model's first iteration

    def fit(self, progress: bool = False, client: Any = None, workers: int | None = None, checkpoint: Any = None,
            checkpoint_every: int | None = None) -> Model:
        """Fit on the training split; with ``client`` (a Client or scheduler address) or ``workers``
        (a LocalCluster of that many processes), data-parallel on Dask, the split in one chunk per worker."""
        X: Any = self.X_train
        keywords = {"learning_rate": self.learning_rate, "num_iterations": self.num_iterations,
                    "cost_every": max(1, self.total_iterations // 100), "progress": progress,
                    "checkpoint": checkpoint, "checkpoint_every": checkpoint_every}
        if client is None and workers is None:
            return self.model.fit(X, self.Y_train, **keywords)
        from .distributed import client_for

        with client_for(client, workers) as connected:
            import dask.array as da

            n = max(1, len(connected.scheduler_info(n_workers=-1)["workers"]))
            X = da.from_array(X, chunks=(X.shape[0], -(-X.shape[1] // n)))
            return self.model.fit(X, self.Y_train, client=connected, **keywords)

    def accuracies(self) -> tuple[float, float | None]:
        """Train accuracy, and test accuracy (None without a test split)."""
        test = self.model.accuracy(self.X_test, self.Y_test) if self.X_test.shape[1] else None
        return self.model.accuracy(self.X_train, self.Y_train), test


def prepare(dataset: str, kind: str, *, layers: list[int], hidden_units: int, backend: Any = None,
            learning_rate: float | None = None, iterations: int | None = None, seed: int = 1,
            dtype: Any = "float64", test_split: float = 0.2, split_option: str = "test_split",
            resume: Any = None) -> Training:
    """Everything but the fit: the backend and learning rate are checked before the data set loads.
    ``resume`` (a saved model or checkpoint) replaces the new model and runs the iterations it has
    left to reach ``iterations`` in total."""
    if kind not in MODELS:
        raise InputError(f"unknown model {kind!r}; expected one of {', '.join(MODELS)}")
    be = get_backend(backend)  # unknown or unavailable: raises before any work
    if learning_rate is not None:
        check_learning_rate(learning_rate)
    X, Y = load_dataset(dataset)
    X_train, Y_train, X_test, Y_test = split(X, Y, test_split, seed, split_option)
    if resume is not None:
        model = load_model(resume, backend=be)
        if not isinstance(model, MODEL_CLASSES[kind]):
            raise InputError(f"{resume} holds a {type(model).__name__}, not a {MODEL_CLASSES[kind].__name__} "
                             f"(model {kind!r}); resume with the options the run started with")
    else:
        model = build_model(kind, X_train, Y_train, layers, hidden_units, seed=seed, dtype=dtype, backend=be)
    total = iterations if iterations is not None else model.default_num_iterations
    return Training(dataset, model, X_train, Y_train, X_test, Y_test, max(0, total - model.iteration),
                    learning_rate, total)
