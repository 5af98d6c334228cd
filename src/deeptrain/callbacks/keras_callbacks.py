"""Keras callbacks (``keras.callbacks.Callback``) in a DeepTrain run.

Any Keras callback given in ``callbacks`` gets Keras' hooks at the moments ``fit`` would
call them (:class:`KerasHooks`, driven by the TrainGenerator):

==============================  ==========================================================
``set_model``, ``set_params``   at construction and at every ``train()`` (``epochs``,
                                ``steps``); a ``CSVLogger`` of a run that has begun appends
                                (rows after a resumed checkpoint's epoch dropped)
``on_train_begin/end``          at every ``train()`` call: its start, and its normal end
                                (epochs done, or ``model.stop_training``); not after an
                                exception
``on_epoch_begin``              before the epoch's first batch (once: not again when
                                ``train()`` continues an epoch, after a Ctrl-C or from a
                                checkpoint)
``on_train_batch_begin/end``    around each batch (all of its windows); ``logs``: the
                                running means over the epoch so far, as ``fit`` gives them
``on_epoch_end``                at the epoch's end; when a validation follows the epoch,
                                after it, with its metrics added as ``val_<name>``
``on_test_begin/end``,          around each validation and its batches; ``on_test_end``
``on_test_batch_begin/end``     gets the validation's metrics (batch logs: running means,
                                evaluate mode)
==============================  ==========================================================

``model.stop_training = True`` (``EarlyStopping``, ``TerminateOnNaN``) ends ``train()``
after the current iteration or validation, once its checkpoint (if one is due) is written;
``train()`` again goes on from there, as ``fit`` again would. Weights an ``on_train_end``
puts back (``EarlyStopping(restore_best_weights=True)``) are saved in a temp checkpoint when
the run has checkpoints, so that a resumed run goes on from them as ``train()`` again does.

Counters are checkpointed (:class:`KerasCallback`): ``EarlyStopping``'s ``wait``, ``best``,
``best_epoch``, ``stopped_epoch`` and ``best_weights``, ``ReduceLROnPlateau``'s ``wait``,
``cooldown_counter`` and ``best``, ``ModelCheckpoint``'s and ``TensorBoard``'s batch and
step counters; a callback class of your own saves what its ``state_dict()`` returns (with a
``load_state_dict(state)``), as a ``TraingenCallback`` does. They survive every ``train()``
call of a run (one run is one training, however many calls it takes): ``on_train_begin``
resets them in Keras, so they are put back right after it when the run has begun. A
validation cut half-way and redone (a second Ctrl-C or an error) ends once for them: its
counters, the learning rate and ``model.stop_training`` go back to its start with it.

Under a distribution, Keras' own file writers (:func:`writes_files`) run on process 0 alone,
their hooks inside the distribution's ``writing()`` (as DeepTrain's own checkpoints are
written): on JAX with several processes, Keras' ``save_weights`` would otherwise create
variables under the distribution, a collective that process 0 cannot run alone.
``BackupAndRestore`` is refused (:meth:`KerasCallback.check`).
"""

from __future__ import annotations

import contextlib
import csv
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..util.files import atomic_file
from .base import TraingenCallback

__all__ = ["KerasCallback", "KerasHooks", "is_keras_callback"]

log = logging.getLogger(__name__)

# counters of Keras' own callbacks, by class name (subclasses included)
COUNTERS: dict[str, tuple[str, ...]] = {
    "EarlyStopping": ("wait", "stopped_epoch", "best", "best_epoch", "best_weights"),
    "ReduceLROnPlateau": ("wait", "cooldown_counter", "best"),
    "ModelCheckpoint": (
        "best",
        "_batches_seen_since_last_saving",
        "_last_batch_seen",
        "_current_epoch",
    ),
    "TensorBoard": ("_global_train_batch", "_global_test_batch"),
}

_TRAIN_BATCH_HOOKS = (
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_batch_begin",
    "on_batch_end",
)
_TEST_BATCH_HOOKS = ("on_test_batch_begin", "on_test_batch_end")


def writes_files(callback: Any) -> bool:
    """Whether ``callback`` is one of Keras' callbacks that write files of their own."""
    from keras import callbacks as c

    return isinstance(callback, (c.ModelCheckpoint, c.CSVLogger, c.TensorBoard, c.BackupAndRestore))


def is_keras_callback(obj: Any) -> bool:
    import keras

    return isinstance(obj, keras.callbacks.Callback)


