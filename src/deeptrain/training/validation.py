"""Validation metrics.

*Evaluate mode*: the model returns metrics per batch; DeepTrain averages them over the
validation weighted by each batch's sample count, and ``weighted_metrics`` by each batch's
sum of sample weights: what Keras computes over the whole set.

*Predict mode*: predictions are cached per batch and window, and metrics are computed once
over the whole validation set with NumPy (:mod:`deeptrain.metrics`), which is right for
metrics that do not decompose over batches (F1, AUC). Labels, weights and predictions are
cached. As in Keras, sample weights (``val_class_weights``, ``loss_weighted_slices_range``)
weigh the loss and the compiled ``weighted_metrics``; as in DeepTrain 0.6, one's own
functions (``custom_metrics``, ``key_metric_fn``) get them if they take ``sample_weight``;
every other metric is unweighted.
A compiled Keras metric object with settings of its own (``AUC(curve='PR')``,
``BinaryAccuracy(threshold=0.7)``), or of a name DeepTrain has no function for, is computed
by a fresh copy of itself over the whole set.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from .. import metrics as metrics_lib
from .fitting import model_metric_names
from .search import find_best_predict_threshold, find_best_subset, find_best_subset_from_history

__all__ = [
    "PredictCache",
    "MetricResolver",
    "weighted_mean",
    "merge_weighted_slices",
    "evaluate_mode_summary",
    "CompiledMetric",
    "compiled_metrics",
    "weighted_metric_names",
    "batch_weight",
    "add_window_weight",
    "end_batch",
]

log = logging.getLogger(__name__)


def weighted_mean(values: Sequence[float], sizes: Sequence[float]) -> float:
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


@dataclass(frozen=True)
class CompiledMetric:
    """A metric as given to ``compile``: a name, a function or a ``keras.metrics.Metric``;
    ``weighted``: given in ``weighted_metrics``."""

    spec: Any
    weighted: bool

    @property
    def given_name(self) -> str:
        """Its own name (``'accuracy'`` for ``'weighted_accuracy'`` or ``'accuracy_1'``)."""
        spec = self.spec
        if isinstance(spec, str):
            return spec
        return str(getattr(spec, "name", getattr(spec, "__name__", spec)))


_COMPILED: weakref.WeakKeyDictionary[Any, tuple[Any, dict[str, CompiledMetric]]] = (
    weakref.WeakKeyDictionary()
)


def compiled_metrics(model: Any) -> dict[str, CompiledMetric]:
    """The model's compiled metrics by the names Keras reports them under (as
    :func:`~deeptrain.training.fitting.model_metric_names` makes them); empty where they do
    not line up (per-output metrics: their names are only known after a step). Read once
    per ``compile()`` (per validation batch it cost ~100 us)."""
    metrics = getattr(model, "_compile_metrics", None)  # (its names come once it is built)
    key = (getattr(model, "_compile_config", None), getattr(metrics, "built", None))
    cached = _COMPILED.get(model)
    if cached is None or cached[0][0] is not key[0] or cached[0][1] != key[1]:
        cached = _COMPILED[model] = (key, _read_compiled_metrics(model))
    return cached[1]


def _read_compiled_metrics(model: Any) -> dict[str, CompiledMetric]:
    config = getattr(getattr(model, "_compile_config", None), "config", None) or {}
    given = []
    for key in ("metrics", "weighted_metrics"):
        specs = config.get(key) or []
        if not isinstance(specs, dict):
            given += [CompiledMetric(spec, key == "weighted_metrics") for spec in specs]
    names = model_metric_names(model)[1:]
    return dict(zip(names, given, strict=True)) if len(names) == len(given) else {}


def weighted_metric_names(model: Any) -> set[str]:
    """The names of the model's compiled ``weighted_metrics``."""
    return {name for name, metric in compiled_metrics(model).items() if metric.weighted}


