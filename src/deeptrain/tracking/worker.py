"""``BackgroundWorker``: calls run in order on one thread, off the train loop.

Loggers hand their writes (protobuf building, file and network I/O) to a worker, so that the
train thread only appends to a queue. A failed call is logged as a warning and the worker
goes on: tracking never stops training. :meth:`BackgroundWorker.call` runs a call on the
worker and waits for it, raising its error on the caller's thread (opening a store, where
an error must be seen). Workers still alive at interpreter exit are drained first (with a
time limit), so nothing queued is lost on a normal exit.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["BackgroundWorker"]

log = logging.getLogger(__name__)

_STOP = object()
_live: weakref.WeakSet[BackgroundWorker] = weakref.WeakSet()
EXIT_TIMEOUT_S = 60.0


class BackgroundWorker:
    """One daemon thread that runs submitted calls in the order they came."""

    def __init__(self, name: str):
        self.name = name
        self.failures = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pending = 0
        self._done = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)``; it runs after everything queued before it. An error is
        logged as a warning."""
        self._put(fn, args, None)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the worker after what is queued; return its result or raise
        its error here."""
        box: dict[str, Any] = {}
        self._put(fn, args, box)
        self.flush()
        if "error" in box:
            raise box["error"]
        return box.get("result")

    @property
    def pending(self) -> int:
        """Calls queued or running."""
        return self._pending

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued call has run; False if ``timeout`` (s) ran out first."""
        with self._done:
            return self._done.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Run what is queued, then stop the thread."""
        if self._thread is None:
            return
        if not self.flush(timeout):
            log.warning("%s: calls still queued after %s s; not waiting longer", self.name, timeout)
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():  # a call hangs (a store that does not answer): later
            # calls go to a new thread and queue; this one stops when its call returns
            log.warning(
                "%s: a call still running after %s s; not waiting for it", self.name, timeout
            )
            with self._done:
                self._queue, self._pending = queue.SimpleQueue(), 0
        self._thread = None
        _live.discard(self)

    def _put(self, fn: Callable[..., Any], args: tuple, box: dict | None) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, args=(self._queue,), name=self.name, daemon=True
            )
            self._thread.start()
            _live.add(self)
        with self._done:
            self._pending += 1
        self._queue.put((fn, args, box))

    def _run(self, calls: queue.SimpleQueue) -> None:
        while True:
            item = calls.get()
            if item is _STOP:
                return
            fn, args, box = item
            try:
                result = fn(*args)
                if box is not None:
                    box["result"] = result
            except Exception as e:  # a tracking failure is reported, never fatal
                if box is not None:
                    box["error"] = e
                else:
                    self._report(fn, e)
            finally:
                with self._done:
                    if calls is self._queue:  # (not a thread given up on by close())
                        self._pending -= 1
                    self._done.notify_all()

    def _report(self, fn: Callable, error: Exception) -> None:
        self.failures += 1
        if self.failures <= 3 or self.failures % 100 == 0:
            log.warning(
                "%s: %s failed (%d failure(s) so far): %s: %s",
                self.name,
                getattr(fn, "__name__", fn),
                self.failures,
                type(error).__name__,
                error,
            )


@atexit.register
def _drain_at_exit() -> None:
    for worker in list(_live):
        worker.close(EXIT_TIMEOUT_S)
