"""Weights files written by DeepTrain, on whichever backend KERAS_BACKEND selects.

They are Keras' ``.weights.h5``, written from the checkpoint's host snapshot: the same groups,
attributes and datasets as ``model.save_weights``, loadable with ``model.load_weights`` into
the same architecture built without DeepTrain (a stateful model too: its RNN states live in
the checkpoint's arrays, not in the weights file). Real models, real files, no mocks.
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
from deeptrain.backend.stateful import prepare_stateful_model, state_variables  # noqa: E402
from deeptrain.preprocessing import numpy_data_to_numpy_sets  # noqa: E402
from deeptrain.saving.weights_file import (  # noqa: E402
    load_weights_file,
    snapshot_weights,
    write_weights_file,
)
from deeptrain.util.preprocessors import TimeseriesPreprocessor  # noqa: E402

pytestmark = pytest.mark.backends
BACKEND = keras.backend.backend()
BATCH, TIMESTEPS, WINDOW, FEATURES = 4, 6, 3, 3


def build(kind: str) -> keras.Model:
    """The same architecture every time (layer names fixed: a plain twin reads the file)."""
    if kind == "dense":
        inp = keras.Input((FEATURES,), name="x")
        x = keras.layers.Dense(300, activation="relu", name="hidden")(inp)  # raw-written arrays
        x = keras.layers.Dropout(0.2, name="drop")(x)
        x = keras.layers.BatchNormalization(name="norm")(x)
        out = keras.layers.Dense(2, activation="softmax", name="out")(x)
        loss = "categorical_crossentropy"
    else:
        inp = keras.Input(batch_shape=(BATCH, WINDOW, FEATURES), name="x")
        x = keras.layers.LSTM(8, stateful=True, return_sequences=True, name="lstm_a")(inp)
        x = keras.layers.LSTM(8, stateful=True, name="lstm_b")(x)
        out = keras.layers.Dense(1, activation="sigmoid", name="out")(x)
        loss = "binary_crossentropy"
    model = keras.Model(inp, out, name="net")
    model.compile(keras.optimizers.Adam(0.01, name="adam"), loss)
    return model


def trained(kind: str, root: Path) -> TrainGenerator:
    """A TrainGenerator after one epoch (a unique checkpoint written at its end)."""
    rng = np.random.default_rng(0)
    if kind == "dense":
        x = rng.normal(size=(32, FEATURES)).astype("float32")
        y = np.eye(2, dtype="float32")[rng.integers(0, 2, 32)]
        pre = dict
    else:
        x = rng.normal(size=(16, TIMESTEPS, FEATURES)).astype("float32")
        y = rng.integers(0, 2, (16, 1)).astype("float32")

        def pre():  # one preprocessor per DataGenerator: it holds that one's position
            return {"preprocessor": TimeseriesPreprocessor(window_size=WINDOW)}

    for split in ("train", "val"):
        numpy_data_to_numpy_sets(x, y, root / split, batch_size=BATCH, shuffle=False, verbose=0)
    dgs = [
        DataGenerator(root / s, batch_size=BATCH, labels_path=root / s / "labels.h5", **pre())
        for s in ("train", "val")
    ]
    keras.utils.set_random_seed(0)
    tg = TrainGenerator(
        build(kind), *dgs, epochs=1, logs_dir=root / "logs", iter_verbosity=0,
        plot_history_freq=None,
    )  # fmt: skip
    tg.train()
    return tg


def h5_tree(path: Path) -> list:
    """Every group and dataset: name, attributes (but names), shape, dtype, bytes."""
    found = []

    def visit(name, obj):
        attrs = {k: v for k, v in obj.attrs.items() if k != "name"}
        if isinstance(obj, h5py.Dataset):
            found.append((name, attrs, obj.shape, str(obj.dtype), obj[()].tobytes()))
        else:
            found.append((name, attrs))

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return found


def state_ids(model: keras.Model) -> set[int]:
    return {id(v) for variables in state_variables(model).values() for v in variables}


def optimizer_values(model: keras.Model) -> list[np.ndarray]:
    return [v.numpy() for v in model.optimizer.variables]


@pytest.mark.parametrize("kind", ["dense", "stateful LSTM"])
def test_a_checkpoint_weights_file_loads_into_a_plain_keras_model(kind, tmp_path):
    tg = trained("dense" if kind == "dense" else "lstm", tmp_path)
    weights_file = tg.get_last_log("weights")
    plain = build("dense" if kind == "dense" else "lstm")  # no DeepTrain, no workaround
    plain.optimizer.build(plain.trainable_variables)
    plain.load_weights(weights_file)
    states = state_ids(tg.model)  # tracked among the weights on JAX
    expected = [v.numpy() for v in tg.model.weights if id(v) not in states]
    assert len(expected) == len(plain.weights)
    for a, b in zip(expected, plain.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(optimizer_values(tg.model), optimizer_values(plain), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_file_is_the_one_save_weights_writes(tmp_path):
    keras.utils.set_random_seed(0)
    model = build("dense")
    x = np.random.default_rng(1).normal(size=(BATCH, FEATURES)).astype("float32")
    y = np.eye(2, dtype="float32")[[0, 1, 0, 1]]
    for step in range(2):  # the second file is written from the first one's structure
        model.train_on_batch(x, y)
        write_weights_file(tmp_path / f"ours{step}.weights.h5", snapshot_weights(model))
        model.save_weights(tmp_path / f"keras{step}.weights.h5")
        ours, theirs = (h5_tree(tmp_path / f"{n}{step}.weights.h5") for n in ("ours", "keras"))
        assert ours == theirs
    assert h5_tree(tmp_path / "ours0.weights.h5") != h5_tree(tmp_path / "ours1.weights.h5")


def test_the_snapshot_is_not_changed_by_later_training(tmp_path):
    keras.utils.set_random_seed(0)
    model = build("dense")
    x = np.random.default_rng(1).normal(size=(BATCH, FEATURES)).astype("float32")
    y = np.eye(2, dtype="float32")[[0, 1, 0, 1]]
    model.train_on_batch(x, y)
    image = snapshot_weights(model)
    before = [v.numpy() for v in [*model.weights, *model.optimizer.variables]]
    model.train_on_batch(x, y)  # moves weights and optimizer slots
    write_weights_file(tmp_path / "w.weights.h5", image)
    keras.utils.set_random_seed(0)
    fresh = build("dense")
    fresh.optimizer.build(fresh.trainable_variables)
    fresh.load_weights(tmp_path / "w.weights.h5")
    after = [v.numpy() for v in [*fresh.weights, *fresh.optimizer.variables]]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


def test_large_variables_loaded_train_on_bitwise_like_the_saved_model(tmp_path):
    """Variables of 1 MiB and more are read into memory the variable may take over (on
    TensorFlow it does, instead of copying): the loaded model trains on bitwise like the
    model it was saved from, and neither changes the other, nor a second load the first."""

    def big() -> keras.Model:
        keras.utils.set_random_seed(0)
        m = keras.Sequential(
            [keras.Input((500,)), keras.layers.Dense(600, name="wide"), keras.layers.Dense(2)]
        )  # a 1.2 MB kernel, and as large Adam moments
        m.compile(keras.optimizers.Adam(0.01), "mse")
        return m

    rng = np.random.default_rng(3)
    batches = [
        (rng.normal(size=(8, 500)).astype("float32"), rng.normal(size=(8, 2)).astype("float32"))
        for _ in range(4)
    ]
    model = big()
    model.train_on_batch(*batches[0])
    write_weights_file(tmp_path / "w.weights.h5", snapshot_weights(model))
    saved = [v.numpy() for v in [*model.weights, *model.optimizer.variables]]
    loaded, again = big(), big()
    for m in (loaded, again):
        m.optimizer.build(m.trainable_variables)
        load_weights_file(m, tmp_path / "w.weights.h5")
    for x, y in batches[1:]:
        model.train_on_batch(x, y)
        loaded.train_on_batch(x, y)
    for a, b in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    untouched = [v.numpy() for v in [*again.weights, *again.optimizer.variables]]
    for a, b in zip(saved, untouched, strict=True):  # (the other load's memory is its own)
        np.testing.assert_array_equal(a, b)


def test_weights_files_holding_rnn_states_still_load(tmp_path):
    """On JAX, save_weights of a prepared stateful model writes its states among the LSTM
    layer's variables (earlier checkpoints hold such files); they load, states skipped."""
    keras.utils.set_random_seed(0)
    model = build("lstm")
    prepare_stateful_model(model)
    x = np.random.default_rng(1).normal(size=(BATCH, WINDOW, FEATURES)).astype("float32")
    model.train_on_batch(x, np.ones((BATCH, 1), "float32"))
    model.save_weights(tmp_path / "keras.weights.h5")
    keras.utils.set_random_seed(5)
    other = build("lstm")
    prepare_stateful_model(other)
    other.optimizer.build(other.trainable_variables)
    load_weights_file(other, tmp_path / "keras.weights.h5")
    states = state_ids(model)
    for a, b in zip(model.weights, other.weights, strict=True):
        if id(a) not in states:
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_misfit_or_linked_dataset_is_refused_naming_it(tmp_path):
    keras.utils.set_random_seed(0)
    model = build("dense")
    model.optimizer.build(model.trainable_variables)
    path = tmp_path / "w.weights.h5"
    write_weights_file(path, snapshot_weights(model))
    with h5py.File(path, "a") as f:
        del f["layers/dense/vars/1"]
        f["layers/dense/vars/1"] = np.zeros(7, "float32")
    fresh = build("dense")
    fresh.optimizer.build(fresh.trainable_variables)
    unloaded = [v.numpy() for v in fresh.weights]
    with pytest.raises(ValueError, match=r"layers/dense/vars/1' .*has shape \(7,\)"):
        load_weights_file(fresh, path)
    with h5py.File(path, "a") as f:
        del f["layers/dense/vars/1"]
        f["layers/dense/vars/1"] = h5py.SoftLink("/layers/dense_1/vars/1")
    with pytest.raises(ValueError, match="SoftLink"):
        load_weights_file(fresh, path)
    for a, b in zip(unloaded, fresh.weights, strict=True):  # nothing was assigned
        np.testing.assert_array_equal(a, b.numpy())
