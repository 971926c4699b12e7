"""The ``dlaccel`` console script (also ``python -m dlaccel``): ``info``, ``bench``, ``train``.

The commands are built on click and rich, which come with the ``cli`` extra; :mod:`dlaccel.cli.app`
and the command modules import them, so this entry point imports without them and can say, in one
line, what to install.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from ..errors import MissingDependencyError

CLI_MODULES = ("click", "rich")


def load_app() -> Any:
    """The click group of every command; ``MissingDependencyError`` without the ``cli`` extra."""
    try:
        from .app import cli
    except ImportError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in CLI_MODULES:
            raise
        raise MissingDependencyError(
            f"the dlaccel command needs {missing}, which is not installed: pip install 'dlaccel[cli]'"
        ) from None
    return cli


def main(argv: Sequence[str] | None = None) -> None:
    try:
        app = load_app()
    except MissingDependencyError as exc:
        print(f"dlaccel: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    app.main(args=list(argv) if argv is not None else None, prog_name="dlaccel")
