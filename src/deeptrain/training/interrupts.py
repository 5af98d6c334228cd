"""Ctrl-C at a consistent point: a SIGINT during a critical section is held until it ends.

Each train or validation iteration (fetch, fit, bookkeeping, callbacks) runs inside
:func:`deferred_interrupts`, so a ``KeyboardInterrupt`` always lands *between* iterations:
the model never trains on a batch whose bookkeeping is lost, and ``tg.train()`` simply
continues. A second Ctrl-C inside the section interrupts at once.
"""
from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

__all__ = ["deferred_interrupts"]

log = logging.getLogger(__name__)

_depth = 0


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT until the block ends (main thread only; re-entrant)."""
    global _depth
    if threading.current_thread() is not threading.main_thread() or _depth:
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
        return
    received = []

    def handler(signum, frame):
        if received:  # second Ctrl-C: the user means it
            raise KeyboardInterrupt
        received.append(signum)
        log.warning("Interrupt received: stopping after the current iteration "
                    "(Ctrl-C again to stop now)")

    previous = signal.signal(signal.SIGINT, handler)
    _depth = 1
    try:
        yield
    finally:
        _depth = 0
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt
