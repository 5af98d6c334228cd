"""Validation metrics.

*Evaluate mode*: the model returns metrics per batch; DeepTrain averages them over the
validation weighted by each batch's sample count.

*Predict mode*: predictions are cached per batch and window, and metrics are computed once
over the whole validation set with NumPy (:mod:`deeptrain.metrics`), which is right for
metrics that do not decompose over batches (F1, AUC). Labels, weights and predictions are
cached.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from .. import metrics as metrics_lib
from .search import find_best_predict_threshold, find_best_subset, find_best_subset_from_history

__all__ = [
    "PredictCache",
    "MetricResolver",
    "weighted_mean",
    "merge_weighted_slices",
    "evaluate_mode_summary",
]

log = logging.getLogger(__name__)


def weighted_mean(values: Sequence[float], sizes: Sequence[int]) -> float:
    v, n = np.asarray(values, dtype=float), np.asarray(sizes, dtype=float)
    return float((v * n).sum() / n.sum())


@dataclass
class PredictCache:
    """Per validation batch: a list (one entry per window) of labels, predictions, weights."""

    labels: list[list[np.ndarray]] = field(default_factory=list)
    preds: list[list[np.ndarray]] = field(default_factory=list)
    weights: list[list[np.ndarray]] = field(default_factory=list)
    set_names: list[str | None] = field(default_factory=list)

    def add(
        self, labels: Any, preds: Any, weights: Any, first_slice: bool, set_name: str | None
    ) -> None:
        if first_slice or not self.preds:
            for cache in (self.labels, self.preds, self.weights):
                cache.append([])
            self.set_names.append(set_name)
        self.labels[-1].append(np.asarray(labels))
        self.preds[-1].append(np.asarray(preds))
        self.weights[-1].append(np.asarray(weights))

    def copy(self) -> PredictCache:
        """A copy of the lists (the arrays in them are never changed in place)."""
        labels, preds, weights = (
            [list(batch) for batch in cache] for cache in (self.labels, self.preds, self.weights)
        )
        return PredictCache(labels, preds, weights, list(self.set_names))

    def per_batch(self, weighted_slices: Sequence[float] | None) -> list[tuple]:
        """``(labels, preds, weights)`` per batch, windows merged or stacked as samples."""
        out = []
        for labels, preds, weights in zip(self.labels, self.preds, self.weights, strict=True):
            if weighted_slices is not None and len(preds) > 1:
                out.append(
                    (
                        labels[0],
                        merge_weighted_slices(preds, weighted_slices),
                        np.mean(weights, axis=0),
                    )
                )
            else:
                out.append((np.concatenate(labels), np.concatenate(preds), np.concatenate(weights)))
        return out

    def __len__(self) -> int:
        return len(self.preds)


def merge_weighted_slices(preds: Sequence[np.ndarray], weight_range: Sequence[float]) -> np.ndarray:
    """One prediction per sample from the windows' sigmoid outputs:
    ``p = sum_i (p_i - .5) w_i / sum_i w_i + .5`` with ``w = linspace(a, b, n)``."""
    p = np.asarray(preds, dtype=float)
    if p.min() < 0 or p.max() > 1:
        raise ValueError("pred_weighted_slices_range needs predictions in [0, 1] (sigmoid)")
    a, b = weight_range
    w = np.linspace(a, b, len(p)).reshape((-1,) + (1,) * (p.ndim - 1))
    return ((p - 0.5) * w).sum(axis=0) / w.sum() + 0.5


class MetricResolver:
    """Names -> NumPy metric functions, for predict mode.

    ``'loss'`` is the model's loss (by name, or ``custom_metrics[loss.__name__]`` for a
    custom loss) plus weight regularisation penalties; ``'accuracy'`` follows the loss
    (binary / categorical / sparse); ``key_metric`` uses ``key_metric_fn`` if given;
    ``custom_metrics`` come before the built-ins.
    """

    def __init__(
        self,
        model: Any,
        custom_metrics: Mapping[str, Callable] | None,
        key_metric: str,
        key_metric_fn: Callable | None,
    ):
        self.model = model
        self.custom = dict(custom_metrics or {})
        self.key_metric = key_metric
        self.key_metric_fn = key_metric_fn

    @property
    def loss_name(self) -> str:
        """The model's loss as compiled now (a recompile between validations counts)."""
        loss = self.model.loss
        return (
            loss
            if isinstance(loss, str)
            else getattr(loss, "__name__", getattr(loss, "name", type(loss).__name__))
        )

    def resolve(self, name: str) -> Callable:
        if name == self.key_metric and self.key_metric_fn is not None:
            return self.key_metric_fn
        if name in self.custom:
            return self.custom[name]
        if name == "loss":
            if self.loss_name in self.custom:
                return self.custom[self.loss_name]
            if _is_keras_loss(self.model.loss):  # its settings (from_logits, ...) count
                return _keras_loss(self.model.loss)
            return metrics_lib.get(self.loss_name)
        if name in ("accuracy", "acc"):
            return metrics_lib.accuracy_for_loss(self.loss_name)
        fn = metrics_lib.get(name)
        if fn is metrics_lib.cosine_similarity:  # Keras' metric of that name; its loss: -
            return _similarity
        return fn

    def check(self, names: Sequence[str]) -> None:
        """Resolve every name now, so a typo fails at construction, not after an epoch."""
        for name in names:
            try:
                self.resolve(name)
            except (ValueError, AttributeError) as e:
                raise ValueError(
                    f"validation metric {name!r} cannot be computed in predict "
                    f"mode: {e}. Add it to custom_metrics={{{name!r}: fn}}"
                ) from None

    def compute(
        self,
        names: Sequence[str],
        labels: np.ndarray,
        preds: np.ndarray,
        weights: np.ndarray,
        threshold: float,
    ) -> dict[str, Any]:
        out = {}
        for name in names:
            fn = self.resolve_for(name, labels, preds)
            value = metrics_lib.call_metric(
                fn, labels, preds, sample_weight=weights, pred_threshold=threshold
            )
            if name == "loss":
                if isinstance(value, list):
                    raise TypeError(f"the loss must be a scalar, got {value!r}")
                value += weight_penalty(self.model)
            out[name] = value
        return out

    def resolve_for(self, name: str, labels: np.ndarray, preds: np.ndarray) -> Callable:
        """:meth:`resolve`, with ``'accuracy'`` (when it follows the loss) chosen by the
        shapes of ``labels`` and ``preds`` as Keras chooses it."""
        fn = self.resolve(name)
        if name in ("accuracy", "acc") and fn is metrics_lib.accuracy_for_loss(self.loss_name):
            fn = _accuracy_by_shapes(fn, labels, preds)
        return fn


