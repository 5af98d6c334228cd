"""The second and third phases of a checkpoint: write the files, then commit.

A checkpoint is saved in three phases (:class:`CheckpointJob` holds the last two):

1. ``snapshot`` (:func:`.snapshot.take_snapshot`), on the training thread: the state, copied
   to host memory. The only part that blocks training.
2. ``write``: for each target (a checkpoint directory: a temp or unique checkpoint, a best
   model; one snapshot may serve several), the figures are drawn from the snapshot
   (matplotlib's ``Figure`` API, no pyplot state), the weights file is written from it
   (:mod:`.weights_file`), then the arrays, the other files and ``state.json``, each
   fsynced once; the directory is fsynced and renamed into place (:mod:`.atomic`).
3. ``commit``: the ``latest`` pointer moves to the new checkpoint, and only then are older
   ones pruned (for a best model: the older best models of its model number deleted).

:class:`CheckpointPipeline` runs phases 2 and 3 in one background thread (``asynchronous``)
or inline. At most one job is in flight: a new checkpoint *waits* for the one being written
before it takes its snapshot. Waiting, not coalescing, because every checkpoint asked for is
kept (a unique checkpoint or a best model skipped for a newer one would be lost, and a
``latest`` that skipped some would still be exact, but the user asked for each), and because
it bounds memory to one snapshot besides the live model; when checkpoints come faster than
the disk takes them, training slows to the disk's pace, as synchronous writing would. An
error in the background is kept and raised on the training thread by the next
:meth:`~CheckpointPipeline.check` (every train and validation iteration), ``submit`` or
``wait``; never lost.

Under distribution only the writing process (process 0) submits jobs, written inline; the
processes then agree that it worked before going on (:class:`~.checkpointer.Checkpointer`).
"""

from __future__ import annotations

import atexit
import io
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoint import ARRAYS_FILE, WEIGHTS_FILE, FileSource, arrays_bytes, write_checkpoint
from .snapshot import FigureData, Snapshot
from .weights_file import write_weights_file

__all__ = ["Target", "CheckpointJob", "CheckpointPipeline"]

log = logging.getLogger("deeptrain")

FIGURES = ("history", "report")


@dataclass
class Target:
    """One checkpoint directory written from a snapshot.

    ``commit(path)`` runs after the write (moves the pointer, prunes; ``commit_syncs``:
    it fsyncs the directory ``path`` is in, so the write leaves that to it); ``figures``:
    the history and report PNGs go in."""

    path: Path
    kind: str
    seq: int
    replace: bool = True
    figures: bool = False
    commit: Callable[[Path], None] | None = None
    commit_syncs: bool = False


@dataclass
class CheckpointJob:
    """Phases 2 and 3 of the checkpoints ``targets``, from ``snapshot``; ``recycle`` gets
    the snapshot's host arrays once they are written (or the write failed), unused after;
    ``figure_process``: the figures are drawn by the helper process (:mod:`.figure_worker`,
    set for background writes)."""

    snapshot: Snapshot
    targets: list[Target]
    fault: Callable[[str], None] | None = None
    recycle: Callable[[list[Any]], None] | None = None
    figure_process: bool = False

    def write(self) -> None:
        """Draw the figures once, then write every target's directory."""
        pngs = self._draw(self.snapshot.figures) if self.snapshot.figures else {}
        state = _decode(self.snapshot.state_json)
        npz = arrays_bytes(self.snapshot.arrays)
        for target in self.targets:
            payload = {"kind": target.kind, "seq": target.seq, **state}
            files = self._files(target, pngs, npz)
            write_checkpoint(  # (the payload is decoded from the snapshot's JSON text)
                target.path,
                payload,
                files,
                self.fault,
                target.replace,
                not target.commit_syncs,
                decoded=True,
            )

    def _draw(self, figures: FigureData) -> dict[str, bytes]:
        if not self.figure_process or not (figures.history or figures.report):
            return render_figures(figures)
        from . import figure_worker

        return figure_worker.draw(figures, render_figures)

    def commit(self) -> None:
        for target in self.targets:
            if target.commit is not None:
                target.commit(target.path)

    def discard(self) -> None:
        self.snapshot.discard()
        recycle, self.recycle = self.recycle, None
        if recycle is not None:
            recycle(self.snapshot.host_values)

    def _files(self, target: Target, pngs: dict[str, bytes], npz: bytes) -> dict[str, FileSource]:
        """The target's files, in the order written (``state.json`` follows)."""
        snap = self.snapshot
        files: dict[str, FileSource] = {}
        weights = snap.weights
        if weights is not None:
            files[WEIGHTS_FILE] = lambda path: write_weights_file(path, weights)
        files.update(snap.staged)  # written by Keras: the weights with options, model.keras
        if target.figures:
            files.update({f"{name}.png": pngs[name] for name in FIGURES if name in pngs})
        files[ARRAYS_FILE] = npz
        return files

    def describe(self) -> str:
        return ", ".join(str(t.path) for t in self.targets)


