"""The course's models as configurations of one L-layer engine.

``LogisticRegression`` is a net with no hidden layer, ``ShallowNN`` one hidden layer, ``DeepNN`` any
number. Every array operation goes through the backend the model holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from . import _validation as v
from .backends import Backend, get_backend
from .backends.base import ACTIVATIONS
from .errors import DlaccelError, InputError, ModelFileError, ShapeError, TrainingDivergedError
from .io import read_model_file, write_model_file

INITIALIZATIONS = ("course", "he", "xavier", "zeros")
OUTPUT_ACTIVATIONS = ("sigmoid", "softmax")
_LOSS = {"sigmoid": "binary_cross_entropy", "softmax": "cross_entropy"}
_RELU_FAMILY = ("relu", "leaky_relu")


def initialize_parameters(
    layer_dims: list[int], initialization: str, seed: int | None, dtype: Any = np.float64
) -> dict[str, np.ndarray]:
    """Draw ``W[l]`` in layer order from one ``RandomState(seed)`` stream as
    ``randn(n[l], n[l-1]) * scale``; biases are zero. Always on the host."""
    if initialization not in INITIALIZATIONS:
        raise InputError(f"unknown initialization {initialization!r}; expected one of {', '.join(INITIALIZATIONS)}")
    rng = np.random.RandomState(seed)
    parameters = {}
    for l in range(1, len(layer_dims)):
        n, n_prev = layer_dims[l], layer_dims[l - 1]
        if initialization == "zeros":
            W = np.zeros((n, n_prev))
        else:
            scale = {"course": 0.01, "he": math.sqrt(2 / n_prev), "xavier": math.sqrt(1 / n_prev)}
            W = rng.randn(n, n_prev) * scale[initialization]
        parameters[f"W{l}"] = W.astype(dtype)
        parameters[f"b{l}"] = np.zeros((n, 1), dtype=dtype)
    return parameters


class Model:
    """The L-layer engine shared by every model.

    Subclasses set the defaults; ``layer_dims`` may be unknown (``None``) until the first ``fit``.
    """

    default_learning_rate: ClassVar[float] = 0.0075
    default_num_iterations: ClassVar[int] = 3000
    _num_layers: ClassVar[int | None] = None  # fixed by the architecture, or any

    def __init__(
        self,
        layer_dims: list[int] | None,
        hidden_activation: str = "relu",
        output_activation: str | None = None,
        initialization: str | None = None,
        seed: int | None = None,
        dtype: Any = "float64",
        backend: str | Backend | None = None,
    ):
        if hidden_activation not in ACTIVATIONS or hidden_activation == "softmax":
            allowed = ", ".join(a for a in ACTIVATIONS if a != "softmax")
            raise InputError(f"unknown hidden_activation {hidden_activation!r}; expected one of {allowed}")
        if output_activation is not None and output_activation not in OUTPUT_ACTIVATIONS:
            raise InputError(
                f"output_activation must be one of {', '.join(OUTPUT_ACTIVATIONS)} (or None to choose from "
                f"the output size), got {output_activation!r}"
            )
        if initialization is not None and initialization not in INITIALIZATIONS:
            raise InputError(f"unknown initialization {initialization!r}; expected one of {', '.join(INITIALIZATIONS)}")
        self.dtype = v.check_dtype(dtype)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise InputError(f"seed must be a non-negative integer or None, got {seed!r}")
        self.backend = get_backend(backend)
        self.hidden_activation = hidden_activation
        self.output_activation = output_activation
        self.initialization = initialization
        self.seed = seed
        self.layer_dims: list[int] | None = None
        self.costs: list[tuple[int, float]] = []
        self.iteration = 0
        self._params: dict[str, Any] | None = None
        # The labels the output units stand for; fixed by the first labels the model meets.
        self.classes_: np.ndarray | None = None
        self._classes_known = False
        if layer_dims is not None:
            self._build(v.check_layer_dims(layer_dims))

    # -- configuration ---------------------------------------------------------------------------

    def _default_initialization(self) -> str:
        return "he" if self.hidden_activation in _RELU_FAMILY else "xavier"

    def _build(self, layer_dims: list[int], draw: bool = True) -> None:
        if self.output_activation is None:
            self.output_activation = "sigmoid" if layer_dims[-1] == 1 else "softmax"
        if self.output_activation == "softmax" and layer_dims[-1] < 2:
            raise InputError(f"a softmax output needs at least 2 units, got layer_dims {layer_dims}")
        self.layer_dims = layer_dims
        if not self._classes_known:  # until labels say otherwise: class indices, or 0/1
            n_y = layer_dims[-1]
            if self.output_activation == "softmax":
                self.classes_ = np.arange(n_y)
            else:
                self.classes_ = np.arange(2) if n_y == 1 else None  # several sigmoid units: multi-label
        if draw:
            self.reset()

    def _infer_layer_dims(self, n_x: int, n_y: int) -> list[int]:
        raise NotImplementedError

    @property
    def num_layers(self) -> int:
        return 0 if self.layer_dims is None else len(self.layer_dims) - 1

    @property
    def _output(self) -> str:
        if self.output_activation is None:
            raise InputError(f"this {type(self).__name__} has not been fitted yet: call fit(X, Y) first")
        return self.output_activation

    @property
    def loss(self) -> str:
        return _LOSS[self._output]

    def reset(self) -> Model:
        """Draw the initial parameters again and clear the cost history."""
        self.costs = []
        self.iteration = 0
        if self.layer_dims is None:
            self._params = None
            return self
        scheme = self.initialization or self._default_initialization()
        host = initialize_parameters(self.layer_dims, scheme, self.seed, self.dtype)
        self._params = {k: self.backend.asarray(p) for k, p in host.items()}
        return self

    def _require_built(self) -> dict[str, Any]:
        if self._params is None:
            raise InputError(f"this {type(self).__name__} has not been fitted yet: call fit(X, Y) first")
        return self._params

    def _require_built_dims(self) -> list[int]:
        self._require_built()
        assert self.layer_dims is not None
        return self.layer_dims

    # -- parameters --------------------------------------------------------------------------------

    @property
    def parameters(self) -> dict[str, np.ndarray]:
        """The parameters as NumPy copies: ``{"W1", "b1", ..., "WL", "bL"}``."""
        params = self._require_built()
        return {k: np.array(self.backend.to_numpy(p), copy=True) for k, p in params.items()}

    @parameters.setter
    def parameters(self, values: dict[str, Any]) -> None:
        if not isinstance(values, dict):
            raise ShapeError(f"parameters must be a dict {{'W1', 'b1', ..., 'WL', 'bL'}}, got {type(values).__name__}")
        if self.layer_dims is None:
            self._build(self._dims_from_parameters(values))
        expected = self._expected_shapes()
        if set(values) != set(expected):
            raise ShapeError(f"parameters must have exactly the keys {sorted(expected)}, got {sorted(values)}")
        new = {}
        for key, shape in expected.items():
            value = v.array_module(values[key]).asarray(values[key])
            if value.shape != shape:
                raise ShapeError(f"parameter {key} must have shape {shape}, got {value.shape}")
            if value.dtype.kind not in "fiu" or not bool(v.array_module(value).isfinite(value).all()):
                raise InputError(f"parameter {key} must be finite numbers")
            new[key] = self.backend.asarray(value, dtype=self.dtype)
        self._params = new

    def _dims_from_parameters(self, values: dict[str, Any]) -> list[int]:
        """The layer sizes that ``values`` describe, for a model whose sizes come from the data."""
        shapes = [np.shape(values[f"W{l}"]) for l in range(1, len(values) + 1) if f"W{l}" in values]
        if not shapes or any(len(s) != 2 for s in shapes):
            raise ShapeError("parameters must contain W1, b1, ..., WL, bL as 2-D arrays")
        dims = v.check_layer_dims([shapes[0][1]] + [s[0] for s in shapes])
        expected = self._infer_layer_dims(dims[0], dims[-1])
        if dims != expected:
            raise ShapeError(f"these parameters describe layers {dims}; a {type(self).__name__} has {expected}")
        return dims

    def _expected_shapes(self) -> dict[str, tuple[int, int]]:
        dims = self.layer_dims or []
        shapes = {}
        for l in range(1, len(dims)):
            shapes[f"W{l}"] = (dims[l], dims[l - 1])
            shapes[f"b{l}"] = (dims[l], 1)
        return shapes

    def to(self, backend: str | Backend) -> Model:
        """Move the model (its parameters) to another backend; returns the model."""
        target = get_backend(backend)
        if self._params is not None:
            host = {k: self.backend.to_numpy(p) for k, p in self._params.items()}
            self._params = {k: target.asarray(p) for k, p in host.items()}
        self.backend = target
        return self

    # -- propagation ------------------------------------------------------------------------------

    def _forward(self, X: Any) -> tuple[Any, list]:
        params, be = self._require_built(), self.backend
        L = self.num_layers
        A, caches = X, []
        for l in range(1, L + 1):
            act = self._output if l == L else self.hidden_activation
            A, cache = be.linear_activation_forward(A, params[f"W{l}"], params[f"b{l}"], act)
            caches.append(cache)
        return A, caches

    def _backward(self, AL: Any, Y: Any, caches: list) -> dict[str, Any]:
        be, L = self.backend, self.num_layers
        grads = {}
        dZ = be.output_backward(AL, Y, self.loss)
        last = caches[-1]
        dA, grads[f"dW{L}"], grads[f"db{L}"] = be.linear_backward(dZ, last.A_prev, last.W, need_dA_prev=L > 1)
        for l in range(L - 1, 0, -1):
            dA, grads[f"dW{l}"], grads[f"db{l}"] = be.linear_activation_backward(
                dA, caches[l - 1], self.hidden_activation, need_dA_prev=l > 1
            )
        return grads

    def _step(self, X: Any, Y: Any, with_cost: bool) -> tuple[float | None, dict[str, Any]]:
        """One forward and backward pass: the cost (when asked) and the gradients."""
        params, be = self._require_built(), self.backend
        if self.num_layers == 1 and self.output_activation == "sigmoid":
            cost, dW, db = be.logistic_regression_step(params["W1"], params["b1"], X, Y, with_cost)
            return cost, {"dW1": dW, "db1": db}
        AL, caches = self._forward(X)
        cost = be.compute_cost(AL, Y, self.loss) if with_cost else None
        return cost, self._backward(AL, Y, caches)

    # -- data -------------------------------------------------------------------------------------

    def _prepare(self, X: Any, Y: Any | None = None) -> tuple[Any, Any]:
        """Validate and move ``X`` (and ``Y``) to the backend in the model dtype, building the
        layers from the data when their sizes are not known yet, and fixing ``classes_`` from the
        first labels the model meets."""
        n_x = self.layer_dims[0] if self.layer_dims else None
        if Y is None:
            X = v.check_X(X, n_x)
            self._require_built()
            return self.backend.asarray(X, dtype=self.dtype), None
        X, Y = v.check_XY(X, Y, n_x)
        if self._classes_known:
            classes, n_y, output = self.classes_, self._require_built_dims()[-1], self._output
        else:
            n_y_known = self.layer_dims[-1] if self.layer_dims else None
            classes, n_y, output = v.find_classes(Y, n_y_known, self.output_activation)
        T = v.labels_to_targets(Y, classes, n_y, output, self.dtype)  # checked before anything is built
        if self.layer_dims is None:
            self.output_activation = output
            self._build(self._infer_layer_dims(X.shape[0], n_y))
        self.classes_, self._classes_known = classes, True
        return self.backend.asarray(X, dtype=self.dtype), self.backend.asarray(T, dtype=self.dtype)

    # -- public API -------------------------------------------------------------------------------

    def fit(
        self,
        X: Any,
        Y: Any,
        learning_rate: float | None = None,
        num_iterations: int | None = None,
        cost_every: int = 100,
        progress: bool = False,
        checkpoint: Any = None,
        checkpoint_every: int | None = None,
        client: Any = None,
    ) -> Model:
        """Full-batch gradient descent from the current parameters; returns the model.

        The cost of iteration ``i`` (from its forward pass, before its update) is recorded in
        ``costs`` at the first iteration of this call, at every multiple of ``cost_every`` and
        at the last iteration. At each record the run is checked, and it has diverged when

        - the cost or a parameter is NaN/Inf, or
        - the cost ran away while staying finite: it rose above this call's first recorded cost
          by more than a quarter of the saturation cost (the cost with every example wrong at the
          clipping bound: ``-log(eps)`` of the dtype per example, per output unit for sigmoid
          outputs; 9.0 for float64 with one sigmoid unit or softmax, 4.0 for float32). The course's
          runs move by well under 1 % of that; a learning rate far too large jumps past it within
          a few iterations.

        Then the model goes back to the parameters of the last check that passed and raises
        :class:`TrainingDivergedError` naming the iteration. Only this call's first cost is the
        reference, so a fit continuing from a trained model (a tiny cost) is held to the same
        absolute margin, and one that starts saturated is checked for NaN/Inf only.

        ``X`` as a dask array (``(n_x, m)``, chunked along the examples) trains data-parallel on a
        Dask cluster: ``client`` is a ``distributed.Client`` or a scheduler address; ``None`` takes
        the current Client, else starts a LocalCluster for this call. See :mod:`dlaccel.distributed`.

        ``checkpoint`` (a path) receives the model, atomically, every ``checkpoint_every``
        iterations, at the end, and when the fit is interrupted; ``dlaccel.load(checkpoint)`` then
        ``fit(X, Y, num_iterations=rest)`` continues exactly. Ctrl-C leaves the model at its last
        completed iteration (never half an update) and re-raises ``KeyboardInterrupt``.
        """
        lr = v.check_learning_rate(self.default_learning_rate if learning_rate is None else learning_rate)
        n_iter = v.check_count(
            self.default_num_iterations if num_iterations is None else num_iterations, "num_iterations", 0
        )
        cost_every = v.check_count(cost_every, "cost_every", 1)
        if checkpoint_every is not None:
            checkpoint_every = v.check_count(checkpoint_every, "checkpoint_every", 1)
            if checkpoint is None:
                raise InputError("checkpoint_every needs checkpoint=PATH, the file to write")
        if checkpoint is not None:
            checkpoint = v.check_output_path(checkpoint, "checkpoint")
        from .distributed import is_dask_array

        if is_dask_array(X):
            from .distributed import ShardedData, build_from_data, client_for

            with client_for(client) as connected:
                Xd, Yd = build_from_data(self, X, Y, connected)
                if n_iter == 0:
                    return self
                data = ShardedData(connected, self, Xd, Yd)
                try:
                    return self._train(lambda record, it: data.step(self._require_built(), record, it),
                                       lr, n_iter, cost_every, progress, checkpoint, checkpoint_every)
                finally:
                    data.release()
        if client is not None:
            raise InputError("client= trains on a Dask cluster and needs X as a dask array; "
                             "pass dask.array.from_array(X, chunks=...) or drop client=")
        X, Y = self._prepare(X, Y)
        if n_iter == 0:
            return self
        return self._train(lambda record, it: self._step(X, Y, with_cost=record),
                           lr, n_iter, cost_every, progress, checkpoint, checkpoint_every)

    def _train(self, step: Callable[[bool, int], tuple[float | None, dict[str, Any]]], lr: float, n_iter: int,
               cost_every: int, progress: bool, checkpoint: Any, checkpoint_every: int | None) -> Model:
        """The gradient-descent loop around ``step(record, iteration) -> (cost or None, grads)``."""
        from ._progress import progress_reporter
        from ._signals import deferred_interrupts

        be, params = self.backend, self._require_built()
        good = {k: p.copy() for k, p in params.items()}
        start = self.iteration
        first: float | None = None  # this call's first recorded cost: the runaway reference
        # Overflow while diverging is reported once, as TrainingDivergedError, not as warnings.
        quiet = np.errstate(over="ignore", invalid="ignore")
        waiting = getattr(be, "first_call_note", None)  # e.g. Numba compiling its kernels
        with progress_reporter(progress, n_iter, type(self).__name__, waiting) as report, quiet, \
                deferred_interrupts() as critical:
            try:
                for i in range(n_iter):
                    it = start + i
                    record = i == 0 or it % cost_every == 0 or i == n_iter - 1
                    cost, grads = step(record, it)
                    with critical:  # the cost record, the update and the counter move together
                        if cost is not None:
                            first = cost if first is None else first
                            problem = self._divergence(cost, first, params)
                            if problem:
                                self._diverged(good, it, problem, lr)
                            good = {k: p.copy() for k, p in params.items()}
                            self.costs.append((it, cost))
                        # A backend may update in place or return new arrays; both are kept.
                        params = self._params = be.update_parameters(params, grads, lr)
                        self.iteration = it + 1
                    if cost is not None:
                        report(i + 1, cost)
                    if checkpoint_every is not None and self.iteration % checkpoint_every == 0 and i < n_iter - 1:
                        self._checkpoint(checkpoint, good, lr)
            except KeyboardInterrupt:
                if checkpoint is not None:
                    self._checkpoint(checkpoint, good, lr)
                raise
        if not all(be.all_finite(p) for p in params.values()):
            self._diverged(good, self.iteration - 1, "the parameters became NaN/Inf", lr)
        if checkpoint is not None:
            self.save(checkpoint)
        return self

    def _checkpoint(self, path: Any, good: dict[str, Any], lr: float) -> None:
        """Save, unless the parameters went non-finite since the last check (that is divergence)."""
        if not all(self.backend.all_finite(p) for p in self._require_built().values()):
            self._diverged(good, self.iteration - 1, "the parameters became NaN/Inf", lr)
        self.save(path)

    def _allowed_rise(self) -> float:
        """How far the cost may rise above a fit's first recorded cost: a quarter of the
        saturation cost (every example wrong at the clipping bound ``eps`` of the dtype)."""
        per_unit = -math.log(float(np.finfo(self.dtype).eps))
        units = self._require_built_dims()[-1] if self._output == "sigmoid" else 1
        return units * per_unit / 4

    def _divergence(self, cost: float, first: float, params: dict[str, Any]) -> str | None:
        """What went wrong at a record, or ``None`` when the run is healthy."""
        if not math.isfinite(cost):
            return f"the cost became {cost}"
        if not all(self.backend.all_finite(p) for p in params.values()):
            return "the parameters became NaN/Inf"
        if cost > first + self._allowed_rise():
            return f"the cost ran away from {first:.4g} to {cost:.4g}"
        return None

    def _diverged(self, good: dict[str, Any], iteration: int, what: str, lr: float) -> None:
        self._params = good
        raise TrainingDivergedError(
            f"training diverged at iteration {iteration}: {what}; the model keeps the parameters of its "
            f"last good check. Lower the learning rate (it was {lr:g}).",
            iteration,
        )

    def predict_proba(self, X: Any) -> np.ndarray:
        """The output layer's probabilities ``AL``, shape ``(n_y, m)``, as a NumPy array (a lazy
        dask array for a dask ``X``)."""
        from .distributed import dask_predict, is_dask_array

        if is_dask_array(X):
            return dask_predict(self, X, proba=True)
        X, _ = self._prepare(X)
        AL, _ = self._forward(X)
        return np.asarray(self.backend.to_numpy(AL))

    def predict(self, X: Any) -> np.ndarray:
        """Labels of shape ``(1, m)``, from ``classes_``: the labels the model was fitted on (0/1
        or class indices when it was fitted on those, or on one-hot targets). Sigmoid outputs
        threshold at 0.5, softmax takes the most probable class. A sigmoid output of several units
        (multi-label) gives 0/1 of shape ``(n_y, m)``."""
        from .distributed import dask_predict, is_dask_array

        if is_dask_array(X):
            return dask_predict(self, X, proba=False)
        P = self.predict_proba(X)
        if self.output_activation == "softmax":
            index = P.argmax(axis=0).reshape(1, -1)
        else:
            index = (P > 0.5).astype(np.int64)
        return index if self.classes_ is None else self.classes_[index]

    def accuracy(self, X: Any, Y: Any) -> float:
        """The share of examples whose predicted label matches ``Y`` (labels among ``classes_``,
        or one-hot columns); for several sigmoid units, the share of matching 0/1 entries."""
        from .distributed import dask_sums, is_dask_array

        if is_dask_array(X):
            return dask_sums(self, X, Y, "accuracy")[0]
        self._require_built()
        X, T = self._prepare(X, Y)
        AL, _ = self._forward(X)
        P, T = np.asarray(self.backend.to_numpy(AL)), np.asarray(self.backend.to_numpy(T))
        if self.output_activation == "softmax":
            return float((P.argmax(axis=0) == T.argmax(axis=0)).mean())
        return float(((P > 0.5) == (T > 0.5)).mean())

    def gradients(self, X: Any, Y: Any) -> dict[str, np.ndarray]:
        """The backprop gradients ``{"dW1", "db1", ...}`` at the current parameters, as NumPy arrays."""
        from .distributed import dask_sums, is_dask_array

        if is_dask_array(X):
            return dask_sums(self, X, Y, "grads")[1]
        X, Y = self._prepare(X, Y)
        _, grads = self._step(X, Y, with_cost=False)
        return {k: np.asarray(self.backend.to_numpy(g)) for k, g in grads.items()}

    def cost(self, X: Any, Y: Any) -> float:
        """The loss at the current parameters."""
        from .distributed import dask_sums, is_dask_array

        if is_dask_array(X):
            return dask_sums(self, X, Y, "cost")[0]
        X, Y = self._prepare(X, Y)
        AL, _ = self._forward(X)
        return self.backend.compute_cost(AL, Y, self.loss)

    def config(self) -> dict[str, Any]:
        """The architecture and settings, as stored beside the weights by :meth:`save`."""
        return {
            "class": type(self).__name__,
            "layer_dims": self.layer_dims,
            "hidden_activation": self.hidden_activation,
            "output_activation": self.output_activation,
            "initialization": self.initialization,
            "seed": self.seed,
            "dtype": self.dtype.name,
            "classes": None if self.classes_ is None else self.classes_.tolist(),
            "classes_dtype": None if self.classes_ is None else self.classes_.dtype.str,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], parameters: dict[str, Any] | None = None,
                    backend: str | Backend | None = None) -> Model:
        """The model that :meth:`config` describes, with ``parameters`` (else freshly initialised)."""
        name = config.get("class")
        klass = MODEL_CLASSES.get(name)  # type: ignore[arg-type]
        if klass is None:
            raise InputError(f"unknown model class {name!r}; expected one of {', '.join(MODEL_CLASSES)}")
        dims = v.check_layer_dims(config["layer_dims"])
        if klass._num_layers is not None and len(dims) != klass._num_layers + 1:
            raise InputError(
                f"a {name} has {klass._num_layers} layer(s), but layer_dims {dims} describe {len(dims) - 1}"
            )
        model = klass.__new__(klass)
        if isinstance(model, ShallowNN):
            model.n_h = dims[1]
        Model.__init__(model, None, config["hidden_activation"], config["output_activation"],
                       config["initialization"], config["seed"], config["dtype"], backend)
        model._build(dims, draw=parameters is None)
        if parameters is not None:
            model.parameters = parameters
        if "classes" in config:  # else (files of format version 1) the defaults the layers imply
            model.classes_ = model._checked_classes(config["classes"], config["classes_dtype"])
        model._classes_known = True
        return model

    def _checked_classes(self, values: Any, dtype: Any) -> np.ndarray | None:
        """Stored classes, checked against the output layer."""
        n_y, output = self._require_built_dims()[-1], self._output
        if values is None:
            if output == "sigmoid" and n_y > 1:  # multi-label
                return None
            raise InputError(f"classes are missing for a {output} output of {n_y} units")
        if np.dtype(dtype).kind not in "iuf":
            raise InputError(f"classes must be numbers, got dtype {dtype}")
        classes = np.asarray(values, dtype=dtype)
        expected = 2 if output == "sigmoid" else n_y
        if classes.shape != (expected,) or not (np.diff(classes) > 0).all():
            raise InputError(f"classes {values} do not fit the output layer: expected {expected} sorted labels")
        return classes

    def save(self, path: Any) -> None:
        """Write the model to ``path`` as ``.npz`` (no pickle), atomically."""
        header = {**self.config(), "iteration": self.iteration,
                  "costs": [[int(i), float(c)] for i, c in self.costs]}
        write_model_file(path, header, self.parameters)

    def __repr__(self) -> str:
        dims = self.layer_dims if self.layer_dims is not None else "unfitted"
        return f"{type(self).__name__}(layer_dims={dims}, backend={self.backend.name!r}, dtype={self.dtype.name})"


class DeepNN(Model):
    """An L-layer net: ``[LINEAR -> hidden]*(L-1) -> LINEAR -> sigmoid/softmax``.

    ``initialization`` defaults to ``"he"`` for ReLU-family hidden layers, ``"xavier"`` otherwise.
    """

    default_learning_rate = 0.0075
    default_num_iterations = 3000

    def __init__(
        self,
        layer_dims: list[int],
        hidden_activation: str = "relu",
        output_activation: str | None = None,
        initialization: str | None = None,
        seed: int | None = None,
        dtype: Any = "float64",
        backend: str | Backend | None = None,
    ):
        super().__init__(
            v.check_layer_dims(layer_dims), hidden_activation, output_activation, initialization, seed, dtype, backend
        )


class ShallowNN(Model):
    """One hidden layer of ``n_h`` units; ``n_x`` and ``n_y`` come from the data at the first fit.
    Initialised the course's way (``0.01 * randn``) unless told otherwise."""

    default_learning_rate = 1.2
    default_num_iterations = 10000
    _num_layers = 2

    def __init__(
        self,
        n_h: int,
        hidden_activation: str = "tanh",
        output_activation: str | None = None,
        initialization: str | None = "course",
        seed: int | None = None,
        dtype: Any = "float64",
        backend: str | Backend | None = None,
    ):
        self.n_h = v.check_count(n_h, "n_h", 1)
        super().__init__(None, hidden_activation, output_activation, initialization, seed, dtype, backend)

    def _infer_layer_dims(self, n_x: int, n_y: int) -> list[int]:
        return [n_x, self.n_h, n_y]