class MetricResolver:
    """Names -> NumPy metric functions, for predict mode.

    ``'loss'`` is the model's loss (by name, or ``custom_metrics[loss.__name__]`` for a
    custom loss) plus weight regularisation penalties; ``'accuracy'`` follows the loss
    (binary / categorical / sparse); ``key_metric`` uses ``key_metric_fn`` if given;
    ``custom_metrics`` come before the built-ins. A compiled metric resolves by the name it
    was given (``'weighted_accuracy'``: ``'accuracy'``), a Keras metric object with settings
    of its own by itself (:func:`_keras_metric`). Sample weights reach the loss,
    ``weighted_metrics`` and one's own functions (:meth:`weights_for`).
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
        compiled = compiled_metrics(self.model).get(name)
        if compiled is not None and _by_keras(compiled.spec):
            return _keras_metric(compiled.spec)
        name = self._given_name(name, compiled)
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

    @staticmethod
    def _given_name(name: str, compiled: CompiledMetric | None) -> str:
        return name if compiled is None or name == "loss" else compiled.given_name

    def is_weighted(self, name: str) -> bool:
        """Whether sample weights weigh ``name``: the loss and the compiled
        ``weighted_metrics`` (as in Keras), and one's own functions (``custom_metrics``,
        ``key_metric_fn``) that take ``sample_weight`` (as in DeepTrain 0.6)."""
        if name == "loss" or name in weighted_metric_names(self.model):
            return True
        if name == self.key_metric and self.key_metric_fn is not None:
            return True
        return name in self.custom

    def weights_for(self, name: str, weights: Any) -> Any:
        """``weights`` if they weigh ``name``, else None."""
        return weights if self.is_weighted(name) else None

    def compute(
        self,
        names: Sequence[str],
        labels: np.ndarray,
        preds: np.ndarray,
        weights: np.ndarray,
        threshold: float,
        nan_on_error: bool = False,
    ) -> dict[str, Any]:
        """``names``' values; ``nan_on_error``: NaN for a metric that raises ValueError
        (AUC on a batch of one class)."""
        out = {}
        for name in names:
            try:
                out[name] = self._value(name, labels, preds, weights, threshold)
            except ValueError:
                if not nan_on_error:
                    raise
                out[name] = float("nan")
        return out

    def _value(
        self, name: str, labels: np.ndarray, preds: np.ndarray, weights: Any, threshold: float
    ) -> Any:
        fn = self.resolve_for(name, labels, preds)
        value = metrics_lib.call_metric(
            fn,
            labels,
            preds,
            sample_weight=self.weights_for(name, weights),
            pred_threshold=threshold,
        )
        if name == "loss":
            if isinstance(value, list):
                raise TypeError(f"the loss must be a scalar, got {value!r}")
            value += weight_penalty(self.model)
        return value

    def resolve_for(self, name: str, labels: np.ndarray, preds: np.ndarray) -> Callable:
        """:meth:`resolve`, with ``'accuracy'`` (when it follows the loss) chosen by the
        shapes of ``labels`` and ``preds`` as Keras chooses it."""
        fn = self.resolve(name)
        given = self._given_name(name, compiled_metrics(self.model).get(name))
        if given in ("accuracy", "acc") and fn is metrics_lib.accuracy_for_loss(self.loss_name):
            fn = _accuracy_by_shapes(fn, labels, preds)
        return fn


_DEFAULT_CONFIGS: dict[type, dict[str, Any] | None] = {}


def _by_keras(spec: Any) -> bool:
    """Whether a compiled metric is computed by a copy of itself: a Keras metric object
    with settings other than its class's defaults, or of a name DeepTrain has no function
    for; a default one keeps DeepTrain's function (which the threshold search can tune)."""
    from keras.metrics import Metric

    if not isinstance(spec, Metric):
        return False
    return not (metrics_lib.is_builtin(spec.name) and _has_default_config(spec))


def _has_default_config(metric: Any) -> bool:
    """Whether ``metric``'s config is its class's default (its name aside)."""
    cls = type(metric)
    if cls not in _DEFAULT_CONFIGS:
        try:  # (named: an automatic name would take one from the metrics made later)
            _DEFAULT_CONFIGS[cls] = cls(name="default").get_config()
        except Exception:  # a class that needs arguments: its settings are its own
            _DEFAULT_CONFIGS[cls] = None
    default = _DEFAULT_CONFIGS[cls]
    if default is None:
        return False
    config = metric.get_config()
    try:
        return bool({**config, "name": None} == {**default, "name": None})
    except (TypeError, ValueError):  # (arrays in a config)
        return False


