"""Model health: dead, NaN/Inf and large weights planted in real Keras models are found,
reported through logging, and returned."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest

from deeptrain import DataGenerator, TrainGenerator
from deeptrain.introspection import (
    check_health,
    print_dead_weights,
    print_large_weights,
    print_nan_weights,
)
from deeptrain.preprocessing import numpy_data_to_numpy_sets


def model_with(kernel: np.ndarray, bias: np.ndarray | None = None) -> keras.Model:
    """Dense(10) on 20 inputs, then BatchNormalization, with the given dense weights."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((20,)),
            keras.layers.Dense(10, name="dense"),
            keras.layers.BatchNormalization(name="bn"),
        ]
    )
    model.compile("sgd", "mse")
    dense = model.get_layer("dense")
    dense.kernel.assign(kernel)
    dense.bias.assign(np.full(10, 0.5, "float32") if bias is None else bias)
    return model


def healthy_kernel(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.1, 1, size=(20, 10)) * rng.choice([-1, 1], size=(20, 10))).astype(
        "float32"
    )


def test_dead_weights_planted(caplog):
    kernel = healthy_kernel()
    kernel.flat[:50] = 0  # 25% of 200
    kernel.flat[50:52] = 1e-9  # below the default threshold too
    model = model_with(kernel)
    dense = model.get_layer("dense")
    with caplog.at_level(logging.INFO, logger="deeptrain"):
        found = print_dead_weights(model)
    assert found[dense.kernel.path] == pytest.approx(52 / 200)
    assert dense.bias.path not in found
    bn = model.get_layer("bn")  # initial BN: moving mean and beta are all zeros
    assert found[bn.beta.path] == 1.0
    assert bn.moving_mean.path not in found  # state, not a weight: never judged
    assert bn.gamma.path not in found and bn.moving_variance.path not in found
    assert f"26.0% dead -- '{dense.kernel.path}'" in caplog.text
    # a higher notify fraction hides the kernel (26% < 30%), not the all-zero BN weights
    higher = print_dead_weights(model, notify_above_frac=0.3)
    assert dense.kernel.path not in higher and higher[bn.beta.path] == 1.0


def test_dead_threshold_counts_small_values():
    kernel = healthy_kernel()
    kernel.flat[:40] = 0.01  # "dead" only for a threshold above 0.01
    model = model_with(kernel)
    path = model.get_layer("dense").kernel.path
    assert path not in print_dead_weights(model)
    assert print_dead_weights(model, dead_threshold=0.05)[path] == pytest.approx(0.2)


@pytest.mark.backends
def test_nan_and_inf_weights_planted(caplog):
    kernel = healthy_kernel()
    kernel[0, 0], kernel[3, 4], kernel[5, 5] = np.nan, np.inf, -np.inf
    bias = np.full(10, 0.5, "float32")
    bias[2] = np.nan
    model = model_with(kernel, bias)
    dense = model.get_layer("dense")
    with caplog.at_level(logging.WARNING, logger="deeptrain"):
        found = print_nan_weights(model)
    assert found == {dense.kernel.path: (1, 2), dense.bias.path: (1, 0)}
    assert "1 NaN, 2 Inf" in caplog.text and dense.kernel.path in caplog.text


def test_large_weights_planted_ignore_inf():
    kernel = healthy_kernel()
    kernel.flat[:30] = 5.0  # 15% large
    kernel.flat[30:33] = -4.0  # large too: absolute value
    kernel.flat[33] = np.inf  # not counted as large
    kernel.flat[34] = np.nan
    model = model_with(kernel)
    path = model.get_layer("dense").kernel.path
    assert print_large_weights(model) == {path: pytest.approx(33 / 200)}
    assert print_large_weights(model, large_threshold=4.5) == {path: pytest.approx(30 / 200)}
    assert print_large_weights(model, notify_above_frac=0.2) == {}


