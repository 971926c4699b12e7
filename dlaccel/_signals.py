"""Ctrl-C during training lands between iterations, never inside an update."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType, TracebackType


class CriticalSection:
    """``with section:`` marks code that must not be cut in half: a SIGINT that arrives inside it is
    raised as ``KeyboardInterrupt`` when the block ends; outside, at once."""

    def __init__(self) -> None:
        self.inside = False
        self.pending = False

    def __enter__(self) -> CriticalSection:
        self.inside = True
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.inside = False
        if self.pending and exc_type is None:
            self.pending = False
            raise KeyboardInterrupt

    def handler(self, signum: int, frame: FrameType | None) -> None:
        if self.inside:
            self.pending = True
        else:
            raise KeyboardInterrupt


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[CriticalSection]:
    """A critical section for the block; SIGINT is deferred only in the main thread and only where
    Python's own handler is installed (an application's handler is left alone)."""
    section = CriticalSection()
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield section
        return
    previous = signal.signal(signal.SIGINT, section.handler)
    try:
        yield section
    finally:
        signal.signal(signal.SIGINT, previous)
