"""Sample weights from ``class_weights`` and per-slice weighting of windows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "check_class_keys",
    "check_class_weights",
    "class_of",
    "sample_weights",
    "slice_weight",
]


def check_class_weights(weights: Any, name: str) -> dict[int, float] | None:
    if weights is None:
        return None
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError(f"{name} must be a dict {{class_index: weight}}, got {weights!r}")
    for k, v in weights.items():
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 0:
            raise ValueError(f"{name}: class keys must be ints >= 0, got {k!r}")
        number = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
        # (finite as the float32 the step weighs with: 1e39 would be inf there, then NaN)
        with np.errstate(over="ignore"):  # (an overflow is the error raised here)
            finite = number and np.isfinite(np.float32(v))
        if not finite or v < 0:
            raise ValueError(
                f"{name}: weights must be finite float32 numbers >= 0, got {v!r} for class {k}"
            )
    return {int(k): float(v) for k, v in weights.items()}


def check_class_keys(
    weights: Mapping[int, float] | None, name: str, classes: tuple[int, str] | None
) -> None:
    """Refuse classes the model does not have: ``classes`` is ``(number, why)`` (None: not
    known). Their weights would never be applied (:func:`class_of` gives classes below the
    number of the model's outputs)."""
    if not weights or classes is None:
        return
    n_classes, why = classes
    beyond = sorted(k for k in weights if k >= n_classes)
    if beyond:
        raise ValueError(
            f"{name} names classes {beyond}, but the model has {n_classes} classes, 0 to "
            f"{n_classes - 1} ({why}): their weights would never be applied. Give weights "
            f"of classes 0 to {n_classes - 1}."
        )


def class_of(labels: np.ndarray) -> np.ndarray:
    """Each sample's class: argmax of one-hot labels, else the (rounded) label itself.
    Labels of more dimensions (a class per timestep) are refused, as Keras' ``class_weight``
    refuses them: the argmax over all of them would be a position, not a class."""
    labels = np.asarray(labels)
    if labels.ndim > 2:
        raise ValueError(
            f"class_weights need one class per sample: labels of shape (samples,) or "
            f"one-hot (samples, classes); these are of shape {labels.shape} (a class per "
            "timestep?). Weigh such samples with a loss of your own, or leave class_weights "
            "unset."
        )
    flat = labels.reshape(len(labels), -1)
    if flat.shape[1] > 1:
        return flat.argmax(axis=1)
    return np.rint(flat[:, 0]).astype(np.int64)


def slice_weight(
    weight_range: Sequence[float] | None, slices_per_batch: int | None, slice_idx: int | None
) -> float:
    """``linspace(a, b, slices_per_batch)[slice_idx]``, or 1 when not slicing."""
    if weight_range is None or not slices_per_batch or slice_idx is None:
        return 1.0
    a, b = weight_range
    return float(np.linspace(a, b, slices_per_batch)[slice_idx])


def sample_weights(
    labels: Any,
    n_samples: int,
    class_weights: Mapping[int, float] | None,
    weight_range: Sequence[float] | None,
    slices_per_batch: int | None,
    slice_idx: int | None,
) -> np.ndarray:
    """Per-sample weights: class weight (1 for classes not listed) x slice weight."""
    if class_weights and labels is not None and len(labels):
        classes = class_of(labels)
        weights = np.array([class_weights.get(int(c), 1.0) for c in classes], dtype="float32")
    else:
        weights = np.ones(n_samples, dtype="float32")
    return weights * np.float32(slice_weight(weight_range, slices_per_batch, slice_idx))