def _is_keras_loss(loss: Any) -> bool:
    from keras.losses import Loss

    return isinstance(loss, Loss)


def _keras_loss(loss: Any) -> Callable:
    """The compiled ``keras.losses.Loss`` object itself, on the whole set: as evaluate
    computes it, settings and reduction included."""
    from keras import ops

    def keras_loss(y_true: Any, y_pred: Any, sample_weight: Any = None) -> float:
        weights = _loss_weights(sample_weight, np.shape(y_pred))
        return float(ops.convert_to_numpy(loss(y_true, y_pred, sample_weight=weights)))

    keras_loss.__name__ = getattr(loss, "name", "loss")
    return keras_loss


def _loss_weights(sample_weight: Any, pred_shape: tuple[int, ...]) -> np.ndarray | None:
    """Sample weights as a Keras loss takes them for predictions of ``pred_shape``: none
    where they are all 1 (as ``evaluate`` without weights), else per sample broadcast
    over the loss's values (the predictions' shape without its last axis): Keras
    multiplies weights and values directly, which weighs columns, or fails, for
    per-sample weights against values of rank 2 or more."""
    if sample_weight is None:
        return None
    weights = np.asarray(sample_weight, dtype=float)
    if np.all(weights == 1):
        return None
    values_shape = tuple(pred_shape[:-1])
    if len(values_shape) < 2:
        return weights
    return metrics_lib.per_element_weights(weights, values_shape)


def _accuracy_by_shapes(fn: Callable, labels: np.ndarray, preds: np.ndarray) -> Callable:
    """``'accuracy'`` as Keras resolves it, by the shapes of labels and predictions: binary
    when predictions have one column, sparse when labels have fewer dimensions or one
    column, else categorical; ``fn`` (by the loss) for predictions without a class axis."""
    t, p = np.shape(labels), np.shape(preds)
    if len(p) < 2:
        return fn
    if p[-1] == 1:
        return metrics_lib.binary_accuracy
    if len(t) < len(p) or t[-1] == 1:
        return metrics_lib.sparse_categorical_accuracy
    return metrics_lib.categorical_accuracy


