"""Validation metrics as Keras computes them over the whole set: compiled metric objects'
settings, which metrics sample weights weigh, evaluate mode's means of weighted metrics,
and per-batch display of metrics undefined on one batch."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest

from deeptrain import DataGenerator, TrainGenerator
from deeptrain.training.state import TrainState
from deeptrain.training.validation import add_window_weight, end_batch, evaluate_mode_summary
from test_train_generator import quiet

pytestmark = pytest.mark.slow

CLASS_WEIGHTS = {0: 1.0, 1: 5.0}


def binary_data(n_val=48, sort_val=False, seed=0):
    """16 train samples and ``n_val`` val samples of 4 features; ``sort_val``: val sorted by
    label (batches of different class balance, the first of one class)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 16 + n_val)
    x = (rng.normal(size=(16 + n_val, 4)) + labels[:, None]).astype("float32")
    y = labels[:, None].astype("float32")
    xv, yv = x[16:], y[16:]
    if sort_val:
        order = np.argsort(yv[:, 0], kind="stable")
        xv, yv = xv[order], yv[order]
    return x[:16], y[:16], xv, yv


def binary_model(**compile_kw):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.SGD(0.0), "binary_crossentropy", **compile_kw)
    return model


def validate(model, data, mode, val_batch_size=16, record=False, clear_cache=True, **kw):
    """One validation (nothing trained; ``record``: the run's, else one of its own) and the
    TrainGenerator."""
    xt, yt, xv, yv = data
    dg = DataGenerator(xt, batch_size=16, labels_path=yt)
    vdg = DataGenerator(xv, batch_size=val_batch_size, labels_path=yv)
    kw = {**quiet(check_model_health=False), "epochs": 1, "eval_fn": mode, **kw}
    tg = TrainGenerator(model, dg, vdg, **kw)
    return tg.validate(record_progress=record, clear_cache=clear_cache), tg


def class_sample_weights(y):
    return np.array([CLASS_WEIGHTS[int(c)] for c in y[:, 0]], dtype="float32")


def test_compiled_metric_objects_keep_their_settings():
    """AUC(curve='PR') is PR AUC and BinaryAccuracy(threshold=0.7) thresholds at 0.7: as a
    fresh Keras metric over the whole set computes them."""
    data = binary_data(n_val=64)
    metrics = [keras.metrics.AUC(curve="PR"), keras.metrics.BinaryAccuracy(threshold=0.7)]
    model = binary_model(metrics=metrics)
    result, _ = validate(model, data, "predict", key_metric="auc")
    preds = model.predict(data[2], verbose=0)
    for metric in metrics:
        reference = type(metric).from_config(metric.get_config())
        reference.update_state(data[3], preds)
        assert result[metric.name] == pytest.approx(float(reference.result()), rel=1e-5)


def test_compiled_metrics_resolve_by_the_names_keras_gives_them():
    """'weighted_accuracy' (accuracy repeated as weighted) is the weighted accuracy; a
    default AUC named 'roc' (no DeepTrain function of that name) is Keras' own; the default
    'auc' keeps DeepTrain's exact ROC AUC."""
    from sklearn.metrics import roc_auc_score

    data = binary_data(sort_val=True)
    model = binary_model(
        metrics=["accuracy", keras.metrics.AUC(name="auc"), keras.metrics.AUC(name="roc")],
        weighted_metrics=["accuracy"],
    )
    result, _ = validate(model, data, "predict", val_class_weights=CLASS_WEIGHTS)
    xv, yv = data[2:]
    sw = class_sample_weights(yv)
    expected = model.evaluate(xv, yv, sample_weight=sw, batch_size=48, verbose=0, return_dict=True)
    assert set(result) == set(expected)
    for name in ("loss", "accuracy", "weighted_accuracy", "roc"):
        assert result[name] == pytest.approx(expected[name], rel=1e-5), name
    assert result["auc"] == pytest.approx(roc_auc_score(yv, model.predict(xv, verbose=0)))


def test_predict_mode_weighs_only_the_loss_and_weighted_metrics():
    """With val_class_weights: the loss and weighted_metrics weighted, compiled metrics not
    (Keras' evaluate); the threshold search tunes the unweighted key metric."""
    data = binary_data(sort_val=True)
    model = binary_model(metrics=["accuracy"], weighted_metrics=["binary_accuracy"])
    kw = dict(key_metric="accuracy", val_class_weights=CLASS_WEIGHTS)
    result, _ = validate(model, data, "predict", **kw)
    xv, yv = data[2:]
    sw = class_sample_weights(yv)
    expected = model.evaluate(xv, yv, sample_weight=sw, verbose=0, return_dict=True)
    assert set(result) == set(expected) == {"loss", "accuracy", "binary_accuracy"}
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, rel=1e-5), name

    result, tg = validate(
        model, data, "predict", record=True, dynamic_predict_threshold_min_max=(0.05, 0.95), **kw
    )
    preds = model.predict(xv, verbose=0)[:, 0]
    accuracy = {
        th: np.mean((preds > th) == yv[:, 0]) for th in np.round(np.arange(0.05, 0.951, 0.01), 2)
    }
    assert result["accuracy"] == pytest.approx(max(accuracy.values()))
    tuned = (preds > tg.predict_threshold) == yv[:, 0]  # tuned on the unweighted accuracy
    assert np.mean(tuned) == pytest.approx(max(accuracy.values()))


