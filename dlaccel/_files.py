"""Writing output files whole or not at all."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def check_writable(path: Any, what: str) -> Path:
    """``path`` as a Path, or ``OSError`` naming what is wrong, before any work is done."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write the {what} to {path}: it is a directory")
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write the {what} to {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"cannot write the {what} to {path}: folder {folder} is not writable")
    return path


def atomic_write(path: Any, write: Callable[[IO[bytes]], object], what: str = "file") -> None:
    """Call ``write`` on a temporary file beside ``path``, then rename it into place, so a crash,
    a full disk or an exception in ``write`` never leaves a half-written file behind."""
    path = check_writable(path, what)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
