"""TrainGenerator end to end on whichever backend KERAS_BACKEND selects (tensorflow, torch, jax).

Real Keras models trained for a couple of epochs on small random datasets written to disk
with ``numpy_data_to_numpy_sets``; no mocks. Covers:

1. a dense classifier in evaluate and predict validation modes (loss goes down, counters,
   histories, NumPy validation metrics == ``model.evaluate``);
2. a stateful LSTM fed windows by the timeseries preprocessor (state carried between the
   windows of a batch during training, reset after every batch);
3. how often each callback stage fires, derived from the data layout.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")

from deeptrain import DataGenerator, TrainGenerator  # noqa: E402
from deeptrain.backend.stateful import (  # noqa: E402
    get_states,
    prepare_stateful_model,
    reset_states,
    set_states,
)
from deeptrain.preprocessing import numpy_data_to_numpy_sets  # noqa: E402

pytestmark = pytest.mark.backends
BACKEND = keras.backend.backend()

# quiet, fast runs: no progress bars, no figures, no log directory
QUIET = dict(iter_verbosity=0, plot_history_freq=None, unique_checkpoint_freq=None)


def _write_sets(
    directory: Path, x: np.ndarray, y: np.ndarray, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Write ``batch__1..K.npy`` + ``labels.h5`` in the given order (no shuffle, no
    remainder); return the ``(K, batch_size, ...)`` arrays as written."""
    assert len(x) % batch_size == 0
    return numpy_data_to_numpy_sets(
        x, y, directory, batch_size=batch_size, shuffle=False, verbose=0, seed=0
    )


def _datagen(directory: Path, batch_size: int, **kwargs) -> DataGenerator:
    return DataGenerator(
        directory, batch_size=batch_size, labels_path=directory / "labels.h5", seed=0, **kwargs
    )


# ---------------------------------------------------------------------------------------
# 1. dense classifier, evaluate and predict validation
# ---------------------------------------------------------------------------------------
N_CLASSES, N_FEATURES, BS = 3, 4, 16
N_TRAIN_BATCHES, N_VAL_BATCHES, EPOCHS = 6, 3, 2


