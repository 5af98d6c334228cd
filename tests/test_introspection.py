"""Introspection: gradients, outputs, gradient norms over a dataset.

Gradients are checked against references that do not go through DeepTrain: backpropagation
written out in NumPy for a small tanh MLP (MSE loss, sample weights, an L2 penalty), and the
update Keras' own SGD(learning_rate=1) applies. Tests marked ``backends`` also run under
torch and JAX in CI.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")

from matplotlib.image import imread  # noqa: E402

from deeptrain import DataGenerator, TrainGenerator  # noqa: E402
from deeptrain import introspection as intro  # noqa: E402
from deeptrain.backend.gradients import layer_outputs, loss_gradients  # noqa: E402
from deeptrain.preprocessing import numpy_data_to_numpy_sets  # noqa: E402

F, H, U, BS, REG = 4, 5, 3, 8, 0.01
TOL = dict(rtol=2e-4, atol=1e-6)


def mlp(reg: float = REG, lr: float = 1.0) -> keras.Model:
    """x -> Dense(H, tanh, L2(reg) on the kernel) 'hidden' -> Dense(U) 'out'; MSE."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((F,)),
            keras.layers.Dense(
                H, activation="tanh", name="hidden", kernel_regularizer=keras.regularizers.L2(reg)
            ),
            keras.layers.Dense(U, name="out"),
        ]
    )
    model.compile(keras.optimizers.SGD(lr), "mse")
    return model


def numpy_backprop(model: keras.Model, x, y, sw=None, reg: float = REG):
    """Loss, weight gradients (in model.trainable_weights order) and output gradients
    ({'hidden': dL/dh, 'out': dL/dy_pred}) of ``mlp``, by hand."""
    W1, b1, W2, b2 = (np.asarray(w, dtype=np.float64) for w in model.get_weights())
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    y = np.asarray(y, np.float64)
    sw = np.ones(len(x)) if sw is None else np.asarray(sw, np.float64)
    h = np.tanh(x @ W1 + b1)
    out = h @ W2 + b2
    n, u = out.shape
    loss = (sw * ((out - y) ** 2).mean(axis=1)).sum() / n + reg * (W1**2).sum()
    d_out = sw[:, None] * 2 * (out - y) / (n * u)  # Keras: sum over batch / batch size
    d_h = d_out @ W2.T
    d_z = d_h * (1 - h**2)
    grads = [x.T @ d_z + 2 * reg * W1, d_z.sum(0), h.T @ d_out, d_out.sum(0)]
    return loss, grads, {"hidden": d_h, "out": d_out}


def batch(seed: int = 0, n: int = BS):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(n, F)).astype("float32"),
        rng.normal(size=(n, U)).astype("float32"),
        rng.uniform(0.5, 2.0, size=n).astype("float32"),
    )


# -- one batch ------------------------------------------------------------------------------
@pytest.mark.backends
def test_gradients_match_numpy_backprop():
    model = mlp()
    x, y, sw = batch()
    loss, want_w, want_o = numpy_backprop(model, x, y, sw)

    got_w = intro.get_gradients(model, "*", x, y, sw, mode="weights")
    assert list(got_w) == [w.path for w in model.trainable_weights]
    for got, want in zip(got_w.values(), want_w, strict=True):
        np.testing.assert_allclose(got, want, **TOL)
    got_o = intro.get_gradients(model, ["hidden", "out"], x, y, sw, mode="outputs")
    assert list(got_o) == ["hidden", "out"]
    for name in got_o:
        np.testing.assert_allclose(got_o[name], want_o[name], **TOL)
    g = loss_gradients(model, x, y, sw, variables=model.trainable_weights[:1])
    assert g.loss == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(g.weights[0], want_w[0], **TOL)


