"""Batches that do not fit the model are refused when ``train()`` starts, naming the
DataGenerator, the set and its file, and both shapes (they failed at the first step, with
the backend's message); set-ups that train are never refused. Real models, real files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from deeptrain import DataGenerator, TrainGenerator
from deeptrain.training import checks, shape_checks
from deeptrain.training.shape_checks import input_mismatch, label_mismatch
from deeptrain.util.preprocessors import Preprocessor, TimeseriesPreprocessor

pytestmark = pytest.mark.slow

N, FILE = 16, 8  # samples per split, samples per file (two files each)

# a functional model's declared shape alone (an LSTM's timesteps): Keras enforces it on
# TensorFlow and torch; on JAX a built model's step takes other sizes, so it is not checked
declared_shapes_enforced = pytest.mark.skipif(
    keras.backend.backend() == "jax", reason="JAX: Keras skips the declared input shapes"
)


def write_sets(root: Path, x: np.ndarray, y: np.ndarray | None) -> Path:
    """``batch__1.npy``, ``batch__2.npy`` and ``labels.h5`` (labels as given: (n,) stays)."""
    root.mkdir(parents=True)
    with h5py.File(root / "labels.h5", "w") as f:
        for i in range(len(x) // FILE):
            np.save(root / f"batch__{i + 1}.npy", x[i * FILE : (i + 1) * FILE])
            if y is not None:
                f[str(i + 1)] = y[i * FILE : (i + 1) * FILE]
    return root


def dataset(root: Path, shape=(8,), labels="onehot", classes=2, seed=0) -> Path:
    """Train and val splits of float32 samples of ``shape``; ``labels``: 'onehot' (width
    ``classes``), 'sparse' ((n,) ints), 'sparse2d' ((n, 1) ints), 'binary' ((n,) floats)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, classes, 2 * N)
    x = rng.normal(size=(2 * N, *shape)).astype("float32")
    y = {
        "onehot": np.eye(classes, dtype="float32")[ids],
        "sparse": ids,
        "sparse2d": ids[:, None],
        "binary": (ids % 2).astype("float32"),
    }[labels]
    for split, rows in (("train", slice(0, N)), ("val", slice(N, 2 * N))):
        write_sets(root / split, x[rows], y[rows])
    return root


def generators(root: Path, **kw) -> tuple[DataGenerator, DataGenerator]:
    def make(split: str) -> DataGenerator:
        return DataGenerator(
            root / split, batch_size=FILE, labels_path=root / split / "labels.h5", **kw
        )

    return make("train"), make("val")


def dense(features=8, outputs=2, loss="categorical_crossentropy", activation="softmax"):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((features,)), keras.layers.Dense(outputs, activation=activation)]
    )
    model.compile("adam", loss)
    return model


def functional_lstm(timesteps=10, features=3, batch=None, stateful=False):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(batch_shape=(batch, timesteps, features))
    hidden = keras.layers.LSTM(4, stateful=stateful)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    model.compile("adam", "binary_crossentropy")
    return model


def traingen(model, dg, vdg, **kw) -> TrainGenerator:
    return TrainGenerator(model, dg, vdg, epochs=1, iter_verbosity=0, plot_history_freq=None, **kw)


def refused(make: Callable[[], TrainGenerator], match: str) -> None:
    """Building the TrainGenerator raises ``match``: before any log directory or step."""
    with pytest.raises(ValueError, match=match):
        make()


def refused_by_train(tg: TrainGenerator, match: str) -> None:
    """``train()`` raises ``match`` before any step, the data position unmoved."""
    states = [json.dumps(dg.state_dict(), default=str) for dg in (tg.datagen, tg.val_datagen)]
    with pytest.raises(ValueError, match=match):
        tg.train()
    assert tg.state.fit_iters == 0 and tg.state.times_validated == 0
    assert states == [
        json.dumps(dg.state_dict(), default=str) for dg in (tg.datagen, tg.val_datagen)
    ]


def trains(tg: TrainGenerator) -> None:
    tg.train()
    assert tg.state.epoch == 1 and tg.state.times_validated == 1
    assert np.isfinite(tg.history["loss"]).all()