def _blobs(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Three Gaussian blobs: learnable in a few steps, one-hot labels."""
    centers = np.array([[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0]], "float32")
    classes = rng.integers(0, N_CLASSES, n)
    x = centers[classes] + rng.normal(scale=0.7, size=(n, N_FEATURES))
    return x.astype("float32"), np.eye(N_CLASSES, dtype="float32")[classes]


@pytest.fixture
def blobs(tmp_path):
    rng = np.random.default_rng(0)
    xt, yt = _blobs(N_TRAIN_BATCHES * BS, rng)
    xv, yv = _blobs(N_VAL_BATCHES * BS, rng)
    _write_sets(tmp_path / "train", xt, yt, BS)
    xv_b, yv_b = _write_sets(tmp_path / "val", xv, yv, BS)
    return (
        tmp_path / "train",
        tmp_path / "val",
        xv_b.reshape(-1, N_FEATURES),
        yv_b.reshape(-1, N_CLASSES),
    )


def _classifier() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape=(N_FEATURES,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(N_CLASSES, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.02), loss="categorical_crossentropy", metrics=["accuracy"]
    )
    return model


@pytest.mark.parametrize("eval_fn", ["evaluate", "predict"])
def test_dense_classifier_trains_and_validates(blobs, eval_fn):
    train_dir, val_dir, xv, yv = blobs
    batch_losses = []  # each train batch's own loss, read where train:batch fires
    tg = TrainGenerator(
        _classifier(),
        _datagen(train_dir, BS),
        _datagen(val_dir, BS),
        epochs=EPOCHS,
        eval_fn=eval_fn,
        callbacks={"train:batch": lambda tg: batch_losses.append(tg.temp_history["loss"][-1])},
        **QUIET,
    )
    assert tg.val_mode == eval_fn
    tg.train()

    # counters: one iteration per batch (no slicing), one validation per epoch
    assert len(tg.datagen) == N_TRAIN_BATCHES
    assert tg._fit_iters == N_TRAIN_BATCHES * EPOCHS
    assert tg._batches_fit == N_TRAIN_BATCHES * EPOCHS
    assert tg.epoch == EPOCHS and tg._times_validated == EPOCHS
    assert tg._batches_validated == N_VAL_BATCHES * EPOCHS
    assert list(tg.val_history) == ["loss", "accuracy"]
    assert all(len(v) == EPOCHS for v in tg.val_history.values())
    assert len(tg.key_metric_history) == EPOCHS

    # train history: per batch, the running mean of the epoch's batch losses
    loss_hist = tg.history["loss"]
    assert len(loss_hist) == len(batch_losses) == N_TRAIN_BATCHES * EPOCHS
    first = np.mean(batch_losses[:N_TRAIN_BATCHES])
    last = np.mean(batch_losses[-N_TRAIN_BATCHES:])
    np.testing.assert_allclose(loss_hist[N_TRAIN_BATCHES - 1], first, rtol=1e-6)
    np.testing.assert_allclose(loss_hist[-1], last, rtol=1e-6)
    np.testing.assert_allclose(
        loss_hist[N_TRAIN_BATCHES],  # epoch 2 starts a new mean
        batch_losses[N_TRAIN_BATCHES],
        rtol=1e-6,
    )
    assert last < first, f"train loss did not decrease: {first:.4f} -> {last:.4f}"
    val_loss = tg.val_history["loss"]
    assert val_loss[-1] < val_loss[0], f"val loss did not decrease: {val_loss}"
    assert tg.best_key_metric == pytest.approx(min(val_loss))

    # the last validation ran on the final weights: compare with Keras on the same data
    keras_loss, keras_acc = tg.model.evaluate(xv, yv, batch_size=BS, verbose=0)
    np.testing.assert_allclose(val_loss[-1], keras_loss, rtol=1e-4)
    np.testing.assert_allclose(tg.val_history["accuracy"][-1], keras_acc, atol=1e-6)
    if eval_fn == "predict":  # NumPy metrics over the whole validation set
        preds = tg.model.predict(xv, batch_size=BS, verbose=0)
        np.testing.assert_allclose(
            tg.val_history["accuracy"][-1], np.mean(preds.argmax(-1) == yv.argmax(-1)), atol=1e-9
        )


def _l1(y_true, y_pred):  # Python operators on the labels, as users write them for fit
    return keras.ops.mean(abs(y_true - y_pred), axis=-1)


def _gap(y_true, y_pred):
    return keras.ops.max(y_true - y_pred, axis=-1)


def test_losses_and_metrics_receive_what_fit_gives_them(blobs):
    """A loss and a metric written with Python operators on ``y_true`` (torch tensors
    refuse NumPy labels, which ``train_on_batch`` passes on: DeepTrain feeds tensors, as
    ``fit`` does) train and validate; the first step's loss equals ``fit``'s, and the
    validation's equals ``evaluate``'s on the same weights."""
    train_dir, val_dir, xv, yv = blobs

    def model() -> keras.Model:
        m = _classifier()
        m.compile(optimizer=keras.optimizers.SGD(0.1), loss=_l1, metrics=[_gap])
        return m

    first = []
    tg = TrainGenerator(
        model(),
        _datagen(train_dir, BS, shuffle=False),  # batch__1 first
        _datagen(val_dir, BS),
        epochs=1,
        callbacks={
            "train:batch": lambda tg: first.append({k: v[-1] for k, v in tg.temp_history.items()})
        },
        **QUIET,
    )
    tg.train()
    assert list(tg.val_history) == ["loss", "_gap"]
    x0 = np.load(train_dir / "batch__1.npy")
    with h5py.File(train_dir / "labels.h5") as f:
        y0 = f["1"][()]
    logs = model().fit(x0, y0, batch_size=BS, epochs=1, shuffle=False, verbose=0).history
    assert first[0] == pytest.approx({k: v[0] for k, v in logs.items()}, rel=1e-6)
    loss, gap = tg.model.evaluate(xv, yv, batch_size=BS, verbose=0)
    assert tg.val_history["loss"][-1] == pytest.approx(loss, rel=1e-5)
    assert tg.val_history["_gap"][-1] == pytest.approx(gap, rel=1e-5)


# ---------------------------------------------------------------------------------------
# 2. stateful LSTM on windows
# ---------------------------------------------------------------------------------------
B, T, F, WIN = 8, 12, 2, 4
N_WINDOWS = T // WIN  # 3 windows per batch (slide = window)
N_SEQ_TRAIN, N_SEQ_VAL, SEQ_EPOCHS = 4, 2, 2


def _lstm(name: str = "rnn") -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input(batch_shape=(B, WIN, F)),
            keras.layers.LSTM(6, stateful=True, name=name),
            keras.layers.Dense(1, activation="sigmoid", name="head"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy")
    return model


@pytest.fixture
def sequences(tmp_path):
    rng = np.random.default_rng(1)
    for name, n_batches in (("train", N_SEQ_TRAIN), ("val", N_SEQ_VAL)):
        x = rng.normal(size=(n_batches * B, T, F)).astype("float32")
        y = (x[:, :WIN, 0].mean(axis=1) > 0).astype("float32")[:, None]  # set by window 1
        _write_sets(tmp_path / name, x, y, B)
    return tmp_path / "train", tmp_path / "val"


def _ts_datagen(directory: Path) -> DataGenerator:
    return _datagen(
        directory, B, preprocessor="timeseries", preprocessor_configs={"window_size": WIN}
    )


def _is_zero(states: list[np.ndarray]) -> bool:
    return all(not np.any(s) for s in states)


def _is_nonzero(states: list[np.ndarray]) -> bool:
    return all(np.abs(s).max() > 1e-6 for s in states)


def test_stateful_lstm_carries_state_across_windows(sequences):
    train_dir, val_dir = sequences
    keras.utils.set_random_seed(0)
    model = _lstm()
    probe = _lstm()  # twin model: replays window 2 from the kept / from a reset state
    prepare_stateful_model(probe)

    iter_log = []  # (slice_idx after the iteration, states) at every train:iter
    batch_log = []  # states at every train:batch (after the reset)
    val_batch_log = []
    expected = {}  # per batch (fit count), window 2 replayed on the probe

    def on_iter(tg):
        dg = tg.datagen
        states = get_states(tg.model)["rnn"]
        iter_log.append((dg.slice_idx, states))
        if dg.slice_idx == 1:  # window 1 of this batch fit; window 2 comes next
            for src, dst in zip(
                tg.model.layers, probe.layers, strict=True
            ):  # weights window 2 will see
                (dst.cell if hasattr(dst, "cell") else dst).set_weights(
                    (src.cell if hasattr(src, "cell") else src).get_weights()
                )
            x2 = np.asarray(dg.batch)[:, WIN : 2 * WIN]
            set_states(probe, {"rnn": states})
            kept = probe.predict_on_batch(x2), get_states(probe)["rnn"]
            reset_states(probe)
            reset = probe.predict_on_batch(x2), get_states(probe)["rnn"]
            expected[tg._batches_fit] = kept, reset
        elif dg.slice_idx == 2:  # window 2 fit: it must have started from window 1's state
            (_, kept_states), (_, reset_states_) = expected[tg._batches_fit]
            for actual, want in zip(states, kept_states, strict=True):
                np.testing.assert_allclose(actual, want, rtol=0, atol=1e-5)
            assert not all(
                np.allclose(a, r, atol=1e-3) for a, r in zip(states, reset_states_, strict=True)
            )

    tg = TrainGenerator(
        model,
        _ts_datagen(train_dir),
        _ts_datagen(val_dir),
        epochs=SEQ_EPOCHS,
        reset_statefuls=True,
        callbacks={
            "train:iter": on_iter,
            "train:batch": lambda tg: batch_log.append(get_states(tg.model)["rnn"]),
            "val:batch": lambda tg: val_batch_log.append(get_states(tg.model)["rnn"]),
        },
        **QUIET,
    )
    assert tg.batch_size == B
    tg.train()

    n_batches = N_SEQ_TRAIN * SEQ_EPOCHS
    assert tg.datagen.slices_per_batch == N_WINDOWS
    assert tg._fit_iters == N_WINDOWS * n_batches == len(iter_log)
    assert tg._batches_fit == n_batches == len(batch_log)
    assert tg._val_iters == N_WINDOWS * N_SEQ_VAL * SEQ_EPOCHS
    assert len(tg.val_history["loss"]) == SEQ_EPOCHS
    assert all(np.isfinite(v) for v in tg.history["loss"] + tg.val_history["loss"])

    # the state after windows 1, 2 (and 3, before the batch-end reset) is non-zero...
    assert [i for i, _ in iter_log] == list(range(1, N_WINDOWS + 1)) * n_batches
    for k, (slice_idx, states) in enumerate(iter_log):
        assert _is_nonzero(states), f"iteration {k} (window {slice_idx}): state is zero"
    # ...and consecutive windows' states differ (the state moves on)
    for (_, s1), (_, s2) in zip(iter_log[:-1], iter_log[1:], strict=True):
        assert not all(np.allclose(a, b) for a, b in zip(s1, s2, strict=True))
    # reset after every train and validation batch
    assert all(_is_zero(s) for s in batch_log)
    assert len(val_batch_log) == N_SEQ_VAL * SEQ_EPOCHS
    assert all(_is_zero(s) for s in val_batch_log)

    # window 2 predicts differently from window 1's kept state than from a reset state,
    # and the kept state is what training used (checked in on_iter at every batch)
    assert sorted(expected) == list(range(n_batches))
    for (p_kept, _), (p_reset, _) in expected.values():
        assert p_kept.shape == (B, 1)
        assert np.abs(p_kept - p_reset).max() > 1e-4


# ---------------------------------------------------------------------------------------
# 3. callback call counts per stage
# ---------------------------------------------------------------------------------------
CB_WINDOWS, CB_TRAIN, CB_VAL, CB_EPOCHS = 3, 3, 2, 2


def _expected_counts(val_every_batches: int | None) -> dict:
    """Calls per callback key for CB_EPOCHS epochs of CB_TRAIN train batches and CB_VAL
    validation batches, each batch served as CB_WINDOWS windows (one iteration each).

    * 'train:iter'  once per train iteration:        W * Nt * E        = 3*3*2 = 18
    * 'train:batch' once per train batch:            Nt * E            = 6
    * 'val:iter' / 'val:batch' / 'val:epoch': per validation V, W * Nv / Nv / 1
    * validations V: val_freq={'epoch': 1} -> E = 2; val_freq={'batch': 2} -> after batches
      2, 4, 6 of the 6 fit (batch 3, epoch 1's end, is odd) -> 3.
    * a validation that directly follows an epoch's end fires the compound stage
      ('val_end', 'train:epoch'), any other validation fires 'val_end':
      epoch freq: 2 compound + 0 plain; batch freq: batch 6 only is an epoch end ->
      1 compound + 2 plain.
    * string key 'val_end' fires on both (contained in the tuple): V.
    * string key 'train:epoch' fires at every epoch end (E) *and* at every compound
      stage: E + compound.  Tuple key ('val_end', 'train:epoch'): compound only.
    * 'train_start' and 'train_end': once per ``train()`` call.
    """
    W, Nt, Nv, E = CB_WINDOWS, CB_TRAIN, CB_VAL, CB_EPOCHS
    if val_every_batches is None:  # {'epoch': 1}
        validations, compound = E, E
    else:
        ends = range(1, Nt * E + 1)
        val_at = [b for b in ends if b % val_every_batches == 0]
        validations = len(val_at)
        compound = sum(b % Nt == 0 for b in val_at)
    return {
        "train_start": 1,
        "train_end": 1,
        "train:iter": W * Nt * E,
        "train:batch": Nt * E,
        "train:epoch": E + compound,
        "val:iter": W * Nv * validations,
        "val:batch": Nv * validations,
        "val:epoch": validations,
        "val_end": validations,
        ("val_end", "train:epoch"): compound,
    }


def _expected_sequence(val_every_batches: int | None) -> list:
    """The keys in firing order. Within one stage, the functions of one callbacks dict run
    in the dict's key order, so the compound stage records 'train:epoch', 'val_end',
    ('val_end', 'train:epoch') (the order of ``keys`` in the test)."""
    W, Nt, Nv, E = CB_WINDOWS, CB_TRAIN, CB_VAL, CB_EPOCHS
    seq, fitted = ["train_start"], 0
    validation = (["val:iter"] * W + ["val:batch"]) * Nv + ["val:epoch"]
    for _ in range(E):
        for b in range(Nt):
            seq += ["train:iter"] * W + ["train:batch"]
            fitted += 1
            epoch_end = b == Nt - 1
            if epoch_end:
                seq.append("train:epoch")
            due = epoch_end if val_every_batches is None else fitted % val_every_batches == 0
            if due:
                seq += validation
                seq += (
                    ["train:epoch", "val_end", ("val_end", "train:epoch")]
                    if epoch_end
                    else ["val_end"]
                )
    return seq + ["train_end"]


@pytest.mark.parametrize("val_every_batches", [None, 2], ids=["val-per-epoch", "val-per-2-batches"])
def test_callback_counts_per_stage(tmp_path, val_every_batches):
    rng = np.random.default_rng(2)
    for name, n in (("train", CB_TRAIN), ("val", CB_VAL)):
        x = rng.normal(size=(n * B, T, F)).astype("float32")
        _write_sets(tmp_path / name, x, (x[:, -1, :1] > 0).astype("float32"), B)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape=(WIN, F)),
            keras.layers.Flatten(),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="sgd", loss="binary_crossentropy")

    fired = []
    keys = [
        "train_start",
        "train_end",
        "train:iter",
        "train:batch",
        "train:epoch",
        "val:iter",
        "val:batch",
        "val:epoch",
        "val_end",
        ("val_end", "train:epoch"),
    ]
    callbacks = {key: (lambda tg, key=key: fired.append(key)) for key in keys}
    val_freq = {"epoch": 1} if val_every_batches is None else {"batch": val_every_batches}
    tg = TrainGenerator(
        model,
        _ts_datagen(tmp_path / "train"),
        _ts_datagen(tmp_path / "val"),
        epochs=CB_EPOCHS,
        val_freq=val_freq,
        callbacks=callbacks,
        **QUIET,
    )
    tg.train()

    counts = {key: fired.count(key) for key in keys}
    assert counts == _expected_counts(val_every_batches)
    assert fired == _expected_sequence(val_every_batches)
    assert tg._fit_iters == counts["train:iter"] and tg._val_iters == counts["val:iter"]
    assert tg._times_validated == counts["val:epoch"]
