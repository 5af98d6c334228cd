"""Adapters from ``fit_fn`` / ``eval_fn`` settings to callables ``fn(x, y, sample_weight)``.

A string names a model method; a callable is used as it is. Train results are normalised to
an ordered ``{metric: float}`` dict with ``'loss'`` first, then the compiled metrics in the
order they were given to ``compile`` (Keras 3 returns them sorted by name).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..distribute.base import Distribution, DistributionError, batch_rows

__all__ = [
    "FitFn",
    "make_fit_fn",
    "make_eval_fn",
    "model_metric_names",
    "to_metric_dict",
    "scalar_metric",
    "VAL_MODES",
]

log = logging.getLogger(__name__)

FitFn = Callable[[Any, Any, Any], Any]
VAL_MODES = ("evaluate", "predict")


def model_metric_names(model: Any) -> list[str]:
    """``['loss', *compiled metric names]`` from the model's compile config, made unique as
    Keras makes them (a repeated name gets ``_1``, ``_2``; a weighted metric named like
    another, ``weighted_``)."""
    config = model.get_compile_config() or {}
    names = ["loss"]
    seen: dict[str, int] = {}

    def unique(name: str) -> str:
        if name not in seen:
            seen[name] = 1
            return name
        seen[name] += 1
        return f"{name}_{seen[name] - 1}"

    for key in ("metrics", "weighted_metrics"):
        metrics = config.get(key) or []
        if isinstance(metrics, dict):  # per-output metrics: names only known after a step
            continue
        for m in metrics:
            name = _metric_name(m)
            if key == "weighted_metrics" and name in seen:
                name = f"weighted_{name}"
            names.append(unique(name))
    return names


def _metric_name(metric: Any) -> str:
    """The name Keras gives a metric of a compile config (a string, a serialized metric
    or function, an object)."""
    if isinstance(metric, str):
        return metric
    if isinstance(metric, dict):  # {'class_name': ..., 'config': {'name': ...} or 'fn_name'}
        config = metric.get("config")
        if isinstance(config, dict) and config.get("name"):
            return str(config["name"])
        if isinstance(config, str) and config:  # a plain function
            return config
        return str(metric.get("class_name", "")).lower()
    if hasattr(metric, "name"):
        return str(metric.name)
    return str(getattr(metric, "__name__", metric))


def to_metric_dict(result: Any, names: list[str]) -> dict[str, float]:
    """Normalise a fit/eval result (dict, list ordered like ``names``, or scalar)."""
    if type(result) is dict and all(type(v) is float for v in result.values()):
        if list(result) == names:  # the common case, kept cheap: it runs every step
            return result
        ordered = {n: result[n] for n in names if n in result}
        ordered.update({k: v for k, v in result.items() if k not in ordered})
        return ordered
    if result is None:
        raise TypeError(
            "the fit/eval function returned None: return the batch's metrics (a dict "
            f"{{name: value}}, a list ordered like the model's metrics {names}, or the loss)"
        )
    if isinstance(result, dict):
        ordered = {n: result[n] for n in names if n in result}
        ordered.update({k: v for k, v in result.items() if k not in ordered})
        return {k: scalar_metric(k, v) for k, v in ordered.items()}
    if np.ndim(result) == 0:
        return {names[0]: scalar_metric(names[0], result)}
    values = list(result)
    if len(values) != len(names):
        raise ValueError(
            f"the fit/eval function returned {len(values)} values but the model "
            f"has {len(names)} metrics {names}; return a dict to name them"
        )
    return {n: scalar_metric(n, v) for n, v in zip(names, values, strict=True)}


def scalar_metric(name: str, value: Any) -> float:
    """A metric's value of one batch as a float; an error naming it if it is not one number
    (``keras.metrics.F1Score()`` gives one per class unless ``average=`` is set). Read with
    ``.item()`` where the value has it (a torch tensor on a GPU has no NumPy view)."""
    if type(value) is float or getattr(value, "ndim", None) == 0:  # (every step: cheap)
        return float(value)
    shape = getattr(value, "shape", None)
    shape = np.shape(value) if shape is None else tuple(shape)
    if math.prod(shape) != 1:
        raise TypeError(
            f"metric {name!r} must be a scalar, got shape {shape}: DeepTrain records "
            "one number per metric and batch (a metric with a value per class, such as "
            "keras.metrics.F1Score(), needs average='micro', 'macro' or 'weighted')"
        )
    item = getattr(value, "item", None)
    return float(item() if callable(item) else np.asarray(value).reshape(()))


def make_fit_fn(
    model: Any, spec: str | FitFn, distribution: Distribution | None = None
) -> tuple[FitFn, str]:
    """The train step as ``fn(x, y, sw)`` and its name (under ``distribution``, a step on
    the global batch that returns global metrics)."""
    if distribution is not None and distribution.distributed:
        if spec != "train_on_batch":
            raise DistributionError(
                f"fit_fn={spec!r} cannot run under {distribution.describe()}: only "
                "fit_fn='train_on_batch' (the default) splits the global batch over replicas"
            )
        return distribution.train_step(model), spec
    if callable(spec):
        return spec, getattr(spec, "__qualname__", type(spec).__name__)
    if spec == "train_on_batch":  # the same step, without train_on_batch's per-call cost
        from .steppers import make_train_step

        return make_train_step(model), spec
    if spec == "fit":  # DeepTrain 0.6 passed fit's History on as metrics (bug 8)

        def fit(x, y, sw):
            rows = batch_rows(x)  # (a model of several inputs: a list of arrays)
            history = model.fit(  # (in order: row i of a window continues sequence i)
                x, y, sample_weight=sw, batch_size=rows, epochs=1, verbose=0, shuffle=False
            )
            return {k: v[-1] for k, v in history.history.items()}

        return fit, spec
    raise ValueError(
        f"fit_fn must be 'train_on_batch', 'fit' or a callable (x, y, "
        f"sample_weight) -> metrics; got {spec!r}"
    )


def make_eval_fn(
    model: Any,
    spec: str | FitFn,
    val_mode: str | None,
    distribution: Distribution | None = None,
) -> tuple[FitFn, str, str]:
    """The validation step as ``fn(x, y, sw)``, its name, and the validation mode.

    ``val_mode`` is explicit ('evaluate': the function returns metrics; 'predict': it returns
    predictions); when None it is read from the name, as DeepTrain 0.6 did. Under
    ``distribution``, the steps return the global batch's metrics or predictions.
    """
    if distribution is not None and distribution.distributed:
        if callable(spec):
            raise DistributionError(
                f"a custom eval_fn cannot run under {distribution.describe()}: use "
                "eval_fn='evaluate' or 'predict'"
            )
        fn, name, mode = make_eval_fn(model, spec, val_mode)
        step = distribution.predict_step if mode == "predict" else distribution.evaluate_step
        return step(model), name, mode
    if callable(spec):
        fn, name = spec, getattr(spec, "__qualname__", type(spec).__name__)
    elif spec in ("evaluate", "test_on_batch"):
        fn, name = _test_on_batch(model), spec
    elif spec in ("predict", "predict_on_batch"):
        fn, name = (lambda x, y, sw: model.predict_on_batch(x)), spec
    else:
        raise ValueError(
            f"eval_fn must be 'evaluate', 'test_on_batch', 'predict', "
            f"'predict_on_batch' or a callable (x, y, sample_weight); got {spec!r}"
        )
    if val_mode is None:  # DeepTrain 0.6's fallback: the function's own name decides
        lowered = getattr(spec, "__name__", name).lower()
        if "predict" in lowered:
            val_mode = "predict"
        elif "evaluate" in lowered or "test" in lowered:
            val_mode = "evaluate"
        else:
            raise ValueError(
                f"cannot tell whether eval_fn {name!r} returns metrics or "
                "predictions: pass val_mode='evaluate' or val_mode='predict'"
            )
    if val_mode not in VAL_MODES:
        raise ValueError(f"val_mode must be one of {VAL_MODES}, got {val_mode!r}")
    return fn, name, val_mode


def _test_on_batch(model: Any) -> FitFn:
    from .steppers import as_fit_feeds

    def evaluate(x: Any, y: Any, sw: Any) -> Any:
        x, y, sw = as_fit_feeds((x, y, sw))  # (the arrays a loss or metric sees in fit)
        return model.test_on_batch(x, y, sample_weight=sw, return_dict=True)

    return evaluate
