"""``TrackingLogger``: what the TensorBoard and MLflow loggers record, and when.

Every value is recorded at step ``batches_fit`` (one x axis for train and validation):

* ``train/<metric>``: each train batch's metrics (the mean over its windows), at
  ``train_freq`` (default every batch); at an ``'epoch'`` or ``'val'`` frequency, the
  epoch's running means (what the progress bar shows);
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
from operator import itemgetter
from typing import Any

import numpy as np

from ..callbacks.base import Stage, TraingenCallback
from ..saving.report import traingen_report_png
from ..training.contract import Traingen
from ..training.frequency import check_freq
from .settings import inner_optimizer
from .worker import BackgroundWorker

__all__ = ["TrackingLogger"]

log = logging.getLogger(__name__)

_last = itemgetter(-1)  # (the batch hook's helpers, bound once: it runs every step)
_now = time.time
FLUSH_TIMEOUT_S = 120.0
CHECKPOINT_WAIT_S = 60.0
_COUNTS = {"batch": "batches_fit", "epoch": "epoch", "val": "times_validated"}


def logger_freq(freq: Any, name: str) -> dict[str, int] | None:
    """A frequency config of a logger: None or ``{'batch' | 'epoch' | 'val': n}``."""
    freq = check_freq(freq, name)
    if freq is not None and "iter" in freq:
        raise ValueError(f"{name}: loggers record per 'batch', 'epoch' or 'val', not 'iter'")
    return freq


def learning_rate(tg: Traingen) -> float | None:
    """The optimizer's current learning rate (a schedule's value at this step), read
    without ending the train step's device state (JAX) or writing into the model."""
    import keras

    optimizer = inner_optimizer(tg.model.optimizer)
    rate = getattr(optimizer, "_learning_rate", None)  # (the property computes schedules)
    try:
        if isinstance(rate, keras.Variable):  # the step only reads it: fixed (on JAX one
            (value,) = tg.variable_values([rate], fixed=True)  # read per device state)
            return float(value)  # (a host copy: keras.ops' conversion would cost ~50 us)
        if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
            # at the step count Keras' optimizer gives it: the Variable (with gradient
            # accumulation, .iterations is computed from it, on JAX from a donated buffer)
            (step,) = tg.variable_values([optimizer._iterations])
            value = rate(step)
        else:
            value = optimizer.learning_rate
        return float(np.asarray(keras.ops.convert_to_numpy(value)))
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
        if self.images_freq and set(self.images_freq) != {"val"}:
            raise ValueError(
                "images_freq: the history and report figures are drawn at validations; "
                f"give {{'val': n}}, got {images_freq!r}"
            )
        self._worker = BackgroundWorker(f"deeptrain.{type(self).__name__}")
        self._opened = False
        self._val_logged = 0  # times_validated of the last validation recorded
        self._last_step: tuple[int, dict[str, float]] = (-1, {})  # scalars at the newest step
        self._lagging = False  # the store did not keep up at the last checkpoint
        self._records_per_batch = True  # any record besides train metrics per batch
        self._train_every = (self.train_freq or {}).get("batch", 0)  # 0: not per batch
        self._train_source: dict[str, list] | None = None  # the temp_history of the last train row
        self._train_tags: tuple[str, ...] = ()  # and its metrics' tags, 'train/<name>'
        self._last_train: tuple[float, ...] = ()  # the last train row (step, walltime, *values)

    # -- stages --------------------------------------------------------------------------
    def on_train_start(self, stage: Stage) -> None:
        self._ensure_open()
        # (frequencies are read once per train(): the batch-end hook runs every step)
        self._records_per_batch = self._records_at("batch")
        self._train_every = (self.train_freq or {}).get("batch", 0)

    def on_train_batch_end(self, stage: Stage) -> None:
        # runs after every train step, on the train thread: a few reads and one append
        # (a microsecond here is 0.4% of a 0.27 ms JAX step; encoding is the worker's)
        state = self.tg.state
        step = state.batches_fit
        every = self._train_every
        if every and step % every == 0:
            if not self._opened:
                self._ensure_open()
            history = state.temp_history  # a batch's metrics: the last of each list
            if history is not self._train_source or len(history) != len(self._train_tags):
                self._train_source = history  # (a new epoch, or a metric first seen)
                self._train_tags = tuple(f"train/{name}" for name in history)
            row = (step, _now(), *map(_last, history.values()))
            self._last_train = row
            self._record_train(self._train_tags, row)
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

    def _train_means(self, step: int) -> None:
        """Record the epoch's running means of the train metrics (an ``'epoch'`` or
        ``'val'`` train frequency), unless this step's batch metrics were recorded."""
        if self._last_train and self._last_train[0] == step:
            return
        history = self.tg.state.history
        means = {f"train/{name}": values[-1] for name, values in history.items() if values}
        self._scalars(means, step)

    def _records_at(self, mode: str) -> bool:
        """Whether :meth:`_periodic` records anything at a ``mode`` end."""
        return any(freq and mode in freq for freq in self._periodic_freqs())

    def _periodic_freqs(self) -> list[Mapping[str, int] | None]:
        return [self.lr_freq]

    def _periodic(self, mode: str) -> None:
        """Records at a batch, epoch or validation end other than the batch metrics."""
        if mode != "batch" and self._due(self.train_freq, mode):
            self._train_means(self.tg.state.batches_fit)
        if self._due(self.lr_freq, mode):
            lr = learning_rate(self.tg)
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

    def _record_train(self, tags: tuple[str, ...], row: tuple[float, ...]) -> None:
        """A train row ``(step, walltime, *values)`` of ``tags`` (the train thread's hot
        path; overridden where a row can be kept without building a dict)."""
        self._record_scalars(dict(zip(tags, row[2:], strict=True)), int(row[0]), row[1])

    def _images(self, pngs: dict[str, bytes], step: int) -> None:
        raise NotImplementedError

    def _at_checkpoint(self) -> None:
        """Hand the worker what a checkpoint must not be written before."""

    # -- checkpoints -----------------------------------------------------------------------
    def _newest_scalars(self) -> tuple[int, dict[str, float]]:
        """The newest step recorded and every scalar recorded at it."""
        step, kept = self._last_step
        if not self._last_train or self._last_train[0] < step:
            return step, dict(kept)
        train_step = int(self._last_train[0])
        train = dict(zip(self._train_tags, self._last_train[2:], strict=True))
        return train_step, {**train, **kept} if train_step == step else train

    def state_dict(self) -> dict[str, Any]:
        step, values = self._newest_scalars()
        return {"val_logged": self._val_logged, "last_step": step, "last_scalars": values}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._val_logged = int(state.get("val_logged", 0))
        self._last_step = (
            int(state.get("last_step", -1)),
            {str(k): float(v) for k, v in dict(state.get("last_scalars", {})).items()},
        )
        self._last_train = ()

    def flush(self, timeout: float | None = FLUSH_TIMEOUT_S) -> bool:
        """Wait until everything recorded so far is written; False on a timeout."""
        return self._worker.flush(timeout)