# -- refused ---------------------------------------------------------------------------
def test_a_dense_model_fed_another_number_of_features_is_refused(tmp_path):
    root = dataset(tmp_path, shape=(6,))
    file = root / "train" / "batch__1.npy"
    refused(
        lambda: traingen(dense(features=8), *generators(root)),
        rf"datagen's batches do not fit the model: set 1 \({file}\) is served with shape "
        r"\(8, 6\), but the model's input \(layer '.*'\) takes \(None, 8\)",
    )


def test_one_hot_labels_of_another_width_are_refused(tmp_path):
    root = dataset(tmp_path, classes=3)
    labels = root / "train" / "labels.h5"
    refused(
        lambda: traingen(dense(outputs=2), *generators(root)),
        rf"datagen's labels do not fit the model: set 1 \({labels}\) has labels of shape "
        r"\(8, 3\), but the model's output .* is \(None, 2\) and its loss "
        r"categorical_crossentropy needs labels of that shape \(one-hot, 2 classes\)$",
    )


@pytest.mark.parametrize("labels", ["sparse", "sparse2d"])
def test_integer_labels_with_a_categorical_loss_are_refused_naming_the_sparse_loss(
    tmp_path, labels
):
    root = dataset(tmp_path, labels=labels)
    loss = keras.losses.CategoricalCrossentropy()
    refused(
        lambda: traingen(dense(loss=loss), *generators(root)),
        r"labels of shape \(8,( 1)?\).*CategoricalCrossentropy.*sparse_categorical_crossentropy",
    )


@pytest.mark.parametrize("shape", [pytest.param((12, 3), marks=declared_shapes_enforced), (10, 4)])
def test_an_lstm_fed_other_timesteps_or_features_is_refused(tmp_path, shape):
    root = dataset(tmp_path, shape=shape, labels="binary")
    refused(
        lambda: traingen(functional_lstm(10, 3), *generators(root)),
        rf"datagen's batches .* shape \(8, {shape[0]}, {shape[1]}\), .* takes \(None, 10, 3\)",
    )


def test_a_functional_model_fed_another_number_of_features_is_refused(tmp_path):
    root = dataset(tmp_path, shape=(6,))
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    model.compile("adam", "categorical_crossentropy")
    refused(
        lambda: traingen(model, *generators(root)),
        r"shape \(8, 6\), but the model's input \(layer 'features'\) takes \(None, 8\)",
    )


def test_a_sequential_lstm_fed_other_features_is_refused(tmp_path):
    """A Sequential RNN takes any number of timesteps, but not other features: its cell's
    kernel is built for them."""
    root = dataset(tmp_path, shape=(10, 4), labels="binary")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10, 3)), keras.layers.LSTM(4), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    refused(
        lambda: traingen(model, *generators(root)), r"shape \(8, 10, 4\), .* takes \(None, 10, 3\)"
    )


def test_val_datagen_that_does_not_fit_is_refused_before_training(tmp_path):
    root = dataset(tmp_path)
    bad = dataset(tmp_path / "bad", shape=(5,))
    dg, _ = generators(root)
    _, vdg = generators(bad)
    file = bad / "val" / "batch__1.npy"
    refused(
        lambda: traingen(dense(), dg, vdg),
        rf"val_datagen's batches do not fit the model: set 1 \({file}\) .* \(8, 5\)",
    )


@declared_shapes_enforced
def test_a_window_that_does_not_fit_is_named_as_the_preprocessor_cut_it(tmp_path):
    """The stateful model takes windows of 4 timesteps; the preprocessor cuts 5."""
    root = dataset(tmp_path, shape=(12, 3), labels="binary")
    dg, vdg = generators(
        root, preprocessor=TimeseriesPreprocessor, preprocessor_configs={"window_size": 5}
    )
    refused(
        lambda: traingen(functional_lstm(4, 3, batch=FILE, stateful=True), dg, vdg),
        r"shape \(8, 5, 3\) \(as windows of 5 timesteps, by TimeseriesPreprocessor\), "
        r"but the model's input .* takes \(8, 4, 3\)",
    )


