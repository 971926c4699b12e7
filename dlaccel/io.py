"""Saving and loading models as ``.npz`` files: the weights plus a JSON header, no pickle."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ._files import atomic_write
from .errors import DlaccelError, ModelFileError

FORMAT = "dlaccel-model"
VERSION = 1
_HEADER = "__dlaccel__"


def save_model(model: Any, path: Any) -> None:
    """Write the model as ``.npz`` through a temporary file renamed into place, so a crash or a
    full disk never leaves a half-written model behind."""
    params = model.parameters
    header = {"format": FORMAT, "version": VERSION, **model.config(), "iteration": model.iteration,
              "costs": [[int(i), float(c)] for i, c in model.costs]}
    arrays = {_HEADER: np.array(json.dumps(header)), **params}
    try:
        atomic_write(path, lambda f: np.savez(f, **arrays), "model")
    except OSError as exc:
        raise ModelFileError(str(exc)) from exc


def load_model(path: Any, backend: Any = None) -> Any:
    """Read a model written by ``Model.save``; ``ModelFileError`` for anything else."""
    from . import models

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"no model file at {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded as data:
                arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ModelFileError(f"{path} is not a readable .npz model file (truncated or foreign): {exc}") from exc
    except ValueError as exc:  # object arrays need pickle, which is refused
        raise ModelFileError(f"{path} holds pickled objects, which dlaccel never loads: {exc}") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ModelFileError(f"{path} holds a single array (.npy), not a dlaccel .npz model")
    if _HEADER not in arrays:
        raise ModelFileError(f"{path} is an .npz file but not a dlaccel model (no {_HEADER} header)")
    try:
        header = json.loads(str(arrays.pop(_HEADER)))
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{path} has a corrupt header: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a dlaccel model file")
    if header.get("version") != VERSION:
        raise ModelFileError(f"{path} has format version {header.get('version')}; this dlaccel reads version {VERSION}")
    cls = {"DeepNN": models.DeepNN, "ShallowNN": models.ShallowNN, "LogisticRegression": models.LogisticRegression}
    name = header.get("class")
    if name not in cls:
        raise ModelFileError(f"{path} holds an unknown model class {name!r}")
    model: models.Model
    layers = {"DeepNN": None, "ShallowNN": 2, "LogisticRegression": 1}[name]
    try:
        dims = [int(n) for n in header["layer_dims"]]
        if len(dims) < 2 or (layers is not None and len(dims) != layers + 1):
            raise ModelFileError(f"{path} describes layers {dims}, which a {name} cannot have")
        common = {"output_activation": header["output_activation"], "initialization": header["initialization"],
                  "seed": header["seed"], "dtype": header["dtype"], "backend": backend}
        if name == "DeepNN":
            model = models.DeepNN(dims, hidden_activation=header["hidden_activation"], **common)
        elif name == "ShallowNN":
            model = models.ShallowNN(dims[1], hidden_activation=header["hidden_activation"], **common)
            model._build(dims)
        else:
            model = models.LogisticRegression(**common)
            model._build(dims)
        model.parameters = arrays
        model.iteration = int(header.get("iteration", 0))
        model.costs = [(int(i), float(c)) for i, c in header.get("costs", [])]
    except ModelFileError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, DlaccelError) as exc:
        raise ModelFileError(f"{path} is inconsistent: {exc}") from exc
    return model