def _overrides(callback: Any, names: tuple[str, ...]) -> bool:
    """Whether ``callback`` has its own version of any of the hooks ``names`` (a method of
    its class, or a function set on the instance as ``LambdaCallback`` does)."""
    import keras

    base = keras.callbacks.Callback
    for name in names:
        hook = getattr(callback, name, None)
        if getattr(hook, "__func__", hook) is not getattr(base, name):
            return True
    return False


def _plain(value: Any) -> Any:
    """A counter's value in JSON-able form (arrays stay arrays, for the checkpoint's npz)."""
    if value is None or isinstance(value, (bool, int, float, str, np.ndarray)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    import keras

    array = np.asarray(keras.ops.convert_to_numpy(value))  # a backend tensor or variable
    return array.item() if array.ndim == 0 else array


class KerasCallback(TraingenCallback):
    """A ``keras.callbacks.Callback`` in DeepTrain's callbacks: its counters in
    checkpoints (see the module's docstring). ``callback`` is the Keras callback."""

    def __init__(self, callback: Any):
        self.callback = callback

    def init_with_traingen(self, tg: Any) -> None:
        self.check(tg)
        super().init_with_traingen(tg)
        self.callback.set_model(tg.model)

    def check(self, tg: Any) -> None:
        """Refuse ``BackupAndRestore``: its ``on_train_begin`` puts back the weights of its
        last epoch end at every ``train()`` (a resume, or a go-on after Ctrl-C) while the
        run keeps its data position and counters mid-epoch, so the batches trained since
        count as trained with their updates undone; under several processes it would also
        restore on process 0 alone. DeepTrain's checkpoints do its job exactly."""
        import keras

        if isinstance(self.callback, keras.callbacks.BackupAndRestore):
            distribution = getattr(tg, "distribution", None)
            alone = ""
            if distribution is not None and distribution.process_count > 1:
                alone = f" (and under {distribution.describe()}, on process 0 alone)"
            raise ValueError(
                "keras.callbacks.BackupAndRestore cannot run under a TrainGenerator: it "
                f"restores the weights of its last epoch end at every train() call{alone}, "
                "while the run goes on from its own position mid-epoch (the batches since "
                "would count as trained, their updates undone). DeepTrain's checkpoints do "
                "its job, data position included: logs_dir=... (temp_checkpoint_freq=...), "
                "resumed with loadpath=..."
            )

    def counter_names(self) -> tuple[str, ...]:
        names: list[str] = []
        for cls in type(self.callback).__mro__:
            names += [n for n in COUNTERS.get(cls.__name__, ()) if n not in names]
        return tuple(names)

    def state_dict(self) -> dict[str, Any]:
        cb = self.callback
        state: dict[str, Any] = {
            "keras_class": type(cb).__qualname__,
            "counters": {n: _plain(getattr(cb, n)) for n in self.counter_names() if hasattr(cb, n)},
        }
        own = getattr(cb, "state_dict", None)
        if callable(own):
            state["own"] = own()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        cb = self.callback
        if state.get("keras_class") != type(cb).__qualname__:
            log.warning(
                "Saved state of Keras callback %r does not fit the callback %r at its "
                "position; it starts fresh",
                state.get("keras_class"),
                type(cb).__qualname__,
            )
            return
        for name, value in dict(state.get("counters", {})).items():
            if isinstance(value, list) and name == "best_weights":
                value = [np.array(v) for v in value]
            setattr(cb, name, value)
        if "own" in state and callable(getattr(cb, "load_state_dict", None)):
            cb.load_state_dict(state["own"])


class KerasHooks:
    """Calls Keras' hooks on the Keras callbacks of a TrainGenerator (see the module's
    docstring). Batch hooks go only to callbacks that override them, so a run whose
    Keras callbacks act per epoch pays nothing per batch."""

    def __init__(self, adapters: list[KerasCallback]):
        self.given = adapters
        self._select(adapters)
        self.last_epoch_logs: dict[str, Any] = {}
        self._test_sums: dict[str, list[float]] = {}
        self._test_start: _ModelSettings | None = None  # at the validation's start

    def _select(self, adapters: list[KerasCallback], distribution: Any = None) -> None:
        self.adapters = adapters
        self.callbacks = [a.callback for a in adapters]
        self.train_batch = [cb for cb in self.callbacks if _overrides(cb, _TRAIN_BATCH_HOOKS)]
        self.test_batch = [cb for cb in self.callbacks if _overrides(cb, _TEST_BATCH_HOOKS)]
        # whether the model is synced for train batch hooks: decided on every process alike
        # (on JAX, a sync on process 0 alone makes its next step's start a collective the
        # others do not run), from all the callbacks, also those of process 0 alone
        self._sync_batches = any(_overrides(a.callback, _TRAIN_BATCH_HOOKS) for a in self.given)
        self._writing: Callable[[], contextlib.AbstractContextManager[Any]] = (
            contextlib.nullcontext if distribution is None else distribution.writing
        )
        self._writers = {id(cb) for cb in self.callbacks if writes_files(cb)}

    def select_for(self, tg: Any) -> None:
        """The callbacks this process runs: all of them, but under a distribution Keras'
        own file writers (:func:`writes_files`) run on process 0 alone, as DeepTrain's
        writers do (on every process they would write the same files at once), and inside
        the distribution's ``writing()`` (see the module's docstring). The others run
        everywhere: their hooks may steer training (``EarlyStopping``), alike on every
        process since the metrics they see are global."""
        distribution = getattr(tg, "distribution", None)
        writer = distribution is None or distribution.is_writer
        self._select(
            [a for a in self.given if writer or not writes_files(a.callback)], distribution
        )

    def _hook(self, cb: Any) -> contextlib.AbstractContextManager[Any]:
        """Where ``cb``'s hook runs: a file writer's in the distribution's ``writing()``."""
        return self._writing() if id(cb) in self._writers else contextlib.nullcontext()

    # -- train -----------------------------------------------------------------------
    def train_begin(self, tg: Any) -> None:
        self.select_for(tg)
        tg.sync_model()
        tg.model.stop_training = False
        params = {"verbose": 0, "epochs": tg.epochs, "steps": len(tg.datagen)}
        begun = tg.state.fit_iters > 0 or tg.state.times_validated > 0
        for adapter in self.adapters:
            cb = adapter.callback
            cb.set_model(tg.model)
            cb.set_params(params)
            columns = None
            if begun and _is_csv_logger(cb):
                columns = _continue_csv(cb, _epochs_ended(tg))
            kept = adapter.state_dict() if begun else None
            with self._hook(cb):
                cb.on_train_begin({})
            if kept is not None:  # one run is one training: its counters go on
                adapter.load_state_dict(kept)
            if columns:  # the file's header is not written again: rows go under it (Keras
                cb.keys = columns  # picks columns from the first epoch's logs it sees)

    def train_end(self, tg: Any) -> bool:
        """``on_train_end``; returns whether a callback set the weights there
        (``EarlyStopping(restore_best_weights=True)`` puts its best epoch's back)."""
        tg.sync_model()
        restored = False
        for cb in self.callbacks:
            with self._hook(cb):
                cb.on_train_end(dict(self.last_epoch_logs))
            restored |= bool(
                getattr(cb, "restore_best_weights", False)
                and getattr(cb, "best_weights", None) is not None
            )
        return restored

    def train_iteration_begin(self, tg: Any, new_batch: bool, batch: int) -> None:
        """Before a train iteration: ``on_epoch_begin`` if it starts the epoch (nothing of
        it trained yet: an epoch continued after a Ctrl-C or from a checkpoint has begun),
        ``on_train_batch_begin`` if it starts batch number ``batch``."""
        if new_batch and batch == 0:
            tg.sync_model()
            for cb in self.callbacks:
                with self._hook(cb):
                    cb.on_epoch_begin(tg.state.epoch, {})
        if new_batch and self._sync_batches:
            tg.sync_model()
            for cb in self.train_batch:
                with self._hook(cb):
                    cb.on_train_batch_begin(batch, {})

    def train_batch_end(self, tg: Any, batch: int, logs: dict[str, Any]) -> None:
        if self._sync_batches:
            tg.sync_model()
            for cb in self.train_batch:
                with self._hook(cb):
                    cb.on_train_batch_end(batch, logs)

    def epoch_end(self, tg: Any, epoch: int, logs: dict[str, Any]) -> None:
        tg.sync_model()
        self.last_epoch_logs = logs
        for cb in self.callbacks:
            with self._hook(cb):
                cb.on_epoch_end(epoch, logs)  # one dict for all, as Keras passes it

    # -- validation ------------------------------------------------------------------
    def test_begin(self, tg: Any) -> None:
        tg.sync_model()
        self._test_start = _ModelSettings.of(tg)
        self.select_for(tg)
        self._test_sums = {}
        for cb in self.callbacks:
            with self._hook(cb):
                cb.on_test_begin({})

    def restart_test(self) -> None:
        """A validation cut half-way starts over: its running means too, and what Keras'
        callbacks set on the model at its end before the cut (a ``ReduceLROnPlateau``'s
        learning rate: its counters are rewound with the validation, so the redone end would
        cut the rate again)."""
        self._test_sums = {}
        if self._test_start is not None:
            self._test_start.put_back()

    def test_batch_begin(self, batch: int) -> None:
        for cb in self.test_batch:
            with self._hook(cb):
                cb.on_test_batch_begin(batch, {})

    def test_batch_end(self, batch: int, metrics: Mapping[str, float], n_samples: int) -> None:
        if not self.test_batch:
            return
        for name, value in metrics.items():  # running means weighted by samples, as Keras
            total = self._test_sums.setdefault(name, [0.0, 0])
            total[0] += float(value) * n_samples
            total[1] += n_samples
        logs = {name: s / max(n, 1) for name, (s, n) in self._test_sums.items()}
        for cb in self.test_batch:
            with self._hook(cb):
                cb.on_test_batch_end(batch, logs)

    def test_end(self, tg: Any, logs: dict[str, Any]) -> None:
        tg.sync_model()
        for cb in self.callbacks:
            with self._hook(cb):
                cb.on_test_end(dict(logs))

    @staticmethod
    def stop_requested(tg: Any) -> bool:
        """``model.stop_training``; with several processes, any one's (all stop together)."""
        stop = bool(getattr(tg.model, "stop_training", False))
        distribution = getattr(tg, "distribution", None)
        if distribution is not None and distribution.process_count > 1:
            stop = bool(distribution.max_over_processes(int(stop)))
        return stop


class _ModelSettings:
    """What Keras' callbacks set on the model at an epoch's end (the optimizer's learning
    rate, held in a Variable, and ``stop_training``), as it was at a moment, to put back."""

    def __init__(self, tg: Any, rate: Any, value: np.ndarray | None, stop: bool):
        self.tg, self.rate, self.value, self.stop = tg, rate, value, stop

    @classmethod
    def of(cls, tg: Any) -> _ModelSettings:
        """The settings now (``tg``'s model synced)."""
        import keras

        optimizer = getattr(tg.model, "optimizer", None)
        optimizer = getattr(optimizer, "inner_optimizer", None) or optimizer  # (mixed precision)
        rate = getattr(optimizer, "_learning_rate", None)  # (not a schedule: set by none)
        value = None
        if isinstance(rate, keras.Variable):
            value = np.array(keras.ops.convert_to_numpy(rate))
        return cls(tg, rate, value, bool(getattr(tg.model, "stop_training", False)))

    def put_back(self) -> None:
        import keras

        if self.value is not None:
            self.tg.sync_model()  # (JAX: the next step reads the variable again)
            if not np.array_equal(np.asarray(keras.ops.convert_to_numpy(self.rate)), self.value):
                self.rate.assign(self.value)
        self.tg.model.stop_training = self.stop


def _is_csv_logger(cb: Any) -> bool:
    import keras

    return isinstance(cb, keras.callbacks.CSVLogger)


def _epochs_ended(tg: Any) -> int:
    """Epochs whose end Keras' callbacks were told of: those done, but one whose
    validation is pending (its end waits for it)."""
    state = tg.state
    return state.epoch - int(state.train_loop_done and tg.datagen.all_data_exhausted)


def _continue_csv(cb: Any, epochs_ended: int) -> list[str] | None:
    """A ``CSVLogger`` of a run that has begun appends (Keras' ``on_train_begin`` would
    empty its file at every ``train()`` call), after the rows of epochs past
    ``epochs_ended`` are dropped: written after the checkpoint a resumed run loaded.
    Returns the columns of the file's header (after ``epoch``), None without one."""
    cb.append = True
    path = Path(cb.filename)
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:] if _epoch_of(line, cb.sep) < epochs_ended]
    if kept != lines:
        with atomic_file(path) as tmp:
            tmp.write_text("".join(kept), encoding="utf-8")
    header = next(csv.reader(lines[:1], delimiter=cb.sep), [])
    return header[1:] if header[:1] == ["epoch"] else None


def _epoch_of(row: str, sep: str) -> int:
    """The epoch of a ``CSVLogger`` row (its first column); -1 if it has none (kept)."""
    try:
        return int(row.split(sep, 1)[0])
    except ValueError:
        return -1
