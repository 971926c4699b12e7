"""A training progress bar: rich when installed, a plain line per recorded cost otherwise."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def progress_reporter(enabled: bool, total: int, label: str,
                      waiting: str | None = None) -> Iterator[Callable[[int, float], None]]:
    """Yields ``update(done, cost)``. ``waiting`` says what the first iteration waits for (Numba's
    compilation): shown beside ``label`` until the first update, so a bar at 0 does not look hung."""
    if not enabled:
        yield lambda done, cost: None
        return
    try:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    except ImportError:
        if waiting:
            print(f"{label}: {waiting}", file=sys.stderr)

        def plain(done: int, cost: float) -> None:
            print(f"{label}: iteration {done}/{total}, cost {cost:.6f}", file=sys.stderr)

        yield plain
        return
    columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
               TextColumn("cost {task.fields[cost]}", markup=False), TimeRemainingColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(f"{label} ({waiting})" if waiting else label, total=total, cost="-")

        def update(done: int, cost: float) -> None:
            bar.update(task, completed=done, cost=f"{cost:.6f}", description=label)

        yield update
        bar.update(task, completed=total)
