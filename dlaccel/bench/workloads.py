"""The benchmark workloads, defined once for ``dlaccel bench`` and the pytest-benchmark suite.

A :class:`Workload` knows its sizes per profile (``full``, ``quick``, ``tiny``), a smaller size for
the loops backend (whose time is then extrapolated linearly in one size parameter), how to make its
host data, and how to build a :class:`Case` on a dlaccel backend or on PyTorch (the peer). A case's
``step`` is one timed call; ``outputs`` turns what the first call returned into NumPy arrays, which
are compared with the NumPy backend's before anything is timed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from ..backends import Backend
from ..errors import InputError
from ..models import DeepNN, ShallowNN, initialize_parameters

PROFILES = ("full", "quick", "tiny")
SEED = 0
LEARNING_RATE = 0.01


def _noop() -> None:
    pass


@dataclass(frozen=True)
class Case:
    """One workload made ready on one backend (or the peer)."""

    step: Callable[[], Any]
    outputs: Callable[[Any], dict[str, np.ndarray]]
    sync: Callable[[], None] = _noop
    # Dispatch overhead only: the same call made straight to the array library.
    baseline: Callable[[], Any] | None = None


Size = Mapping[str, Any]
Data = dict[str, Any]


@dataclass(frozen=True)
class Workload:
    """A benchmark: sizes, data, and how to run it on a backend or on PyTorch.

    ``unit`` says what :attr:`work` counts: ``"flop"`` (rate in GFLOP/s, limit the GEMM rate),
    ``"byte"`` (GB/s, limit the copy bandwidth) or ``"overhead"`` (microseconds per call over the
    baseline). ``scale`` names the size parameter the time grows linearly with, used to
    extrapolate the loops backend from ``loops_sizes``. A training step also gives its roofline:
    ``gemm_flops`` (the GEMM work) and ``min_bytes`` (the bytes that must move between memory and
    the cores); its limit is then whichever takes longer at the machine's measured rates.
    """

    name: str
    group: str
    title: str
    unit: str
    sizes: Mapping[str, Size]
    data: Callable[[Size, np.dtype], Data]
    build: Callable[[Backend, Size, Data], Case]
    build_torch: Callable[[Any, Size, Data], Case] | None
    work: Callable[[Size, np.dtype], float]
    describe: Callable[[Size], str]
    loops_sizes: Mapping[str, Size] = field(default_factory=dict)
    scale: str | None = None
    gemm_flops: Callable[[Size, np.dtype], float] | None = None
    min_bytes: Callable[[Size, np.dtype], float] | None = None

    def size(self, profile: str, backend_name: str = "numpy") -> dict[str, Any]:
        """The size this backend runs at under ``profile``."""
        if profile not in PROFILES:
            raise InputError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
        if backend_name == "loops" and profile in self.loops_sizes:
            return dict(self.loops_sizes[profile])
        return dict(self.sizes[profile])

    def extrapolation(self, profile: str, backend_name: str) -> float:
        """How many times larger the reported size is than the one this backend runs at."""
        if self.scale is None:
            return 1.0
        return self.sizes[profile][self.scale] / self.size(profile, backend_name)[self.scale]


def _per_profile(full: Size, quick: Size, tiny: Size, **common: Any) -> Mapping[str, Size]:
    """Sizes by profile, read-only: the workloads are module-level and shared by every run."""
    return MappingProxyType({p: {**s, **common} for p, s in zip(PROFILES, (full, quick, tiny))})


# -- helpers shared by the workloads -----------------------------------------------------------


def _normal(rng: np.random.Generator, shape: tuple, dtype: np.dtype, scale: float = 1.0) -> np.ndarray:
    a = rng.standard_normal(shape, dtype=np.float64 if dtype == np.float64 else np.float32)
    if scale != 1.0:
        a *= scale
    return a.astype(dtype, copy=False)


def _backend_case(be: Backend, step: Callable[[], dict[str, Any]], baseline: Callable[[], Any] | None = None) -> Case:
    """A case on a dlaccel backend whose step returns named arrays (and the cost, a float)."""

    def outputs(result: dict[str, Any]) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) if isinstance(v, float) else be.to_numpy(v) for k, v in result.items()}

    return Case(step=step, outputs=outputs, sync=be.synchronize, baseline=baseline)


def _net_flops(layers: list[int], m: int) -> float:
    """Forward (``2 n[l] n[l-1] m`` per layer) plus backward (``dW`` always, ``dA_prev`` except for
    the first layer), the GEMMs only."""
    weights = sum(layers[l] * layers[l - 1] for l in range(1, len(layers)))
    return 2.0 * m * (3 * weights - layers[1] * layers[0])


def _net_bytes(layers: list[int], m: int, dtype: np.dtype) -> float:
    """What a training step must move: each layer's input read twice (the forward product and
    ``dW``: the course net's ``X`` is 100 MB, no cache keeps it from one to the other) and each
    parameter read and written once (the update)."""
    weights = sum(layers[l] * (layers[l - 1] + 1) for l in range(1, len(layers)))
    return float((2 * sum(layers[:-1]) * m + 2 * weights) * dtype.itemsize)


# -- training steps: logistic regression, the shallow net, DeepNN --------------------------------


def _model_case(model: Any, data: Data) -> Case:
    be = model.backend
    X, Y = be.asarray(data["X"]), be.asarray(data["Y"])

    def step() -> dict[str, Any]:
        # Model.fit validates X and Y and snapshots the parameters on every call; a benchmark times
        # the training step alone, as fit runs it between cost records.
        cost, grads = model._step(X, Y, with_cost=True)
        # A backend may update in place or return new arrays (the contract): keep what it returns.
        model._params = be.update_parameters(model._params, grads, LEARNING_RATE)
        return {"cost": cost, **grads}

    return _backend_case(be, step)


def torch_training_case(torch: Any, layers: list[int], hidden: str, data: Data, device: str = "cpu") -> Case:
    """The same net as ``nn.Linear`` layers, autograd and SGD, from the same initial parameters
    (``data["params"]``); examples as rows, PyTorch's natural layout."""
    nn, dev = torch.nn, torch.device(device)
    linears = [nn.Linear(layers[l - 1], layers[l], device=dev) for l in range(1, len(layers))]
    with torch.no_grad():
        for l, lin in enumerate(linears, start=1):
            lin.weight.copy_(torch.from_numpy(data["params"][f"W{l}"]))
            lin.bias.copy_(torch.from_numpy(data["params"][f"b{l}"].reshape(-1)))
    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[hidden]
    net = nn.Sequential(*[m for lin in linears for m in (lin, act())][:-1])  # no activation after the last
    X = torch.from_numpy(np.ascontiguousarray(data["X"].T)).to(dev)
    if layers[-1] == 1:
        loss_fn, target = nn.BCEWithLogitsLoss(), torch.from_numpy(np.ascontiguousarray(data["Y"].T))
    else:
        loss_fn, target = nn.CrossEntropyLoss(), torch.from_numpy(data["labels"])
    target = target.to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE)

    def step() -> Any:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(X), target)
        loss.backward()
        opt.step()
        return loss

    def outputs(loss: Any) -> dict[str, np.ndarray]:
        out = {"cost": np.asarray(loss.item())}
        for l, lin in enumerate(linears, start=1):
            out[f"dW{l}"] = lin.weight.grad.cpu().numpy()
            out[f"db{l}"] = lin.bias.grad.cpu().numpy().reshape(-1, 1)
        return out

    sync = torch.cuda.synchronize if dev.type == "cuda" else _noop
    return Case(step=step, outputs=outputs, sync=sync)


