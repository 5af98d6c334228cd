"""Layers and weights chosen by id, and their weights, outputs and loss gradients as NumPy
arrays, on every backend (see :mod:`deeptrain.introspection` for the ``_id`` rules)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .gradients import layer_outputs, loss_gradients

__all__ = [
    "LayerId",
    "GRADIENT_MODES",
    "select_layers",
    "select_weights",
    "model_of",
    "to_numpy",
    "get_weights",
    "get_outputs",
    "get_gradients",
    "unique_names",
]

LayerId = Any  # '*' | int | str | Layer | list of them
GRADIENT_MODES = ("weights", "outputs")


# -- choosing layers and weights -----------------------------------------------------------
def select_layers(model: Any, _id: LayerId = "*") -> list[Any]:
    """The layers ``_id`` names (see the module docstring), each once, in order."""
    import keras

    if isinstance(_id, str) and _id == "*":
        return [x for x in model.layers if not isinstance(x, keras.layers.InputLayer)]
    ids = list(_id) if isinstance(_id, (list, tuple)) else [_id]
    out: list[Any] = []
    for item in ids:
        layer = _one_layer(model, item)
        if all(layer is not seen for seen in out):
            out.append(layer)
    return out


def _one_layer(model: Any, item: Any) -> Any:
    import keras

    if isinstance(item, keras.Layer):
        return item
    if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
        return model.layers[item]
    if isinstance(item, str):
        names = [x.name for x in model.layers]
        if item in names:
            return model.layers[names.index(item)]
        for layer in model.layers:
            if item in layer.name:
                return layer
        raise ValueError(f"no layer named (or containing) {item!r}; layers are {names}")
    raise TypeError(f"a layer id must be '*', an int, a str or a Layer, got {item!r}")


def select_weights(
    model: Any,
    _id: LayerId = "*",
    omit_names: str | Sequence[str] | None = None,
    trainable_only: bool = False,
) -> list[Any]:
    """Variables chosen by ``_id``: the weights of the chosen layers (minus those whose name
    contains one of ``omit_names``), or weights named by path (strings with ``'/'``)."""
    omit = [omit_names] if isinstance(omit_names, str) else list(omit_names or [])
    ids = list(_id) if isinstance(_id, (list, tuple)) else [_id]
    pool = model.trainable_weights if trainable_only else model.weights
    out: list[Any] = []
    for item in ids:
        if isinstance(item, str) and "/" in item:
            chosen = [_weight_by_path(model, pool, item)]
        else:
            chosen = [
                w
                for layer in select_layers(model, item)
                for w in (layer.trainable_weights if trainable_only else layer.weights)
                if not any(o in w.name for o in omit)
            ]
        out += [w for w in chosen if all(w is not o for o in out)]
    return out


def _weight_by_path(model: Any, pool: Sequence[Any], name: str) -> Any:
    name = name[:-2] if name.endswith(":0") else name
    for test in (lambda p: p == name, lambda p: p.endswith("/" + name), lambda p: name in p):
        for w in pool:
            if test(w.path):
                return w
    raise ValueError(
        f"no weight of {model.name!r} matches {name!r}; weights are {[w.path for w in pool]}"
    )


def model_of(obj: Any) -> Any:
    import keras

    return obj if isinstance(obj, keras.Model) else obj.model


def unique_names(names: Sequence[str]) -> list[str]:
    """``names`` with repeats made unique: ``path``, ``path#1``, ``path#2`` ... (two
    sub-models with a layer of the same name give their weights the same path; a dict
    keyed by path would silently keep one)."""
    out: list[str] = []
    seen: set[str] = set()
    for name in names:
        unique, n = name, 1
        while unique in seen:
            unique, n = f"{name}#{n}", n + 1
        seen.add(unique)
        out.append(unique)
    return out


# -- gathering -----------------------------------------------------------------------------
def get_weights(
    model: Any, _id: LayerId = "*", omit_names: str | Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """``{weight path: value}`` of the weights ``_id`` chooses."""
    weights = select_weights(model_of(model), _id, omit_names)
    return dict(zip(unique_names([w.path for w in weights]), map(to_numpy, weights), strict=True))


def get_outputs(
    model: Any, _id: LayerId, input_data: Any, learning_phase: int | bool = 0
) -> dict[str, np.ndarray]:
    """``{layer name: output}`` of the layers ``_id`` chooses, on ``input_data``."""
    model = model_of(model)
    layers = select_layers(model, _id)
    outs = layer_outputs(model, input_data, layers, training=bool(learning_phase))
    return dict(zip(unique_names([x.name for x in layers]), outs, strict=True))


def get_gradients(
    model: Any,
    _id: LayerId,
    input_data: Any,
    labels: Any,
    sample_weight: Any = None,
    learning_phase: int | bool = 0,
    mode: str = "weights",
    *,
    carry_states: bool = False,
    carry_variables: bool = False,
) -> dict[str, np.ndarray]:
    """Gradients of the loss on one batch w.r.t. the trainable weights (``mode='weights'``,
    keyed by weight path) or outputs (``mode='outputs'``, keyed by layer name) that ``_id``
    chooses. ``carry_states``: stateful RNNs keep the states the pass leaves (windows);
    ``carry_variables``: so do seed generators and every other non-trainable variable
    (:func:`~deeptrain.backend.gradients.loss_gradients`)."""
    model = model_of(model)
    if mode not in GRADIENT_MODES:
        raise ValueError(f"mode must be one of {GRADIENT_MODES}, got {mode!r}")
    if mode == "weights":
        variables = select_weights(model, _id, trainable_only=True)
        g = loss_gradients(
            model,
            input_data,
            labels,
            sample_weight,
            variables=variables,
            training=bool(learning_phase),
            carry_states=carry_states,
            carry_variables=carry_variables,
        )
        return dict(zip(unique_names([v.path for v in variables]), g.weights, strict=True))
    layers = select_layers(model, _id)
    g = loss_gradients(
        model,
        input_data,
        labels,
        sample_weight,
        layers=layers,
        training=bool(learning_phase),
        carry_states=carry_states,
        carry_variables=carry_variables,
    )
    return dict(zip(unique_names([x.name for x in layers]), g.outputs, strict=True))


def to_numpy(variable: Any) -> np.ndarray:
    """A Keras variable's value as a NumPy array."""
    import keras

    return np.asarray(keras.ops.convert_to_numpy(variable.value))
