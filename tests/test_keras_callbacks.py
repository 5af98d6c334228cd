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