def test_a_model_recompiled_after_construction_is_checked_by_train(tmp_path):
    """Integer labels and a sparse loss fit; recompiled with a categorical loss after the
    TrainGenerator was built, they do not: ``train()`` checks again, nothing moves."""
    root = dataset(tmp_path, labels="sparse")
    model = dense(loss="sparse_categorical_crossentropy")
    tg = traingen(model, *generators(root))
    model.compile("adam", "categorical_crossentropy")
    refused_by_train(tg, r"labels of shape \(8,\).*categorical_crossentropy.*sparse")


# -- trained, as before ----------------------------------------------------------------
def test_stateful_rnn_windows_train(tmp_path):
    """Files of 12 timesteps, served as 3 windows of 4 to a stateful LSTM built for a
    batch of 8 windows: the model sees window shapes, not file shapes."""
    root = dataset(tmp_path, shape=(12, 3), labels="binary")
    dg, vdg = generators(
        root, preprocessor=TimeseriesPreprocessor, preprocessor_configs={"window_size": 4}
    )
    tg = traingen(functional_lstm(4, 3, batch=FILE, stateful=True), dg, vdg, reset_statefuls=True)
    trains(tg)
    assert tg.state.fit_iters == 6  # 2 files x 3 windows


@pytest.mark.parametrize("labels", ["sparse", "sparse2d"])
def test_integer_labels_with_a_sparse_loss_train(tmp_path, labels):
    root = dataset(tmp_path, labels=labels, classes=3)
    trains(traingen(dense(outputs=3, loss="sparse_categorical_crossentropy"), *generators(root)))


def test_one_d_labels_with_a_binary_loss_train(tmp_path):
    root = dataset(tmp_path, labels="binary")
    model = dense(outputs=1, loss="binary_crossentropy", activation="sigmoid")
    trains(traingen(model, *generators(root)))


def test_an_autoencoder_trains_on_its_inputs(tmp_path):
    root = dataset(tmp_path, classes=3)  # (labels of another width than the output: unused)
    model = dense(outputs=8, loss="mse", activation=None)
    trains(traingen(model, *generators(root), input_as_labels=True))


def test_a_sequential_lstm_takes_any_number_of_timesteps(tmp_path):
    """Keras' Sequential runs its RNN on any length (only a functional model's declared
    input shape is enforced): not refused."""
    root = dataset(tmp_path, shape=(12, 3), labels="binary")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10, 3)), keras.layers.LSTM(4), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    trains(traingen(model, *generators(root)))


def test_none_dimensions_take_any_size(tmp_path):
    root = dataset(tmp_path, shape=(12, 3), labels="binary")
    trains(traingen(functional_lstm(None, 3), *generators(root)))


def test_a_custom_fit_fn_may_reshape_the_batch(tmp_path):
    """A fit_fn of one's own feeds the model what it makes of the batch: not checked."""
    root = dataset(tmp_path, shape=(6,))
    model = dense(features=8)

    def fit(x, y, sw):
        return model.train_on_batch(np.pad(x, ((0, 0), (0, 2))), y, return_dict=True)

    def evaluate(x, y, sw):
        return model.test_on_batch(np.pad(x, ((0, 0), (0, 2))), y, return_dict=True)

    trains(traingen(model, *generators(root), fit_fn=fit, eval_fn=evaluate, val_mode="evaluate"))


class TwoInputs(Preprocessor):
    def process(self, batch, labels):
        return [batch[:, :4], batch[:, 4:]], labels


def two_input_model():
    keras.utils.set_random_seed(0)
    halves = [keras.Input((4,), name="left"), keras.Input((4,), name="right")]
    hidden = [keras.layers.Dense(3)(half) for half in halves]
    out = keras.layers.Dense(2, "softmax")(keras.layers.Concatenate()(hidden))
    model = keras.Model(halves, out)
    model.compile("adam", "categorical_crossentropy")
    return model


def test_a_model_of_two_inputs_fed_by_a_preprocessor_trains(tmp_path):
    root = dataset(tmp_path)
    dg, vdg = generators(root, preprocessor=TwoInputs)
    trains(traingen(two_input_model(), dg, vdg))