def test_nothing_found_is_reported_when_asked(caplog):
    model = model_with(healthy_kernel())
    model.get_layer("bn").moving_mean.assign(np.full(10, 0.2, "float32"))
    model.get_layer("bn").beta.assign(np.full(10, 0.1, "float32"))
    with caplog.at_level(logging.INFO, logger="deeptrain"):
        assert print_dead_weights(model) == {}
        assert print_nan_weights(model) == {}
        assert print_large_weights(model) == {}
    assert "No dead weights detected" in caplog.text
    assert "No NaN or Inf weights detected" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="deeptrain"):
        assert check_health(model).ok
    assert caplog.text == ""  # notify_detected_only=True by default: silent when healthy


@pytest.mark.backends
def test_state_that_is_not_a_weight_is_never_judged(caplog):
    """All-zero RNN states (JAX tracks them among the weights), BatchNorm statistics far
    out of range, frozen layers: none is reported; the trainable weights still are."""
    from deeptrain.backend.stateful import prepare_stateful_model

    keras.utils.set_random_seed(0)
    inp = keras.Input(batch_shape=(4, 3, 2))
    h = keras.layers.LSTM(4, stateful=True, name="lstm")(inp)
    h = keras.layers.BatchNormalization(name="bn")(h)
    frozen = keras.layers.Dense(4, name="frozen")
    model = keras.Model(inp, keras.layers.Dense(1, name="out")(frozen(h)))
    model.compile("sgd", "mse")
    prepare_stateful_model(model)
    frozen.trainable = False
    frozen.kernel.assign(np.zeros((4, 4), "float32"))
    bn = model.get_layer("bn")
    bn.moving_mean.assign(np.full(4, 100.0, "float32"))
    bn.moving_variance.assign(np.zeros(4, "float32"))
    model.get_layer("out").bias.assign(np.array([np.nan], "float32"))
    with caplog.at_level(logging.WARNING, logger="deeptrain"):
        report = check_health(model)
    assert report.large == {} and report.nan == {model.get_layer("out").bias.path: (1, 0)}
    lstm_bias = model.get_layer("lstm").cell.bias.path  # 3 of 4 gates start at zero
    assert report.dead == {bn.beta.path: 1.0, lstm_bias: 0.75}  # trainable, zero-initialised
    not_judged = {w.path for w in model.non_trainable_weights}  # frozen, BN stats, JAX states
    assert len(not_judged) >= 4
    if keras.backend.backend() == "jax":
        assert any(path.startswith("lstm/") for path in not_judged)  # the tracked states
    assert not any(path in caplog.text for path in not_judged), caplog.text


@pytest.mark.backends
def test_check_health_of_a_trained_traingen(tmp_path, caplog):
    rng = np.random.default_rng(0)
    for name, n in (("train", 32), ("val", 16)):
        x = rng.normal(size=(n, 20)).astype("float32")
        numpy_data_to_numpy_sets(
            x, x[:, :10] * 2, tmp_path / name, batch_size=8, shuffle=False, verbose=0
        )
    model = model_with(healthy_kernel())
    dgs = [
        DataGenerator(tmp_path / n, batch_size=8, labels_path=tmp_path / n / "labels.h5")
        for n in ("train", "val")
    ]
    tg = TrainGenerator(model, *dgs, epochs=1, iter_verbosity=0, plot_history_freq=None)
    tg.train()
    report = check_health(tg)
    assert report.ok, report  # training moved BN's zero-initialised weights

    dense = model.get_layer("dense")
    kernel = np.array(dense.kernel.numpy())
    kernel[:10] = 0  # half the kernel dead
    kernel[10, :3] = np.nan
    kernel[11, :] = 50.0  # 5% large
    dense.kernel.assign(kernel)
    with caplog.at_level(logging.WARNING, logger="deeptrain"):
        report = check_health(tg, large_notify_above_frac=0.01)
    assert not report.ok
    assert report.dead == {dense.kernel.path: pytest.approx(0.5)}
    assert report.nan == {dense.kernel.path: (3, 0)}
    assert report.large == {dense.kernel.path: pytest.approx(0.05)}
    assert caplog.text.count(dense.kernel.path) == 3