def _keras_metric(metric: Any) -> Callable:
    """``metric`` over the whole set: a fresh copy of it (the compiled one holds training's
    state), updated once with every sample."""
    from keras import ops

    cls, config = type(metric), metric.get_config()

    def keras_metric(y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        fresh = cls.from_config(config)
        fresh.update_state(y_true, y_pred, sample_weight=sample_weight)
        values = np.ravel(ops.convert_to_numpy(fresh.result())).astype(float)
        return float(values[0]) if values.size == 1 else [float(v) for v in values]

    keras_metric.__name__ = metric.name
    return keras_metric


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
    weight_sums: Sequence[float] | None = None,
    weighted: Collection[str] = (),
) -> tuple[dict[str, float], list[str | None] | None]:
    """Means of per-batch metrics, over all batches or the best subset: by sample count, and
    the ``weighted`` metrics by the batches' ``weight_sums`` (as Keras over the whole set)."""
    by_weight = _aligned(weight_sums, sizes)
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
            n: weighted_mean(
                [temp[n][i] for i in idxs],
                [(by_weight if n in weighted else sizes)[i] for i in idxs],
            )
            for n in names
            if n in temp
        },
        subset,
    )


def _aligned(weight_sums: Sequence[float] | None, sizes: Sequence[int]) -> list[float]:
    """A weight sum per batch of ``sizes``: the last ones given; sample counts for batches
    without one (a checkpoint of an older version, taken mid-validation)."""
    given = list(weight_sums or [])
    given = given[max(len(given) - len(sizes), 0) :]
    return [float(n) for n in sizes[: len(sizes) - len(given)]] + [float(w) for w in given]


def batch_weight(sample_weight: Any, n_samples: int) -> float:
    """What a batch (or window) weighs in a weighted metric: its sum of sample weights
    (``n_samples`` without weights)."""
    return float(n_samples if sample_weight is None else np.sum(sample_weight))


def add_window_weight(weight_sums: list, n_batches: int, weight: float, first_slice: bool) -> None:
    """Record a window's weight: ``weight_sums`` holds one total per batch of the validation
    (``n_batches`` done), then a list of the windows' weights of the batch in progress."""
    in_progress = len(weight_sums) == n_batches + 1 and isinstance(weight_sums[-1], list)
    if first_slice or not in_progress:
        del weight_sums[n_batches:]  # (a previous validation's, or a batch not finished)
        weight_sums.append([])
    weight_sums[-1].append(weight)


def end_batch(temp: Mapping[str, list], weight_sums: list, weighted: Collection[str]) -> None:
    """A batch's end: each metric's values per window become their mean (the ``weighted``
    metrics' weighted by the windows' weights), the windows' weights their total."""
    windows = weight_sums[-1] if weight_sums and isinstance(weight_sums[-1], list) else None
    for name, entries in temp.items():
        values = entries[-1]
        by = windows if name in weighted and windows and len(windows) == len(values) else None
        if by is not None and sum(by) == 0:
            by = None
        entries[-1] = float(np.average(values, weights=by))
    if windows is not None:
        weight_sums[-1] = float(sum(windows))


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
    weighted_key = resolver.is_weighted(key)
    if best_subset_size:
        idxs, threshold_found, _ = find_best_subset(
            [b[0] for b in batches],
            [b[1] for b in batches],
            resolver.resolve_for(key, batches[0][0], batches[0][1]),
            search_min_max=search_range or (threshold, threshold),
            max_is_best=max_is_best,
            subset_size=_subset_size(best_subset_size, len(batches)),
            sample_weight_all=[b[2] for b in batches] if weighted_key else None,
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
            sample_weight=resolver.weights_for(key, weights),
        )
        threshold = cast(float, best)  # a number without return_best_metric
    return resolver.compute(names, labels, preds, weights, threshold), threshold, subset
