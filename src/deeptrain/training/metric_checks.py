"""Predict-mode validation metrics checked before training: the key metric must give one
number (a list is never a new best), and a metric found in ``sklearn.metrics`` must take the
model's predictions (``precision_score`` needs class labels, not probabilities)."""

from __future__ import annotations

import typing
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from .fitting import make_eval_fn, model_metric_names
from .model_head import output_head
from .validation import MetricResolver

if TYPE_CHECKING:
    from .generator import TrainGenerator

__all__ = ["check_predict_metrics", "val_mode"]

_PREDICTS = ("predict", "predict_on_batch")
# activations whose outputs are continuous (never class labels)
_CONTINUOUS = {
    "softmax",
    "sigmoid",
    "tanh",
    "linear",
    "softplus",
    "softsign",
    "elu",
    "selu",
    "gelu",
    "silu",
    "swish",
    "exponential",
    "log_softmax",
    "mish",
}
_MAX_PROBE_CLASSES = 1000


def val_mode(tg: TrainGenerator) -> str | None:
    """``'evaluate'`` or ``'predict'`` (None: not known; ``_set_up_model`` names why)."""
    if tg.val_mode in ("evaluate", "predict"):
        return tg.val_mode
    try:
        return make_eval_fn(tg.model, tg._eval_fn_spec, tg.val_mode)[2]
    except (TypeError, ValueError):
        return None


def check_predict_metrics(tg: TrainGenerator) -> None:
    """Predict mode: the key metric must give one number, and metrics found in sklearn must
    take the model's predictions."""
    if val_mode(tg) != "predict":
        return
    resolver = MetricResolver(tg.model, tg.custom_metrics, tg.key_metric, tg.key_metric_fn)
    _check_key_metric_is_scalar(tg, resolver)
    head = output_head(tg.model)
    if head is None or head[1] not in _CONTINUOUS or head[0] > _MAX_PROBE_CLASSES:
        return  # (predictions that may be class labels, or too many classes to probe)
    if not _builtin_predict(tg):
        return  # (an eval_fn of one's own may return class labels)
    for name, source in _predict_metric_names(tg).items():
        _check_takes_predictions(resolver, name, source, head, tg.predict_threshold)


def _resolved(resolver: MetricResolver, name: str) -> Callable | None:
    try:
        return resolver.resolve(name)
    except Exception:  # (an unknown name: refused, naming it, when metrics are set up)
        return None


def _returns_list(fn: Callable) -> bool:
    """Whether ``fn``'s return annotation is a list or tuple (as ``tnr_tpr``'s)."""
    try:
        returned = typing.get_type_hints(fn).get("return")
    except Exception:  # (no annotations to read: not known)
        return False
    return (typing.get_origin(returned) or returned) in (list, tuple)


def _check_key_metric_is_scalar(tg: TrainGenerator, resolver: MetricResolver) -> None:
    """A key metric that gives a list of values is never a new best (a best is one number
    compared with another), so no best model would ever be saved."""
    fn = _resolved(resolver, tg.key_metric)
    if fn is None or not _returns_list(fn):
        return
    by = "key_metric_fn" if fn is tg.key_metric_fn else getattr(fn, "__name__", repr(fn))
    raise ValueError(
        f"key_metric={tg.key_metric!r} gives a list of values (by {by}), so it can never "
        "decide the best model: a validation's key metric is a new best when it is one "
        "number higher (max_is_best) or lower than the best so far, and a list is never "
        "one. Use a metric of one number as key_metric (instead of 'tnr_tpr': "
        "'binary_informedness', tnr + tpr - 1, or 'tnr' or 'tpr'), or key_metric_fn "
        "returning one number; a list-valued metric can still be reported in val_metrics."
    )


def _builtin_predict(tg: TrainGenerator) -> bool:
    """Whether validation predicts with the model itself (not an eval_fn of one's own)."""
    fn = getattr(tg, "_eval_fn", None)
    if fn is not None:  # (set up: train())
        own = getattr(fn, "__module__", None) or ""
        return tg._eval_fn_name in _PREDICTS and own.startswith("deeptrain.")
    return tg._eval_fn_spec in _PREDICTS


def _predict_metric_names(tg: TrainGenerator) -> dict[str, str]:
    """The metrics predict mode computes, each with the setting that names it."""
    names = {tg.key_metric: "key_metric"}
    given = tg.val_metrics if tg.val_metrics is not None else ["*"]
    compiled = getattr(tg, "train_metrics", None)
    for name in given:
        if name != "*":
            names.setdefault(name, "val_metrics")
            continue
        for metric in compiled or model_metric_names(tg.model):
            names.setdefault(metric, "the model's compiled metrics")
    return names


def _probe_data(k: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Predictions like a model's of ``k`` continuous outputs, and every form labels of
    such a model take: classes (a column or one-hot), class indices, soft labels."""
    n = max(8, 2 * k)
    classes = np.arange(n) % max(k, 2)
    if k == 1:
        preds = np.linspace(0.1, 0.9, n, dtype="float32")[:, None]
        soft = np.linspace(0.2, 0.8, n, dtype="float32")[:, None]
        return preds, [classes[:, None].astype("float32"), classes, soft]
    preds = np.full((n, k), 0.4 / (k - 1), dtype="float32")
    preds[np.arange(n), classes] = 0.6
    onehot = np.eye(k, dtype="float32")[classes]
    return preds, [onehot, classes, classes[:, None], onehot * 0.8 + 0.2 / k]


def _check_takes_predictions(
    resolver: MetricResolver,
    name: str,
    source: str,
    head: tuple[int, str | None],
    threshold: float,
) -> None:
    """A metric found in ``sklearn.metrics`` (the fallback of names DeepTrain has no
    function for) called as the validation calls it, on predictions like the model's and
    labels of every form: refused if it fails on all (e.g. ``precision_score`` needs class
    labels, not probabilities)."""
    fn = _resolved(resolver, name)
    if fn is None or not (getattr(fn, "__module__", None) or "").startswith("sklearn."):
        return
    k, activation = head
    preds, label_forms = _probe_data(k)
    first: Exception | None = None
    for labels in label_forms:
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                resolver.compute([name], labels, preds, np.ones(len(preds)), threshold)
            return
        except Exception as e:  # (whatever sklearn raises)
            first = first or e
    raise ValueError(
        f"validation metric {name!r} (from {source}) is sklearn.metrics.{fn.__name__}, "
        f"which cannot take this model's predictions: validation passes it the model's "
        f"outputs ({activation} values of shape (batch, {k}), not class labels), and it "
        f"raises {type(first).__name__}: {first}. Use a metric that takes probabilities "
        "(DeepTrain's 'f1_score', 'tpr', 'tnr', 'binary_accuracy' threshold them at "
        f"predict_threshold), or custom_metrics={{{name!r}: fn}} with fn(y_true, y_pred) "
        "turning the predictions into labels first."
    )