def _training(name: str, group: str, title: str, layers: Callable[[Size], list[int]], hidden: str,
              data: Callable[[Size, np.dtype], Data], build: Callable[[Backend, Size, Data], Case],
              describe: Callable[[Size], str], sizes: Mapping[str, Size], loops_sizes: Mapping[str, Size] | None = None,
              min_bytes: Callable[[Size, np.dtype], float] | None = None) -> Workload:
    """A training step of the net ``layers(size)``: rated by its GEMM work, unless ``min_bytes``
    (the floor of what it moves) is given, which then is its work in bytes too."""
    flops = lambda s, dt: _net_flops(layers(s), s["m"])  # noqa: E731
    nbytes = min_bytes or (lambda s, dt: _net_bytes(layers(s), s["m"], dt))
    return Workload(
        name=name, group=group, title=title, unit="flop" if min_bytes is None else "byte",
        sizes=sizes, loops_sizes=loops_sizes or {}, scale="m" if loops_sizes else None,
        data=data, build=build,
        build_torch=lambda torch, s, d: torch_training_case(torch, layers(s), hidden, d),
        work=nbytes if min_bytes is not None else flops, describe=describe, gemm_flops=flops, min_bytes=nbytes,
    )


def _logreg_data(size: Size, dtype: np.dtype) -> Data:
    """The course's layout: images drawn as ``(m, n_x)`` rows, one example each (C order, as
    ``images.reshape(m, -1)`` gives), and ``X = rows.T``, the ``(n_x, m)`` F-ordered view the course
    trains on; no copy is made, so each backend gets X in that layout. ``size["order"] == "C"``:
    X made directly as a C-ordered ``(n_x, m)`` array, features as rows."""
    n_x, m = size["n_x"], size["m"]
    rng = np.random.default_rng(SEED)
    X = _normal(rng, (n_x, m), dtype) if size.get("order") == "C" else _normal(rng, (m, n_x), dtype).T
    Y = rng.integers(0, 2, size=m).reshape(1, m).astype(dtype)
    rng = np.random.default_rng(SEED + 1)
    params = {"W1": _normal(rng, (1, n_x), dtype, 0.01), "b1": np.zeros((1, 1), dtype)}
    return {"X": X, "Y": Y, "labels": Y.reshape(-1), "params": params}


