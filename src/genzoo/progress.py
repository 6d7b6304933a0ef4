"""Progress of the long pixel-by-pixel samplers, for a caller that shows it or stops it (``genzoo serve``).

A sampler calls :func:`advance` as it goes; that does nothing unless the calling thread runs inside
:func:`reporting`, whose callback receives (done, total) and may raise to stop the sampler there (a cancelled or
timed-out request of the web explorer). The reporter is a context variable, so each thread has its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

Reporter = Callable[[int, int], None]

_reporter: ContextVar[Reporter | None] = ContextVar("genzoo_progress_reporter", default=None)


def advance(done: int, total: int) -> None:
    """``done`` of ``total`` steps are finished; the current reporter, if any, hears it (and may raise)."""
    reporter = _reporter.get()
    if reporter is not None:
        reporter(done, total)


@contextmanager
def reporting(reporter: Reporter) -> Iterator[None]:
    """Inside the block, :func:`advance` calls ``reporter(done, total)`` in this thread."""
    token = _reporter.set(reporter)
    try:
        yield
    finally:
        _reporter.reset(token)
