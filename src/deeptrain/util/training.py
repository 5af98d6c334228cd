"""DeepTrain 0.6's ``deeptrain.util.training``: the TrainGenerator's training helpers,
called with the TrainGenerator as ``self``.

Kept: :func:`get_sample_weight`, :func:`_weighted_normalize_preds` and
:func:`_get_api_metric_name`. The internal steps of 0.6's validation bookkeeping
(``_get_val_history``, ``_compute_metrics``, ``_validate_data_shapes`` ...) are not kept:
they raise an error naming the replacement (:meth:`TrainGenerator.validate`, which computes
the metrics with :mod:`deeptrain.training.validation`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._legacy import not_kept

__all__ = ["get_sample_weight", "_weighted_normalize_preds", "_get_api_metric_name"]

_VALIDATION = (
    "validation metrics are computed by TrainGenerator.validate() "
    "(deeptrain.training.validation); for metrics of your own over the predictions of the "
    "last validation, call deeptrain.metrics functions on tg._labels_cache / "
    "tg._preds_cache / tg._sw_cache from a 'val_end' callback"
)
_TRAIN_HISTORY = (
    "the train loop keeps tg.history / tg.temp_history itself (TrainGenerator.train(); "
    "the counters and histories are in tg.state)"
)


def get_sample_weight(
    self: Any,
    class_labels: Any,
    val: bool = False,
    slice_idx: int | None = None,
    force_unweighted: bool = False,
) -> np.ndarray:
    """:meth:`TrainGenerator.get_sample_weight`."""
    return self.get_sample_weight(class_labels, val, slice_idx, force_unweighted)


def _weighted_normalize_preds(self: Any, preds_all: Any) -> np.ndarray:
    """One prediction per sample from each batch's windows, weighted by
    ``pred_weighted_slices_range``: ``(batches, slices, samples, ...)`` ->
    ``(batches, samples, ...)`` (see
    :func:`deeptrain.training.validation.merge_weighted_slices`)."""
    from ..training.validation import merge_weighted_slices

    weight_range = self.pred_weighted_slices_range
    if weight_range is None:
        raise ValueError("_weighted_normalize_preds needs pred_weighted_slices_range")
    return np.stack([merge_weighted_slices(list(b), weight_range) for b in preds_all])


def _get_api_metric_name(name: str, loss_name: str, alias_to_metric_name_fn: Any = None) -> str:
    """``'accuracy'`` / ``'acc'`` as the accuracy that fits ``loss_name``
    (``'categorical_accuracy'``, ``'sparse_categorical_accuracy'``, ``'binary_accuracy'``);
    other names through ``alias_to_metric_name_fn`` if given, else unchanged."""
    from ..metrics import accuracy_for_loss

    if name in ("accuracy", "acc"):
        return accuracy_for_loss(loss_name).__name__
    return alias_to_metric_name_fn(name) if alias_to_metric_name_fn is not None else name


_get_weighted_sample_weight = not_kept(
    __name__,
    "_get_weighted_sample_weight",
    "slice weights come from loss_weighted_slices_range in TrainGenerator.get_sample_weight",
)
_get_val_history = not_kept(__name__, "_get_val_history", _VALIDATION)
_get_best_subset_val_history = not_kept(__name__, "_get_best_subset_val_history", _VALIDATION)
_compute_metric = not_kept(__name__, "_compute_metric", _VALIDATION)
_compute_metrics = not_kept(__name__, "_compute_metrics", _VALIDATION)
_set_predict_threshold = not_kept(__name__, "_set_predict_threshold", _VALIDATION)
_transform_eval_data = not_kept(__name__, "_transform_eval_data", _VALIDATION)
_validate_data_shapes = not_kept(__name__, "_validate_data_shapes", _VALIDATION)
_validate_class_data_shapes = not_kept(__name__, "_validate_class_data_shapes", _VALIDATION)
_unroll_into_samples = not_kept(__name__, "_unroll_into_samples", _VALIDATION)
_update_temp_history = not_kept(__name__, "_update_temp_history", _TRAIN_HISTORY)
_update_train_history = not_kept(__name__, "_update_train_history", _TRAIN_HISTORY)
