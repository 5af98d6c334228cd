"""Background loading of the files the DataGenerator will need next.

While the model trains on one batch, a worker thread reads (and decompresses) the next
files. Threads rather than processes: file reading and lz4/HDF5 decoding release the GIL,
and a process pays 1-3 ms of IPC per 512 KiB batch. Only *loading* happens here:
preprocessors are stateful, so ``process()`` runs on the main thread, in order.
"""

from __future__ import annotations

import itertools
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

__all__ = ["Prefetcher"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Prefetcher(Generic[T]):
    """Loads keys ahead of use with ``load(key)`` in up to ``workers`` threads.

    :meth:`schedule` says which keys come next; :meth:`get` returns one. At most ``depth``
    loads are queued or running (a bounded queue: memory stays at ``depth`` files). When
    the keys asked for differ from those scheduled (the caller changed its plan), the stale
    loads are dropped and the key is loaded directly, so results never depend on timing.
    A background load that failed is not replayed: :meth:`get` loads the key again (the file
    may be back by then) and raises only if that fresh load fails too.

    Adaptive: a caller that comes back within ``inline_below`` seconds of :meth:`schedule`
    twice in a row gets its loads run inline, in :meth:`get`; see the comment in the code.
    ``inline_below=0`` always loads in the background; ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        load: Callable[[str], T],
        depth: int = 2,
        workers: int = 1,
        inline_below: float = 2e-4,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self._load = load
        self.depth = depth
        self.workers = workers
        self.inline_below = inline_below
        self.clock = clock
        self._pending: deque[tuple[str, Future[T]]] = deque()
        self._executor: ThreadPoolExecutor | None = None
        self._finalizer: weakref.finalize | None = None
        self._scheduled_at: float | None = None  # when schedule() returned, until the next call
        self._quick = 0  # consecutive quick returns of the caller

    @property
    def enabled(self) -> bool:
        return self.depth > 0

    # Adaptive rule. Handing a load to a thread and taking it back costs ~0.1-0.4 ms (two
    # thread wake-ups and GIL hand-offs); it pays only if the caller works meanwhile, so
    # that the load overlaps with that work. The caller (DataGenerator) calls schedule()
    # once per batch, after serving it: the time until its next call is its own work per
    # batch (the train step). A caller back within `inline_below` (0.2 ms) does no work to
    # overlap with (a data-only loop, a benchmark): every load is on its critical path
    # anyway, and the hand-off is pure overhead (measured in benchmarks/data_pipeline.py:
    # 0.6x the speed of loading inline, 512 KiB .npy files). So after two quick returns in
    # a row, schedule() stops submitting and get() loads inline, in the caller's thread;
    # the first slow return (a real train step) switches back to background loading.
    # Details:
    # - loads already submitted are still used, in order: the mode changes only *where* a
    #   key loads, never what or in which order;
    # - time is measured after schedule() only: a batch made of several files calls get()
    #   back to back, which says nothing about the caller's work;
    # - a re-plan (schedule(timed=False): epoch start, restored state) is not timed: a
    #   get() follows it at once whatever the caller does, and what happens between epochs
    #   (validation, or nothing) says nothing about the work per batch.
    @property
    def inline(self) -> bool:
        """Whether loads now run in the caller's thread (the caller does no work between)."""
        return self._quick >= 2

    def _observe(self) -> None:
        """Count the caller's time since schedule() returned as quick or not (once)."""
        if self._scheduled_at is not None:
            away = self.clock() - self._scheduled_at
            self._quick = self._quick + 1 if away < self.inline_below else 0
            self._scheduled_at = None

    def schedule(self, upcoming: Iterable[str], timed: bool = True) -> None:
        """Make the first ``depth`` keys of ``upcoming`` the ones being loaded, in order.

        ``timed``: the caller now works on what it got (a batch), so the time until its
        next call is its work (see the adaptive rule); False for a mere change of plan."""
        if not self.enabled:
            return
        self._observe()
        wanted = list(itertools.islice(upcoming, self.depth))
        keep = 0
        while (
            keep < min(len(wanted), len(self._pending)) and self._pending[keep][0] == wanted[keep]
        ):
            keep += 1
        while len(self._pending) > keep:  # the plan changed: drop stale loads
            self._pending.pop()[1].cancel()
        if not self.inline and len(wanted) > keep:
            executor = self._ensure_executor()
            for key in wanted[keep:]:
                self._pending.append((key, executor.submit(self._load, key)))
        self._scheduled_at = self.clock() if timed else None

    def get(self, key: str) -> T:
        """The loaded value of ``key``: prefetched if it is next in line, else loaded now."""
        self._observe()
        if self._pending and self._pending[0][0] == key:
            future = self._pending[0][1]
            try:
                result = future.result()
            except BaseException as e:
                # an interrupt that arrived while waiting (Ctrl-C) leaves the load in line
                # for the next get(); a failed load is dropped and loaded again, below
                if not (future.done() and not future.cancelled() and future.exception() is e):
                    raise
                log.debug(
                    "prefetch: the background load of %r failed (%r); loading it again",
                    key,
                    future.exception(),
                )
            else:
                self._pending.popleft()
                return result
            self._pending.popleft()
            return self._load(key)  # outside the except block: its error stands alone
        if self._pending:
            log.debug(
                "prefetch: expected %r, got a request for %r; reloading", self._pending[0][0], key
            )
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
            self._executor = ThreadPoolExecutor(
                self.workers, thread_name_prefix="deeptrain-prefetch"
            )
            self._finalizer = weakref.finalize(
                self, self._executor.shutdown, wait=False, cancel_futures=True
            )
        return self._executor
