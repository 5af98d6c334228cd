"""Stateful RNNs fed windows: a validation at a batch boundary without resets, batches of
another size than the model's, the slice weight a callback reads, and bad inputs to
``TimeseriesPreprocessor``."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from deeptrain import DataGenerator, TrainGenerator
from deeptrain.backend.stateful import get_states
from deeptrain.data.preprocessors import TimeseriesPreprocessor
from test_stateful_training import B, F, W, assert_trained_alike, data, model, traingen, windows  # noqa: F401 (fixture)

pytestmark = pytest.mark.backends


@pytest.mark.slow
def test_a_validation_at_a_batch_boundary_leaves_the_training_as_without_it(data):  # noqa: F811
    """With ``reset_statefuls=False``, a validation after every batch starts from zero and
    hands the train state back: the same train losses and weights as with a validation per
    epoch, and its last validation the same as theirs."""
    runs = {}
    for freq in ({"epoch": 1}, {"batch": 1}):
        tg = TrainGenerator(
            model(),
            windows(data / "train"),
            windows(data / "val"),
            epochs=2,
            val_freq=freq,
            reset_statefuls=False,
            iter_verbosity=0,
            plot_history_freq=None,
        )
        tg.train()
        runs[str(freq)] = tg
    per_epoch, per_batch = runs["{'epoch': 1}"], runs["{'batch': 1}"]
    assert_trained_alike(per_epoch, per_batch)
    assert len(per_batch.val_history["loss"]) == 2 * 4
    assert per_batch.val_history["loss"][3::4] == per_epoch.val_history["loss"]

    before = get_states(per_batch.model)
    assert np.abs(next(iter(before.values()))[0]).sum() > 0  # a state carried on
    per_batch.validate(record_progress=False)
    for live, kept in zip(get_states(per_batch.model).values(), before.values(), strict=True):
        np.testing.assert_array_equal(live, kept)


def stateful_model(batch: int) -> keras.Model:
    inputs = keras.Input(batch_shape=(batch, W, F))
    hidden = keras.layers.LSTM(3, stateful=True)(inputs)
    m = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    m.compile("sgd", "binary_crossentropy")
    return m


def combined(root: Path, batch_size: int, **kw) -> DataGenerator:
    """Windows of ``root``'s files of ``B`` samples, combined into batches of ``batch_size``."""
    return DataGenerator(
        root,
        batch_size=batch_size,
        labels_path=root / "labels.h5",
        preprocessor=TimeseriesPreprocessor(W),
        **kw,
    )


def build(root: Path, m: keras.Model, batch_size: int, **kw) -> TrainGenerator:
    return TrainGenerator(
        m,
        combined(root / "train", batch_size, **kw),
        combined(root / "val", batch_size, **kw),
        iter_verbosity=0,
        plot_history_freq=None,
        reset_statefuls=True,
    )


def test_batches_of_another_size_than_the_stateful_model_are_refused_at_construction(
    data,  # noqa: F811
):
    """4 files of 4 samples combined by 12: batches of 12 and 4, which a stateful model
    cannot take; refused when built, not at the epoch's end."""
    assert combined(data / "train", 3 * B).batch_sizes() == {3 * B, B}
    with pytest.raises(ValueError, match=r"datagen's batches hold \[4, 12\]: .*drop_remainder"):
        build(data, stateful_model(3 * B), 3 * B)
    with pytest.raises(ValueError, match=r"fixed batch of 8 .* batch_size=8"):
        build(data, stateful_model(2 * B), B)  # one size, not the model's
    tg = build(data, stateful_model(3 * B), 3 * B, drop_remainder=True)
    assert tg.datagen.batch_sizes() == {3 * B}
    plain = keras.Sequential([keras.Input((W, F)), keras.layers.LSTM(3), keras.layers.Dense(1)])
    plain.compile("sgd", "mse")
    build(data, plain, 3 * B)  # (not stateful: any batch size)


@pytest.mark.slow
def test_get_sample_weight_in_a_callback_is_the_window_just_fed(data):  # noqa: F811
    """From a ``'train:iter'`` callback, the weight of the window the model was fed (as
    ``get(skip_validation=True)`` serves it), also after a batch's last window."""
    seen = []

    def read(tg):
        _, y = tg.datagen.get(skip_validation=True)
        seen.append((tg.state.fit_iters, float(tg.get_sample_weight(y)[0])))

    tg = traingen(
        data,
        model(),
        epochs=1,
        loss_weighted_slices_range=(0.5, 1.5),
        callbacks=[{"train:iter": read}],
    )
    tg.train()
    expected = [0.5, 1.0, 1.5] * 4  # 3 windows of 4 batches
    assert seen == [(i + 1, w) for i, w in enumerate(expected)]


def test_timeseries_preprocessor_names_what_is_wrong():
    with pytest.raises(TypeError, match=r"start_increments must be .* list .* pass \[2\]"):
        TimeseriesPreprocessor(4, start_increments=2)
    with pytest.raises(TypeError, match="start_increments"):
        TimeseriesPreprocessor(4, start_increments="02")
    assert TimeseriesPreprocessor(4, start_increments=np.array([0, 2])).start_increments == [0, 2]
    with pytest.raises(ValueError, match=r"axis 1 .* shape \(8,\)"):
        TimeseriesPreprocessor(4).process(np.zeros(8), None)
    with pytest.raises(TypeError, match="array batch .* got a list"):
        TimeseriesPreprocessor(4).process([np.zeros((2, 8))], None)
