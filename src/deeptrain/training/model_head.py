"""What a model's one output is: its width and activation, and the classes it tells apart
(known for a single ``(batch, k)`` output of a classifier; None where it is not known)."""

from __future__ import annotations

from typing import Any

from .. import metrics as metrics_lib

__all__ = ["CROSSENTROPIES", "loss_names", "model_classes", "output_head"]

CROSSENTROPIES = {
    "binary_crossentropy",
    "binary_focal_crossentropy",
    "categorical_crossentropy",
    "categorical_focal_crossentropy",
    "sparse_categorical_crossentropy",
}


def output_head(model: Any) -> tuple[int, str | None] | None:
    """``(k, activation)`` of a model with one output of shape ``(batch, k)``, made by a
    Keras ``Dense``, ``Activation`` or ``Softmax`` layer (activation None for any other
    layer); None for several outputs, other shapes or shapes not known."""
    import keras

    outputs = getattr(model, "outputs", None)
    if not outputs or len(outputs) != 1:
        return None
    shape = tuple(outputs[0].shape)
    if len(shape) != 2 or not isinstance(shape[1], int):
        return None
    layer = getattr(getattr(outputs[0], "_keras_history", None), "operation", None)
    if type(layer) is keras.layers.Softmax:
        return shape[1], "softmax"
    if type(layer) in (keras.layers.Dense, keras.layers.Activation):
        return shape[1], getattr(getattr(layer, "activation", None), "__name__", None)
    return shape[1], None


def loss_names(model: Any) -> set[str]:
    """The compiled loss's names, canonical (``BinaryCrossentropy``: ``binary_crossentropy``)."""
    loss = getattr(model, "loss", None)
    names: list[Any] = [loss]
    if not isinstance(loss, str):
        names = [getattr(loss, n, None) for n in ("name", "__name__")] + [type(loss).__name__]
    return {metrics_lib._canonical_name(n) for n in names if isinstance(n, str)}


def model_classes(model: Any) -> tuple[int, str] | None:
    """``(number of classes, why)`` of a classifier with one output ``(batch, k)``: ``k``
    for ``k > 1``, 2 for one sigmoid unit (or a binary crossentropy); None where it is not
    known (several outputs, other shapes, a regression)."""
    head = output_head(model)
    if head is None:
        return None
    k, activation = head
    losses = loss_names(model) & CROSSENTROPIES
    if activation not in ("softmax", "sigmoid") and not losses:
        return None
    if k > 1:
        return k, f"its output has shape (batch, {k})"
    if activation == "sigmoid":
        return 2, "one sigmoid unit: classes 0 and 1"
    if any(n.startswith("binary") for n in losses):
        return 2, "one output of a binary crossentropy: classes 0 and 1"
    return None
