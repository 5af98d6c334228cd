"""Checks of a TrainGenerator's plain settings, at construction: flags, thresholds, counts,
names, paths and one's own functions. Each wrong value is refused naming the argument, what
it got and what it must be, before anything trains or is written (a string ``'False'`` for
``max_is_best`` would count as True and keep the worst model; ``''`` as a path would write
into the working directory)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

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