def _similarity(y_true: Any, y_pred: Any, sample_weight: Any = None) -> float:
    """Cosine similarity (1: same direction), Keras' ``cosine_similarity`` metric."""
    return -float(metrics_lib.cosine_similarity(y_true, y_pred, sample_weight))


_REGULARIZED = {
    "kernel_regularizer": "kernel",
    "bias_regularizer": "bias",
    "recurrent_regularizer": "recurrent_kernel",
    "depthwise_regularizer": "depthwise_kernel",
    "pointwise_regularizer": "pointwise_kernel",
    "embeddings_regularizer": "embeddings",
    "gamma_regularizer": "gamma",
    "beta_regularizer": "beta",
}


def weight_penalty(model: Any) -> float:
    """Sum of the weight regularisation penalties, as Keras adds them to the loss."""
    from keras import ops

    total = 0.0
    for layer in model._flatten_layers(include_self=False):
        for reg_name, var_name in _REGULARIZED.items():
            reg, var = getattr(layer, reg_name, None), getattr(layer, var_name, None)
            if reg is not None and var is not None:
                total += float(ops.convert_to_numpy(reg(var)))
    return total


def _subset_size(requested: int, n_batches: int) -> int:
    """``best_subset_size``, at most every batch (with a warning where it is more)."""
    if requested > n_batches:
        log.warning(
            "best_subset_size=%d is more than the %d validation batches: all are used",
            requested,
            n_batches,
        )
    return min(requested, n_batches)


def evaluate_mode_summary(
    temp: Mapping[str, list],
    sizes: Sequence[int],
    names: Sequence[str],
    key_metric: str,
    best_subset_size: int | None,
    max_is_best: bool,
    set_names: Sequence[str | None],
) -> tuple[dict[str, float], list[str | None] | None]:
    """Sample-weighted mean of per-batch metrics, over all batches or the best subset."""
    idxs: Sequence[int] = range(len(sizes))
    subset = None
    if best_subset_size:
        idxs = sorted(
            find_best_subset_from_history(
                temp[key_metric], _subset_size(best_subset_size, len(sizes)), max_is_best
            )
        )
        subset = [set_names[i] for i in idxs]
    return (
        {
            n: weighted_mean([temp[n][i] for i in idxs], [sizes[i] for i in idxs])
            for n in names
            if n in temp
        },
        subset,
    )


def predict_mode_summary(
    cache: PredictCache,
    resolver: MetricResolver,
    names: Sequence[str],
    *,
    threshold: float,
    search_range: tuple[float, float] | None,
    max_is_best: bool,
    weighted_slices: Sequence[float] | None,
    best_subset_size: int | None,
) -> tuple[dict[str, Any], float, list[str | None] | None]:
    """Metrics over the whole cached validation set (or its best subset), the tuned
    prediction threshold, and the best subset's set names."""
    batches = cache.per_batch(weighted_slices)
    key = resolver.key_metric
    subset = None
    if best_subset_size:
        idxs, threshold_found, _ = find_best_subset(
            [b[0] for b in batches],
            [b[1] for b in batches],
            resolver.resolve_for(key, batches[0][0], batches[0][1]),
            search_min_max=search_range or (threshold, threshold),
            max_is_best=max_is_best,
            subset_size=_subset_size(best_subset_size, len(batches)),
            sample_weight_all=[b[2] for b in batches],
        )
        batches = [batches[i] for i in sorted(idxs)]
        subset = [cache.set_names[i] for i in sorted(idxs)]
        if search_range is not None and threshold_found is not None:
            threshold = threshold_found
    labels = np.concatenate([b[0] for b in batches])
    preds = np.concatenate([b[1] for b in batches])
    weights = np.concatenate([b[2] for b in batches])
    key_fn = resolver.resolve_for(key, labels, preds)
    if search_range is not None and metrics_lib.accepts_arg(key_fn, "pred_threshold"):
        best = find_best_predict_threshold(
            labels,
            preds,
            key_fn,
            search_min_max=search_range,
            max_is_best=max_is_best,
            sample_weight=weights,
        )
        threshold = cast(float, best)  # a number without return_best_metric
    return resolver.compute(names, labels, preds, weights, threshold), threshold, subset