class LogisticRegression(Model):
    """Logistic regression as a one-neuron net (softmax regression for several classes), starting
    from zero weights like the course."""

    default_learning_rate = 0.005
    default_num_iterations = 2000
    _num_layers = 1

    def __init__(
        self,
        output_activation: str | None = None,
        initialization: str | None = "zeros",
        seed: int | None = None,
        dtype: Any = "float64",
        backend: str | Backend | None = None,
    ):
        super().__init__(None, "linear", output_activation, initialization, seed, dtype, backend)

    def _infer_layer_dims(self, n_x: int, n_y: int) -> list[int]:
        return [n_x, n_y]


MODEL_CLASSES: dict[str, type[Model]] = {
    "DeepNN": DeepNN, "ShallowNN": ShallowNN, "LogisticRegression": LogisticRegression,
}


def load_model(path: Any, backend: str | Backend | None = None) -> Model:
    """Read a model written by :meth:`Model.save`; ``ModelFileError`` for anything else."""
    header, arrays = read_model_file(path)
    name = header.get("class")
    if name not in MODEL_CLASSES:
        raise ModelFileError(f"{path} holds an unknown model class {name!r}")
    try:
        model = Model.from_config(header, parameters=arrays, backend=backend)
        model.iteration = int(header.get("iteration", 0))
        model.costs = [(int(i), float(c)) for i, c in header.get("costs", [])]
    except (KeyError, IndexError, TypeError, ValueError, DlaccelError) as exc:
        raise ModelFileError(f"{path} is inconsistent: {exc}") from exc
    return model
