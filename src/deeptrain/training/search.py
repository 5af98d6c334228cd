"""Searches over metric hyperparameters: the best binary prediction threshold,
and the best-scoring subset of validation batches.

Metrics are called through :func:`deeptrain.metrics.call_metric`, so the
threshold always travels as the keyword ``pred_threshold=`` and sample weights
only reach metrics that accept them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike

from .. import metrics

__all__ = ["find_best_predict_threshold", "find_best_subset", "find_best_subset_from_history"]

MetricFn = Callable[..., Any]

log = logging.getLogger(__name__)


def _threshold_grid(search_interval: float, search_min_max: tuple[float, float]) -> np.ndarray:
    """Thresholds from min to max in steps of ``search_interval``; a min of 0
    starts at the first step and a max of 1 becomes .9999 (so that thresholds
    0 and 1 never make every prediction one class). A degenerate range
    ``(v, v)`` gives ``[v]``."""
    lo, hi = search_min_max
    if lo == hi:
        return np.array([float(lo)])
    if lo > hi or search_interval <= 0:
        raise ValueError(
            f"bad search: search_min_max={search_min_max}, search_interval={search_interval}"
        )
    lo = search_interval if lo == 0 else lo
    hi = 0.9999 if hi == 1 else hi
    n_steps = int(np.floor((hi - lo) / search_interval + 1e-9))
    if n_steps < 0:
        raise ValueError(
            f"empty threshold grid for search_min_max={search_min_max}"
            f" and search_interval={search_interval}"
        )
    # rounding removes float accumulation noise (.01 * 29 -> .29, not .29000000000000004)
    return np.round(lo + search_interval * np.arange(n_steps + 1), 10)


def _scalar(value: Any, metric_fn: MetricFn) -> float:
    if isinstance(value, list):
        raise TypeError(
            f"metric {getattr(metric_fn, '__name__', metric_fn)!r} "
            "must return a scalar to be searched over"
        )
    return float(value)


def _metrics_over_thresholds(
    labels: ArrayLike,
    preds: ArrayLike,
    metric_fn: MetricFn,
    thresholds: np.ndarray,
    sample_weight: ArrayLike | None,
) -> np.ndarray:
    """``metric_fn`` at every threshold, vectorized via its ``*_multi_th`` twin
    when it has one."""
    twin = metrics.multi_th_twin(metric_fn)
    if twin is not None:
        values = np.asarray(
            twin(labels, preds, thresholds, sample_weight=sample_weight), dtype=np.float64
        )
    else:
        values = np.array(
            [
                _scalar(
                    metrics.call_metric(
                        metric_fn, labels, preds, sample_weight, pred_threshold=float(th)
                    ),
                    metric_fn,
                )
                for th in thresholds
            ]
        )
    if values.shape != thresholds.shape:
        raise TypeError(
            f"metric {getattr(metric_fn, '__name__', metric_fn)!r} "
            "must return a scalar to be searched over"
        )
    return values


def find_best_predict_threshold(
    labels: ArrayLike,
    preds: ArrayLike,
    metric_fn: MetricFn,
    search_interval: float = 0.01,
    search_min_max: tuple[float, float] = (0, 1),
    max_is_best: bool = True,
    return_best_metric: bool = False,
    threshold_preference: float = 0.5,
    sample_weight: ArrayLike | None = None,
    verbosity: int = 0,
) -> float | tuple[float, float]:
    """Grid-search the prediction threshold that optimizes ``metric_fn``.

    Args:
        labels, preds: samples along axis 0.
        metric_fn: ``fn(labels, preds, [sample_weight=], pred_threshold=)``.
        search_interval: grid step.
        search_min_max: grid bounds; a min of 0 becomes ``search_interval``
            and a max of 1 becomes .9999; ``(v, v)`` tries ``v`` only.
        max_is_best: maximize the metric if True, else minimize it.
        return_best_metric: also return the metric at the best threshold.
        threshold_preference: among equally good thresholds, pick the closest
            to this (the lower one if two are equally close).
        sample_weight: passed to ``metric_fn`` if it accepts it.
        verbosity: 1 prints the result, 2 also every grid point.

    Returns:
        ``best_th``, or ``(best_th, best_metric)`` if ``return_best_metric``.
    """
    if not metrics.accepts_arg(metric_fn, "pred_threshold"):
        raise TypeError(
            f"metric {getattr(metric_fn, '__name__', metric_fn)!r} "
            "takes no `pred_threshold` argument"
        )
    thresholds = _threshold_grid(search_interval, search_min_max)
    values = _metrics_over_thresholds(labels, preds, metric_fn, thresholds, sample_weight)

    scores = values if max_is_best else -values
    scores = np.where(np.isnan(scores), -np.inf, scores)
    tied = np.flatnonzero(scores == scores.max())
    best_idx = tied[np.argmin(np.abs(thresholds[tied] - threshold_preference))]
    best_th, best_metric = float(thresholds[best_idx]), float(values[best_idx])

    if verbosity >= 2:
        print("th", "metric", sep="\t")
        for th, value in zip(thresholds, values, strict=True):
            print(f"{th:.4g}\t{value:.4f}")
    if verbosity >= 1:
        print(f"Best predict th: {best_th:.4g} w/ {best_metric:.4f} best metric")
    return (best_th, best_metric) if return_best_metric else best_th


def find_best_subset(
    labels_all: Sequence[ArrayLike],
    preds_all: Sequence[ArrayLike],
    metric_fn: MetricFn,
    search_interval: float = 0.01,
    search_min_max: tuple[float, float] = (0, 1),
    max_is_best: bool = True,
    subset_size: int = 5,
    sample_weight_all: Sequence[ArrayLike] | None = None,
) -> tuple[list[int], float | None, float]:
    """Greedily pick ``subset_size`` batches that score best together.

    Starting from an empty pool, each round adds the batch for which
    ``metric_fn`` on pool + batch (concatenated along axis 0) is best; metrics
    taking ``pred_threshold`` are scored at their best threshold for each
    candidate pool. Not guaranteed to find the best subset.

    Args:
        labels_all, preds_all: per-batch arrays, samples along axis 0.
        metric_fn, search_interval, search_min_max, max_is_best:
            as in :func:`find_best_predict_threshold`.
        subset_size: number of batches to pick, ``<= len(labels_all)``.
        sample_weight_all: optional per-batch sample weights.

    Returns:
        ``(batch_idxs, best_th, best_metric)``: chosen indices in pick order,
        the threshold tuned on the subset (None if ``metric_fn`` takes none)
        and the metric on the subset at that threshold.
    """
    n_batches = len(labels_all)
    if len(preds_all) != n_batches:
        raise ValueError(f"{n_batches} label batches vs {len(preds_all)} prediction batches")
    if not 0 < subset_size <= n_batches:
        raise ValueError(f"subset_size={subset_size} must be in [1, {n_batches}]")
    uses_threshold = metrics.accepts_arg(metric_fn, "pred_threshold")

    def score(idxs: list[int]) -> tuple[float | None, float]:
        def cat(arrays: Sequence[ArrayLike]) -> np.ndarray:
            return np.concatenate([np.asarray(arrays[i]) for i in idxs], axis=0)

        labels, preds = cat(labels_all), cat(preds_all)
        weights = None if sample_weight_all is None else cat(sample_weight_all)
        if uses_threshold:
            best = find_best_predict_threshold(
                labels,
                preds,
                metric_fn,
                search_interval,
                search_min_max,
                max_is_best,
                return_best_metric=True,
                sample_weight=weights,
            )
            return cast(tuple[float, float], best)  # a pair with return_best_metric=True
        try:
            return None, _scalar(metrics.call_metric(metric_fn, labels, preds, weights), metric_fn)
        except ValueError as e:  # a pool a metric is undefined on (AUC of one class): unranked
            log.debug("subset %s not scored: %s", idxs, e)
            return None, float("nan")

    sign = 1 if max_is_best else -1
    chosen: list[int] = []
    best_th: float | None = None
    best_metric = float("nan")
    for _ in range(subset_size):
        candidates = [i for i in range(n_batches) if i not in chosen]
        results = [score(chosen + [i]) for i in candidates]
        keys = [sign * m if not np.isnan(m) else -np.inf for _, m in results]
        pick = int(np.argmax(keys))  # first of ties: lowest batch index
        chosen.append(candidates[pick])
        # the last round's winner was scored (threshold tuned) on the final subset
        best_th, best_metric = results[pick]
    return chosen, best_th, best_metric


def find_best_subset_from_history(
    metric: ArrayLike, subset_size: int = 5, max_is_best: bool = True
) -> list[int]:
    """Indices of the ``subset_size`` best per-batch metrics, best first (ties:
    lower index first). ``(batches, slices)`` input is averaged over slices."""
    values = np.asarray(metric, dtype=np.float64)
    if values.ndim > 1:
        values = values.mean(axis=tuple(range(1, values.ndim)))
    order = np.argsort(-values if max_is_best else values, kind="stable")
    return [int(i) for i in order[:subset_size]]