@pytest.mark.backends
def test_gradient_norms_match_numpy():
    model = mlp()
    x, y, sw = batch(1)
    _, want_w, want_o = numpy_backprop(model, x, y, sw)

    local = intro.compute_gradient_norm(model, x, y, sw)  # L2 per tensor (clipnorm's view)
    np.testing.assert_allclose(local, [np.sqrt((g**2).sum()) for g in want_w], **TOL)
    glob = intro.compute_gradient_norm(model, x, y, sw, scope="global")
    assert glob.shape == ()
    np.testing.assert_allclose(glob, np.sqrt(sum((g**2).sum() for g in want_w)), **TOL)
    l1 = intro.compute_gradient_norm(model, x, y, sw, norm_fn=np.abs, _id="hidden")
    np.testing.assert_allclose(l1, [np.abs(g).sum() for g in want_w[:2]], **TOL)
    out_norm = intro.compute_gradient_norm(model, x, y, sw, mode="outputs", _id=[1])
    np.testing.assert_allclose(out_norm, [np.sqrt((want_o["out"] ** 2).sum())], **TOL)


@pytest.mark.backends
def test_weight_gradients_are_what_sgd_applies():
    """SGD(learning_rate=1) without momentum moves each weight by exactly -gradient."""
    model = mlp(lr=1.0)
    x, y, sw = batch(2)
    grads = intro.get_gradients(model, "*", x, y, sw, learning_phase=1)
    before = [np.array(w) for w in model.get_weights()]
    model.train_on_batch(x, y, sample_weight=sw)
    for b, a, g in zip(before, model.get_weights(), grads.values(), strict=True):
        np.testing.assert_allclose(b - np.asarray(a), g, rtol=1e-4, atol=1e-6)


@pytest.mark.backends
def test_gradients_under_mixed_float16_are_the_ones_the_step_applies():
    """A loss small enough that its gradients through float16 layers underflow unscaled:
    they are differentiated scaled, as the step's ``LossScaleOptimizer`` does, and equal
    what SGD applies (they were zero); the gradient w.r.t. a float16 output too."""
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        inputs = keras.Input((6,))
        hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
        out = keras.layers.Dense(3, activation="softmax", dtype="float32", name="out")(hidden)
        model = keras.Model(inputs, out)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    lr = 1e6
    model.compile(keras.optimizers.SGD(lr), "categorical_crossentropy", loss_weights=[1e-8])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 8)]
    grads = loss_gradients(
        model, x, y, variables=model.trainable_variables, layers=[model.get_layer("hidden")]
    )
    before = [np.asarray(v, dtype="float64") for v in model.trainable_variables]
    model.train_on_batch(x, y)
    for b, v, g in zip(before, model.trainable_variables, grads.weights, strict=True):
        applied = (b - np.asarray(v, dtype="float64")) / lr
        assert np.abs(g).sum() > 0, v.path
        np.testing.assert_allclose(g, applied, rtol=2e-3, atol=1e-12, err_msg=v.path)
    (d_hidden,) = grads.outputs
    assert d_hidden.dtype == np.float32 and np.abs(d_hidden).sum() > 0


@pytest.mark.backends
def test_train_mode_leaves_the_model_unchanged():
    keras.utils.set_random_seed(0)
    inp = keras.Input((F,))
    h = keras.layers.Dense(16, name="d")(inp)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Dropout(0.5, name="drop")(h)
    model = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid", name="p")(h))
    model.compile("adam", "binary_crossentropy")
    x = np.random.default_rng(0).normal(size=(32, F)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    state = [np.array(keras.ops.convert_to_numpy(v.value)) for v in model.variables]

    inference = intro.get_outputs(model, "drop", x)["drop"]
    train = intro.get_outputs(model, "drop", x, learning_phase=1)["drop"]
    grads = intro.get_gradients(model, ["bn", "drop"], x, y, mode="outputs", learning_phase=1)
    assert grads["drop"].shape == grads["bn"].shape == (32, 16)
    # dropout: about half the units are zeroed in train mode (BatchNorm outputs are not 0)
    assert (inference == 0).mean() < 0.05 and 0.3 < (train == 0).mean() < 0.7
    # dL/d(bn) is dL/d(drop) * mask / (1 - rate): zero exactly where the unit was dropped
    assert np.count_nonzero(grads["bn"]) < grads["bn"].size
    for v, before in zip(
        model.variables, state, strict=True
    ):  # BN statistics, seed states, weights
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(v.value), before)
    assert "call" not in vars(model.get_layer("bn"))  # the output hooks are removed