def _decode(state_json: str) -> dict[str, Any]:
    import json

    return json.loads(state_json)


def render_figures(data: FigureData) -> dict[str, bytes]:
    """The history and report PNGs of ``data`` (drawn here unless drawn already)."""
    from ..training.plotting import history_figure
    from .report import format_sections, report_png

    pngs = dict(data.drawn)
    if data.history is not None:
        h = data.history
        fig = history_figure(
            h["configs"], h["history"], h["val_history"], h["series"].__getitem__, h["aliases"]
        )
        pngs["history"] = _png(fig)
    if data.report is not None:
        r = data.report
        sections = format_sections(r["entries"], r["configs"])
        pngs["report"] = report_png(sections, title=r["title"], fontpath=r["fontpath"])
    return pngs


def _png(fig: Any) -> bytes:
    from ..visuals import scalefig

    buffer = io.BytesIO()
    scalefig(fig).savefig(buffer, format="png", dpi=80)  # SCALEFIG, as every figure
    return buffer.getvalue()


_pipelines: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _finish_at_exit() -> None:
    for pipeline in list(_pipelines):
        pipeline.join()


class CheckpointPipeline:
    """Runs :class:`CheckpointJob` s one at a time, in a background thread or inline.

    The thread is started with the first background job and then waits for the next one
    (handing it a job costs the training thread no thread start). It is a daemon, so that
    an idle one never keeps the interpreter alive; ``train()`` and the other entry points
    wait for the job in flight before they return, and a job still in flight when the
    interpreter exits is waited for (``atexit``)."""

    def __init__(self, asynchronous: bool = True):
        self.asynchronous = asynchronous
        self._job: CheckpointJob | None = None
        self._error: BaseException | None = None
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._failed: list[Target] = []  # the targets of the write whose error is kept
        # called on the training thread with those targets when their error is raised
        # there: the saves become due again (none is lost to a failure in the background)
        self.on_error: Callable[[list[Target]], None] | None = None
        self.idle = threading.Event()  # set while no job is in flight
        self.idle.set()
        _pipelines.add(self)

    @property
    def busy(self) -> bool:
        return not self.idle.is_set()

    def submit(self, job: CheckpointJob, wait: bool = False) -> None:
        """Run ``job`` after the one in flight (whose error, if any, is raised first,
        and ``job`` is then not run). ``wait``: return once ``job`` is done (its error
        raised here)."""
        try:
            self.wait()
        except BaseException:
            job.discard()
            raise
        if not self.asynchronous:
            self._run(job)
            self._raise()
            return
        job.figure_process = True  # drawing in this process would take the GIL from training
        self.idle.clear()
        try:
            with self._wake:
                self._job = job
                self._wake.notify()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._serve, name="deeptrain-checkpoint", daemon=True
                )
                self._thread.start()
        except BaseException:  # (a second Ctrl-C here): a job no thread will take is
            self._drop_unserved(job)  # dropped, never left marking the pipeline busy
            raise
        if wait:
            self.wait()

    def _drop_unserved(self, job: CheckpointJob) -> None:
        with self._wake:
            if self._job is not job or (self._thread is not None and self._thread.is_alive()):
                return  # (taken, or a live thread takes it)
            self._job = None
        job.discard()
        self.idle.set()

    def check(self) -> None:
        """Raise the error of a background write that has ended (never waits)."""
        if self.idle.is_set():
            self._raise()

    def join(self) -> None:
        """Return once no write is in flight (its error stays for the next ``check``)."""
        self.idle.wait()

    def wait(self) -> None:
        """Return once no write is in flight; raise the error of one that failed."""
        self.join()
        self._raise()

    def pending_error(self) -> BaseException | None:
        return self._error

    def take_error(self) -> BaseException | None:
        """Once no write is in flight: the error of one that failed (cleared), or None."""
        self.join()
        error, self._error, self._failed = self._error, None, []
        return error

    def _raise(self) -> None:
        error, self._error = self._error, None
        failed, self._failed = self._failed, []
        if error is not None:
            if self.on_error is not None:
                self.on_error(failed)
            raise error

    def _serve(self) -> None:
        while True:
            with self._wake:
                while self._job is None:
                    self._wake.wait()
                job = self._job
            self._run(job)
            del job  # (not kept while waiting: it holds a whole state's host copy)

    def _run(self, job: CheckpointJob) -> None:
        try:
            job.write()
            job.commit()  # the pointer moves once the checkpoint is complete and durable
        except BaseException as e:  # kept for the training thread
            e.add_note(f"(raised while writing the checkpoint {job.describe()})")
            self._error, self._failed = e, job.targets
            if self.asynchronous:
                log.error("Writing the checkpoint %s failed: %s", job.describe(), e)
        finally:
            job.discard()
            with self._wake:
                self._job = None
            self.idle.set()
