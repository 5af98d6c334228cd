"""Predict-mode validation metrics on cached batches (what TrainGenerator's validation
computes once a validation's predictions are in): real compiled Keras models' losses,
the best-subset search and the threshold search."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest

from deeptrain import metrics as M
from deeptrain.training.validation import MetricResolver, PredictCache, predict_mode_summary


def compiled(loss, inputs=(8,), units=2, activation="softmax"):
    model = keras.Sequential(
        [keras.Input(inputs), keras.layers.Dense(units, activation=activation)]
    )
    model.compile("sgd", loss)
    return model


def summary(cache, model, key, names, **kw):
    kw = {"threshold": 0.5, "search_range": None, "max_is_best": True, **kw}
    resolver = MetricResolver(model, None, key, None)
    return predict_mode_summary(
        cache, resolver, names, weighted_slices=None, best_subset_size=kw.pop("k", None), **kw
    )


@pytest.mark.parametrize("loss", ["mse", keras.losses.MeanSquaredError()], ids=["name", "object"])
@pytest.mark.parametrize("n", [6, 32])  # 6: the values' last axis; was weighed by column
def test_a_loss_object_on_outputs_of_rank_3_weighs_samples(loss, n):
    rng = np.random.default_rng(0)
    model = compiled(loss, inputs=(6, 3), units=3, activation=None)
    y, p = rng.random((n, 6, 3)), rng.random((n, 6, 3))
    resolver = MetricResolver(model, None, "loss", None)
    ones, weights = np.ones(n), np.where(np.arange(n) == 0, 0.0, 1.0)
    assert resolver.compute(["loss"], y, p, ones, 0.5)["loss"] == pytest.approx(
        np.mean((y - p) ** 2), rel=1e-6
    )
    assert resolver.compute(["loss"], y, p, weights, 0.5)["loss"] == pytest.approx(
        np.sum(((y - p) ** 2).mean(-1) * weights[:, None]) / (n * 6), rel=1e-6
    )


def test_the_best_subset_is_ranked_by_the_weighted_metric():
    """Batch 0's bad predictions weigh 0 (class weights): weighted, it is the best batch."""
    cache = PredictCache()
    cache.add([[1], [1], [0], [0]], [[0.99], [0.99], [0.95], [0.95]], [1, 1, 0, 0.0], True, "a")
    cache.add([[1], [1], [1], [1]], [[0.6]] * 4, [1.0] * 4, True, "b")
    model = compiled("binary_crossentropy", units=1, activation="sigmoid")
    out, _, subset = summary(cache, model, "loss", ["loss"], max_is_best=False, k=1)
    assert subset == ["a"]
    assert out["loss"] == pytest.approx(
        M.binary_crossentropy([[1], [1], [0], [0]], [[0.99], [0.99], [0.95], [0.95]], [1, 1, 0, 0])
    )


def test_accuracy_by_shapes_ranks_the_subset_and_skips_the_threshold_search():
    """Loss 'mse' on a softmax classifier: 'accuracy' is categorical (Keras' choice by
    shapes) for the subset search too, which takes no threshold."""
    onehot = np.eye(2)[[0, 1, 0, 1]]
    cache = PredictCache()
    cache.add(onehot, np.eye(2)[[0, 1, 0, 1]] * 0.5 + 0.25, np.ones(4), True, "right")
    cache.add(onehot, np.eye(2)[[0, 1, 1, 1]] * 0.2 + 0.4, np.ones(4), True, "half")
    model = compiled("mse")
    out, threshold, subset = summary(
        cache, model, "accuracy", ["accuracy"], k=1, search_range=(0.1, 0.9)
    )
    assert subset == ["right"] and out["accuracy"] == 1.0 and threshold == 0.5


def test_a_best_subset_size_over_the_batch_count_uses_them_all(caplog):
    cache = PredictCache()
    for name, pred in (("a", 0.9), ("b", 0.4)):
        cache.add([[1], [0]], [[pred], [1 - pred]], [1.0, 1.0], True, name)
    model = compiled("binary_crossentropy", units=1, activation="sigmoid")
    with caplog.at_level(logging.WARNING, logger="deeptrain"):
        out, _, subset = summary(cache, model, "loss", ["loss"], max_is_best=False, k=5)
    assert subset == ["a", "b"]
    assert "best_subset_size=5 is more than the 2 validation batches" in caplog.text
