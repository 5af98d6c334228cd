"""A run's settings as flat ``{name: scalar}``: TensorBoard hyperparameters, MLflow params.

From a live TrainGenerator (:func:`run_settings`) or from a checkpoint's state
(:func:`state_settings`): the TrainGenerator's settings (not the code-valued ones, paths or
display options), ``model_configs`` as ``model.<key>``, and from a live one also the fit and
eval functions, the optimizer, the parameter count and the DataGenerators' batch settings.
Nested dicts become dotted names (``val_freq.epoch``); lists become JSON text, and values
that are not plain numbers (None, non-finite floats, integers TensorBoard cannot take) text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from ..training.configs import TRAINGEN_DEFAULTS
from ..util.jsonstate import UNSUPPORTED, to_json

__all__ = ["run_settings", "state_settings", "flatten"]

Scalar = bool | int | float | str

# the integers TensorBoard's hyperparameters take (tensorboardX converts them with NumPy:
# int64 or uint64; a larger one is an object array, which it refuses)
_INT_MIN, _INT_END = -(2**63), 2**64

# Left out: how a run loads or displays, paths (machine-specific), and long lookup tables.
_EXCLUDED = {
    "callbacks",
    "key_metric_fn",
    "custom_metrics",
    "name_process_key_fn",
    "loadpath",
    "fit_fn",
    "eval_fn",
    "continue_run",
    "restore_saved_paths",
    "logs_dir",
    "logdir",
    "best_models_dir",
    "final_fig_dir",
    "report_fontpath",
    "metric_to_alias",
    "alias_to_metric",
    "report_configs",
    "plot_configs",
    "metric_printskip_configs",
    "model_name_configs",
    "loadskip_list",
    "saveskip_list",
    "model_save_kw",
    "model_save_weights_kw",
    "_val_max_set_name_chars",
    "_max_set_name_chars",
    "model_configs",
}
_DATAGEN = ("batch_size", "shuffle", "shuffle_group_batches", "shuffle_group_samples")


def inner_optimizer(optimizer: Any) -> Any:
    """The optimizer that holds the learning rate: under mixed precision Keras wraps it in
    a ``LossScaleOptimizer`` (whose own rate is a placeholder 0)."""
    return getattr(optimizer, "inner_optimizer", None) or optimizer


def flatten(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Scalar]:
    """Nested dicts as dotted names; lists as JSON text; None, non-finite floats and
    integers outside ``[-2**63, 2**64)`` as text."""
    out: dict[str, Scalar] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and set(value) != {"__items__"}:
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, bool | str) or _plain_number(value):
            out[name] = value
        elif value is None or isinstance(value, int | float):
            out[name] = str(value)
        else:
            out[name] = json.dumps(value, default=str)
    return out


def _plain_number(value: Any) -> bool:
    """A number TensorBoard's hyperparameters take as a number."""
    if isinstance(value, int):
        return _INT_MIN <= value < _INT_END
    return isinstance(value, float) and math.isfinite(value)


def _plain(value: Any) -> Any:
    value = to_json(value)
    return value if value is not UNSUPPORTED else "<object>"


def run_settings(tg: Any) -> dict[str, Scalar]:
    """The settings of a live TrainGenerator, flat."""
    settings: dict[str, Any] = {
        name: _plain(getattr(tg, name, None)) for name in TRAINGEN_DEFAULTS if name not in _EXCLUDED
    }
    settings.update(
        fit_fn=getattr(tg, "_fit_fn_name", None),
        eval_fn=getattr(tg, "_eval_fn_name", None),
        model_num=getattr(tg, "model_num", None),
        optimizer=type(inner_optimizer(tg.model.optimizer)).__name__,
        params=int(tg.model.count_params()),
    )
    for name in ("datagen", "val_datagen"):
        dg = getattr(tg, name)
        settings[name] = {k: _plain(getattr(dg, k, None)) for k in _DATAGEN}
        settings[name]["preprocessor"] = type(dg.preprocessor).__name__
    settings["model"] = {k: _plain(v) for k, v in dict(tg.model_configs or {}).items()}
    return flatten(settings)


def state_settings(payload: Mapping[str, Any]) -> dict[str, Scalar]:
    """The settings saved in a checkpoint's state, flat."""
    saved = dict(payload.get("traingen", {}))
    settings = {k: v for k, v in saved.items() if k not in _EXCLUDED and k != "best_subset_nums"}
    settings["model"] = dict(saved.get("model_configs") or {})
    return flatten(settings)
