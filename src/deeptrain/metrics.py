"""NumPy metrics for computing validation scores over a whole validation set.

Three groups of functions live here:

* **Keras-equivalent losses**, ``fn(y_true, y_pred, sample_weight=None) -> float``.
  Each computes the same per-element loss as ``keras.losses.<Name>`` (probability
  inputs, ``from_logits=False``) and reduces it like Keras 3's default
  ``"sum_over_batch_size"`` reduction: ``sum(loss * weight) / loss.size``.
  Math is done in float64; probabilities are clipped to Keras's float32 bounds.
* **Accuracies**, returning per-sample arrays like ``keras.metrics.<name>``.
* **Binary classification metrics** (F1, TPR, TNR, informedness, ROC AUC), with a
  ``*_multi_th`` twin evaluating many prediction thresholds in one pass.

Names are resolved by :func:`get` (aliases, case-insensitive, falling back to
``sklearn.metrics`` when installed); :func:`call_metric` calls any metric,
passing ``sample_weight`` / ``pred_threshold`` only if its signature takes them.
"""

from __future__ import annotations

import difflib
import inspect
import numbers
import re
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    # losses
    "binary_crossentropy",
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "mean_squared_error",
    "mean_absolute_error",
    "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error",
    "squared_hinge",
    "hinge",
    "categorical_hinge",
    "log_cosh",
    "logcosh",
    "kl_divergence",
    "kullback_leibler_divergence",
    "poisson",
    "cosine_similarity",
    "mse",
    "mae",
    "mape",
    "msle",
    "kld",
    # accuracies
    "accuracy",
    "binary_accuracy",
    "categorical_accuracy",
    "sparse_categorical_accuracy",
    "accuracy_for_loss",
    # binary classification
    "f1_score",
    "tpr",
    "tnr",
    "tnr_tpr",
    "binary_informedness",
    "f1_score_multi_th",
    "binary_accuracy_multi_th",
    "tpr_multi_th",
    "tnr_multi_th",
    "tnr_tpr_multi_th",
    "binary_informedness_multi_th",
    "roc_auc_score",
    "roc_curve",
    # lookup
    "get",
    "is_builtin",
    "call_metric",
    "multi_th_twin",
    "accepts_arg",
]

MetricFn = Callable[..., Any]

EPSILON = 1e-7  # keras.config.epsilon()
# Keras computes in float32, where the clip bounds round to these values
# (notably 1 - 1e-7 -> 1 - 2**-23, which matters for log(1 - p) at p == 1).
_EPS = float(np.float32(EPSILON))
_ONE_MINUS_EPS = float(np.float32(1 - EPSILON))


# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------
def _f64(x: ArrayLike) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _match_rank(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keras's ``squeeze_or_expand_to_same_rank``: fix a rank difference of one
    caused by a trailing singleton axis (a rank-1 partner gets expanded)."""
    if a.ndim == b.ndim + 1 and a.shape[-1] == 1:
        if b.ndim == 1:
            b = b[..., None]
        else:
            a = a[..., 0]
    elif b.ndim == a.ndim + 1 and b.shape[-1] == 1:
        if a.ndim == 1:
            a = a[..., None]
        else:
            b = b[..., 0]
    return a, b


def _align_weights(values: np.ndarray, sample_weight: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Align weights with ``values`` like Keras, then broadcast leftover
    per-sample weights along trailing axes, so ``(N,)`` weights against
    ``(N, d1, ...)`` values weigh whole samples.

    Keras 3 skips that last step: it multiplies directly, which raises unless
    ``N == d_last`` and then weighs columns, not samples. Where Keras's result
    is per-sample (e.g. weights shaped ``(N, 1, ...)``) the two agree.
    """
    weights = _f64(sample_weight)
    values, weights = _match_rank(values, weights)
    if 0 < weights.ndim < values.ndim:
        weights = weights.reshape(weights.shape + (1,) * (values.ndim - weights.ndim))
    return values, weights


def per_element_weights(sample_weight: ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
    """Weights broadcast to ``shape``: same-size weights are reshaped, per-sample
    ones (leading axes) repeated along the trailing axes."""
    weights = _f64(sample_weight)
    if weights.size == np.prod(shape):
        return weights.reshape(shape)
    weights = weights.reshape(weights.shape + (1,) * (len(shape) - weights.ndim))
    return np.broadcast_to(weights, shape)


def _reduce_loss(losses: np.ndarray, sample_weight: ArrayLike | None) -> float:
    """Keras ``"sum_over_batch_size"``: ``sum(losses * w) / size`` (0 if empty)."""
    losses = _f64(losses)
    if sample_weight is not None:
        losses, weights = _align_weights(losses, sample_weight)
        losses = losses * weights
    return float(losses.sum() / losses.size) if losses.size else 0.0


def _prep(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """float64 inputs with ranks reconciled as Keras's loss wrapper does."""
    return _match_rank(_f64(y_true), _f64(y_pred))


def _clip_probs(p: np.ndarray) -> np.ndarray:
    return np.clip(p, _EPS, _ONE_MINUS_EPS)


def _to_hinge_labels(y_true: np.ndarray) -> np.ndarray:
    """{0, 1} labels -> {-1, 1}; other labels are left as they are (like Keras)."""
    return 2.0 * y_true - 1.0 if np.isin(y_true, (0.0, 1.0)).all() else y_true


def _safe_div(num: ArrayLike, den: ArrayLike) -> np.ndarray:
    num, den = np.broadcast_arrays(_f64(num), _f64(den))
    out = np.zeros(num.shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _standardize(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(y_true, y_pred, sample_weight)`` as float64 arrays whose ranks fit together (as
    Keras's loss wrapper reconciles them). With :func:`_weighted_loss`, the building blocks
    of a NumPy twin of a custom loss, as in DeepTrain 0.6::

        def mean_L_error(y_true, y_pred, sample_weight=1):
            y_true, y_pred, sample_weight = _standardize(y_true, y_pred, sample_weight)
            return _weighted_loss(np.mean(np.abs(y_true - y_pred) ** 1.5, axis=-1),
                                  sample_weight)
    """
    y_true, y_pred = _prep(y_true, y_pred)
    return y_true, y_pred, _f64(1 if sample_weight is None else sample_weight)


def _weighted_loss(losses: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Per-sample ``losses`` reduced as Keras reduces a loss: ``sum(losses * w) / size``
    (weights per sample broadcast over trailing axes)."""
    return _reduce_loss(np.asarray(losses), sample_weight)


# ---------------------------------------------------------------------------
# Keras-equivalent losses
# ---------------------------------------------------------------------------
def binary_crossentropy(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> float:
    """Binary crossentropy on probabilities, averaged over the last axis."""
    y_true, y_pred = _prep(y_true, y_pred)
    p = _clip_probs(y_pred)
    bce = -(y_true * np.log(p) + (1 - y_true) * np.log(1 - p))
    return _reduce_loss(bce.mean(axis=-1), sample_weight)


def categorical_crossentropy(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> float:
    """Categorical crossentropy; predictions are renormalized to sum to 1."""
    y_true, y_pred = _prep(y_true, y_pred)
    p = _clip_probs(y_pred / y_pred.sum(axis=-1, keepdims=True))
    return _reduce_loss(-(y_true * np.log(p)).sum(axis=-1), sample_weight)


def sparse_categorical_crossentropy(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> float:
    """Crossentropy with integer labels, shaped like ``y_pred`` without its
    last axis (or with a trailing singleton axis)."""
    y_true, y_pred = _prep(y_true, y_pred)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    # Keras: softmax crossentropy on log(clip(p)), i.e. clipped p renormalized
    log_p = np.log(_clip_probs(y_pred))
    log_p_true = np.take_along_axis(log_p, y_true.astype(np.int64)[..., None], axis=-1)[..., 0]
    losses = np.log(np.exp(log_p).sum(axis=-1)) - log_p_true
    return _reduce_loss(losses, sample_weight)


def mean_squared_error(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> float:
    """Mean of squared errors over the last axis."""
    y_true, y_pred = _prep(y_true, y_pred)
    return _reduce_loss(np.mean((y_true - y_pred) ** 2, axis=-1), sample_weight)


def mean_absolute_error(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> float:
    """Mean of absolute errors over the last axis."""
    y_true, y_pred = _prep(y_true, y_pred)
    return _reduce_loss(np.mean(np.abs(y_true - y_pred), axis=-1), sample_weight)


def mean_absolute_percentage_error(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> float:
    """``100 * mean(|y_true - y_pred| / max(|y_true|, eps))`` over the last axis."""
    y_true, y_pred = _prep(y_true, y_pred)
    diff = np.abs(y_true - y_pred) / np.maximum(np.abs(y_true), _EPS)
    return _reduce_loss(100.0 * diff.mean(axis=-1), sample_weight)


def mean_squared_logarithmic_error(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> float:
    """Mean squared error of ``log(max(y, eps) + 1)`` over the last axis."""
    y_true, y_pred = _prep(y_true, y_pred)
    diff = np.log1p(np.maximum(y_pred, _EPS)) - np.log1p(np.maximum(y_true, _EPS))
    return _reduce_loss(np.mean(diff**2, axis=-1), sample_weight)


def hinge(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """``mean(max(1 - y_true * y_pred, 0))``; {0, 1} labels become {-1, 1}."""
    y_true, y_pred = _prep(y_true, y_pred)
    margin = np.maximum(1.0 - _to_hinge_labels(y_true) * y_pred, 0.0)
    return _reduce_loss(margin.mean(axis=-1), sample_weight)


def squared_hinge(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> float:
    """``mean(max(1 - y_true * y_pred, 0) ** 2)``; {0, 1} labels become {-1, 1}."""
    y_true, y_pred = _prep(y_true, y_pred)
    margin = np.maximum(1.0 - _to_hinge_labels(y_true) * y_pred, 0.0)
    return _reduce_loss(np.mean(margin**2, axis=-1), sample_weight)


def categorical_hinge(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> float:
    """``max(max((1 - y_true) * y_pred) - sum(y_true * y_pred) + 1, 0)``."""
    y_true, y_pred = _prep(y_true, y_pred)
    pos = np.sum(y_true * y_pred, axis=-1)
    neg = np.max((1.0 - y_true) * y_pred, axis=-1)
    return _reduce_loss(np.maximum(neg - pos + 1.0, 0.0), sample_weight)


def log_cosh(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Mean of ``log(cosh(y_pred - y_true))`` over the last axis (overflow-safe)."""
    y_true, y_pred = _prep(y_true, y_pred)
    x = y_pred - y_true
    losses = x + np.logaddexp(0.0, -2.0 * x) - np.log(2.0)
    return _reduce_loss(losses.mean(axis=-1), sample_weight)


def kl_divergence(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> float:
    """``sum(y_true * log(y_true / y_pred))`` with both clipped to ``[eps, 1]``."""
    y_true, y_pred = _prep(y_true, y_pred)
    t, p = np.clip(y_true, _EPS, 1.0), np.clip(y_pred, _EPS, 1.0)
    return _reduce_loss(np.sum(t * np.log(t / p), axis=-1), sample_weight)


def poisson(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Mean of ``y_pred - y_true * log(y_pred + eps)`` over the last axis."""
    y_true, y_pred = _prep(y_true, y_pred)
    losses = y_pred - y_true * np.log(y_pred + _EPS)
    return _reduce_loss(losses.mean(axis=-1), sample_weight)


def cosine_similarity(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> float:
    """Negative cosine similarity over the last axis (-1 = same direction),
    like the Keras loss; a zero vector gives 0."""
    y_true, y_pred = _prep(y_true, y_pred)

    def l2_normalize(x: np.ndarray) -> np.ndarray:
        sq_sum = np.sum(x**2, axis=-1, keepdims=True)
        with np.errstate(divide="ignore"):
            inv_norm = np.minimum(1.0 / np.sqrt(sq_sum), 1.0 / EPSILON)
        return x * inv_norm

    sim = np.sum(l2_normalize(y_true) * l2_normalize(y_pred), axis=-1)
    return _reduce_loss(-sim, sample_weight)


logcosh = log_cosh
kullback_leibler_divergence = kld = kl_divergence
mse = mean_squared_error
mae = mean_absolute_error
mape = mean_absolute_percentage_error
msle = mean_squared_logarithmic_error


# ---------------------------------------------------------------------------
# Accuracies (per-sample arrays, like keras.metrics functions)
# ---------------------------------------------------------------------------
def _threshold_like(pred: np.ndarray, threshold: ArrayLike) -> np.ndarray:
    """Threshold in the predictions' dtype, so float32 preds compare like Keras."""
    dtype = pred.dtype if np.issubdtype(pred.dtype, np.floating) else np.float64
    return np.asarray(threshold, dtype=dtype)


def _as_float_array(x: ArrayLike) -> np.ndarray:
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


def binary_accuracy(
    y_true: ArrayLike, y_pred: ArrayLike, pred_threshold: float = 0.5
) -> np.ndarray:
    """Elementwise ``y_true == (y_pred > pred_threshold)`` as floats."""
    y_true, y_pred = _match_rank(_f64(y_true), _as_float_array(y_pred))
    preds = y_pred > _threshold_like(y_pred, pred_threshold)
    return (y_true == preds).astype(np.float64)


def categorical_accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> np.ndarray:
    """Per-sample ``argmax(y_true) == argmax(y_pred)`` for one-hot labels."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return (y_true.argmax(axis=-1) == y_pred.argmax(axis=-1)).astype(np.float64)


def sparse_categorical_accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> np.ndarray:
    """Per-sample ``y_true == argmax(y_pred)`` for integer labels."""
    y_true, y_pred = _f64(y_true), np.asarray(y_pred)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    return (y_true == y_pred.argmax(axis=-1)).astype(np.float64)


def accuracy(y_true: ArrayLike, y_pred: ArrayLike, pred_threshold: float = 0.5) -> np.ndarray:
    """Accuracy picked from shapes like Keras's ``"accuracy"`` string: binary if
    ``y_pred`` has one channel, sparse if ``y_true`` lacks the class axis,
    else categorical."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_pred.ndim <= 1 or y_pred.shape[-1] == 1:
        return binary_accuracy(y_true, y_pred, pred_threshold)
    if y_true.ndim < y_pred.ndim or y_true.shape[-1] == 1:
        return sparse_categorical_accuracy(y_true, y_pred)
    return categorical_accuracy(y_true, y_pred)


def accuracy_for_loss(loss_name: str) -> MetricFn:
    """Accuracy matching a loss: sparse for sparse categorical losses,
    categorical for other categorical ones, else binary."""
    name = _canonical_name(loss_name)
    if name.startswith("sparse_categorical"):
        return sparse_categorical_accuracy
    if name.startswith("categorical"):
        return categorical_accuracy
    return binary_accuracy


# ---------------------------------------------------------------------------
# Binary classification
# ---------------------------------------------------------------------------
def _confusion(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    thresholds: ArrayLike,
    sample_weight: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Weighted (TP, FP, TN, FN) per threshold, plus the total weight.

    A sample is predicted positive if ``pred > threshold`` (so a NaN prediction is
    negative, as in :func:`binary_accuracy`); labels equal to 1 are positives, labels
    equal to 0 negatives (anything else counts in the total only). Per-sample weights
    broadcast over trailing axes.
    """
    pred = _as_float_array(y_pred)
    true = _f64(y_true)
    true, pred = _match_rank(true, pred)
    true, pred = np.broadcast_arrays(true, pred)
    weight = (
        np.ones(pred.shape)
        if sample_weight is None
        else per_element_weights(sample_weight, pred.shape)
    )
    true, pred, weight = true.ravel(), pred.ravel(), weight.ravel()
    ths = _threshold_like(pred, thresholds).ravel()

    def weight_above(mask: np.ndarray) -> tuple[np.ndarray, float]:
        ranked = mask & ~np.isnan(pred)  # (argsort puts NaN above every threshold)
        order = np.argsort(pred[ranked], kind="stable")
        p, w = pred[ranked][order], weight[ranked][order]
        tail_sums = np.append(np.cumsum(w[::-1])[::-1], 0.0)  # sum of w[i:]
        return tail_sums[np.searchsorted(p, ths, side="right")], float(weight[mask].sum())

    tp, n_pos = weight_above(true == 1)
    fp, n_neg = weight_above(true == 0)
    return tp, fp, n_neg - fp, n_pos - tp, float(weight.sum())


def _fbeta(
    tp: np.ndarray, fp: np.ndarray, tn: np.ndarray, fn: np.ndarray, beta: float
) -> np.ndarray:
    precision, recall = _safe_div(tp, tp + fp), _safe_div(tp, tp + fn)
    b2 = beta**2
    fbeta = _safe_div((1 + b2) * precision * recall, b2 * precision + recall)
    no_positive_labels = (tp + fn) == 0
    return np.where(no_positive_labels, _safe_div(tn, tn + fp), fbeta)


def f1_score_multi_th(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    pred_thresholds: ArrayLike,
    beta: float = 1,
    sample_weight: ArrayLike | None = None,
) -> np.ndarray:
    """:func:`f1_score` at each of ``pred_thresholds``."""
    tp, fp, tn, fn, _ = _confusion(y_true, y_pred, pred_thresholds, sample_weight)
    return _fbeta(tp, fp, tn, fn, beta)


def tpr_multi_th(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    pred_thresholds: ArrayLike,
    sample_weight: ArrayLike | None = None,
) -> np.ndarray:
    """:func:`tpr` at each of ``pred_thresholds``."""
    tp, _, _, fn, _ = _confusion(y_true, y_pred, pred_thresholds, sample_weight)
    return _safe_div(tp, tp + fn)


def tnr_multi_th(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    pred_thresholds: ArrayLike,
    sample_weight: ArrayLike | None = None,
) -> np.ndarray:
    """:func:`tnr` at each of ``pred_thresholds``."""
    _, fp, tn, _, _ = _confusion(y_true, y_pred, pred_thresholds, sample_weight)
    return _safe_div(tn, tn + fp)


def tnr_tpr_multi_th(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    pred_thresholds: ArrayLike,
    sample_weight: ArrayLike | None = None,
) -> np.ndarray:
    """:func:`tnr_tpr` at each threshold: shape ``(len(pred_thresholds), 2)``."""
    tp, fp, tn, fn, _ = _confusion(y_true, y_pred, pred_thresholds, sample_weight)
    return np.stack([_safe_div(tn, tn + fp), _safe_div(tp, tp + fn)], axis=-1)


def binary_informedness_multi_th(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    pred_thresholds: ArrayLike,
    sample_weight: ArrayLike | None = None,
) -> np.ndarray:
    """:func:`binary_informedness` at each of ``pred_thresholds``."""
    rates = tnr_tpr_multi_th(y_true, y_pred, pred_thresholds, sample_weight)
    return rates.sum(axis=-1) - 1


def binary_accuracy_multi_th(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    pred_thresholds: ArrayLike,
    sample_weight: ArrayLike | None = None,
) -> np.ndarray:
    """(Weighted) mean of :func:`binary_accuracy` at each of ``pred_thresholds``."""
    tp, _, tn, _, total = _confusion(y_true, y_pred, pred_thresholds, sample_weight)
    return _safe_div(tp + tn, total)


def f1_score(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    pred_threshold: float = 0.5,
    beta: float = 1,
    sample_weight: ArrayLike | None = None,
) -> float:
    """F-beta score ``(1 + b^2) p r / (b^2 p + r)`` of ``y_pred > pred_threshold``.

    Without positive labels, returns the specificity (TNR) instead; with
    positive labels but precision = recall = 0, returns 0.
    """
    return float(f1_score_multi_th(y_true, y_pred, [pred_threshold], beta, sample_weight)[0])


def tpr(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    pred_threshold: float = 0.5,
    sample_weight: ArrayLike | None = None,
) -> float:
    """True positive rate (recall, "1-accuracy"); 0 without positive labels."""
    return float(tpr_multi_th(y_true, y_pred, [pred_threshold], sample_weight)[0])


def tnr(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    pred_threshold: float = 0.5,
    sample_weight: ArrayLike | None = None,
) -> float:
    """True negative rate (specificity, "0-accuracy"); 0 without negative labels."""
    return float(tnr_multi_th(y_true, y_pred, [pred_threshold], sample_weight)[0])


def tnr_tpr(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    pred_threshold: float = 0.5,
    sample_weight: ArrayLike | None = None,
) -> list[float]:
    """``[tnr, tpr]``."""
    rates = tnr_tpr_multi_th(y_true, y_pred, [pred_threshold], sample_weight)[0]
    return [float(r) for r in rates]


def binary_informedness(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    pred_threshold: float = 0.5,
    sample_weight: ArrayLike | None = None,
) -> float:
    """Youden's J: ``tnr + tpr - 1``."""
    return sum(tnr_tpr(y_true, y_pred, pred_threshold, sample_weight)) - 1


def roc_curve(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, tpr)`` of the ROC curve, from ``(0, 0)``, a point per distinct score (tied
    scores move both rates at once, like sklearn). Labels must be 0/1 with both present."""
    pred = _f64(y_pred)
    weight = (
        np.ones(pred.size)
        if sample_weight is None
        else per_element_weights(sample_weight, pred.shape).ravel()
    )
    true, pred = _f64(y_true).ravel(), pred.ravel()
    order = np.argsort(-pred, kind="stable")
    true, pred, weight = true[order], pred[order], weight[order]
    # cumulative weights at the last index of each distinct score
    ends = np.append(np.flatnonzero(np.diff(pred)), pred.size - 1)
    tps = np.cumsum(weight * (true == 1))[ends]
    fps = np.cumsum(weight * (true == 0))[ends]
    if tps[-1] <= 0 or fps[-1] <= 0:
        raise ValueError("roc_auc_score needs both positive and negative labels")
    return np.append(0.0, fps / fps[-1]), np.append(0.0, tps / tps[-1])


def roc_auc_score(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> float:
    """Area under the ROC curve (trapezoids over distinct scores, so tied
    scores count half, like sklearn). Labels must be 0/1 with both present. NaN if a
    prediction is NaN (there is no order to rank it in)."""
    if np.isnan(_f64(y_pred)).any():
        return float("nan")
    fpr_, tpr_ = roc_curve(y_true, y_pred, sample_weight)
    return float(np.sum(np.diff(fpr_) * (tpr_[1:] + tpr_[:-1]) / 2))


# ---------------------------------------------------------------------------
# Lookup and calling
# ---------------------------------------------------------------------------
_MULTI_TH: dict[MetricFn, MetricFn] = {
    f1_score: f1_score_multi_th,
    binary_accuracy: binary_accuracy_multi_th,
    tpr: tpr_multi_th,
    tnr: tnr_multi_th,
    tnr_tpr: tnr_tpr_multi_th,
    binary_informedness: binary_informedness_multi_th,
}

_BUILT_INS: tuple[MetricFn, ...] = (
    binary_crossentropy,
    categorical_crossentropy,
    sparse_categorical_crossentropy,
    mean_squared_error,
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_logarithmic_error,
    squared_hinge,
    hinge,
    categorical_hinge,
    log_cosh,
    kl_divergence,
    poisson,
    cosine_similarity,
    accuracy,
    binary_accuracy,
    categorical_accuracy,
    sparse_categorical_accuracy,
    f1_score,
    tpr,
    tnr,
    tnr_tpr,
    binary_informedness,
    roc_auc_score,
    *_MULTI_TH.values(),
)
_REGISTRY: dict[str, MetricFn] = {fn.__name__: fn for fn in _BUILT_INS}

_ALIASES: dict[str, str] = {
    "acc": "accuracy",
    "mse": "mean_squared_error",
    "mae": "mean_absolute_error",
    "mape": "mean_absolute_percentage_error",
    "msle": "mean_squared_logarithmic_error",
    "bce": "binary_crossentropy",
    "kld": "kl_divergence",
    "kullback_leibler_divergence": "kl_divergence",
    "logcosh": "log_cosh",
    "cosine": "cosine_similarity",
    "f1": "f1_score",
    "f1score": "f1_score",
    "auc": "roc_auc_score",
    "roc_auc": "roc_auc_score",
    "informedness": "binary_informedness",
}


def _canonical_name(name: str) -> str:
    """'MeanSquaredError' / 'f1-score' / 'MSE' -> registry or alias key."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name.strip())
    key = re.sub(r"[\s\-]+", "_", snake).lower()
    return _ALIASES.get(key, key)


def _sklearn_metric(name: str) -> MetricFn | None:
    try:
        import sklearn.metrics
    except ImportError:
        return None
    fn = getattr(sklearn.metrics, name, None)
    return fn if callable(fn) else None


def get(name: str) -> MetricFn:
    """Metric function by name: case-insensitive, through aliases (``acc``,
    ``mse``, ``f1``, ...), falling back to ``sklearn.metrics.<name>``.

    Raises ``ValueError`` naming the metric and close matches if unknown.
    """
    key = _canonical_name(name)
    if key in _REGISTRY:
        return _REGISTRY[key]
    fn = _sklearn_metric(name) or _sklearn_metric(key)
    if fn is not None:
        return fn
    close = difflib.get_close_matches(key, [*_REGISTRY, *_ALIASES], n=5)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    raise ValueError(f"Unknown metric '{name}' (not in deeptrain.metrics or sklearn.metrics){hint}")


def is_builtin(name: str) -> bool:
    """Whether :func:`get` finds ``name`` among DeepTrain's own functions (not sklearn's)."""
    return _canonical_name(name) in _REGISTRY


def multi_th_twin(metric_fn: MetricFn) -> MetricFn | None:
    """The vectorized ``*_multi_th`` version of a builtin metric, if any."""
    try:
        return _MULTI_TH.get(metric_fn)
    except TypeError:  # unhashable callable
        return None


def accepts_arg(fn: MetricFn, name: str) -> bool:
    """Whether ``fn``'s signature names a parameter ``name``."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    param = params.get(name)
    return param is not None and param.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


def _weighted_mean(values: np.ndarray, sample_weight: ArrayLike | None) -> float:
    """Keras ``Mean`` metric reduction: average each sample over the axes the
    weights lack, then ``sum(v * w) / sum(w)``."""
    values = _f64(values)
    if sample_weight is None:
        return float(values.mean()) if values.size else 0.0
    weights = _f64(sample_weight)
    values, weights = _match_rank(values, weights)
    if values.ndim > weights.ndim:
        values = values.mean(axis=tuple(range(weights.ndim, values.ndim)))
    weights = np.broadcast_to(weights, values.shape)
    return float(_safe_div(np.sum(values * weights), np.sum(weights)))


def call_metric(
    fn: MetricFn,
    y_true: ArrayLike,
    y_pred: ArrayLike,
    sample_weight: ArrayLike | None = None,
    pred_threshold: float | None = None,
) -> float | list[float]:
    """Call ``fn(y_true, y_pred, [sample_weight=], [pred_threshold=])``.

    Optional arguments are passed only if given and named in ``fn``'s signature.
    Array results (per-sample values) become their mean, weighted by
    ``sample_weight`` unless ``fn`` already took it; list/tuple results become
    lists of floats (e.g. :func:`tnr_tpr`); scalars become floats.
    """
    kwargs: dict[str, Any] = {}
    if sample_weight is not None and accepts_arg(fn, "sample_weight"):
        kwargs["sample_weight"] = sample_weight
    if pred_threshold is not None and accepts_arg(fn, "pred_threshold"):
        kwargs["pred_threshold"] = pred_threshold
    result = fn(y_true, y_pred, **kwargs)

    if isinstance(result, np.ndarray) and result.ndim > 0:
        weights = None if "sample_weight" in kwargs else sample_weight
        return _weighted_mean(result, weights)
    if isinstance(result, (list, tuple)):
        return [float(r) for r in result]
    if isinstance(result, (numbers.Real, np.generic, np.ndarray)):
        return float(result)
    raise TypeError(
        f"metric {getattr(fn, '__name__', fn)!r} returned "
        f"unsupported {type(result).__name__}; expected a scalar,"
        " a list of scalars or an array"
    )


def __getattr__(name: str) -> MetricFn:
    """``deeptrain.metrics.<name>`` falls back to ``sklearn.metrics.<name>``."""
    fn = None if name.startswith("__") else _sklearn_metric(name)
    if fn is None:
        raise AttributeError(
            f"module {__name__!r} has no attribute {name!r}"
            " (nor does sklearn.metrics, if installed)"
        )
    return fn
