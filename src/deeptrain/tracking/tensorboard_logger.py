"""``TensorBoardLogger``: TensorBoard event files on any backend, without TensorFlow."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import introspection
from ..callbacks.base import Stage
from .base import FLUSH_TIMEOUT_S, TrackingLogger, logger_freq
from .events import EventFile
from .records import scalar_records
from .settings import run_settings

__all__ = ["TensorBoardLogger"]

log = logging.getLogger(__name__)

HISTOGRAM_KINDS = ("weights", "gradients")
HANDOVER_EVERY = 1024  # rows of scalars (about a step each) given to the worker at once,
HANDOVER_S = 2.0  # or the ones recorded in this many seconds (and at every flush point)


class TensorBoardLogger(TrackingLogger):
    """Write the run to TensorBoard event files (with ``tensorboardX``; install
    ``deeptrain[tensorboard]``).

    Records (see :mod:`deeptrain.tracking.base`) train metrics per batch, validation
    metrics, the learning rate, the history figure and the report as images, the run's
    settings as hyperparameters (HPARAMS tab), and at ``histogram_freq`` histograms of every
    weight (``'weights'``) and of the loss gradient w.r.t. every trainable weight on the
    first validation batch (``'gradients'``, inference mode).

    Args:
        logdir: directory of the event files; default ``<the run's logdir>/tensorboard``.
        train_freq, lr_freq, images_freq: ``{'batch' | 'epoch' | 'val': n}`` or None.
        histogram_freq: the same, for histograms (default None: none).
        histograms: which histograms: ``('weights',)``, ``('weights', 'gradients')``.
        hparams: write the settings as hyperparameters.

    Resuming: loading a checkpoint starts a new event file in the same directory that
    hides the events after the checkpoint's step (TensorBoard's purge on restart), so the
    stream continues with no step recorded twice (a checkpoint taken during a validation
    hides its own step too, and the step's train scalars and histograms are written again).
    Open it with ``tensorboard --logdir <logdir>`` (one run per directory below it).
    """

    def __init__(
        self,
        logdir: str | Path | None = None,
        train_freq: Mapping[str, int] | None = {"batch": 1},
        lr_freq: Mapping[str, int] | None = {"epoch": 1},
        images_freq: Mapping[str, int] | None = {"val": 1},
        histogram_freq: Mapping[str, int] | None = None,
        histograms: Sequence[str] = ("weights",),
        hparams: bool = True,
    ):
        if importlib.util.find_spec("tensorboardX") is None:
            raise ImportError(
                "TensorBoardLogger writes with tensorboardX, which is not installed: "
                "pip install 'deeptrain[tensorboard]'"
            )
        super().__init__(train_freq, lr_freq, images_freq)
        self.logdir = Path(logdir) if logdir is not None else None
        self.histogram_freq = logger_freq(histogram_freq, "histogram_freq")
        self.histograms = tuple(histograms)
        bad = [h for h in self.histograms if h not in HISTOGRAM_KINDS]
        if bad:
            raise ValueError(f"histograms: {bad} are not among {HISTOGRAM_KINDS}")
        self.hparams = hparams
        self.directory: Path | None = None  # where the events go, once open
        self._file: EventFile | None = None
        self._purge_step: int | None = None
        self._relog: dict[str, float] = {}
        self._histogram_step = -1  # the step of the last histograms of a batch or epoch end
        self._rehistogram = False  # written again at the next opening (see on_load)
        self._gradient_batch: tuple | None = None
        # scalars not handed over yet: rows (step, walltime, *values) by tag set, each set's
        # rows in the order recorded. Written a set at a time, so tags' events interleave
        # differently in the file than in time, which TensorBoard allows; but a tag's own
        # steps must keep their order (its loader drops a tag's events at steps >= one
        # that comes later): a set sharing a tag with a pending one is a hand-over first
        self._pending: dict[tuple[str, ...], list[tuple[float, ...]]] = {}
        self._rows: list[tuple[float, ...]] | None = None  # the last added row's set's rows
        self._row_tags: tuple[str, ...] = ()  # and its tags
        self._pending_rows = 0  # rows in _pending
        self._handed_at = 0.0  # time.time() of the last hand-over

    # -- opening ---------------------------------------------------------------------------
    def _open(self) -> None:
        tg = self.tg
        directory = self.logdir
        if directory is None:
            if tg.logdir is None:
                raise ValueError(
                    "TensorBoardLogger needs a directory: pass logdir=, or give the "
                    "TrainGenerator logs_dir or logdir"
                )
            directory = tg.logdir / "tensorboard"
        self.directory = Path(directory)
        hparams = run_settings(tg) if self.hparams else None
        metric_tags = [f"val/{m}" for m in tg.val_metrics or []]
        self._worker.call(self._open_file, self.directory, self._purge_step, hparams, metric_tags)
        log.info("TensorBoard events in %s (tensorboard --logdir %s)", directory, directory)
        self._purge_step = None
        if self._relog:  # the step of a checkpoint taken during a validation: written again
            relog, self._relog = self._relog, {}
            self._scalars(relog, tg.state.batches_fit)
        if self._rehistogram:  # (the weights are the checkpoint's: those of its step)
            self._rehistogram = False
            self._histograms(tg.state.batches_fit)

    def _open_file(
        self, directory: Path, purge: int | None, hparams: dict | None, tags: list[str]
    ) -> None:
        events = EventFile(directory, purge)
        try:
            if hparams is not None:
                events.hparams(hparams, tags)
            events.flush()
        except BaseException:
            with contextlib.suppress(OSError):  # (not left open; its error is the one to see)
                events.close()
            raise
        self._file = events

    # -- records ---------------------------------------------------------------------------
    def _record_scalars(self, values: dict[str, float], step: int, walltime: float) -> None:
        self._add_row(tuple(values), (step, walltime, *values.values()))

    def _add_row(self, tags: tuple[str, ...], row: tuple[float, ...]) -> None:
        rows = self._rows
        if rows is None or tags is not self._row_tags:
            rows = self._pending.get(tags)
            if rows is None:
                if self._pending and not set(tags).isdisjoint(t for k in self._pending for t in k):
                    self._hand_over()  # (its rows must be written before this set's)
                rows = self._pending[tags] = []
            self._rows, self._row_tags = rows, tags
        rows.append(row)
        self._pending_rows += 1
        if self._pending_rows >= HANDOVER_EVERY or row[1] - self._handed_at >= HANDOVER_S:
            self._hand_over()

    _record_train = _add_row  # (a train row needs nothing more: one call less per step)

    def _hand_over(self) -> None:
        """Give the worker the scalars recorded since the last hand-over (one wake-up of its
        thread per ``HANDOVER_EVERY`` steps, or ``HANDOVER_S``, not per step); it encodes
        them to bytes, a table at a time (:mod:`.records`)."""
        self._handed_at = time.time()
        if self._pending:
            pending, self._pending, self._rows, self._pending_rows = self._pending, {}, None, 0
            self._worker.submit(self._write_scalars, pending)

    @property
    def _events(self) -> EventFile:
        """(Worker) The open event file (opened before anything is handed to the worker)."""
        if self._file is None:
            raise RuntimeError("the TensorBoard event file is not open")
        return self._file

    def _write_scalars(self, pending: dict[tuple[str, ...], list[tuple[float, ...]]]) -> None:
        # one table per tag set (up to a thousand rows: the ~40 us a call is spread)
        records = []
        for tags, rows in pending.items():
            try:
                records.append(scalar_records(tags, rows))
            except ValueError as e:  # (one bad set does not lose the others)
                log.warning("TensorBoardLogger: scalars of %s not written: %s", tags, e)
        self._events.write_records(b"".join(records))

    def _images(self, pngs: dict[str, bytes], step: int) -> None:
        self._ensure_open()
        self._hand_over()
        self._worker.submit(self._write_images, pngs, step, time.time())

    def _write_images(self, pngs: dict[str, bytes], step: int, walltime: float) -> None:
        for name, png in pngs.items():
            self._events.image(f"figures/{name}", png, step, walltime)
        self._events.flush()

    def _periodic_freqs(self) -> list[Mapping[str, int] | None]:
        return [*super()._periodic_freqs(), self.histogram_freq]

    def _periodic(self, mode: str) -> None:
        super()._periodic(mode)
        if self._due(self.histogram_freq, mode):
            step = self.tg.state.batches_fit
            self._histograms(step)
            if mode != "val":  # (a validation's are recorded again when it is redone)
                self._histogram_step = step

    def _histograms(self, step: int) -> None:
        tg = self.tg
        tg.sync_model()
        arrays = {}
        if "weights" in self.histograms:
            weights = introspection.get_weights(tg.model, "*")
            arrays.update({f"weights/{k}": v for k, v in weights.items()})
        if "gradients" in self.histograms:
            if self._gradient_batch is None:
                self._gradient_batch = introspection.peek_batch(tg, val=True)
            x, y, sw = self._gradient_batch
            grads = introspection.get_gradients(tg.model, "*", x, y, sw, mode="weights")
            arrays.update({f"gradients/{k}": v for k, v in grads.items()})
        self._ensure_open()
        self._hand_over()
        self._worker.submit(self._write_histograms, arrays, step, time.time())

    def _write_histograms(self, arrays: dict[str, Any], step: int, walltime: float) -> None:
        self._events.histograms(arrays, step, walltime)

    # -- flushing, resuming ----------------------------------------------------------------
    def _flush_file(self) -> None:
        if self._file is not None:
            self._file.flush()

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _write_out(self) -> None:
        """Hand everything over and have the file flushed to disk."""
        self._hand_over()
        self._worker.submit(self._flush_file)

    def on_val_end(self, stage: Stage) -> None:
        super().on_val_end(stage)
        if self._opened:
            self._write_out()

    def _at_checkpoint(self) -> None:
        self._write_out()

    def on_train_end(self, stage: Stage) -> None:
        if self._opened:
            if not self.flush(FLUSH_TIMEOUT_S):
                log.warning("TensorBoardLogger: events still being written after train()")

    def flush(self, timeout: float | None = FLUSH_TIMEOUT_S) -> bool:
        if self._opened:
            self._write_out()
        return super().flush(timeout)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "histogram_step": self._histogram_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._histogram_step = int(state.get("histogram_step", -1))

    def on_load(self, stage: Stage) -> None:
        """A new event file at the next record, hiding what came after this checkpoint.
        Loaded during a validation (a checkpoint taken inside one), the checkpoint's own
        step is hidden too, since that validation is recorded again, and its train
        scalars and the histograms of its batch or epoch end are written again."""
        state = self.tg.state
        if self._opened:
            self._hand_over()  # into the old file: the new one's start hides what follows
            self._worker.submit(self._close_file)
            self._opened = False
        pending = state.train_loop_done
        self._purge_step = max(state.batches_fit, 1) if pending else state.batches_fit + 1
        step, values = self._newest_scalars()
        relog = pending and step == state.batches_fit
        self._relog = {k: v for k, v in values.items() if not k.startswith("val/")} if relog else {}
        self._rehistogram = pending and self._histogram_step == state.batches_fit

    def close(self) -> None:
        """Write what is queued and close the event file (a later record opens a new one)."""
        if self._opened:
            self._hand_over()
            self._worker.submit(self._close_file)
            self._opened = False
        self._worker.close(FLUSH_TIMEOUT_S)
