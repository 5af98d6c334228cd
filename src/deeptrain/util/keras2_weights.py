"""Keras 2 HDF5 weights (DeepTrain 0.6's ``*__weights.h5``) read, and rewritten in Keras 3's
``.weights.h5`` layout without the model.

Keras 2's ``save_weights`` wrote one group per layer, in ``model.layers`` order, listed by
the root attribute ``layer_names``; each group lists its weights (``weight_names``, such as
``'dense_1/kernel:0'``) in the layer's order (trainable, then the others). Keras 3 stores a
model's layers as ``layers/<class name in snake case>[_<k>]/vars/<i>`` (``k`` counts earlier
layers of the same class; recurrent layers keep theirs under ``.../cell/vars``), so a
layer's place follows from its class, which Keras 2 named it after (``dense_1`` is a
``Dense``). A layer whose name does not say its class (``name='out'``) cannot be placed this
way: :func:`deeptrain.migrate.migrate` then needs the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Keras2Layer", "read_keras2_weights", "write_keras3_weights", "keras3_class_names"]

_RECURRENT = {"lstm", "gru", "simple_rnn", "conv_lstm1d", "conv_lstm2d", "conv_lstm3d"}
_WRAPPERS = {"bidirectional", "time_distributed", "rnn"}


@dataclass
class Keras2Layer:
    """One layer's weights: ``(name, array)`` in the layer's order; names without ``:0``."""

    name: str
    weights: list[tuple[str, np.ndarray]]


def _text(value: Any) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def read_keras2_weights(path: str | Path) -> tuple[list[Keras2Layer], str]:
    """The layers of a Keras 2 HDF5 weights file (``save_weights``, or the
    ``model_weights`` group of ``model.save``) and the Keras version that wrote it. The
    file must be self-contained (no external links or storage)."""
    import h5py

    from ..saving.hdf5_check import check_hdf5_self_contained

    path = Path(path)
    check_hdf5_self_contained(path)
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise ValueError(
                f"{path} is not a Keras 2 HDF5 weights file (no 'layer_names' attribute)"
            )
        layers = []
        for layer_name in (_text(n) for n in root.attrs["layer_names"]):
            group = root[layer_name]
            names = [_text(n) for n in group.attrs.get("weight_names", [])]
            weights = [(n.rsplit(":", 1)[0], np.asarray(group[n][()])) for n in names]
            layers.append(Keras2Layer(layer_name, weights))
        version = _text(root.attrs.get("keras_version", f.attrs.get("keras_version", "?")))
    return layers, version


def keras3_class_names() -> set[str]:
    """Snake-case names of Keras 3's layer classes (what Keras 3's weights files use)."""
    import keras

    return {
        _snake(name)
        for name, value in vars(keras.layers).items()
        if isinstance(value, type) and issubclass(value, keras.layers.Layer)
    }


def _snake(name: str) -> str:
    """Keras' ``to_snake_case`` (``Conv2D`` -> ``conv2d``, ``SimpleRNN`` -> ``simple_rnn``)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _class_of(layer_name: str, known: set[str]) -> str:
    """The snake-case class a Keras 2 layer name says (``dense_3`` -> ``dense``)."""
    base = re.sub(r"_\d+$", "", layer_name)
    if base in _WRAPPERS:
        raise ValueError(
            f"layer {layer_name!r} is a wrapper of other layers, whose Keras 3 layout cannot "
            "be derived from the Keras 2 file alone: pass model= (the model built in Keras 3)"
        )
    if base not in known:
        raise ValueError(
            f"layer {layer_name!r}: its name does not say its class (Keras 2 named layers "
            "after their class, e.g. 'dense_1', unless given a name), so its place in a Keras "
            "3 weights file is unknown: pass model= (the model built in Keras 3)"
        )
    return base


def write_keras3_weights(layers: list[Keras2Layer], path: str | Path) -> list[list[Any]]:
    """Write ``layers`` to ``path`` in Keras 3's ``.weights.h5`` layout (no optimizer part);
    returns the variable specs ``[path, shape, dtype]`` in order."""
    import h5py

    known = keras3_class_names()
    specs: list[list[Any]] = []
    counts: dict[str, int] = {}
    with h5py.File(path, "w") as f:
        f.create_group("vars")
        container = f.create_group("layers")
        for layer in layers:
            if not layer.weights:
                continue  # nothing to load (layers of a class with weights always have some)
            cls = _class_of(layer.name, known)
            k = counts.get(cls, 0)
            counts[cls] = k + 1
            group = container.create_group(cls if k == 0 else f"{cls}_{k}")
            if cls in _RECURRENT:
                group = group.create_group("cell")
            variables = group.create_group("vars")
            for i, (name, value) in enumerate(layer.weights):
                variables[str(i)] = value
                specs.append([name, [int(d) for d in value.shape], str(value.dtype)])
    return specs
