"""Checks of a TrainGenerator's settings, at construction and when ``train()`` starts:
flags, thresholds, counts, names, paths, one's own functions, class weights (of classes the
model has), figure, report and optimizer configs (by the rules their first use applies), and
predict-mode metrics (:mod:`.metric_checks`). Each wrong value is refused naming the
argument, what it got and what it must be, before anything trains or is written (a string
``'False'`` for ``max_is_best`` would count as True and keep the worst model; ``''`` as a
path would write into the working directory)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..saving.model_state import optimizer_selection
from ..saving.naming import name_suffix
from ..saving.report import check_report_configs, report_configs
from .fitting import model_metric_names
from .metric_checks import check_predict_metrics, val_mode
from .model_head import model_classes
from .plotting import check_plot_configs, plot_configs_for
from .progress import format_metrics
from .weights import check_class_keys, check_class_weights

if TYPE_CHECKING:
    from .generator import TrainGenerator

__all__ = ["check_settings", "check_flag"]

# settings that are True or False (None allowed where the default is None: decided later)
FLAGS = (
    "input_as_labels",
    "checkpoints_overwrite_duplicates",
    "logs_use_full_model_name",
    "new_model_num",
    "check_model_health",
    "max_one_best_save",
    "checkpoint_async",
    "continue_run",
    "restore_saved_paths",
)
OPTIONAL_FLAGS = ("max_is_best", "reset_statefuls")
PATHS = ("logs_dir", "best_models_dir", "logdir", "loadpath", "final_fig_dir", "report_fontpath")
FUNCTIONS = ("key_metric_fn", "name_process_key_fn")
KEYWORD_DICTS = ("model_save_kw", "model_save_weights_kw")


def check_flag(value: Any, name: str) -> bool:
    """``value`` as a bool: True, False (NumPy's too) or exactly 1 or 0; anything else
    (a string ``'False'`` is truthy) is refused."""
    if isinstance(value, bool | np.bool_) or (type(value) is int and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def check_settings(tg: TrainGenerator) -> None:
    """Every plain setting of ``tg`` checked (flags normalised to bools in place)."""
    for name in FLAGS:
        setattr(tg, name, check_flag(getattr(tg, name), name))
    for name in OPTIONAL_FLAGS:
        if getattr(tg, name) is not None:
            setattr(tg, name, check_flag(getattr(tg, name), name))
    _check_epochs(tg)
    _check_thresholds(tg)
    _check_counts(tg)
    _check_names(tg)
    _check_paths(tg)
    _check_functions(tg)
    _check_class_weight_keys(tg)
    _check_display_settings(tg)
    _check_optimizer_configs(tg)
    check_predict_metrics(tg)


def _check_epochs(tg: TrainGenerator) -> None:
    epochs = tg.epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int | np.integer) or epochs < 0:
        raise ValueError(f"epochs must be an int >= 0, got {epochs!r}")
    tg.epochs = int(epochs)


def _probability(value: Any, name: str) -> float:
    """A number in [0, 1] (a threshold on predicted probabilities)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise TypeError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0 <= float(value) <= 1:  # (NaN fails too)
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def _check_thresholds(tg: TrainGenerator) -> None:
    tg.predict_threshold = _probability(tg.predict_threshold, "predict_threshold")
    if tg.dynamic_predict_threshold is not None:
        tg.dynamic_predict_threshold = _probability(
            tg.dynamic_predict_threshold, "dynamic_predict_threshold"
        )
    pair = tg.dynamic_predict_threshold_min_max
    if pair is not None:
        name = "dynamic_predict_threshold_min_max"
        if isinstance(pair, str | bytes) or not hasattr(pair, "__len__") or len(pair) != 2:
            raise ValueError(f"{name} must be None or a pair (min, max), got {pair!r}")
        low, high = (_probability(v, name) for v in pair)
        if low > high:
            raise ValueError(f"{name} must be (min, max) with min <= max, got {pair!r}")
        tg.dynamic_predict_threshold_min_max = (low, high)


def _count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_counts(tg: TrainGenerator) -> None:
    tg.max_checkpoints = _count(tg.max_checkpoints, "max_checkpoints", 1)
    tg.plot_first_pane_max_vals = _count(tg.plot_first_pane_max_vals, "plot_first_pane_max_vals", 0)
    if tg.batch_size is not None:
        tg.batch_size = _count(tg.batch_size, "batch_size", 1)


def _check_names(tg: TrainGenerator) -> None:
    name = tg.model_base_name
    if not isinstance(name, str) or not name or {"/", "\\", os.sep} & set(name):
        raise ValueError(
            "model_base_name must be a non-empty name without path separators (it names "
            f"the run's directories and checkpoints), got {name!r}"
        )
    if not isinstance(tg.key_metric, str) or not tg.key_metric:
        raise TypeError(f"key_metric must be a metric's name (a str), got {tg.key_metric!r}")
    if isinstance(tg.val_metrics, str):  # one metric's name: not its letters
        tg.val_metrics = [tg.val_metrics]


def _check_paths(tg: TrainGenerator) -> None:
    for name in PATHS:
        value = getattr(tg, name)
        if value is None:
            continue
        if not isinstance(value, str | os.PathLike):
            raise TypeError(f"{name} must be a path (str or os.PathLike), got {value!r}")
        if not os.fspath(value):
            raise ValueError(
                f"{name} is an empty path: give a directory (it would be the working "
                "directory, where the run's files would be written)"
            )
    for name in ("logs_dir", "best_models_dir", "final_fig_dir"):
        value = getattr(tg, name)
        if value is not None and Path(value).exists() and not Path(value).is_dir():
            raise NotADirectoryError(f"{name}: {value} exists and is not a directory")
    if tg.report_fontpath is not None and not Path(tg.report_fontpath).is_file():
        raise FileNotFoundError(f"report_fontpath: {tg.report_fontpath} is not a font file")


def _check_functions(tg: TrainGenerator) -> None:
    for name in FUNCTIONS:
        value = getattr(tg, name)
        if value is not None and not callable(value):
            raise TypeError(f"{name} must be a function, got {value!r}")
    custom = tg.custom_metrics
    if custom is not None:
        if not isinstance(custom, Mapping):
            raise TypeError(f"custom_metrics must be a dict {{name: function}}, got {custom!r}")
        for metric, fn in custom.items():
            if not callable(fn):
                raise TypeError(f"custom_metrics[{metric!r}] must be a function, got {fn!r}")
    for name in KEYWORD_DICTS:
        value = getattr(tg, name)
        if value is not None and not isinstance(value, Mapping):
            raise TypeError(f"{name} must be a dict of keyword arguments, got {value!r}")


# -- class weights: classes the model has -------------------------------------------------
def _check_class_weight_keys(tg: TrainGenerator) -> None:
    if tg.input_as_labels:  # (refused with class weights: check_inputs)
        return
    classes = model_classes(tg.model)
    for name in ("class_weights", "val_class_weights"):
        check_class_keys(check_class_weights(getattr(tg, name), name), name, classes)


# -- figures, report, model name, optimizer configs: as their first use checks them ------
def _check_display_settings(tg: TrainGenerator) -> None:
    aliases = tg.metric_to_alias
    try:  # (as the log lines and a checkpoint's figure data use it)
        format_metrics({"loss": 0.0}, aliases)
        dict(aliases)
    except (AttributeError, TypeError, ValueError):
        raise TypeError(
            f"metric_to_alias must be a dict {{metric: alias}}, got {aliases!r}"
        ) from None
    check_report_configs(report_configs(tg), tg.model_configs)
    _check_model_name_values(tg)
    check_plot_configs(_history_configs(tg))


def _history_configs(tg: TrainGenerator) -> dict[str, Any]:
    """The history figure's merged configs, as the first figure will have them."""
    if hasattr(tg, "train_metrics"):  # (metrics set up: train())
        return tg._plot_configs()
    compiled = model_metric_names(tg.model)
    return plot_configs_for(
        tg.plot_configs,
        compiled,
        _val_metric_names(tg, compiled),
        tg.key_metric,
        bool(tg.max_is_best),
        tg.plot_first_pane_max_vals,
    )


def _val_metric_names(tg: TrainGenerator, compiled: list[str]) -> list[str]:
    """The validation's metrics before they are set up (as ``TrainGenerator`` sets them)."""
    if val_mode(tg) != "predict":
        return list(compiled)
    names = list(tg.val_metrics or compiled)
    if "*" in names:
        i = names.index("*")
        names[i : i + 1] = [m for m in compiled if m not in names]
    names = ["loss"] + [n for n in names if n != "loss"]
    return names + ([tg.key_metric] if tg.key_metric not in names else [])


def _check_model_name_values(tg: TrainGenerator) -> None:
    """The ``model_configs`` values that ``model_name_configs`` puts in the model name
    encoded now, by the default encoder (a ``name_process_key_fn`` may need the run)."""
    configs, parts = tg.model_configs, tg.model_name_configs
    if tg.name_process_key_fn is not None or not configs or not isinstance(parts, Mapping):
        return
    configs = dict(configs)  # (a dict: check_report_configs)
    own = {k: v for k, v in parts.items() if isinstance(k, str) and k.split(".")[0] in configs}
    try:
        name_suffix(own, [configs], False, None)
    except TypeError as e:
        raise TypeError(f"model_configs: {e}") from None


# a model whose optimizer holds one variable: its configs checked, nothing built
_PROBE_MODEL = SimpleNamespace(
    optimizer=SimpleNamespace(built=True, variables=[SimpleNamespace(path="optimizer/probe")])
)


def _check_optimizer_configs(tg: TrainGenerator) -> None:
    for name in ("optimizer_save_configs", "optimizer_load_configs"):
        configs = getattr(tg, name)
        try:
            optimizer_selection(_PROBE_MODEL, configs, name)
        except (AttributeError, TypeError):
            raise TypeError(
                f"{name}: the names must be a list of strings (variable names, or "
                f"'*text' for paths containing text), got {configs!r}"
            ) from None
