"""Ctrl-C at a consistent point: SIGINT is held while a loop runs and raised between iterations.

``train()`` and ``validate()`` run inside an :class:`InterruptGuard` and call
:meth:`InterruptGuard.check` between iterations, so a ``KeyboardInterrupt`` always lands
*between* iterations: the model never trains on a batch whose bookkeeping is lost, and
``tg.train()`` simply continues.

A second Ctrl-C before the check means "stop now" and raises at once, wherever the code is.
Two things keep that safe:

* :meth:`InterruptGuard.hold` holds *every* press for the length of a short block that must
  not be cut (building the optimizer's slots); they are raised at the next check.
* :class:`Consistency` marks a stretch of work whose interruption leaves the state
  inconsistent (a train iteration, a validation): an exception escaping from it leaves the
  mark, and the TrainGenerator either repairs the state (a validation restarts from its
  snapshot) or refuses to continue until a checkpoint is loaded.

One handler is installed per loop, not per iteration: swapping signal handlers costs more
than a small model's train step. Guards nest: an inner guard (``validate()`` inside
``train()``) defers to the outer one. A signal the loop did not act on before it ended (a
SIGTERM that came while a Ctrl-C was stopping it, a Ctrl-C during the last checkpoint
write) is passed on, when the outermost guard exits, to the handler that was there before:
a scheduler's SIGTERM is never lost. A signal the process ignores (``SIG_IGN``: SIGINT of a
job started in the background by a shell, ``nohup cmd &``) stays ignored: the guard does
not take it over, as Python itself does not.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = [
    "InterruptGuard",
    "Consistency",
    "Preempted",
    "TrainingPreempted",
    "INTERRUPT",
    "TERMINATE",
]

INTERRUPT, TERMINATE = 1, 2  # what a guard holds, by urgency (agreed on with max())


class Preempted(Exception):  # noqa: N818 - an event, not an error
    """SIGTERM (a scheduler's preemption) was received: stop at this consistent point."""


class TrainingPreempted(SystemExit):
    """Raised by ``train()`` after SIGTERM, once a checkpoint is saved: the process exits
    with status 0 unless it is caught. Running the same command again resumes."""


log = logging.getLogger(__name__)

_active: InterruptGuard | None = None  # the guard whose handler is installed


class InterruptGuard:
    """Hold SIGINT and SIGTERM until :meth:`check` (main thread only; elsewhere it does
    nothing). SIGTERM, what schedulers send before they kill a job, is held the same way
    and raised as :class:`Preempted`; a second SIGTERM does not stop at once."""

    def __init__(self, pass_on: bool = True) -> None:
        self.pass_on = pass_on  # signals held at exit go to the previous handlers
        self.received = False
        self.terminated = False
        self._holding = 0  # > 0 inside hold(): every press waits for the next check
        self._previous: dict[int, Any] = {}  # the handlers this guard replaced
        self._owner = False

    def _terminate(self, signum: int, frame: Any) -> None:
        if not self.terminated:
            log.warning(
                "SIGTERM received: saving a checkpoint after the current iteration, then exiting"
            )
        self.terminated = True

    def _handler(self, signum: int, frame: Any) -> None:
        if self.received and not self._holding:  # second Ctrl-C: the user means it
            raise KeyboardInterrupt
        if not self.received:
            log.warning(
                "Interrupt received: stopping after the current iteration "
                "(Ctrl-C again to stop now)"
            )
        self.received = True

    def __enter__(self) -> InterruptGuard:
        global _active
        if _active is None and threading.current_thread() is threading.main_thread():
            for signum, handler in (
                (signal.SIGINT, self._handler),
                (signal.SIGTERM, self._terminate),
            ):
                if signal.getsignal(signum) is not signal.SIG_IGN:  # (ignored stays ignored)
                    self._previous[signum] = signal.signal(signum, handler)
            _active, self._owner = self, True
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: Any) -> None:
        global _active
        if not self._owner:
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        _active, self._owner = None, False
        if self.pass_on:
            self._pass_on_held(exc_type)

    def _pass_on_held(self, exc_type: type[BaseException] | None) -> None:
        """Signals held but not acted on go to the previous handlers (the process's own:
        by default SIGTERM ends it, Ctrl-C raises ``KeyboardInterrupt``). Not while the
        loop is already stopping for one: a Ctrl-C held while a ``KeyboardInterrupt`` or a
        preemption is on its way out, a SIGTERM while the preemption checkpoint is."""
        stopping = exc_type is not None
        preempting = exc_type is not None and issubclass(exc_type, Preempted)
        if self.terminated and not preempting:
            log.warning("SIGTERM received as the loop ended: passed on to the process")
            signal.raise_signal(signal.SIGTERM)
        if self.received and not stopping:
            signal.raise_signal(signal.SIGINT)

    @staticmethod
    @contextlib.contextmanager
    def hold() -> Iterator[None]:
        """Hold every Ctrl-C (the second one too) until the block ends; they are raised at
        the next :meth:`check`. For short blocks only: the user cannot stop them."""
        guard = _active
        if guard is None:
            yield
            return
        guard._holding += 1
        try:
            yield
        finally:
            guard._holding -= 1

    @staticmethod
    def pending() -> int:
        """What the active guard holds: 0, :data:`INTERRUPT` or :data:`TERMINATE`."""
        guard = _active
        if guard is None:
            return 0
        return TERMINATE if guard.terminated else INTERRUPT if guard.received else 0

    @staticmethod
    def check(agreed: int | None = None) -> None:
        """Raise what the active guard holds (``KeyboardInterrupt`` for Ctrl-C,
        :class:`Preempted` for SIGTERM), or ``agreed``: what the processes of a distributed
        run agreed on (:meth:`pending` reduced with max), so that all stop together."""
        what = InterruptGuard.pending() if agreed is None else agreed
        guard = _active
        if what == TERMINATE:
            if guard is not None:
                guard.terminated = False
            raise Preempted
        if what == INTERRUPT:
            if guard is not None:  # (a SIGTERM that came meanwhile stays held)
                guard.received = False
            raise KeyboardInterrupt


class Consistency:
    """Marks stretches of work that leave the state inconsistent if cut half-way.

    ``with consistency.mark('a train iteration'):`` sets :attr:`active` to that description
    while the block runs (code called from inside it, a callback, sees the state half-way
    through: a checkpoint it asks for is written at the end of the block), and
    :attr:`broken` when an exception (a second Ctrl-C, an error in a callback) escapes from
    it: :attr:`broken` says what was cut.
    """

    def __init__(self) -> None:
        self.broken: str | None = None
        self.active: str | None = None

    @contextlib.contextmanager
    def mark(self, what: str) -> Iterator[None]:
        self.broken, self.active = None, what
        try:
            yield
        except BaseException:
            self.broken = what
            raise
        finally:
            self.active = None

    def clear(self) -> None:
        self.broken = None