def _logreg_build(be: Backend, size: Size, data: Data) -> Case:
    X, Y = be.asarray(data["X"]), be.asarray(data["Y"])
    params = {k: be.asarray(p.copy()) for k, p in data["params"].items()}

    def step() -> dict[str, Any]:
        cost, dW, db = be.logistic_regression_step(params["W1"], params["b1"], X, Y, with_cost=True)
        params.update(be.update_parameters(params, {"dW1": dW, "db1": db}, LEARNING_RATE))
        return {"cost": cost, "dW1": dW, "db1": db}

    return _backend_case(be, step)


def _logreg(name: str, order: str, title: str) -> Workload:
    return _training(
        name, "logreg", title, lambda s: [s["n_x"], 1], "relu", _logreg_data, _logreg_build,
        describe=lambda s: f"n_x={s['n_x']} m={s['m']} ({order} order)",
        sizes=_per_profile({"n_x": 12288, "m": 2000}, {"n_x": 12288, "m": 500}, {"n_x": 64, "m": 32},
                           **({"order": "C"} if order == "C" else {})),
        loops_sizes=_per_profile({"n_x": 12288, "m": 16}, {"n_x": 12288, "m": 8}, {"n_x": 64, "m": 8},
                                 **({"order": "C"} if order == "C" else {})),
        # The floor: one read of X. (NumPy reads it twice: once forward, once for dW.)
        min_bytes=lambda s, dt: float(s["n_x"] * s["m"] * dt.itemsize),
    )


def _shallow_data(size: Size, dtype: np.dtype) -> Data:
    from ..datasets import planar

    X, Y = planar(m=size["m"])
    return {"X": X.astype(dtype), "Y": Y.astype(dtype), "labels": Y.reshape(-1),
            "params": initialize_parameters([2, size["n_h"], 1], "course", SEED, dtype)}


def _shallow_build(be: Backend, size: Size, data: Data) -> Case:
    model = ShallowNN(size["n_h"], dtype=data["X"].dtype, backend=be)
    model.parameters = {k: p.copy() for k, p in data["params"].items()}  # trained in place
    return _model_case(model, data)


def _deep_data(size: Size, dtype: np.dtype) -> Data:
    """Random inputs and labels for ``size["layers"]`` on ``size["m"]`` examples, and the initial
    parameters, drawn on the host from the seed: the same on every backend."""
    layers, m = list(size["layers"]), size["m"]
    rng = np.random.default_rng(SEED)
    X = _normal(rng, (layers[0], m), dtype)
    n_y = layers[-1]
    labels = rng.integers(0, max(n_y, 2), size=m)
    if n_y == 1:
        Y = labels.reshape(1, m).astype(dtype)
    else:
        Y = np.zeros((n_y, m), dtype=dtype)
        Y[labels, np.arange(m)] = 1
    params = DeepNN(layers, seed=SEED, dtype=dtype, backend="numpy").parameters
    return {"X": X, "Y": Y, "labels": labels, "params": params}


