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
VERSION = 2  # 2 added "classes"; version 1 files (none) hold class indices 0 .. k-1 or 0/1
READABLE = (1, 2)
_HEADER = "__dlaccel__"


_ZIP, _NPY = b"PK\x03\x04", b"\x93NUMPY"
_SIGNATURES = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"%PDF": "a PDF document",
               b"PK": "a zip archive", b"\x1f\x8b": "a gzip file", b"\x80": "a Python pickle"}


def _looks_like(head: bytes) -> str:
    """A guess at what a file is, from its first bytes."""
    for signature, what in _SIGNATURES.items():
        if head.startswith(signature):
            return what
    if not head:
        return "an empty file"
    try:
        text = head.decode("utf-8").lstrip()
    except UnicodeDecodeError:
        return "binary data of an unknown kind"
    return "JSON text" if text[:1] in ("{", "[") else "a text file"


def save_model(model: Any, path: Any) -> None:
    """Write the model as ``.npz`` through a temporary file renamed into place, so a crash or a
    full disk never leaves a half-written model behind."""
    params = model.parameters
    classes = model.classes_
    header = {"format": FORMAT, "version": VERSION, **model.config(), "iteration": model.iteration,
              "costs": [[int(i), float(c)] for i, c in model.costs],
              "classes": None if classes is None else classes.tolist(),
              "classes_dtype": None if classes is None else classes.dtype.str}
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
    # np.load takes anything that is neither .npy nor .npz for a pickle and advises allow_pickle=;
    # name what the file is instead.
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise ModelFileError(f"{path} cannot be read: {exc}") from exc
    if not head.startswith((_ZIP, _NPY)):
        raise ModelFileError(f"{path} is not a dlaccel model file (.npz); it looks like {_looks_like(head)}")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded as data:
                arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ModelFileError(f"{path} is not a readable .npz model file (truncated or foreign): {exc}") from exc
    except ValueError:  # an object array, which only pickle can read; dlaccel never unpickles
        raise ModelFileError(f"{path} is not a dlaccel model file: it holds Python objects, not arrays") from None
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
    if header.get("version") not in READABLE:
        raise ModelFileError(
            f"{path} has format version {header.get('version')}; this dlaccel reads versions "
            f"{', '.join(map(str, READABLE))}"
        )
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
        if "classes" in header:  # else (version 1) the defaults the layers imply
            model.classes_ = _read_classes(header["classes"], header["classes_dtype"], model)
        model._classes_known = True
    except ModelFileError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, DlaccelError) as exc:
        raise ModelFileError(f"{path} is inconsistent: {exc}") from exc
    return model


def _read_classes(values: Any, dtype: Any, model: Any) -> np.ndarray | None:
    """The header's classes, checked against the output layer (``ModelFileError`` if they do not fit)."""
    n_y = model.layer_dims[-1]
    if values is None:
        if model.output_activation == "sigmoid" and n_y > 1:  # multi-label
            return None
        raise ModelFileError(f"classes are missing for a {model.output_activation} output of {n_y} units")
    if np.dtype(dtype).kind not in "iuf":
        raise ModelFileError(f"classes must be numbers, got dtype {dtype}")
    classes = np.asarray(values, dtype=dtype)
    expected = 2 if model.output_activation == "sigmoid" else n_y
    if classes.shape != (expected,) or not (np.diff(classes) > 0).all():
        raise ModelFileError(f"classes {values} do not fit the output layer: expected {expected} sorted labels")
    return classes