def test_evaluate_mode_averages_weighted_metrics_by_weight_sums():
    """Batches of different class balance: a weighted metric's per-batch values are
    averaged by the batches' sums of weights, the loss and accuracy by sample count."""
    data = binary_data(sort_val=True)
    model = binary_model(metrics=["accuracy"], weighted_metrics=["accuracy"])
    result, tg = validate(
        model, data, "evaluate", clear_cache=False, val_class_weights=CLASS_WEIGHTS
    )
    xv, yv = data[2:]
    sw = class_sample_weights(yv)
    expected = model.evaluate(xv, yv, sample_weight=sw, verbose=0, return_dict=True)
    assert set(result) == set(expected)
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, rel=1e-5), name
    assert tg.state.val_temp_weights == [pytest.approx(w.sum()) for w in np.split(sw, 3)]


def test_weight_sums_missing_from_an_older_checkpoint_default_to_sample_counts():
    """A checkpoint taken mid-validation before weight sums were recorded loads (the field
    defaults to empty); its batches are then weighed by their sample counts."""
    assert TrainState.from_dict({"val_temp_sizes": [2, 2]}).val_temp_weights == []
    temp = {"acc": [1.0, 0.0, 0.5]}
    summary, _ = evaluate_mode_summary(
        temp, [2, 2, 4], ["acc"], "acc", None, True, [None] * 3, [12.0], {"acc"}
    )  # weights 2, 2 (sample counts), 12
    assert summary["acc"] == pytest.approx((2 * 1.0 + 0 + 12 * 0.5) / 16)


def test_per_batch_display_shows_nan_for_a_metric_undefined_on_the_batch(caplog):
    """iter_verbosity=2, AUC and a validation batch of one class: NaN shown for that batch;
    the validation's AUC is over the whole set (sklearn's)."""
    from sklearn.metrics import roc_auc_score

    data = binary_data(n_val=32, sort_val=True)  # first val batch: all 0s
    model = binary_model()
    with caplog.at_level(logging.INFO, logger="deeptrain"):
        result, _ = validate(
            model,
            data,
            "predict",
            val_batch_size=8,
            val_metrics=["roc_auc"],
            key_metric="roc_auc",
            iter_verbosity=2,
        )
    preds = model.predict(data[2], verbose=0)
    assert result["roc_auc"] == pytest.approx(roc_auc_score(data[3], preds))
    batch_lines = [r.getMessage() for r in caplog.records if "Validated set" in r.getMessage()]
    assert len(batch_lines) == 4 and "nan" in batch_lines[0].lower()


def test_windows_of_a_batch_weigh_by_their_weight_sums():
    """A batch fed in windows: a weighted metric's windows are averaged by their weight sums
    (Keras over the windows as one set), others plainly; stale sums of an earlier validation
    are dropped at its first batch."""
    weight_sums: list = [10.0, 20.0]  # a previous validation's, never cleared
    add_window_weight(weight_sums, 0, 3.0, first_slice=True)
    add_window_weight(weight_sums, 0, 1.0, first_slice=False)
    temp = {"weighted_acc": [[1.0, 0.0]], "acc": [[1.0, 0.0]]}
    end_batch(temp, weight_sums, {"weighted_acc"})
    assert temp == {"weighted_acc": [np.average([1, 0], weights=[3, 1])], "acc": [0.5]}
    assert weight_sums == [4.0]


def test_a_save_after_a_validation_stopped_at_its_end_keeps_the_threshold_setting(tmp_path):
    """A Ctrl-C after a validation's last batch (its threshold searched, its end not run),
    then ``tg.save()``: the validation is taken back to its start, the TrainGenerator's
    ``dynamic_predict_threshold`` with the state's (the checkpoint disagreed with itself)."""
    import os
    import signal

    xt, yt, xv, yv = binary_data()
    sent: list[int] = []

    def at_the_last_batch(tg):
        if not sent and tg.val_datagen.all_data_exhausted:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGINT)  # "stop after this iteration"

    tg = TrainGenerator(
        binary_model(metrics=["accuracy"]),
        DataGenerator(xt, batch_size=16, labels_path=yt),
        DataGenerator(xv, batch_size=16, labels_path=yv),
        epochs=1,
        eval_fn="predict",
        key_metric="accuracy",
        dynamic_predict_threshold_min_max=(0.05, 0.95),
        logs_dir=tmp_path,
        callbacks=[{"val:iter": at_the_last_batch}],
        **quiet(check_model_health=False),
    )
    before = (tg.dynamic_predict_threshold, tg.state.predict_threshold)
    with pytest.raises(KeyboardInterrupt):
        tg.train()
    assert tg.state.predict_threshold != before[1]  # searched, the validation not ended
    tg.save()
    assert (tg.dynamic_predict_threshold, tg.state.predict_threshold) == before


def test_ones_own_metric_functions_get_the_sample_weights_as_in_06():
    """``custom_metrics`` and ``key_metric_fn`` taking ``sample_weight`` get the class
    weights in predict mode (DeepTrain 0.6 gave them; compiled metrics follow Keras)."""
    data = binary_data(sort_val=True)
    xv, yv = data[2:]
    sw = class_sample_weights(yv)

    def weighted_error(y_true, y_pred, sample_weight=None):
        return float(np.average(np.abs(y_true - y_pred).ravel(), weights=sample_weight))

    def key_error(y_true, y_pred, sample_weight=None):
        return weighted_error(y_true, y_pred, sample_weight)

    result, _ = validate(
        binary_model(metrics=["accuracy"]),
        data,
        "predict",
        val_metrics=["loss", "accuracy", "werr", "kerr"],
        custom_metrics={"werr": weighted_error},
        key_metric="kerr",
        key_metric_fn=key_error,
        val_class_weights=CLASS_WEIGHTS,
    )
    preds = binary_model().predict(xv, verbose=0)
    expected = weighted_error(yv, preds, sw)
    assert result["werr"] == pytest.approx(expected, rel=1e-5)
    assert result["kerr"] == pytest.approx(expected, rel=1e-5)
    assert expected != pytest.approx(weighted_error(yv, preds), rel=1e-3)  # (weights count)
