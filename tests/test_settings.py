"""Settings are declared once: class annotations, the defaults dicts and the signatures agree,
and the defaults dicts are live (editing one changes the defaults of new objects)."""

from __future__ import annotations

import inspect
import re
from dataclasses import fields

import keras
import pytest

from datafactory import write_dataset
from deeptrain import DataGenerator, TrainGenerator
from deeptrain.data.generator import DATAGEN_KWARGS
from deeptrain.training.aliases import StateAlias, TrainStateAliases
from deeptrain.training.configs import TRAINGEN_DEFAULTS
from deeptrain.training.plotting import default_plot_configs
from deeptrain.training.state import LEGACY_NAMES, TrainState

# TrainGenerator settings that are not plain attributes: properties, or a TrainState field
TRAINGEN_NON_ANNOTATED = {"fit_fn": property, "eval_fn": property, "predict_threshold": StateAlias}
CONSTRUCTOR_ONLY = {"self", "model", "datagen", "val_datagen", "kwargs"}


def test_traingen_declared_settings_are_the_defaults_keys():
    declared = set(TrainGenerator.__annotations__)
    assert declared.isdisjoint(TRAINGEN_NON_ANNOTATED)
    assert declared | set(TRAINGEN_NON_ANNOTATED) == set(TRAINGEN_DEFAULTS)
    for name, kind in TRAINGEN_NON_ANNOTATED.items():
        assert isinstance(inspect.getattr_static(TrainGenerator, name), kind), name


def test_traingen_signature_defaults_are_the_dicts():
    params = inspect.signature(TrainGenerator.__init__).parameters
    named = {n: p for n, p in params.items() if n not in CONSTRUCTOR_ONLY}
    assert set(named) <= set(TRAINGEN_DEFAULTS)
    for name, param in named.items():
        assert param.default is not inspect.Parameter.empty, name
        assert param.default == TRAINGEN_DEFAULTS[name], name


def test_datagen_declared_settings_are_the_kwargs_keys():
    assert set(DataGenerator.__annotations__) == set(DATAGEN_KWARGS)
    params = inspect.signature(DataGenerator.__init__).parameters
    assert not set(params) & set(DATAGEN_KWARGS)  # one place for each default


@pytest.mark.parametrize("cls", [TrainGenerator, DataGenerator])
def test_every_declared_setting_has_a_doc_comment(cls):
    source = inspect.getsource(cls)
    for name in cls.__annotations__:
        inline = re.search(rf"^\s+{name}: [^\n]*#: \S", source, re.M)
        above = re.search(rf"^\s+#: [^\n]+\n\s+{name}: ", source, re.M)
        assert inline or above, f"{cls.__name__}.{name} has no '#:' doc comment"


def test_legacy_aliases_are_declared():
    expected = {k: v for k, v in LEGACY_NAMES.items() if k not in ("epoch", "val_epoch")}
    declared = {
        name: value.field
        for name, value in vars(TrainStateAliases).items()
        if isinstance(value, StateAlias)
    }
    assert declared == expected
    assert len(declared) == 45
    for name in ("epoch", "val_epoch"):
        assert isinstance(inspect.getattr_static(TrainGenerator, name), property)


def test_default_plot_configs_name_train_state_fields():
    configs = default_plot_configs(["loss"], ["loss", "accuracy", "f1_score"], "loss", False, 1)
    state_fields = {f.name for f in fields(TrainState)}
    for pane in ("0", "1"):
        named = [*configs[pane]["x_ticks"]["train"], *configs[pane]["x_ticks"]["val"]]
        named.append(configs[pane]["vhlines"]["v"])
        assert set(named) <= state_fields, named


@pytest.fixture
def datagens(tmp_path):
    data = write_dataset(tmp_path / "data", n_files=2, file_size=8)
    return (
        DataGenerator(data, batch_size=8, labels_path=data / "labels.h5"),
        DataGenerator(data, batch_size=8, labels_path=data / "labels.h5"),
    )


def _model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    return model


def test_editing_traingen_defaults_changes_new_objects(datagens, monkeypatch):
    monkeypatch.setitem(TRAINGEN_DEFAULTS, "epochs", 3)  # an argument in the signature
    monkeypatch.setitem(TRAINGEN_DEFAULTS, "val_freq", {"batch": 2})
    monkeypatch.setitem(TRAINGEN_DEFAULTS, "max_checkpoints", 2)  # a keyword setting
    monkeypatch.setitem(TRAINGEN_DEFAULTS, "iter_verbosity", 0)
    tg = TrainGenerator(_model(), *datagens)
    assert (tg.epochs, tg.val_freq, tg.max_checkpoints, tg.iter_verbosity) == (
        3,
        {"batch": 2},
        2,
        0,
    )
    assert tg.passed_args == []
    # a value passed wins, also one equal to the signature's default
    tg = TrainGenerator(_model(), *datagens, epochs=1, max_checkpoints=5)
    assert (tg.epochs, tg.max_checkpoints) == (1, 5)
    assert tg.passed_args == tg._passed_args == ["epochs", "max_checkpoints"]


def test_editing_datagen_defaults_changes_new_objects(tmp_path, monkeypatch):
    data = write_dataset(tmp_path / "data", n_files=2, file_size=8)
    monkeypatch.setitem(DATAGEN_KWARGS, "prefetch", 0)
    monkeypatch.setitem(DATAGEN_KWARGS, "seed", 7)
    dg = DataGenerator(data, batch_size=8)
    assert (dg.prefetch, dg.seed) == (0, 7)
    assert DataGenerator(data, batch_size=8, prefetch=1).prefetch == 1