def test_layer_and_weight_selection():
    model = mlp()
    assert [x.name for x in intro.select_layers(model)] == ["hidden", "out"]
    assert [x.name for x in intro.select_layers(model, ["ou", 0, "hidden"])] == ["out", "hidden"]
    paths = [w.path for w in intro.select_weights(model, "hidden/kernel:0")]
    assert paths == [model.get_layer("hidden").kernel.path]
    assert list(intro.get_weights(model, "*", omit_names="bias")) == [
        model.get_layer("hidden").kernel.path,
        model.get_layer("out").kernel.path,
    ]
    with pytest.raises(ValueError, match="no layer named"):
        intro.select_layers(model, "lstm")
    with pytest.raises(ValueError, match="no weight"):
        intro.select_weights(model, "hidden/gamma")


def test_shared_layer_outputs_are_refused():
    shared = keras.layers.Dense(F, name="shared")
    inp = keras.Input((F,))
    model = keras.Model(inp, shared(shared(inp)))
    model.compile("sgd", "mse")
    x, _, _ = batch()
    with pytest.raises(ValueError, match="called 2 times"):
        layer_outputs(model, x, [shared])
    assert "call" not in vars(shared)


# -- over a dataset ---------------------------------------------------------------------------
N_BATCHES = 4


@pytest.fixture
def regression_dirs(tmp_path: Path):
    rng = np.random.default_rng(3)
    for name in ("train", "val"):
        x = rng.normal(size=(N_BATCHES * BS, F)).astype("float32")
        y = np.tanh(x[:, :U] * 2).astype("float32")
        numpy_data_to_numpy_sets(x, y, tmp_path / name, batch_size=BS, shuffle=False, verbose=0)
    return tmp_path


def _tg(root: Path, logdir: Path, model=None, **dg_kw) -> TrainGenerator:
    dgs = [
        DataGenerator(root / n, batch_size=BS, labels_path=root / n / "labels.h5", seed=0, **dg_kw)
        for n in ("train", "val")
    ]
    return TrainGenerator(
        model or mlp(lr=0.05),
        *dgs,
        epochs=1,
        logdir=logdir,
        iter_verbosity=0,
        plot_history_freq=None,
    )


def _batches(directory: Path):
    """(x, y) of batch__1..K.npy, in order."""
    import h5py

    with h5py.File(directory / "labels.h5") as f:
        return [
            (np.load(directory / f"batch__{k}.npy"), f[str(k)][()]) for k in range(1, N_BATCHES + 1)
        ]


@pytest.mark.backends
def test_gradient_norm_over_dataset_per_iteration(regression_dirs, tmp_path):
    tg = _tg(regression_dirs, tmp_path / "logs")
    tg.train()  # one epoch and a validation: the weights moved away from their init
    dg = tg.datagen
    dg.get(), dg.update_state()  # stand mid-epoch: batch 2 of 4 comes next
    position = dg.state_dict()

    res = intro.gradient_norm_over_dataset(tg, stat_fn=np.max)
    assert res.iters_processed == res.batches_processed == N_BATCHES
    assert res.norms.shape == (N_BATCHES, 4)  # bug 24: per-tensor norms, per iteration
    assert res.names == [w.path for w in tg.model.trainable_weights]
    for row, (x, y) in zip(res.norms, _batches(regression_dirs / "train"), strict=True):
        _, grads, _ = numpy_backprop(tg.model, x, y)
        np.testing.assert_allclose(row, [np.sqrt((g**2).sum()) for g in grads], **TOL)
    np.testing.assert_allclose(res.stat, res.norms.max(axis=1))
    assert dg.state_dict() == position  # the datagen is back where it was
    assert dg.get()[0][0, 0] == np.load(regression_dirs / "train" / "batch__2.npy")[0, 0]
    png = imread(res.savepath)
    assert res.savepath == tg.logdir / "figures" / "gradient_norms.png"
    assert png.shape[0] > 100 and png.std() > 0.01

    val = intro.gradient_norm_over_dataset(tg, val=True, n_iters=2, scope="global", plot=False)
    assert val.norms.shape == (2, 1) and val.names == ["global"] and val.savepath is None
    for row, (x, y) in zip(val.norms, _batches(regression_dirs / "val"), strict=False):  # n_iters=2
        _, grads, _ = numpy_backprop(tg.model, x, y)
        np.testing.assert_allclose(row[0], np.sqrt(sum((g**2).sum() for g in grads)), **TOL)
    position = dg.state_dict()
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match=f"n_iters must be an int >= 1, got {bad}"):
            intro.gradient_norm_over_dataset(tg, n_iters=bad, plot=False)
    assert dg.state_dict() == position


