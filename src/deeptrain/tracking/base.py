"""``TrackingLogger``: what the TensorBoard and MLflow loggers record, and when.

Every value is recorded at step ``batches_fit`` (one x axis for train and validation):

* ``train/<metric>``: each train batch's metrics (the mean over its windows), at
  ``train_freq`` (default every batch);
* ``val/<metric>``: every recorded validation's metrics (not ``record_progress=False``);
* ``learning_rate``: the optimizer's current learning rate, at ``lr_freq``;
* the history figure (when drawn at that validation) and the report, at ``images_freq``.

Frequencies are ``{'batch' | 'epoch' | 'val': n}`` (as the TrainGenerator's), counted by the
train state, so a resumed run keeps the rhythm; None turns a record off. Recording costs the
train thread a dict and a queue append: a :class:`~.worker.BackgroundWorker` does the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..callbacks.base import Stage, TraingenCallback
from ..saving.report import traingen_report_png
from ..training.frequency import check_freq
from .worker import BackgroundWorker

__all__ = ["TrackingLogger"]

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 120.0
CHECKPOINT_WAIT_S = 60.0
_COUNTS = {"batch": "batches_fit", "epoch": "epoch", "val": "times_validated"}


def logger_freq(freq: Any, name: str) -> dict[str, int] | None:
    """A frequency config of a logger: None or ``{'batch' | 'epoch' | 'val': n}``."""
    freq = check_freq(freq, name)
    if freq is not None and "iter" in freq:
        raise ValueError(f"{name}: loggers record per 'batch', 'epoch' or 'val', not 'iter'")
    return freq


def learning_rate(model: Any) -> float | None:
    """The optimizer's current learning rate (a schedule's value at this step)."""
    import keras

    try:
        return float(np.asarray(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))
    except (AttributeError, TypeError, ValueError):
        return None


class TrackingLogger(TraingenCallback):
    """Base of the loggers; subclasses implement ``_open`` and ``_record_*``."""

    reads_model = False  # reads tg.state per batch; syncs the model itself when it reads it
    writer_only = True  # one event stream, one MLflow run: written by the writing process

    def __init__(
        self,
        train_freq: Mapping[str, int] | None = {"batch": 1},
        lr_freq: Mapping[str, int] | None = {"epoch": 1},
        images_freq: Mapping[str, int] | None = {"val": 1},
    ):
        self.train_freq = logger_freq(train_freq, "train_freq")
        self.lr_freq = logger_freq(lr_freq, "lr_freq")
        self.images_freq = logger_freq(images_freq, "images_freq")
        self._worker = BackgroundWorker(f"deeptrain.{type(self).__name__}")
        self._opened = False
        self._val_logged = 0  # times_validated of the last validation recorded
        self._last_step: tuple[int, dict[str, float]] = (-1, {})  # scalars at the newest step
        self._lagging = False  # the store did not keep up at the last checkpoint
        self._records_per_batch = True  # any record besides train metrics per batch
        self._train_tags: dict[str, str] = {}  # metric name -> 'train/<name>'

    # -- stages --------------------------------------------------------------------------
    def on_train_start(self, stage: Stage) -> None:
        self._ensure_open()
        self._records_per_batch = self._records_at("batch")  # (frequencies read per train())

    def on_train_batch_end(self, stage: Stage) -> None:
        # runs after every train step: kept to a few reads when nothing else is due
        state = self.tg.state
        if self._due(self.train_freq, "batch"):
            self._scalars(self._train_scalars(state.temp_history), state.batches_fit)
        if self._records_per_batch:
            self._periodic("batch")

    def on_train_epoch_end(self, stage: Stage) -> None:
        self._periodic("epoch")

    def on_val_end(self, stage: Stage) -> None:
        state = self.tg.state
        if state.times_validated <= self._val_logged:
            return  # not recorded (record_progress=False), or already
        self._val_logged = state.times_validated
        metrics = {f"val/{k}": v for k, v in self.tg.last_validation.items() if np.ndim(v) == 0}
        self._scalars(metrics, state.batches_fit)
        self._periodic("val")
        if self._due(self.images_freq, "val"):
            self._images(self._figures(), state.batches_fit)

    def on_save(self, stage: Stage) -> None:
        """Everything recorded up to this checkpoint is written before it is: a run killed
        later and resumed from it records only what follows it."""
        if self._opened:
            self._at_checkpoint()
            self._wait_at_checkpoint()

    def _wait_at_checkpoint(self) -> None:
        if self._lagging and self._worker.pending:
            return  # not waiting again until the store has caught up
        self._lagging = not self._worker.flush(CHECKPOINT_WAIT_S)
        if self._lagging:
            log.warning(
                "%s: still writing after %s s at a checkpoint; training goes on without "
                "waiting for it until it catches up",
                type(self).__name__,
                CHECKPOINT_WAIT_S,
            )

    # -- what is recorded ------------------------------------------------------------------
    def _due(self, freq: Mapping[str, int] | None, mode: str) -> bool:
        if not freq or mode not in freq:
            return False
        count = getattr(self.tg.state, _COUNTS[mode])
        return count > 0 and count % freq[mode] == 0

    def _train_scalars(self, history: Mapping[str, list]) -> dict[str, float]:
        """``{'train/<metric>': value}`` of the batch just fit."""
        tags, out = self._train_tags, {}
        for name, values in history.items():
            if values:
                tag = tags.get(name)
                if tag is None:
                    tag = tags[name] = f"train/{name}"
                out[tag] = float(values[-1])
        return out

    def _records_at(self, mode: str) -> bool:
        """Whether :meth:`_periodic` records anything at a ``mode`` end."""
        return any(freq and mode in freq for freq in self._periodic_freqs())

    def _periodic_freqs(self) -> list[Mapping[str, int] | None]:
        return [self.lr_freq]

    def _periodic(self, mode: str) -> None:
        """Records at a batch, epoch or validation end other than the metrics."""
        if self._due(self.lr_freq, mode):
            optimizer = self.tg.model.optimizer  # its scalars: iterations, learning rate
            self.tg.sync_variables([v for v in optimizer.variables if len(v.shape) == 0])
            lr = learning_rate(self.tg.model)
            if lr is not None:
                self._scalars({"learning_rate": lr}, self.tg.state.batches_fit)

    def _scalars(self, values: dict[str, float], step: int) -> None:
        if not values:
            return
        self._ensure_open()
        last, kept = self._last_step
        if last != step:
            kept = {}
            self._last_step = (step, kept)
        kept.update(values)
        self._record_scalars({k: float(v) for k, v in values.items()}, step, time.time())

    def _figures(self) -> dict[str, bytes]:
        """PNGs of the history figure (if drawn at this validation) and of the report
        (drawn now; a checkpoint written right after reuses it)."""
        tg = self.tg
        out = {}
        history = tg.drawn_figure("history")
        if history is not None:
            out["history"] = history.read_bytes()
        if tg.logdir is not None:
            out["report"] = tg.save_report().read_bytes()
        else:
            out["report"] = traingen_report_png(tg)
        return out

    def _ensure_open(self) -> None:
        if not self._opened:
            self._opened = True  # (set first: opening may record)
            try:
                self._open()
            except BaseException:
                self._opened = False
                raise

    # -- to implement ----------------------------------------------------------------------
    def _open(self) -> None:
        raise NotImplementedError

    def _record_scalars(self, values: dict[str, float], step: int, walltime: float) -> None:
        raise NotImplementedError

    def _images(self, pngs: dict[str, bytes], step: int) -> None:
        raise NotImplementedError

    def _at_checkpoint(self) -> None:
        """Hand the worker what a checkpoint must not be written before."""

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        step, values = self._last_step
        return {"val_logged": self._val_logged, "last_step": step, "last_scalars": dict(values)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._val_logged = int(state.get("val_logged", 0))
        self._last_step = (
            int(state.get("last_step", -1)),
            {str(k): float(v) for k, v in dict(state.get("last_scalars", {})).items()},
        )

    def flush(self, timeout: float | None = FLUSH_TIMEOUT_S) -> bool:
        """Wait until everything recorded so far is written; False on a timeout."""
        return self._worker.flush(timeout)
