"""A process of a multi-process JAX job that fails alone: the others told, and stopped, in
about a second instead of minutes.

A JAX process whose ``train()`` raises (a callback's error, a file that fails to load on
its host) leaves the job, but not at once: at exit JAX waits at a shutdown barrier for
every process (``shutdown_timeout_seconds``, 5 minutes by default), while the others wait in
the step's collective for it. The job hangs for minutes, then JAX aborts every process with
a message that names no error (measured: 317 s for 2 processes on a CPU).

So while a loop runs, the failing process posts its error in the job's coordination service
(JAX's key-value store) and every other process watches for it (a thread that asks twice a
second, ~0.3 ms each). A process that sees it logs the error, joins JAX's shutdown (so that
the failing process exits with its own error at once) and exits with status 1: its main
thread waits in a collective that can no longer complete, and nothing else can end it.
Only errors (``Exception``) are posted: Ctrl-C and SIGTERM are agreed on by all processes
and stop them together. An error every process raises at the same point (a batch that does
not split over the replicas) is no lone failure: a process that sees it posted waits
``GRACE_S`` for its own loop to end, and does nothing if it does. Each loop (the n-th
``train()`` or ``validate()`` of the job, the same on every process) has its own key, so an
error caught by the script does not stop a later loop.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
from typing import Any

__all__ = ["FailureWatch", "KEY"]

log = logging.getLogger(__name__)

KEY = "deeptrain/failed"  # + "/<the loop's number>"
POLL_S = 0.5
GRACE_S = 2.0  # for this process's own loop to end, when the error posted is its too
_loops = itertools.count()  # loops started in this process (the same on every process)
SHUTDOWN_S = 30.0  # the most a stopping process waits for JAX's shutdown barrier


class FailureWatch:
    """Post this process's error for the others, and stop this process on theirs."""

    def __init__(self, client: Any, process_index: int):
        self._client = client  # jax's DistributedRuntimeClient
        self._process_index = process_index
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._key = KEY

    def start(self) -> None:
        """Watch for another process's error in this loop (until :meth:`stop` or
        :meth:`report`)."""
        self._key = f"{KEY}/{next(_loops)}"
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="deeptrain-failure-watch")
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(POLL_S * 4)
        self._thread = None

    def report(self, error: BaseException) -> None:
        """Post ``error`` for the other processes (the first process to fail posts)."""
        self.stop()
        message = f"process {self._process_index}: {type(error).__name__}: {error}"
        try:
            self._client.key_value_set(self._key, message)
        except Exception as e:  # (posted already by another process, or no service)
            log.debug("could not post this process's error for the others: %s", e)

    def posted(self) -> str | None:
        """The error a process posted, or None."""
        try:
            return str(self._client.key_value_try_get(self._key))
        except Exception:  # NOT_FOUND (or the service is gone: then JAX stops us)
            return None

    def _watch(self) -> None:
        while not self._stop.wait(POLL_S):
            message = self.posted()
            if message is not None:  # (if this process raises it too, its loop ends)
                if not self._stop.wait(GRACE_S):
                    stop_process(message)
                return


def stop_process(message: str) -> None:
    """Log another process's error, join JAX's shutdown, exit with status 1."""
    log.critical(
        "Another process of this job failed (%s); this process cannot go on without it "
        "(its collectives would wait forever) and stops too",
        message,
    )
    shutdown = threading.Thread(target=_shutdown_jax, daemon=True)
    shutdown.start()
    shutdown.join(SHUTDOWN_S)
    logger: logging.Logger | None = log
    while logger is not None:  # (os._exit flushes nothing)
        for handler in logger.handlers:
            handler.flush()
        logger = logger.parent
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def _shutdown_jax() -> None:
    try:
        import jax

        jax.distributed.shutdown()
    except Exception as e:  # pragma: no cover - best effort: exiting anyway
        log.debug("jax.distributed.shutdown failed: %s", e)
