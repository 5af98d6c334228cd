"""Bad settings are refused at construction, naming the argument: flags that are not bools
(``max_is_best='False'`` kept the worst model), thresholds out of [0, 1], counts, names
with path separators, empty or wrong paths, functions that are not callable, class
weights that overflow float32."""

from __future__ import annotations

import numpy as np
import pytest

from deeptrain import TrainGenerator
from test_train_generator import classification_data, classifier, generators, quiet


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return classification_data(tmp_path_factory.mktemp("cls"), binary=True)


def make(data, **kw):
    dg, vdg = generators(data)
    return TrainGenerator(classifier(), dg, vdg, **quiet(**kw))


REFUSED = [
    (dict(max_is_best="False"), TypeError, "max_is_best must be True or False, got 'False'"),
    (dict(checkpoint_async="no"), TypeError, "checkpoint_async must be True or False"),
    (dict(input_as_labels="yes"), TypeError, "input_as_labels must be True or False"),
    (dict(reset_statefuls=2), TypeError, "reset_statefuls must be True or False"),
    (dict(epochs=True), ValueError, "epochs must be an int >= 0"),
    (dict(predict_threshold=2), ValueError, r"predict_threshold must be a number in \[0, 1\]"),
    (dict(predict_threshold="x"), TypeError, "predict_threshold must be a number"),
    (dict(dynamic_predict_threshold=float("nan")), ValueError, "dynamic_predict_threshold"),
    (
        dict(dynamic_predict_threshold_min_max=(0.9, 0.1)),
        ValueError,
        r"\(min, max\) with min <= max",
    ),
    (dict(dynamic_predict_threshold_min_max=(0, "a")), TypeError, "number in"),
    (dict(max_checkpoints=0), ValueError, "max_checkpoints must be an int >= 1, got 0"),
    (dict(model_base_name="a/b"), ValueError, "model_base_name must be a non-empty name"),
    (dict(model_base_name=5), ValueError, "model_base_name must be a non-empty name"),
    (dict(key_metric=5), TypeError, "key_metric must be a metric's name"),
    (dict(logs_dir=""), ValueError, "logs_dir is an empty path"),
    (dict(best_models_dir=5), TypeError, "best_models_dir must be a path"),
    (dict(report_fontpath="/nonexistent.ttf"), FileNotFoundError, "report_fontpath"),
    (dict(key_metric_fn="x"), TypeError, "key_metric_fn must be a function"),
    (dict(custom_metrics={"m": 5}), TypeError, r"custom_metrics\['m'\] must be a function"),
    (dict(model_save_kw="x"), TypeError, "model_save_kw must be a dict"),
    (dict(class_weights={0: 1.0, 1: 1e39}), ValueError, "finite float32 numbers"),
]


@pytest.mark.parametrize("kw, error, match", REFUSED, ids=[str(c[0]) for c in REFUSED])
def test_a_bad_setting_is_refused_at_construction(data, tmp_path, monkeypatch, kw, error, match):
    monkeypatch.chdir(tmp_path)  # (an empty path would be the working directory)
    with pytest.raises(error, match=match):
        make(data, **kw)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_file_where_a_directory_goes_is_refused(data, tmp_path):
    for name in ("logs_dir", "best_models_dir", "final_fig_dir"):
        path = tmp_path / f"{name}.txt"
        path.write_text("mine")
        with pytest.raises(NotADirectoryError, match=f"{name}: .* is not a directory"):
            make(data, **{name: path})
        assert path.read_text() == "mine"


def test_good_settings_are_normalised(tmp_path):
    tg = make(
        classification_data(tmp_path),
        epochs=np.int64(2),
        max_is_best=np.bool_(False),
        checkpoint_async=0,
        val_metrics="loss",
        dynamic_predict_threshold_min_max=(0, 1),
    )
    assert tg.epochs == 2 and type(tg.epochs) is int
    assert tg.max_is_best is False and tg.checkpoint_async is False
    assert "loss" in tg.val_metrics and "l" not in tg.val_metrics  # (a name, not letters)
    assert tg.dynamic_predict_threshold_min_max == (0.0, 1.0)


def test_settings_set_as_attributes_are_checked_by_train(tmp_path):
    """Settings are attributes (as in 0.6): one set after construction is checked when
    ``train()`` starts (``val_freq={'epochs': 1}`` never validated)."""
    tg = make(classification_data(tmp_path), epochs=1)
    tg.train()
    tg.val_freq, tg.epochs = {"epochs": 1}, 2
    with pytest.raises(ValueError, match="val_freq"):
        tg.train()
    tg.val_freq, tg.max_is_best = {"epoch": 1}, "False"
    with pytest.raises(TypeError, match="max_is_best must be True or False"):
        tg.train()
    tg.max_is_best = None
    tg.train()
    assert tg.state.epoch == 2 and tg.state.times_validated == 2
