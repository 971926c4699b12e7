"""Saving and loading models as ``.npz`` files: the weights plus a JSON header, no pickle."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ._files import atomic_write
from .errors import ModelFileError

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


def write_model_file(path: Any, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write ``header`` (JSON) and ``arrays`` as ``.npz`` through a temporary file renamed into
    place, so a crash or a full disk never leaves a half-written model behind."""
    stamped = {"format": FORMAT, "version": VERSION, **header}
    everything: dict[str, Any] = {_HEADER: np.array(json.dumps(stamped)), **arrays}
    try:
        atomic_write(path, lambda f: np.savez(f, **everything), "model")
    except OSError as exc:
        raise ModelFileError(str(exc)) from exc


def read_model_file(path: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and arrays of a model file; ``ModelFileError`` for anything that is not one."""
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
    return header, arrays
