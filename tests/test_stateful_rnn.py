"""Stateful RNNs on whichever backend KERAS_BACKEND selects (tensorflow, torch, jax).

Real Keras models, no mocks: each test proves the RNN state is (or is not) carried
by looking at model outputs and state values.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from deeptrain.backend import stateful as st  # noqa: E402
from deeptrain.backend.stateful import (  # noqa: E402
    UnsupportedStatefulBackend,
    get_states,
    prepare_stateful_model,
    reset_states,
    set_states,
    stateful_layers,
)

B, T, F, U = 4, 12, 3, 5
BACKEND = keras.backend.backend()
pytestmark = pytest.mark.backends

KINDS = pytest.mark.parametrize("kind", ["LSTM", "GRU", "SimpleRNN"])


def _x(seed: int = 0, timesteps: int = T) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(B, timesteps, F)).astype("float32")


def _model(kind, *, stateful=True, timesteps=T, prepare=True):
    """Input(batch B) -> RNN 'rnn' -> Dense 'head'; compiled, optionally prepared."""
    x = keras.Input(batch_shape=(B, timesteps, F))
    rnn = getattr(keras.layers, kind)(U, stateful=stateful, name="rnn")
    model = keras.Model(x, keras.layers.Dense(2, name="head")(rnn(x)))
    model.compile(optimizer="sgd", loss="mse")
    if prepare:
        prepare_stateful_model(model)
    return model


def _nested_model():
    inner_in = keras.Input(batch_shape=(B, T, F))
    lstm = keras.layers.LSTM(U, stateful=True, return_sequences=True, name="inner_lstm")
    inner = keras.Model(inner_in, lstm(inner_in), name="encoder")
    x = keras.Input(batch_shape=(B, T, F))
    bi = keras.layers.Bidirectional(
        keras.layers.GRU(U, stateful=True, return_sequences=True), name="bi"
    )
    h = keras.layers.LSTM(U, name="plain")(bi(inner(x)))  # not stateful
    return keras.Model(x, keras.layers.Dense(1)(h)), lstm, bi


def _n_state_vars(model) -> int:
    return sum(len(v) for v in get_states(model).values())


def test_stateful_layers_nested_and_bidirectional():
    model, lstm, bi = _nested_model()
    found = stateful_layers(model)
    assert found == [lstm, bi.forward_layer, bi.backward_layer]
    assert list(get_states(model)) == ["encoder/inner_lstm", "bi/forward_gru", "bi/backward_gru"]
    prepare_stateful_model(model)
    x = _x()
    first = model.predict_on_batch(x)
    assert not np.allclose(first, model.predict_on_batch(x))  # state carried
    assert all(np.abs(s).max() > 0 for v in get_states(model).values() for s in v)
    assert reset_states(model) == 3
    np.testing.assert_array_equal(model.predict_on_batch(x), first)


@KINDS
def test_predict_carries_state_and_reset_restores(kind):
    model, x = _model(kind), _x()
    first = model.predict_on_batch(x)
    second = model.predict_on_batch(x)
    assert not np.allclose(first, second), "state was not carried between calls"
    assert reset_states(model) == 1
    np.testing.assert_array_equal(model.predict_on_batch(x), first)


@KINDS
def test_train_on_batch_updates_states(kind):
    model, x, y = _model(kind), _x(), np.ones((B, 2), "float32")
    assert all(not s.any() for s in get_states(model)["rnn"])
    model.train_on_batch(x, y)
    after1 = get_states(model)["rnn"]
    model.train_on_batch(x, y)
    after2 = get_states(model)["rnn"]
    assert all(np.abs(s).max() > 0 for s in after1 + after2)
    assert not all(np.allclose(a, b) for a, b in zip(after1, after2, strict=True))
    reset_states(model)
    assert all(not s.any() for s in get_states(model)["rnn"])


@KINDS
def test_windowed_stateful_equals_whole_sequence(kind):
    """Window-by-window with carried state == whole sequence without state."""
    window = 4
    model = _model(kind, timesteps=window)
    full = _model(kind, stateful=False)
    full.get_layer("rnn").cell.set_weights(model.get_layer("rnn").cell.get_weights())
    full.get_layer("head").set_weights(model.get_layer("head").get_weights())
    x = _x(1)
    for start in range(0, T, window):
        out = model.predict_on_batch(x[:, start : start + window])
    expected = full.predict_on_batch(x)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)
    # a single window from zero state does not match: the equality is real
    reset_states(model)
    assert not np.allclose(model.predict_on_batch(x[:, -window:]), expected, atol=1e-3)


@KINDS
def test_get_set_states_round_trip_and_errors(kind):
    model, x = _model(kind), _x()
    model.predict_on_batch(x)
    saved = get_states(model)
    expected = model.predict_on_batch(x)
    model.predict_on_batch(x)  # move the state on
    set_states(model, saved)
    np.testing.assert_array_equal(model.predict_on_batch(x), expected)

    bad = {"rnn": [np.zeros((B + 1, U), "float32") for _ in saved["rnn"]]}
    with pytest.raises(ValueError, match=r"'rnn'.*\(4, 5\).*\(5, 5\)"):
        set_states(model, bad)
    with pytest.raises(ValueError, match="missing state.*'rnn'"):
        set_states(model, {})
    with pytest.raises(ValueError, match="other"):
        set_states(model, {**saved, "other": []})


@KINDS
def test_prepare_is_idempotent_and_version_guarded(kind, monkeypatch):
    model = _model(kind, prepare=False)
    n_weights = len(model.weights)
    applied = prepare_stateful_model(model)
    weights_after = len(model.weights)
    assert prepare_stateful_model(model) == []  # second call does nothing more
    assert len(model.weights) == weights_after
    layer = model.get_layer("rnn")
    if BACKEND == "torch" and kind in ("LSTM", "GRU"):
        assert len(applied) == 1 and layer.use_cudnn == "auto"  # the fused step is kept
    elif BACKEND == "jax":
        assert len(applied) == 1
        # side effect of the JAX workaround: the state variables join model.weights
        assert weights_after == n_weights + _n_state_vars(model)
    else:
        assert applied == []
        assert weights_after == n_weights

    monkeypatch.setitem(st.VERIFIED_KERAS, BACKEND, ("0.0.1", "0.0.2"))
    fresh = _model(kind, prepare=False)
    if BACKEND in ("torch", "jax"):
        why = rf"(?s){BACKEND}.*keras {keras.version()}.*TensorFlow"
        with pytest.raises(UnsupportedStatefulBackend, match=why):
            prepare_stateful_model(fresh)
    else:
        assert prepare_stateful_model(fresh) == []


@pytest.mark.skipif(BACKEND != "torch", reason="the torch workaround")
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_torch_fused_step_trains_with_carried_state_like_the_per_step_loop(kind, go_backwards):
    """The fused step (kept by copying the state first, and run by torch's own LSTM/GRU
    kernel on CPU too) trains, carries the state, and agrees with Keras' per-step loop
    (``use_cudnn=False``) to float32 rounding: the kernel adds the bias to the input
    projection before the recurrent one, the loop after, so the last bits may differ
    (measured: at most 3e-8 on weights, states and outputs)."""
    x = np.random.default_rng(2).normal(size=(3, B, T, F)).astype("float32")
    y = np.ones((B, T, 2), "float32")
    runs = {}
    for use_cudnn in ("auto", False):
        keras.utils.set_random_seed(0)
        ipt = keras.Input(batch_shape=(B, T, F))
        rnn = getattr(keras.layers, kind)(
            U,
            stateful=True,
            return_sequences=True,
            go_backwards=go_backwards,
            use_cudnn=use_cudnn,
            name="rnn",
        )
        model = keras.Model(ipt, keras.layers.Dense(2, name="head")(rnn(ipt)))
        model.compile(optimizer="sgd", loss="mse")
        prepare_stateful_model(model)
        assert rnn.use_cudnn == use_cudnn  # "auto": the fused step
        assert (st._native_step(rnn) is not None) == (use_cudnn == "auto")
        losses = [float(model.train_on_batch(xi, y)) for xi in x]  # state carried
        outputs = keras.ops.convert_to_numpy(model(x[0]))
        runs[use_cudnn] = (losses, model.get_weights(), get_states(model)["rnn"], outputs)
    (fused_loss, *fused), (loop_loss, *loop) = runs["auto"], runs[False]
    assert all(np.abs(s).max() > 0 for s in fused[1])
    np.testing.assert_allclose(fused_loss, loop_loss, rtol=1e-6)
    fused_arrays, loop_arrays = fused[0] + fused[1] + [fused[2]], loop[0] + loop[1] + [loop[2]]
    for a, b in zip(fused_arrays, loop_arrays, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


@pytest.mark.skipif(BACKEND != "torch", reason="the torch workaround")
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_torch_compiled_train_function_carries_the_state_like_the_eager_one(kind):
    """``compile(jit_compile=True)`` (Keras' train function through ``torch.compile``):
    while compiling, the layer takes Keras' own fused step (torch.compile cannot lower
    torch's LSTM kernel on CPU: "expected Tensor() for op mkldnn_rnn_layer"), which trains
    and carries the state as the eager run does, to float32 rounding (the compiled
    kernels sum in another order: up to 2e-5 here; runs that lose the state between
    batches differ by 6e-4 and more)."""
    x = np.random.default_rng(3).normal(size=(3, B, T, F)).astype("float32")
    y = np.ones((B, 2), "float32")
    runs = {}
    for jit_compile, carried in ((False, True), (True, True), (False, False)):
        keras.utils.set_random_seed(0)
        ipt = keras.Input(batch_shape=(B, T, F))
        rnn = getattr(keras.layers, kind)(U, stateful=True, name="rnn")
        model = keras.Model(ipt, keras.layers.Dense(2, name="head")(rnn(ipt)))
        model.compile(optimizer="sgd", loss="mse", jit_compile=jit_compile)
        prepare_stateful_model(model)
        losses = []
        for xi in x:
            if not carried:
                reset_states(model)
            losses.append(float(model.train_on_batch(xi, y)))
        runs[jit_compile, carried] = [losses, *model.get_weights(), *get_states(model)["rnn"]]
    eager, compiled, lost = runs[False, True], runs[True, True], runs[False, False]
    assert all(np.abs(s).max() > 0 for s in compiled[-len(get_states(model)["rnn"]) :])

    def gap(a: list, b: list) -> float:
        return max(float(np.abs(np.subtract(u, v)).max()) for u, v in zip(a, b, strict=True))

    gaps = gap(compiled, eager), gap(lost, eager)
    assert gaps[0] < 5e-5 < 2e-4 < gaps[1], gaps


@pytest.mark.skipif(BACKEND != "torch", reason="the torch workaround")
@pytest.mark.parametrize(
    "kw",
    [{"activation": "relu"}, {"use_bias": False}, {"recurrent_dropout": 0.1}, {"unroll": True}],
)
def test_torch_configurations_torch_kernel_cannot_compute_keep_keras_step(kw):
    """Activations, biases and options outside torch's LSTM kernel keep Keras' own step
    (state copied first all the same): it trains and carries the state."""
    ipt = keras.Input(batch_shape=(B, T, F))
    rnn = keras.layers.LSTM(U, stateful=True, name="rnn", **kw)
    model = keras.Model(ipt, keras.layers.Dense(2)(rnn(ipt)))
    model.compile(optimizer="sgd", loss="mse")
    prepare_stateful_model(model)
    assert st._native_step(rnn) is None
    model.train_on_batch(_x(0), np.ones((B, 2), "float32"))
    first = [s.copy() for s in get_states(model)["rnn"]]
    model.train_on_batch(_x(1), np.ones((B, 2), "float32"))
    assert all(np.abs(s).max() > 0 for s in first)
    second = get_states(model)["rnn"]
    assert any(not np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_model_without_stateful_layers_is_untouched(monkeypatch):
    model = _model("LSTM", stateful=False, prepare=False)
    before = (len(model.weights), model.get_layer("rnn").use_cudnn)
    monkeypatch.setitem(st.VERIFIED_KERAS, BACKEND, ("0.0.1", "0.0.2"))  # no raise either
    assert prepare_stateful_model(model) == []
    assert (len(model.weights), model.get_layer("rnn").use_cudnn) == before
    assert stateful_layers(model) == [] and get_states(model) == {}
    assert reset_states(model) == 0


def _windowed_traingen(**kw):
    from deeptrain import DataGenerator, TrainGenerator

    x = np.random.default_rng(0).normal(size=(2 * B, T, F)).astype("float32")
    y = np.zeros((2 * B, 2), "float32")

    def windows():
        return DataGenerator(
            x, batch_size=B, labels_path=y, preprocessor="timeseries",
            preprocessor_configs=dict(window_size=4),
        )  # fmt: skip

    return TrainGenerator(_model("LSTM", timesteps=4), windows(), windows(), **kw)


@pytest.mark.parametrize(
    "kw, warns",
    [({}, True), ({"reset_statefuls": True}, False), ({"reset_statefuls": False}, False)],
)
def test_windows_without_resets_are_flagged_at_construction(caplog, kw, warns):
    with caplog.at_level("WARNING", logger="deeptrain"):
        _windowed_traingen(iter_verbosity=0, **kw)
    flagged = [r for r in caplog.records if "carries into the next batch" in r.getMessage()]
    assert bool(flagged) == warns, caplog.text
    if warns:
        assert "rnn" in flagged[0].getMessage() and "TimeseriesPreprocessor" in caplog.text