def test_gradient_sum_over_windows(tmp_path):
    """Timeseries windows: one iteration per window; sums are over all of them."""
    T, WIN = 6, 2
    rng = np.random.default_rng(4)
    for name in ("train", "val"):
        x = rng.normal(size=(N_BATCHES * BS, T, F // 2)).astype("float32")
        y = rng.normal(size=(N_BATCHES * BS, U)).astype("float32")
        numpy_data_to_numpy_sets(x, y, tmp_path / name, batch_size=BS, shuffle=False, verbose=0)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [  # a window (WIN, F/2) flattened is F features: same MLP
            keras.Input((WIN, F // 2)),
            keras.layers.Flatten(),
            keras.layers.Dense(
                H, activation="tanh", name="hidden", kernel_regularizer=keras.regularizers.L2(REG)
            ),
            keras.layers.Dense(U, name="out"),
        ]
    )
    model.compile("sgd", "mse")
    tg = _tg(
        tmp_path,
        tmp_path / "logs",
        model,
        preprocessor="timeseries",
        preprocessor_configs={"window_size": WIN},
    )

    res = intro.gradient_sum_over_dataset(tg, _id=["hidden", "out"])
    n_windows = T // WIN
    assert (res.batches_processed, res.iters_processed) == (N_BATCHES, N_BATCHES * n_windows)
    want = [0.0] * 4
    for x, y in _batches(tmp_path / "train"):
        for k in range(n_windows):
            _, grads, _ = numpy_backprop(model, x[:, k * WIN : (k + 1) * WIN], y)
            want = [a + g for a, g in zip(want, grads, strict=True)]
    assert list(res.sums) == [w.path for w in model.trainable_weights]
    for got, w in zip(res.sums.values(), want, strict=True):
        np.testing.assert_allclose(got, w, rtol=1e-4, atol=1e-5)
    assert res.savepath.exists() and imread(res.savepath).std() > 0.01


def test_peek_batch_does_not_move_the_datagen(regression_dirs, tmp_path):
    tg = _tg(regression_dirs, tmp_path / "logs")
    vdg = tg.val_datagen
    vdg.get(), vdg.update_state()
    position = vdg.state_dict()
    x, y, sw = intro.peek_batch(tg)
    first_x, first_y = _batches(regression_dirs / "val")[0]
    np.testing.assert_array_equal(x, first_x)
    np.testing.assert_array_equal(y, first_y)
    assert sw is None and vdg.state_dict() == position


def test_outputs_and_gradients_leave_stateful_rnn_states_alone():
    from deeptrain.backend.stateful import get_states, prepare_stateful_model

    keras.utils.set_random_seed(0)
    inp = keras.Input(batch_shape=(4, 5, 2))
    lstm = keras.layers.LSTM(3, stateful=True, name="lstm")
    model = keras.Model(inp, keras.layers.Dense(1, name="out")(lstm(inp)))
    model.compile("adam", "mse")
    prepare_stateful_model(model)
    x = np.random.default_rng(0).normal(size=(4, 5, 2)).astype("float32")
    model.predict_on_batch(x)  # carries a non-zero state
    before = get_states(model)
    assert np.abs(before["lstm"][0]).sum() > 0
    for learning_phase in (0, 1):
        intro.get_outputs(model, "lstm", x, learning_phase=learning_phase)
        intro.get_gradients(
            model, "out", x, np.zeros((4, 1), "float32"), learning_phase=learning_phase
        )
    for a, b in zip(before["lstm"], get_states(model)["lstm"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_gradient_wrt_a_softmax_output_is_the_crossentropy_derivative():
    """Keras' CE on probabilities normalises them first (p / sum p), so d CE / d p =
    (1 - y / p) / N. It computes CE from cached logits, which must not cut the output
    tensor out of the gradient (on TensorFlow it did: all zeros)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((F,)),
            keras.layers.Dense(3, name="logits"),
            keras.layers.Softmax(name="probs"),
        ]
    )
    model.compile("sgd", "categorical_crossentropy")
    x = np.random.default_rng(1).normal(size=(BS, F)).astype("float32")
    y = np.eye(3, dtype="float32")[np.arange(BS) % 3]
    p = intro.get_outputs(model, "probs", x)["probs"]
    grad = intro.get_gradients(model, "probs", x, y, mode="outputs")["probs"]
    np.testing.assert_allclose(grad, (1 - y / p) / BS, rtol=1e-3, atol=1e-6)


@pytest.mark.backends
def test_gradients_over_windows_carry_stateful_rnn_states(tmp_path):
    """A stateful LSTM fed windows: each window's gradient is taken from the states the
    previous window of its batch left (reset per batch with ``reset_statefuls``), as a train
    step sees them: Keras' SGD(1) step of ``train_on_batch`` from the same weights is the
    reference. The model's states are put back after the pass."""
    from deeptrain.backend.stateful import get_states, prepare_stateful_model, reset_states

    T, WIN, N = 6, 2, N_BATCHES
    rng = np.random.default_rng(5)
    for name in ("train", "val"):
        x = rng.normal(size=(N * BS, T, 2)).astype("float32")
        y = rng.normal(size=(N * BS, 1)).astype("float32")
        numpy_data_to_numpy_sets(x, y, tmp_path / name, batch_size=BS, shuffle=False, verbose=0)

    def lstm():
        keras.utils.set_random_seed(0)
        inp = keras.Input(batch_shape=(BS, WIN, 2))
        out = keras.layers.Dense(1)(keras.layers.LSTM(3, stateful=True, name="lstm")(inp))
        model = keras.Model(inp, out)
        model.compile(keras.optimizers.SGD(1.0), "mse")
        return model

    model = lstm()
    dgs = [
        DataGenerator(
            tmp_path / n,
            batch_size=BS,
            labels_path=tmp_path / n / "labels.h5",
            preprocessor="timeseries",
            preprocessor_configs={"window_size": WIN},
        )
        for n in ("train", "val")
    ]
    tg = TrainGenerator(
        model, *dgs, epochs=1, reset_statefuls=True, iter_verbosity=0, logs_dir=None
    )
    model.predict_on_batch(np.ones((BS, WIN, 2), "float32"))  # a state to put back
    before = get_states(model)
    got = intro.gradient_norm_over_dataset(tg, scope="global", plot=False).norms.ravel()
    for a, b in zip(before["lstm"], get_states(model)["lstm"], strict=True):
        np.testing.assert_array_equal(a, b)

    ref, want = lstm(), []
    prepare_stateful_model(ref)  # (as TrainGenerator prepares its model: states carried)
    # (trainable weights only: on JAX the states are among get_weights(), and set_weights
    # would put them back to zero between windows)
    trainable = ref.trainable_weights
    weights = [np.array(keras.ops.convert_to_numpy(v)) for v in trainable]
    for x, y in _batches(tmp_path / "train"):
        reset_states(ref)
        for k in range(T // WIN):
            for v, w in zip(trainable, weights, strict=True):
                v.assign(w)
            ref.train_on_batch(x[:, k * WIN : (k + 1) * WIN], y)  # SGD(1): the step is -grad
            now = [keras.ops.convert_to_numpy(v) for v in trainable]
            step = [a - b for a, b in zip(weights, now, strict=True)]
            want.append(np.sqrt(sum(float((s.astype(np.float64) ** 2).sum()) for s in step)))
    np.testing.assert_allclose(got, want, rtol=2e-4)


def test_weights_of_the_same_path_in_two_sub_models_are_all_kept():
    """Two sub-models with a layer of the same name give their weights the same path: every
    weight and gradient is kept (``path#1``), and the global norm counts them all."""

    def sub(name):
        i = keras.Input((4,))
        return keras.Model(i, keras.layers.Dense(4, name="d")(i), name=name)

    keras.utils.set_random_seed(0)
    xi = keras.Input((4,))
    enc1, enc2 = sub("enc1"), sub("enc2")
    model = keras.Model(xi, enc2(enc1(xi)))
    model.compile("sgd", "mse")
    x, y = np.ones((8, 4), "float32"), np.zeros((8, 4), "float32")
    assert len(intro.get_weights(model)) == 4
    inner = [enc1.get_layer("d"), enc2.get_layer("d")]  # layers of one name: both kept
    assert list(intro.get_outputs(model, inner, x)) == ["d", "d#1"]
    assert list(intro.get_gradients(model, inner, x, y, mode="outputs")) == ["d", "d#1"]
    grads = intro.get_gradients(model, "*", x, y)
    assert list(grads) == ["d/kernel", "d/bias", "d/kernel#1", "d/bias#1"]
    want = loss_gradients(model, x, y, variables=model.trainable_weights).weights
    total = np.sqrt(sum(float((g**2).sum()) for g in want))
    assert intro.compute_gradient_norm(model, x, y, scope="global") == pytest.approx(total)


def test_health_checks_find_nan_in_weights_training_does_not_learn():
    """NaN in a BatchNorm moving variance or an Inf in a frozen kernel (every output NaN):
    reported; dead and large weights are still judged among the trainable ones."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((F,))
    frozen = keras.layers.Dense(4, name="frozen")
    frozen.trainable = False
    out = keras.layers.Dense(1, name="out")(keras.layers.BatchNormalization(name="bn")(frozen(inp)))
    model = keras.Model(inp, out)
    model.compile("sgd", "mse")
    bn = model.get_layer("bn")
    bn.moving_variance.assign(np.full(4, np.nan, "float32"))
    kernel = frozen.kernel.numpy() if hasattr(frozen.kernel, "numpy") else None
    frozen.kernel.assign(
        np.where(np.arange(kernel.size).reshape(kernel.shape) == 0, np.inf, kernel)
    )
    found = intro.print_nan_weights(model)
    assert found == {"bn/moving_variance": (4, 0), "frozen/kernel": (0, 1)}
    assert set(intro._all_weights(model)) == {"bn/gamma", "bn/beta", "out/kernel", "out/bias"}


def dropout_mlp() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((F,)),
            keras.layers.Dense(16),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(1),
        ]
    )
    model.compile("sgd", "mse")
    return model


def assert_next_draw_alike(model: keras.Model, x: np.ndarray, introspect) -> None:
    """The Dropout mask training draws next is the same with ``introspect()`` run first."""
    seeds = [keras.ops.convert_to_numpy(v) for v in model.non_trainable_variables]

    def next_draw(run: bool) -> np.ndarray:
        keras.utils.set_random_seed(1)  # (and Dropout's seed state back: the same start)
        for v, value in zip(model.non_trainable_variables, seeds, strict=True):
            v.assign(value)
        if run:
            introspect()
        return keras.ops.convert_to_numpy(model(x, training=True))

    np.testing.assert_array_equal(next_draw(True), next_draw(False))


@pytest.mark.backends
def test_train_mode_introspection_leaves_dropout_draws_alone():
    """Gradients in train mode (Dropout active) do not move the random streams training
    draws from next: on torch, unseeded Dropout draws from torch's global generator."""
    model = dropout_mlp()
    x, y = np.ones((BS, F), "float32"), np.zeros((BS, 1), "float32")
    assert_next_draw_alike(
        model, x, lambda: intro.get_gradients(model, "*", x, y, learning_phase=1)
    )


@pytest.mark.backends
def test_train_mode_pass_draws_a_new_dropout_mask_per_iteration(tmp_path):
    """Over a dataset in train mode each iteration draws its own Dropout mask, as training
    does (identical batches give different gradients), and the pass leaves the streams
    training draws from next as they were."""
    x = np.tile(np.random.default_rng(5).normal(size=(BS, F)).astype("float32"), (N_BATCHES, 1))
    y = np.zeros((N_BATCHES * BS, 1), "float32")
    for name in ("train", "val"):  # every batch the same
        numpy_data_to_numpy_sets(x, y, tmp_path / name, batch_size=BS, shuffle=False, verbose=0)
    model = dropout_mlp()
    tg = _tg(tmp_path, tmp_path / "logs", model)

    def introspect() -> None:
        res = intro.gradient_norm_over_dataset(tg, learning_phase=1, plot=False)
        assert res.iters_processed == N_BATCHES
        assert len({tuple(row) for row in res.norms}) == N_BATCHES  # four masks
        same = intro.gradient_norm_over_dataset(tg, learning_phase=0, plot=False)
        assert len({tuple(row) for row in same.norms}) == 1  # inference: one answer

    assert_next_draw_alike(model, x[:BS], introspect)
