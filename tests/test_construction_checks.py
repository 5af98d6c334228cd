"""Settings once checked only at first use (a validation's end, a figure, a checkpoint) are
refused at construction, naming the argument: class weights of classes the model does not
have, a key metric that gives a list, malformed plot / report / optimizer configs, and
sklearn metrics that need class labels where validation passes probabilities."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from deeptrain import TrainGenerator
from test_train_generator import classification_data, classifier, generators, quiet

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def onehot(tmp_path_factory):
    return classification_data(tmp_path_factory.mktemp("onehot"))


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    return classification_data(tmp_path_factory.mktemp("binary"), binary=True)


def head(out=1, activation="sigmoid", loss="binary_crossentropy", metrics=("accuracy",)):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(8, "relu"), keras.layers.Dense(out, activation)]
    )
    model.compile("adam", loss, metrics=list(metrics))
    return model


def make(root, model=None, **kw):
    dg, vdg = generators(root)
    return TrainGenerator(model or classifier(), dg, vdg, **{**quiet(), **kw})


# -- class weights --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["class_weights", "val_class_weights"])
def test_class_weights_of_classes_the_model_lacks_are_refused(onehot, binary, name):
    with pytest.raises(ValueError, match=rf"{name} names classes \[2, 5\], but the model has 2"):
        make(onehot, **{name: {0: 1.0, 2: 3.0, 5: 1.0}})  # softmax of 2
    with pytest.raises(ValueError, match="one sigmoid unit: classes 0 and 1"):
        make(binary, head(), **{name: {1: 2.0, 2: 3.0}})


def test_class_weights_the_model_has_or_cannot_tell_are_kept(onehot, binary, tmp_path):
    tg = make(onehot, class_weights={0: 1.0, 1: 3.0}, val_class_weights={1: 2.0})
    assert tg.class_weights == {0: 1.0, 1: 3.0}
    # one linear unit (a regression of ordinal labels): classes not known, not refused
    make(binary, head(activation=None, loss="mse", metrics=()), class_weights={4: 2.0})
    # several outputs: not refused
    inputs = keras.Input((8,))
    outs = [keras.layers.Dense(2, "softmax")(inputs), keras.layers.Dense(1)(inputs)]
    model = keras.Model(inputs, outs)
    model.compile("adam", ["categorical_crossentropy", "mse"])
    from deeptrain.training.model_head import model_classes

    assert model_classes(model) is None
    # sparse integer labels of 3 classes, a softmax of 3: classes 0, 1, 2 are weighed
    rng = np.random.default_rng(0)
    from deeptrain.preprocessing import numpy_data_to_numpy_sets

    y = rng.integers(0, 3, 128)
    x = (rng.normal(size=(128, 8)) + y[:, None]).astype("float32")
    for part, rows in (("train", slice(0, 96)), ("val", slice(96, 128))):
        numpy_data_to_numpy_sets(x[rows], y[rows], tmp_path / part, batch_size=32, shuffle=False)
    sparse = head(3, "softmax", "sparse_categorical_crossentropy")
    tg = make(tmp_path, sparse, epochs=1, class_weights={0: 1.0, 2: 4.0})
    tg.train()
    assert tg.state.times_validated == 1


# -- key metric -----------------------------------------------------------------------------
def test_a_list_valued_key_metric_is_refused(binary):
    with pytest.raises(ValueError, match="key_metric='tnr_tpr' gives a list of values") as e:
        make(binary, head(), eval_fn="predict", key_metric="tnr_tpr")
    assert "binary_informedness" in str(e.value)

    def rates(y_true, y_pred) -> list[float]:
        return [0.0, 1.0]

    with pytest.raises(ValueError, match=r"gives a list of values \(by key_metric_fn\)"):
        make(binary, head(), eval_fn="predict", key_metric="rates", key_metric_fn=rates)


def test_scalar_key_metrics_are_kept_and_lists_still_reported(binary):
    tg = make(
        binary,
        head(),
        eval_fn="predict",
        epochs=1,
        key_metric="f1_score",
        val_metrics=["loss", "tnr_tpr", "binary_informedness"],
    )
    tg.train()
    assert tg.best_key_metric == tg.val_history["f1_score"][0]
    assert len(tg.val_history["tnr_tpr"][0]) == 2
    make(binary, head(), eval_fn="predict", key_metric="binary_informedness")


# -- plot, report, model and optimizer configs ------------------------------------------
REFUSED = [
    # no pane 1 by default here (2 validation metrics, 2 in the first pane): needs metrics
    (dict(plot_configs={"1": {"ylims": (0, 1)}}), ValueError, r"plot_configs\['1'\] must be"),
    (dict(plot_configs={"fig_kw": {"figsz": (4, 3)}}), ValueError, r"\['fig_kw'\].*figsz"),
    (dict(plot_configs={"fig_kw": 5}), TypeError, r"plot_configs\['fig_kw'\] must be a dict"),
    (dict(plot_configs={"0": {"colr": ["r"]}}), ValueError, r"\['0'\]'s line keywords"),
    (dict(plot_configs={"0": {"metrics": "loss"}}), TypeError, r"\['metrics'\]"),
    (dict(plot_configs={"0": {"ylims": 5}}), ValueError, r"\['ylims'\] must be"),
    (dict(plot_configs=["0"]), TypeError, "plot_configs must be None or a dict"),
    (dict(metric_to_alias=None), TypeError, "metric_to_alias must be a dict"),
    (
        dict(report_configs={"traingen": {"include": ["a"], "exclude": ["b"]}}),
        ValueError,
        "report_configs\\['traingen'\\] has both",
    ),
    (dict(report_configs={"traingen": 5}), TypeError, "report_configs must be None or a dict"),
    (dict(report_configs={"model": {"include": [5]}}), TypeError, "report_configs must be"),
    (dict(model_configs=5), TypeError, "model_configs must be None or a dict"),
    (
        dict(model_configs={"units": {1, 2}}, model_name_configs={"units": ""}),
        TypeError,
        "model_configs: cannot encode 'units'",
    ),
    (dict(optimizer_save_configs={"keep": ["m"]}), ValueError, "optimizer_save_configs must"),
    (dict(optimizer_save_configs={"include": [5]}), TypeError, "optimizer_save_configs: the"),
    (dict(optimizer_load_configs={"include": 5}), TypeError, "optimizer_load_configs: the"),
]


@pytest.mark.parametrize("kw, error, match", REFUSED, ids=[str(c[0]) for c in REFUSED])
def test_display_and_save_configs_are_refused_at_construction(onehot, tmp_path, kw, error, match):
    with pytest.raises(error, match=match):
        make(onehot, logs_dir=tmp_path / "logs", **kw)
    assert not (tmp_path / "logs").exists()  # nothing written


def test_good_display_and_save_configs_draw_and_save(onehot, tmp_path):
    tg = make(
        onehot,
        epochs=1,
        logs_dir=tmp_path / "logs",
        plot_history_freq={"epoch": 1},
        plot_first_pane_max_vals=1,
        plot_configs={
            "fig_kw": {"figsize": (8, 6)},
            "0": {"color": ["r", "b"], "linestyle": "--", "ylims": (0, 3)},
            "1": {"ylims": (0, 1)},  # a pane of the defaults (accuracy goes there)
            "2": {"metrics": {"train": ["loss"], "val": []}, "scalex": True},
        },
        metric_to_alias={"loss": "L"},
        report_configs={"traingen": {"include": ["*epoch*"]}, "model": {"exclude_types": [str]}},
        model_configs={"units": 8, "act": "relu"},
        model_name_configs={"units": "u", "act": ""},
        optimizer_save_configs={"exclude": ["*momentum"]},
    )
    tg.train()
    assert len(tg._history_fig.axes) == 3
    assert "-u8-relu" in tg.model_name
    assert (tg.logdir / "history.png").is_file() and tg.get_last_log("report") is not None


def test_configs_set_after_construction_are_checked_by_train(onehot):
    tg = make(onehot, epochs=1)
    tg.plot_configs = {"1": {"ylims": (0, 1)}}  # no pane 1: the first figure would fail
    with pytest.raises(ValueError, match=r"plot_configs\['1'\] must be"):
        tg.train()
    assert tg.state.fit_iters == 0


# -- sklearn metrics that need class labels -------------------------------------------------
@pytest.mark.parametrize("where", ["val_metrics", "key_metric"])
def test_sklearn_metrics_of_class_labels_are_refused_with_probabilities(binary, onehot, where):
    pytest.importorskip("sklearn")
    kw = dict(val_metrics=["precision_score"]) if where == "val_metrics" else {}
    if where == "key_metric":
        kw["key_metric"] = "matthews_corrcoef"
    name = kw.get("key_metric", "precision_score")
    match = rf"'{name}' \(from {where}\) is sklearn.metrics.{name}, which cannot take"
    with pytest.raises(ValueError, match=match) as e:
        make(binary, head(), eval_fn="predict", **kw)
    assert "sigmoid values of shape (batch, 1)" in str(e.value)
    with pytest.raises(ValueError, match=match):  # a softmax of 2, one-hot labels
        make(onehot, eval_fn="predict", **kw)


def test_sklearn_metrics_that_take_the_predictions_are_kept(binary):
    pytest.importorskip("sklearn")
    tg = make(
        binary,
        head(),
        eval_fn="predict",
        epochs=1,
        val_metrics=["loss", "average_precision_score", "r2_score", "log_loss"],
    )
    tg.train()
    assert np.isfinite(tg.val_history["average_precision_score"][0])


def test_class_label_metrics_are_kept_where_validation_predicts_labels(binary):
    """An eval_fn of one's own may return class labels: precision_score works then."""
    pytest.importorskip("sklearn")
    model = head()

    def predict_labels(x, y, sample_weight):
        return (model.predict_on_batch(x) > 0.5).astype("float32")

    tg = make(
        binary,
        model,
        eval_fn=predict_labels,
        val_mode="predict",
        epochs=1,
        val_metrics=["loss", "precision_score"],
    )
    tg.train()
    assert 0 <= tg.val_history["precision_score"][0] <= 1
