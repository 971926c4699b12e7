"""What every command shares: the one-line ``Error:`` handling, the console, output-path checks.

Every error a user can cause (unknown names, unwritable paths, missing optional libraries, a
diverged training run) ends as one ``Error:`` line and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from .._files import check_writable
from ..errors import DlaccelError


class CommandError(click.ClickException):
    """Printed by click as one ``Error: ...`` line; exit status 1."""


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (DlaccelError, OSError) as exc:
            raise CommandError(str(exc)) from None
        except KeyboardInterrupt:
            # Ctrl-C where the command has nothing of its own to keep (train and sweep do): the
            # shell's status for SIGINT, like theirs, rather than click's "Aborted!" and status 1.
            click.echo("interrupted", err=True)
            raise SystemExit(130) from None

    return wrapper


def console() -> Console:
    # Off a terminal (pipes, CI logs, tests) rich would wrap at 80 columns unless COLUMNS says
    # otherwise. markup=False: messages carry brackets ('dlaccel[cuda12]', a backend's error) that
    # rich would otherwise eat as markup.
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
    return Console(width=width, highlight=False, markup=False)


def check_output_path(path: Path | None, option: str, what: str) -> None:
    """Fail before any work when ``path`` cannot be written (``what`` names it in the message)."""
    if path is None:
        return
    try:
        check_writable(path, what)
    except OSError as exc:
        raise CommandError(f"{option}: {exc}") from None


def require_matplotlib(option: str) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CommandError(f"{option} needs matplotlib: pip install 'dlaccel[plot]'") from None


def split_names(value: str | None) -> list[str] | None:
    """``"a, b,"`` -> ``["a", "b"]``; None or empty -> None."""
    return [v for v in (s.strip() for s in value.split(",")) if v] if value else None
