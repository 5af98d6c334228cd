"""Keras callbacks in a DeepTrain run: Keras' hooks at fit's moments, ``stop_training``,
counters in checkpoints; and ``tg.callbacks`` iterated and indexed like a list."""

from __future__ import annotations

import csv
import json

import keras
import numpy as np
import pytest

from deeptrain import TrainGenerator
from deeptrain.callbacks import KerasCallback, TraingenCallback
from test_train_generator import classification_data, classifier, generators

pytestmark = pytest.mark.slow

NEVER_BETTER = 1e9  # min_delta: no epoch after the first counts as an improvement


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return classification_data(tmp_path_factory.mktemp("cls"))  # 6 train, 2 val batches


def make_tg(data, callbacks, epochs=2, **kw):
    dg, vdg = generators(data)
    kw = dict(dict(iter_verbosity=0, plot_history_freq=None), **kw)
    return TrainGenerator(classifier(), dg, vdg, epochs=epochs, callbacks=callbacks, **kw)


class Recorder(keras.callbacks.Callback):
    """A user's subclass: records every hook with its arguments."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def set_params(self, params):
        super().set_params(params)
        self.calls.append(("set_params", params["epochs"], params["steps"]))

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin", sorted(logs or {})))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end", sorted(logs or {})))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch, sorted(logs or {})))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, sorted(logs or {})))

    def on_train_batch_begin(self, batch, logs=None):
        self.calls.append(("batch_begin", batch, sorted(logs or {})))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch, sorted(logs or {})))

    def on_test_begin(self, logs=None):
        self.calls.append(("test_begin", sorted(logs or {})))

    def on_test_end(self, logs=None):
        self.calls.append(("test_end", sorted(logs or {})))

    def on_test_batch_begin(self, batch, logs=None):
        self.calls.append(("test_batch_begin", batch, sorted(logs or {})))

    def on_test_batch_end(self, batch, logs=None):
        self.calls.append(("test_batch_end", batch, sorted(logs or {})))


def test_keras_hooks_are_called_at_fits_moments(data):
    rec = Recorder()
    tg = make_tg(data, rec, epochs=2, val_freq={"epoch": 1})
    assert rec.model is tg.model
    tg.train()
    metrics = ["accuracy", "loss"]

    def epoch(e):
        calls = [("epoch_begin", e, [])]
        for b in range(6):
            calls += [("batch_begin", b, []), ("batch_end", b, metrics)]
        calls += [("test_begin", [])]
        for b in range(2):
            calls += [("test_batch_begin", b, []), ("test_batch_end", b, metrics)]
        calls += [("test_end", metrics)]
        return calls + [("epoch_end", e, epoch_logs)]

    epoch_logs = [*metrics, "val_accuracy", "val_loss"]
    expected = [
        ("set_params", 2, 6),
        ("train_begin", []),
        *epoch(0),
        *epoch(1),
        ("train_end", epoch_logs),  # the last epoch's logs, as fit gives them
    ]
    assert rec.calls == expected


def test_epoch_end_logs_are_the_epochs_means_and_its_validation(data):
    seen = []
    lam = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append((e, logs)))
    batches = []
    lam2 = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: batches.append(logs))
    tg = make_tg(data, [lam, lam2], epochs=2, val_freq={"epoch": 2})
    tg.train()
    (e0, logs0), (e1, logs1) = seen
    assert (e0, e1) == (0, 1)
    assert set(logs0) == {"loss", "accuracy"}  # no validation after epoch 1
    assert logs1["val_loss"] == tg.val_history["loss"][-1]
    assert logs1["loss"] == tg.history["loss"][-1] == batches[-1]["loss"]
    assert len(batches) == 12


def test_a_single_keras_callback_and_a_mixed_list_are_accepted_and_indexable(data, tmp_path):
    nan = keras.callbacks.TerminateOnNaN()
    tg = make_tg(data, nan)
    assert list(tg.callbacks) == [nan] and tg.callbacks[0] is nan and len(tg.callbacks) == 1

    fn_cbs = {"train:epoch": lambda tg: None}
    obj = TraingenCallback()
    stop = keras.callbacks.EarlyStopping()
    tg = make_tg(data, [fn_cbs, obj, stop])
    assert list(tg.callbacks) == [fn_cbs, obj, stop]
    assert tg.callbacks[-1] is stop and tg.callbacks[1:] == [obj, stop]
    assert [type(o) for o in tg.callbacks.objects] == [TraingenCallback, KerasCallback]

    with pytest.raises(TypeError, match="keras.callbacks.Callback"):
        make_tg(data, [object()])


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorBoard needs TF")
def test_tensorboard_writes_train_and_validation_events(data, tmp_path):
    board = keras.callbacks.TensorBoard(log_dir=str(tmp_path / "tb"), update_freq="batch")
    make_tg(data, [board], val_freq={"epoch": 1}).train()
    for part in ("train", "validation"):
        assert list((tmp_path / "tb" / part).glob("events.out.tfevents.*")), part
    assert board._global_train_batch == 12


def test_csv_logger_gets_train_and_val_metrics_per_epoch(data, tmp_path):
    path = tmp_path / "log.csv"
    tg = make_tg(data, keras.callbacks.CSVLogger(str(path)), epochs=3, val_freq={"epoch": 1})
    tg.train()
    rows = list(csv.DictReader(path.open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert [float(r["val_loss"]) for r in rows] == pytest.approx(tg.val_history["loss"])


def test_early_stopping_ends_train_cleanly_restores_best_weights_and_is_resumable(data, tmp_path):
    weights = []
    snap = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: weights.append(tg.model.get_weights())
    )
    stop = keras.callbacks.EarlyStopping(
        patience=1, min_delta=NEVER_BETTER, restore_best_weights=True
    )
    tg = make_tg(data, [snap, stop], epochs=10, logs_dir=tmp_path / "logs")
    tg.train()  # epoch 0 sets the best; epoch 1 does not beat it: stop
    assert tg.state.epoch == 2 and stop.stopped_epoch == 1
    assert tg.state.train_loop_done is False  # ended cleanly, after the validation
    for restored, best in zip(tg.model.get_weights(), weights[0], strict=True):
        np.testing.assert_array_equal(restored, best)
    checkpoint = tg.get_last_log("checkpoint")
    state = json.loads((checkpoint / "state.json").read_text())
    assert state["train_state"]["epoch"] == 2  # the checkpoint due at the stop was written
    saved = state["callbacks"][1]["state"]  # [0]: the LambdaCallback
    assert saved["keras_class"] == "EarlyStopping"
    assert saved["counters"]["wait"] == 1 and saved["counters"]["stopped_epoch"] == 1
    assert len(saved["counters"]["best_weights"]) == len(weights[0])

    tg.train()  # again: goes on, and the kept counters stop it after one more epoch
    assert tg.state.epoch == 3


def test_counters_and_the_changed_learning_rate_survive_a_checkpoint(data, tmp_path):
    def plateau():
        return keras.callbacks.ReduceLROnPlateau(
            monitor="loss", factor=0.5, patience=1, cooldown=2, min_delta=NEVER_BETTER
        )

    stop = keras.callbacks.EarlyStopping(patience=5, min_delta=NEVER_BETTER)
    reduce = plateau()
    tg = make_tg(data, [stop, reduce], epochs=3, logs_dir=tmp_path / "logs")
    tg.train()  # epoch 0: best; 1: wait 1 -> halved, cooldown 2; 2: cooling down (1 left)
    lr = float(keras.ops.convert_to_numpy(tg.model.optimizer.learning_rate))
    assert lr == pytest.approx(0.005)
    assert (reduce.wait, reduce.cooldown_counter, stop.wait) == (0, 1, 2)

    stop2, reduce2 = keras.callbacks.EarlyStopping(patience=5, min_delta=NEVER_BETTER), plateau()
    resumed = make_tg(data, [stop2, reduce2], epochs=3, loadpath=tg.logdir)
    assert float(keras.ops.convert_to_numpy(resumed.model.optimizer.learning_rate)) == lr
    assert (reduce2.wait, reduce2.cooldown_counter, reduce2.best) == (0, 1, reduce.best)
    assert (stop2.wait, stop2.best, stop2.best_epoch) == (2, stop.best, 0)
    resumed.epochs = 4
    resumed.train()  # the counters go on past on_train_begin: cooled down, wait 1 -> halved
    lr4 = float(keras.ops.convert_to_numpy(resumed.model.optimizer.learning_rate))
    assert lr4 == pytest.approx(0.0025) and stop2.wait == 3


def test_terminate_on_nan_stops_at_the_nan_batch(data):
    def poison(batch, logs):
        if batch == 2:  # the next batch's loss is NaN
            tg.model.set_weights([np.full_like(w, np.nan) for w in tg.model.get_weights()])

    tg = make_tg(
        data,
        [
            keras.callbacks.LambdaCallback(on_train_batch_end=poison),
            keras.callbacks.TerminateOnNaN(),
        ],
        epochs=2,
    )
    tg.train()
    assert tg.state.batches_fit == 4 and np.isnan(tg.history["loss"][-1])


def lr_of(model) -> float:
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class RateRecorder(keras.callbacks.Callback):
    def __init__(self, rates: list[float]):
        super().__init__()
        self.rates = rates

    def on_epoch_begin(self, epoch, logs=None):
        self.rates.append(lr_of(self.model))


def test_an_epoch_continued_after_ctrl_c_begins_once_and_keeps_its_csv_rows(data, tmp_path):
    """``train()`` again after a Ctrl-C in the middle of an epoch: Keras' ``on_epoch_begin``
    is not called a second time for it (a ``LearningRateScheduler`` decaying the rate it is
    given would decay it twice), and a ``CSVLogger`` appends instead of emptying its file:
    learning rates, rows and weights as in a run without the Ctrl-C."""
    import os
    import signal

    runs = {}
    for cut in (False, True):
        rates: list[float] = []
        sent: list[int] = []

        def ctrl_c(tg, sent=sent, cut=cut):
            if cut and tg.state.fit_iters == 8 and not sent:  # epoch 1, batch 2 of 6
                sent.append(1)
                os.kill(os.getpid(), signal.SIGINT)  # stop after this iteration

        path = tmp_path / f"log{cut}.csv"
        callbacks = [
            keras.callbacks.LearningRateScheduler(lambda epoch, lr: float(lr * 0.5)),
            keras.callbacks.CSVLogger(str(path)),
            RateRecorder(rates),
            {"train:iter": ctrl_c},
        ]
        tg = make_tg(data, callbacks, epochs=3, val_freq={"epoch": 1})
        if cut:
            with pytest.raises(KeyboardInterrupt):
                tg.train()
            assert tg.state.fit_iters == 8
        tg.train()
        rows = list(csv.DictReader(path.open()))
        runs[cut] = (rates, [int(r["epoch"]) for r in rows], tg.model.get_weights())
    (rates, epochs, weights), (cut_rates, cut_epochs, cut_weights) = runs[False], runs[True]
    assert len(rates) == 3 and cut_rates == rates
    assert epochs == cut_epochs == [0, 1, 2]
    for a, b in zip(weights, cut_weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_validation_asked_for_after_training_is_no_epoch_end(data):
    """``tg.validate()`` after ``train()`` ended (its last epoch's end already told, after
    that epoch's validation) is a test pass, as ``evaluate`` after ``fit``: no
    ``on_epoch_end``, so ``ReduceLROnPlateau`` and ``EarlyStopping`` do not count it."""
    rec = Recorder()
    reduce = keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss", factor=0.5, patience=1, min_delta=NEVER_BETTER
    )
    tg = make_tg(data, [rec, reduce], epochs=2, val_freq={"epoch": 1})
    tg.train()
    lr, ends = lr_of(tg.model), [c for c in rec.calls if c[0] == "epoch_end"]
    rec.calls.clear()
    tg.validate()
    hooks = [c[0] for c in rec.calls]
    assert hooks[0] == "test_begin" and hooks[-1] == "test_end" and "epoch_end" not in hooks
    assert len(ends) == 2 and lr_of(tg.model) == lr and reduce.wait == 0


def test_a_csv_logger_of_a_resumed_run_keeps_the_rows_up_to_its_checkpoint(data, tmp_path):
    """Resumed from the checkpoint of epoch 2's end, with rows of a later epoch in the file
    (written after that checkpoint, before a crash): those are dropped, the rest kept,
    and the resumed epochs appended."""
    path = tmp_path / "log.csv"
    tg = make_tg(
        data,
        keras.callbacks.CSVLogger(str(path)),
        epochs=2,
        val_freq={"epoch": 1},
        logs_dir=tmp_path / "logs",
    )
    tg.train()
    with path.open("a") as f:  # a row of epoch 2, the checkpoint not written (a crash)
        f.write("2,0.5,0.5,0.5,0.5\n")
    resumed = make_tg(
        data,
        keras.callbacks.CSVLogger(str(path)),
        epochs=4,
        val_freq={"epoch": 1},
        loadpath=tg.logdir,
    )
    resumed.train()
    rows = list(csv.DictReader(path.open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert float(rows[2]["val_loss"]) == pytest.approx(resumed.val_history["loss"][2])


def test_weights_early_stopping_puts_back_are_checkpointed(data, tmp_path):
    """``EarlyStopping(restore_best_weights=True)`` sets the best epoch's weights at the end
    of ``train()``, after the last checkpoint: a temp checkpoint then holds them, so that a
    resumed run goes on from the weights ``train()`` left, as ``train()`` again does."""
    stop = keras.callbacks.EarlyStopping(
        patience=1, min_delta=NEVER_BETTER, restore_best_weights=True
    )
    tg = make_tg(data, [stop], epochs=10, logs_dir=tmp_path / "logs")
    tg.train()
    assert stop.stopped_epoch == 1
    resumed = make_tg(
        data,
        [keras.callbacks.EarlyStopping(patience=1, min_delta=NEVER_BETTER)],
        epochs=10,
        loadpath=tg.logdir,
    )
    for loaded, restored in zip(resumed.model.get_weights(), tg.model.get_weights(), strict=True):
        np.testing.assert_array_equal(loaded, restored)


def test_backup_and_restore_is_refused_before_training(data, tmp_path):
    """At every ``train()`` it would put back its last epoch end's weights while the run
    goes on mid-epoch (a Ctrl-C, a resume): refused, pointing at DeepTrain's checkpoints."""
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(ValueError, match=r"BackupAndRestore cannot run under a TrainGenerator"):
        make_tg(data, [backup])
    assert not (tmp_path / "backup").exists()


def test_a_csv_logger_continued_keeps_its_rows_under_its_header(data, tmp_path):
    """A run whose first epoch had no validation (columns ``val_<every key>``, Keras' pick)
    continued in an epoch that has one: its rows stay under the file's header (Keras picked
    other columns from the first logs it saw, without writing a header: values shifted)."""
    path = {name: tmp_path / f"{name}.csv" for name in ("whole", "continued")}

    def run(name, epochs):
        callbacks = [
            keras.callbacks.ReduceLROnPlateau(monitor="loss"),  # (logs 'learning_rate')
            keras.callbacks.CSVLogger(str(path[name])),
        ]
        return make_tg(data, callbacks, epochs=epochs, val_freq={"epoch": 2})

    run("whole", 2).train()
    tg = run("continued", 1)
    tg.train()
    tg.epochs = 2
    tg.train()
    whole, continued = (list(csv.reader(p.open())) for p in path.values())
    assert continued[0] == whole[0] and "val_learning_rate" in whole[0]
    assert all(len(row) == len(whole[0]) for row in continued)
    assert [row[0] for row in continued[1:]] == ["0", "1"]
    columns = whole[0].index("val_loss")
    assert float(continued[2][columns]) == pytest.approx(float(whole[2][columns]))