def test_the_check_moves_nothing_and_runs_once(tmp_path):
    """Checking serves nothing: the DataGenerators' states are as before (the window
    count the preprocessor sets at a batch's first window too), and the first step trains
    on the first window. Each DataGenerator is checked once."""
    root = dataset(tmp_path, shape=(12, 3), labels="binary")
    dg, vdg = generators(
        root, preprocessor=TimeseriesPreprocessor, preprocessor_configs={"window_size": 4}
    )
    tg = traingen(functional_lstm(4, 3, batch=FILE, stateful=True), dg, vdg, reset_statefuls=True)
    before = [json.dumps(d.state_dict(), default=str) for d in (dg, vdg)]
    checks.check_inputs(tg)
    assert before == [json.dumps(d.state_dict(), default=str) for d in (dg, vdg)]
    assert len(shape_checks._checked[tg]) == 2  # datagen and val_datagen: done
    checks.check_inputs(tg)
    assert len(shape_checks._checked[tg]) == 2
    x, _, _ = tg.get_data()
    np.testing.assert_array_equal(x, np.load(root / "train" / "batch__1.npy")[:, :4])


# -- the rules, on real models ---------------------------------------------------------
def test_inputs_are_paired_by_position_or_name():
    model = two_input_model()
    fits = [np.zeros((2, 4)), np.zeros((2, 4))]
    assert input_mismatch(model, fits) is None
    assert input_mismatch(model, {"left": fits[0], "right": fits[1]}) is None
    assert input_mismatch(model, [fits[0], np.zeros((2, 5))]) == ("right", (2, 5), (None, 4))
    assert input_mismatch(model, {"left": fits[0], "right": np.zeros((2, 3))})[0] == "right"
    assert input_mismatch(model, np.zeros((2, 8))) is None  # (not paired: Keras says it)
    assert input_mismatch(model, [fits[0]]) is None


def test_a_trailing_axis_of_one_may_be_left_out_or_added():
    """Keras squeezes or adds a trailing axis of 1; its input check ignores one."""
    keras.utils.set_random_seed(0)
    flat = keras.Input((10,))
    functional = keras.Model(flat, keras.layers.Dense(2)(flat))
    assert input_mismatch(functional, np.zeros((2, 10, 1))) is None
    assert input_mismatch(functional, np.zeros((2, 10, 2))) is not None
    seq = keras.Sequential([keras.Input((10, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    assert input_mismatch(seq, np.zeros((2, 10))) is None
    column = keras.Input((5, 1))
    summed = keras.layers.Lambda(lambda t: keras.ops.sum(t, -1))(column)
    assert (
        input_mismatch(keras.Model(column, keras.layers.Dense(2)(summed)), np.zeros((2, 5, 3)))
        is None
    )


def test_labels_are_compared_only_for_one_categorical_output():
    model = dense(outputs=2)
    assert label_mismatch(model, np.zeros((4, 2))) is None
    assert label_mismatch(model, np.zeros((4, 3)))[1:3] == ((4, 3), (None, 2))
    assert label_mismatch(dense(outputs=2, loss="mse"), np.zeros((4, 3))) is None
    assert label_mismatch(dense(outputs=2, loss="kl_divergence"), np.zeros((4, 1))) is None
    one = dense(outputs=1, activation="sigmoid")  # (n,) labels expanded to (n, 1), as Keras
    assert label_mismatch(one, np.zeros(4)) is None
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,))
    two = keras.Model(inp, [keras.layers.Dense(2)(inp), keras.layers.Dense(3)(inp)])
    two.compile("adam", ["categorical_crossentropy", "categorical_crossentropy"])
    assert label_mismatch(two, np.zeros((4, 5))) is None


class Padded(keras.Model):
    """A model of its own: pads 6 features to the 8 its Dense layer takes."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2, activation="softmax")

    def call(self, x):
        return self.dense(keras.ops.pad(x, ((0, 0), (0, 2))))


def test_a_model_with_a_call_of_its_own_is_not_checked(tmp_path):
    root = dataset(tmp_path, shape=(6,))
    keras.utils.set_random_seed(0)
    model = Padded()
    model.compile("adam", "categorical_crossentropy")
    trains(traingen(model, *generators(root)))
