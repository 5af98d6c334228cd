"""Stateful RNNs fed windows by a TrainGenerator (TensorFlow): a validation between two
windows of a train batch, a resume into a model built again in the same process, and a
resume between two windows of an epoch that starts at an offset (``start_increments``)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import keras
import numpy as np
import pytest

from deeptrain import DataGenerator, TrainGenerator
from deeptrain.backend.stateful import get_states
from deeptrain.preprocessing import numpy_data_to_numpy_sets
from deeptrain.util.preprocessors import TimeseriesPreprocessor

pytestmark = pytest.mark.slow

B, T, W, F = 4, 12, 4, 3  # batches of 4 sequences of 12 steps, fed as 3 windows of 4


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sequences")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 32)
    x = (rng.normal(size=(32, T, F)) + 0.5 * labels[:, None, None]).astype("float32")
    y = labels[:, None].astype("float32")
    for name, rows in (("train", slice(0, 16)), ("val", slice(16, 32))):
        numpy_data_to_numpy_sets(x[rows], y[rows], root / name, batch_size=B, shuffle=False)
    return root


def model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input(batch_shape=(B, W, F))
    hidden = keras.layers.LSTM(5, stateful=True)(inputs)
    m = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    m.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
    return m


def windows(root: Path, **kw) -> DataGenerator:
    return DataGenerator(
        root,
        batch_size=B,
        labels_path=root / "labels.h5",
        preprocessor=TimeseriesPreprocessor(W, **kw),
    )


def traingen(data: Path, m: keras.Model, start_increments=None, **kw) -> TrainGenerator:
    return TrainGenerator(
        m,
        windows(data / "train", start_increments=start_increments),
        windows(data / "val"),
        iter_verbosity=0,
        plot_history_freq=None,
        reset_statefuls=True,
        **kw,
    )


def assert_trained_alike(a, b) -> None:
    """Two TrainGenerators trained alike: the same train losses and weights, bitwise."""
    assert a.history["loss"] == b.history["loss"]
    for x, y in zip(a.model.get_weights(), b.model.get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)


def test_a_validation_between_two_windows_leaves_the_training_as_without_it(data):
    """After every window (``val_freq={'iter': 1}``), the validation starts its sequences
    from zero and the train batch then continues from its own state: the same train
    losses and weights as with a validation per epoch only; the validations' losses
    are the same as at a batch boundary."""
    runs = {}
    for freq in ({"epoch": 1}, {"iter": 1}):
        tg = traingen(data, model(), epochs=2, val_freq=freq)
        tg.train()
        runs[str(freq)] = tg
    per_epoch, per_window = runs["{'epoch': 1}"], runs["{'iter': 1}"]
    assert_trained_alike(per_epoch, per_window)
    assert len(per_window.val_history["loss"]) == 2 * 4 * 3  # every window of 2 epochs

    def stop_between_windows(tg):
        if tg.state.fit_iters == 1:
            os.kill(os.getpid(), signal.SIGINT)  # stop after this iteration

    tg = traingen(data, model(), callbacks=[{"train:iter": stop_between_windows}])
    with pytest.raises(KeyboardInterrupt):
        tg.train()
    half_way = get_states(tg.model)
    assert tg.datagen.slice_idx == 1 and np.abs(next(iter(half_way.values()))[0]).sum() > 0
    between = tg.validate(record_progress=False)
    for live, kept in zip(get_states(tg.model).values(), half_way.values(), strict=True):
        np.testing.assert_array_equal(live, kept)  # the train batch's, back
    same = model()  # (its RNN states are made at its first call on JAX: the trained weights only)
    for fresh, trained in zip(same.trainable_variables, tg.model.trainable_variables, strict=True):
        fresh.assign(trained)
    at_a_boundary = traingen(data, same).validate(record_progress=False)
    assert between == at_a_boundary  # its sequences from zero, not from the train batch's


def test_a_model_built_again_in_the_same_process_resumes_exactly(data, tmp_path):
    """Keras names a model built again ``lstm_1`` where the checkpoint says ``lstm``: its
    RNN states are matched by position, as its weights are, and the run ends as the
    uninterrupted one."""
    reference = traingen(data, model(), epochs=2)
    reference.train()

    def stop_between_windows(tg):
        if tg.state.fit_iters == 7:  # the 2nd window of the 3rd batch
            os.kill(os.getpid(), signal.SIGINT)  # stop after this iteration

    first = traingen(
        data,
        model(),
        epochs=2,
        logs_dir=tmp_path,
        temp_checkpoint_freq={"iter": 1},
        callbacks=[{"train:iter": stop_between_windows}],
    )
    with pytest.raises(KeyboardInterrupt):
        first.train()
    saved = get_states(first.model)
    first.destroy(confirm=True)
    again = model()
    assert list(get_states(again)) != list(saved)  # another name for the same layer
    resumed = traingen(data, again, epochs=2, loadpath=first.logdir)
    assert resumed.state.fit_iters == 7 and resumed.datagen.slice_idx == 1
    for live, kept in zip(get_states(again).values(), saved.values(), strict=True):
        np.testing.assert_array_equal(live, kept)
    resumed.train()
    assert resumed.history["loss"] == reference.history["loss"]
    for a, b in zip(again.get_weights(), reference.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def serve(dg: DataGenerator, n: int) -> list[np.ndarray]:
    out = []
    for _ in range(n):
        x, _ = dg.get()
        out.append(np.array(x))
        dg.update_state()
        if dg.all_data_exhausted:
            dg.on_epoch_end()
            dg.reset_state()
    return out


@pytest.mark.parametrize("resumed_with", [[0, 2], None])
def test_a_position_between_windows_at_a_start_offset_resumes(data, resumed_with):
    """The 2nd epoch starts its windows at offset 2 (``start_increments=[0, 2]``); a state
    saved between two of its windows loads into a new DataGenerator (the offset is
    restored, not compared with the new one's). Resumed with ``start_increments=None``,
    that epoch ends at its offset and the next one starts at 0, as ``[0, 2]``'s third."""
    original = windows(data / "train", start_increments=[0, 2])
    serve(original, 4 * 3 + 1)  # epoch 1 (offset 0: 3 windows a batch), a window of epoch 2
    assert original.preprocessor.start_increment == 2 and original.slice_idx == 1
    state = original.state_dict()
    resumed = windows(data / "train", start_increments=resumed_with)
    resumed.load_state_dict(state)
    rest_of_epoch = 4 * 2 - 1  # (offset 2: 2 windows a batch)
    expected = serve(original, rest_of_epoch)
    for a, b in zip(serve(resumed, rest_of_epoch), expected, strict=True):
        np.testing.assert_array_equal(a, b)
    first_batch = np.load(sorted((data / "train").glob("*.npy"))[0])  # (no shuffling)
    np.testing.assert_array_equal(serve(resumed, 1)[0], first_batch[:, :W])  # offset 0