def _deep_build(be: Backend, size: Size, data: Data) -> Case:
    return _model_case(DeepNN(list(size["layers"]), seed=SEED, dtype=data["X"].dtype, backend=be), data)


def _deep(name: str, title: str, layers: list[int], tiny_layers: list[int], m: tuple[int, int, int],
          loops_m: tuple[int, int, int]) -> Workload:
    """``m`` and ``loops_m``: the examples per profile (full, quick, tiny)."""
    sizes = [{"layers": tuple(tiny_layers if p == "tiny" else layers), "m": n} for p, n in zip(PROFILES, m)]
    return _training(
        name, "deep", title, lambda s: list(s["layers"]), "relu", _deep_data, _deep_build,
        describe=lambda s: f"[{','.join(map(str, s['layers']))}] m={s['m']}",
        sizes=_per_profile(*sizes),
        loops_sizes=_per_profile(*({**s, "m": n} for s, n in zip(sizes, loops_m))),
    )


LOGREG = _logreg("logreg", "F", "logistic-regression gradient step, X = images.reshape(m, -1).T "
                 "(F-ordered, the course's layout)")
LOGREG_C = _logreg("logreg_c", "C", "logistic-regression gradient step, X made as a C-ordered (n_x, m) array")
SHALLOW = _training(
    "shallow", "shallow", "shallow net training step, planar flower", lambda s: [2, s["n_h"], 1], "tanh",
    _shallow_data, _shallow_build, describe=lambda s: f"[2,{s['n_h']},1] m={s['m']}",
    sizes=_per_profile({"m": 400, "n_h": 4}, {"m": 400, "n_h": 4}, {"m": 40, "n_h": 4}),
)
DEEP = _deep("deep", "DeepNN training step, softmax", [784, 1024, 1024, 10], [16, 32, 32, 10],
             (1024, 256, 8), (1, 1, 2))
DEEP_COURSE = _deep("deep_course", "DeepNN training step, the course's net", [12288, 20, 7, 5, 1],
                    [64, 20, 7, 5, 1], (2048, 512, 16), (4, 2, 4))


# -- single ops: the course's dot product, the activations, the dispatch overhead ---------------


def _dot_data(size: Size, dtype: np.dtype) -> Data:
    rng = np.random.default_rng(SEED)
    n = size["n"]
    return {"w": _normal(rng, (1, n), dtype), "x": _normal(rng, (n, 1), dtype), "b": np.zeros((1, 1), dtype)}


def _dot_build(be: Backend, size: Size, data: Data) -> Case:
    # The dot product as the (1, n) x (n, 1) linear_forward every backend has.
    w, x, b = be.asarray(data["w"]), be.asarray(data["x"]), be.asarray(data["b"])
    return _backend_case(be, lambda: {"Z": be.linear_forward(x, w, b)})


def _dot_torch(torch: Any, size: Size, data: Data) -> Case:
    w, x = torch.from_numpy(data["w"].reshape(-1)), torch.from_numpy(data["x"].reshape(-1))
    return Case(step=lambda: torch.dot(w, x), outputs=lambda z: {"Z": z.numpy().reshape(1, 1)})


DOT = Workload(
    name="dot", group="dot", title="dot product (course's vectorization demo)", unit="byte",
    sizes=_per_profile({"n": 1_000_000}, {"n": 1_000_000}, {"n": 1000}),
    loops_sizes=MappingProxyType({"quick": {"n": 200_000}}), scale="n",
    data=_dot_data, build=_dot_build, build_torch=_dot_torch,
    work=lambda s, dt: 2.0 * s["n"] * dt.itemsize, describe=lambda s: f"n={s['n']:,}",
)


def _elementwise_data(size: Size, dtype: np.dtype) -> Data:
    rng = np.random.default_rng(SEED)
    shape = (size["rows"], size["cols"])
    # Spread over [-8, 8] and beyond so the saturated tails are exercised too.
    return {"Z": _normal(rng, shape, dtype, 4.0), "dA": _normal(rng, shape, dtype)}


