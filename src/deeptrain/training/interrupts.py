"""Ctrl-C at a consistent point: SIGINT is held while a loop runs and raised between iterations.

``train()`` and ``validate()`` run inside an :class:`InterruptGuard` and call
:meth:`InterruptGuard.check` between iterations, so a ``KeyboardInterrupt`` always lands
*between* iterations: the model never trains on a batch whose bookkeeping is lost, and
``tg.train()`` simply continues. A second Ctrl-C before the check interrupts at once.

One handler is installed per loop, not per iteration: swapping signal handlers costs more
than a small model's train step. Guards nest: an inner guard (``validate()`` inside
``train()``) defers to the outer one.
"""
from __future__ import annotations

import logging
import signal
import threading
from typing import Any

__all__ = ["InterruptGuard"]

log = logging.getLogger(__name__)

_active: "InterruptGuard | None" = None  # the guard whose handler is installed


class InterruptGuard:
    """Hold SIGINT until :meth:`check` (main thread only; elsewhere it does nothing)."""

    def __init__(self) -> None:
        self.received = False
        self._previous: Any = None
        self._owner = False

    def _handler(self, signum: int, frame: Any) -> None:
        if self.received:  # second Ctrl-C: the user means it
            raise KeyboardInterrupt
        self.received = True
        log.warning("Interrupt received: stopping after the current iteration "
                    "(Ctrl-C again to stop now)")

    def __enter__(self) -> "InterruptGuard":
        global _active
        if _active is None and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
            _active, self._owner = self, True
        return self

    def __exit__(self, *exc: Any) -> None:
        global _active
        if self._owner:
            signal.signal(signal.SIGINT, self._previous)
            _active, self._owner = None, False

    @staticmethod
    def check() -> None:
        """Raise the ``KeyboardInterrupt`` held by the active guard, if any."""
        guard = _active
        if guard is not None and guard.received:
            guard.received = False
            raise KeyboardInterrupt
