"""Background loading of the files the DataGenerator will need next.

While the model trains on one batch, a worker thread reads (and decompresses) the next
files. Threads rather than processes: file reading and lz4/HDF5 decoding release the GIL,
and a process pays 1-3 ms of IPC per 512 KiB batch. Only *loading* happens here:
preprocessors are stateful, so ``process()`` runs on the main thread, in order.
"""
from __future__ import annotations

import logging
import weakref
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Generic, Iterable, TypeVar

__all__ = ["Prefetcher"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Prefetcher(Generic[T]):
    """Loads keys ahead of use with ``load(key)`` in up to ``workers`` threads.

    :meth:`schedule` says which keys come next; :meth:`get` returns one. At most ``depth``
    loads are queued or running (a bounded queue: memory stays at ``depth`` files). When
    the keys asked for differ from those scheduled (the caller changed its plan), the stale
    loads are dropped and the key is loaded directly, so results never depend on timing.
    An exception raised by ``load`` is re-raised by the :meth:`get` for that key.
    """

    def __init__(self, load: Callable[[str], T], depth: int = 2, workers: int = 1):
        self._load = load
        self.depth = depth
        self.workers = workers
        self._pending: deque[tuple[str, Future[T]]] = deque()
        self._executor: ThreadPoolExecutor | None = None
        self._finalizer: weakref.finalize | None = None

    @property
    def enabled(self) -> bool:
        return self.depth > 0

    def schedule(self, upcoming: Iterable[str]) -> None:
        """Make the first ``depth`` keys of ``upcoming`` the ones being loaded, in order."""
        if not self.enabled:
            return
        wanted = []
        for key in upcoming:
            if len(wanted) == self.depth:
                break
            wanted.append(key)
        keep = 0
        while keep < min(len(wanted), len(self._pending)) and self._pending[keep][0] == wanted[keep]:
            keep += 1
        while len(self._pending) > keep:  # the plan changed: drop stale loads
            self._pending.pop()[1].cancel()
        executor = self._ensure_executor()
        for key in wanted[keep:]:
            self._pending.append((key, executor.submit(self._load, key)))

    def get(self, key: str) -> T:
        """The loaded value of ``key``: prefetched if it is next in line, else loaded now."""
        if self._pending and self._pending[0][0] == key:
            future = self._pending[0][1]
            try:
                result = future.result()  # re-raises the loader's exception, in this thread
            except BaseException:
                # a failed load is dropped so that a retry loads again; an interrupt that
                # arrived while waiting (Ctrl-C) leaves the load in line for the next get()
                if future.done() and not future.cancelled() and future.exception() is not None:
                    self._pending.popleft()
                raise
            self._pending.popleft()
            return result
        if self._pending:
            log.debug("prefetch: expected %r, got a request for %r; reloading", self._pending[0][0], key)
            self.clear()
        return self._load(key)

    def clear(self) -> None:
        """Drop every scheduled load (running ones finish in the background)."""
        while self._pending:
            self._pending.pop()[1].cancel()

    def close(self) -> None:
        """Stop the worker threads; pending loads are cancelled."""
        self.clear()
        if self._finalizer is not None:
            self._finalizer()
            self._executor = self._finalizer = None

    def _ensure_executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="deeptrain-prefetch")
            self._finalizer = weakref.finalize(self, self._executor.shutdown, wait=False,
                                               cancel_futures=True)
        return self._executor