def _elementwise(activation: str, backward: bool) -> Workload:
    def build(be: Backend, size: Size, data: Data) -> Case:
        Z = be.asarray(data["Z"])
        if backward:
            dA = be.asarray(data["dA"])
            return _backend_case(be, lambda: {"dZ": be.activation_backward(dA, Z, activation)})
        return _backend_case(be, lambda: {"A": be.activation_forward(Z, activation)})

    def build_torch(torch: Any, size: Size, data: Data) -> Case:
        Z = torch.from_numpy(data["Z"])
        if backward:
            dA, aten = torch.from_numpy(data["dA"]), torch.ops.aten
            fn = {"sigmoid": lambda: aten.sigmoid_backward(dA, torch.sigmoid(Z)),
                  "tanh": lambda: aten.tanh_backward(dA, torch.tanh(Z)),
                  "relu": lambda: aten.threshold_backward(dA, Z, 0)}[activation]
            return Case(step=fn, outputs=lambda r: {"dZ": r.numpy()})
        fn_fwd = getattr(torch, activation)
        return Case(step=lambda: fn_fwd(Z), outputs=lambda r: {"A": r.numpy()})

    arrays = 3 if backward else 2  # arrays read plus written, once each
    return Workload(
        name=f"{activation}_{'bwd' if backward else 'fwd'}", group="elementwise",
        title=f"{activation} {'backward' if backward else 'forward'}", unit="byte",
        sizes=_per_profile({"rows": 4096, "cols": 4096}, {"rows": 1024, "cols": 4096}, {"rows": 16, "cols": 64}),
        loops_sizes=_per_profile({"rows": 8, "cols": 4096}, {"rows": 4, "cols": 4096}, {"rows": 4, "cols": 64}),
        scale="rows", data=_elementwise_data, build=build, build_torch=build_torch,
        work=lambda s, dt: float(arrays * s["rows"] * s["cols"] * dt.itemsize),
        describe=lambda s: f"{s['rows']}x{s['cols']}",
    )


ELEMENTWISE = [_elementwise(a, bwd) for a in ("sigmoid", "tanh", "relu") for bwd in (False, True)]


def _dispatch_build(be: Backend, size: Size, data: Data) -> Case:
    Z = be.asarray(data["Z"])
    xp = getattr(be, "xp", np)  # the array library the backend itself calls
    return _backend_case(be, lambda: {"A": be.activation_forward(Z, "relu")}, baseline=lambda: xp.maximum(Z, 0))


def _dispatch_torch(torch: Any, size: Size, data: Data) -> Case:
    Z, Zh = torch.from_numpy(data["Z"]), data["Z"]
    return Case(step=lambda: torch.relu(Z), outputs=lambda r: {"A": r.numpy()}, baseline=lambda: np.maximum(Zh, 0))


DISPATCH = Workload(
    name="dispatch", group="dispatch", title="per-op dispatch overhead: relu on 8x8 vs np.maximum",
    unit="overhead", sizes=_per_profile(*({"rows": 8, "cols": 8} for _ in PROFILES)),
    data=_elementwise_data, build=_dispatch_build, build_torch=_dispatch_torch,
    work=lambda s, dt: 0.0, describe=lambda s: f"{s['rows']}x{s['cols']}",
)


WORKLOADS: dict[str, Workload] = {
    w.name: w for w in [DOT, LOGREG, LOGREG_C, SHALLOW, DEEP, DEEP_COURSE, *ELEMENTWISE, DISPATCH]
}
GROUPS: dict[str, list[str]] = {}
for _w in WORKLOADS.values():
    GROUPS.setdefault(_w.group, []).append(_w.name)


def select_workloads(names: list[str] | None) -> list[Workload]:
    """The workloads called ``names`` (workload or group names), in the canonical order; all when
    ``names`` is empty or None."""
    if not names:
        return list(WORKLOADS.values())
    wanted: set[str] = set()
    for raw in names:
        name = raw.strip().lower()
        if name in WORKLOADS:
            wanted.add(name)
        elif name in GROUPS:
            wanted.update(GROUPS[name])
        else:
            known = ", ".join([*WORKLOADS, *(g for g in GROUPS if g not in WORKLOADS)])
            raise InputError(f"unknown workload {raw!r}; known workloads and groups: {known}")
    return [w for name, w in WORKLOADS.items() if name in wanted]
