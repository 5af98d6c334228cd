"""Keras' ``.weights.h5``, written from host arrays and read back, without ``save_weights``.

The file is the one ``model.save_weights`` writes (Keras 3's ``H5IOStore``): a group per
object that holds variables, at its attribute path from the model (``vars`` for the model
itself, ``layers/<name>/vars``, ``layers/<name>/cell/vars``, ``optimizer/vars``, ...), the
``vars`` group carrying the object's ``name`` as an attribute and holding one dataset per
variable, ``'0'``, ``'1'``, ... in the order of the object's ``save_own_variables``. Such a
file loads with ``model.load_weights`` into the same architecture, DeepTrain or not.

The layout is taken from Keras' own traversal (``saving_lib._save_state``) run with a
store that records instead of writing, so it is the one Keras writes; it is kept per model
until its variables change. Then:

* :func:`snapshot_weights` copies every variable to host memory (the training thread's
  part of a checkpoint; the optimizer's variables are recorded as variables, not read
  twice);
* :func:`write_weights_file` writes the file from that copy in any thread: HDF5's structure
  through h5py the first time, from the bytes of the first file after that (no HDF5 call;
  :mod:`.h5_template`), the arrays' bytes straight from the copy;
* :func:`load_weights_file` assigns a file's datasets to the model's variables by the same
  layout, each read once.

The state variables of stateful RNN layers are left out: on JAX the workaround of
:mod:`deeptrain.backend.stateful` tracks them, so they would sit among the layer's
variables, and a plain model of the same architecture (which has none there) could not
load the file. They live in the checkpoint's arrays instead. Files that hold them (written
by ``save_weights`` on JAX) still load: their extra entries are recognised and skipped.
"""

from __future__ import annotations

import weakref
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backend.host import aligned_empty
from ..backend.stateful import stateful_layers
from .h5_template import Group, write_h5

__all__ = [
    "WeightsLayout",
    "WeightsImage",
    "weights_layout",
    "snapshot_weights",
    "write_weights_file",
    "load_weights_file",
]


@dataclass
class _Group:
    """One ``vars`` group: where, its ``name`` attribute, and its entries in order."""

    path: str
    metadata: dict[str, Any] | None
    keys: list[str] = field(default_factory=list)  # as written (RNN states left out)
    values: list[Any] = field(default_factory=list)  # variables, or computed values
    legacy_keys: list[str] = field(default_factory=list)  # as save_weights numbers them
    left_out: list[str] = field(default_factory=list)  # legacy keys of RNN states


@dataclass
class WeightsLayout:
    """Keras' layout of a model's weights file; ``cacheable``: every value is a variable
    (some layers store computed values, e.g. merged LoRA kernels: then the layout is
    taken anew for every snapshot and loading goes through Keras)."""

    groups: list[_Group]
    cacheable: bool

    def variables(self) -> list[Any]:
        return [v for g in self.groups for v in g.values]


@dataclass
class WeightsImage:
    """A weights file's content in host memory: ``(path, metadata, [(key, array)])``."""

    groups: list[tuple[str, dict[str, Any] | None, list[tuple[str, np.ndarray]]]]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for _, _, entries in self.groups for _, a in entries)


def _h5_store_class() -> Any:
    from keras.src.saving.saving_lib import H5IOStore

    class Recorder(H5IOStore):  # _save_state accepts H5IOStore instances only
        """Records ``make`` and ``store[key] = value`` calls; writes nothing."""

        def __init__(self) -> None:  # no file
            self.groups: list[_Group] = []

        def __bool__(self) -> bool:
            return True

        def make(self, path: str, metadata: dict | None = None) -> Recorder:
            self.groups.append(_Group(path, dict(metadata) if metadata else None))
            return self

        def __setitem__(self, key: str, value: Any) -> None:
            self.groups[-1].keys.append(key)
            self.groups[-1].values.append(value)

        def close(self) -> None:
            pass

    return Recorder


def _record(model: Any) -> list[_Group]:
    """Keras' traversal of ``model`` for ``save_weights``, recorded."""
    from keras.src.optimizers.base_optimizer import BaseOptimizer
    from keras.src.saving import saving_lib

    recorder = _h5_store_class()()
    opt = getattr(model, "optimizer", None)
    patched = (
        opt is not None
        and type(opt).save_own_variables is BaseOptimizer.save_own_variables
        and "save_own_variables" not in vars(opt)
    )
    if patched:  # its own method would read every variable to NumPy: record them instead

        def save_own_variables(store: Any, opt: Any = opt) -> None:
            for i, variable in enumerate(opt.variables):
                store[str(i)] = variable

        opt.__dict__["save_own_variables"] = save_own_variables
    try:
        saving_lib._save_state(
            model, weights_store=recorder, assets_store=None, inner_path="", visited_saveables=set()
        )
    finally:
        if patched:
            del opt.__dict__["save_own_variables"]
    return recorder.groups


def _leave_out_rnn_states(groups: list[_Group], model: Any) -> None:
    """Drop stateful RNN state variables from the groups; number the rest 0, 1, ..."""
    import keras

    states = {
        id(v)
        for layer in stateful_layers(model)
        for v in (keras.tree.flatten(layer.states) if layer.states is not None else [])
    }
    for group in groups:
        entries = list(zip(group.keys, group.values, strict=True))
        group.left_out = [k for k, v in entries if id(v) in states]
        kept = [(k, v) for k, v in entries if id(v) not in states]
        group.legacy_keys = [k for k, _ in kept]  # the numbers save_weights gives them
        group.keys = [str(i) for i in range(len(kept))]  # a plain model's numbers
        group.values = [v for _, v in kept]


_layouts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _signature(model: Any) -> tuple:
    opt = getattr(model, "optimizer", None)
    variables = list(model.variables) + (list(opt.variables) if opt is not None else [])
    return tuple(id(v) for v in variables)


def weights_layout(model: Any) -> WeightsLayout:
    """The layout ``model.save_weights`` would write (kept until the variables change)."""
    import keras

    signature = _signature(model)
    cached = _layouts.get(model)
    if cached is not None and cached[0] == signature:
        return cached[1]
    groups = _record(model)
    _leave_out_rnn_states(groups, model)
    cacheable = all(isinstance(v, keras.Variable) for g in groups for v in g.values)
    layout = WeightsLayout(groups, cacheable)
    if cacheable:
        _layouts[model] = (signature, layout)
    return layout


def _to_host(value: Any) -> np.ndarray:
    """A host copy of a computed value (one copy)."""
    import keras

    return np.array(keras.ops.convert_to_numpy(value), copy=True)


def snapshot_weights(model: Any, values: list[np.ndarray] | None = None) -> WeightsImage:
    """Every value of the weights file, copied to host memory (call with the model
    current: on JAX, after the train step's state is synced back). ``values``: host
    copies of ``weights_layout(model).variables()``, if already taken."""
    from ..backend.host import read_to_host

    layout = weights_layout(model)
    if layout.cacheable:
        values = values if values is not None else read_to_host(model, layout.variables())
        found = iter(values)
        return WeightsImage(
            [(g.path, g.metadata, [(k, next(found)) for k in g.keys]) for g in layout.groups]
        )
    return WeightsImage(
        [
            (g.path, g.metadata, [(k, _to_host(v)) for k, v in zip(g.keys, g.values, strict=True)])
            for g in layout.groups
        ]
    )


# -- writing ------------------------------------------------------------------------------
def _bfloat16(array: np.ndarray) -> bool:
    # (the kind first: a dtype's name costs ~2 us, a weights file has hundreds of arrays)
    return array.dtype.kind == "V" and array.dtype.name == "bfloat16"


def write_weights_file(path: str | Path, image: WeightsImage) -> None:
    """Write ``image`` to ``path`` in Keras' ``.weights.h5`` layout (not fsynced): through
    h5py the first time a layout is written, then from its bytes (see :mod:`.h5_template`)."""
    groups: list[Group] = [
        (
            f"{group_path}/vars" if group_path else "vars",
            dict(metadata or {}),
            [
                (key, array, {"dtype": "bfloat16"} if _bfloat16(array) else {})
                for key, array in entries  # (bfloat16: as H5IOStore writes it)
            ],
        )
        for group_path, metadata, entries in image.groups
        if metadata or entries  # H5IOStore creates a group only for a name or a value
    ]
    write_h5(path, groups)


# -- reading ------------------------------------------------------------------------------
def load_weights_file(
    model: Any, file: Any, keep: AbstractSet[int] = frozenset(), source: Any = ""
) -> None:
    """Assign the datasets of the weights file ``file`` (a path or a binary file object,
    read with h5py) to ``model``'s variables by Keras' layout; variables whose ``id`` is in
    ``keep`` keep their values (a group of them all is not read).

    Only the layout's datasets are read, each once, and each is checked first: reached by
    hard links only, stored in the file itself (no external storage, not virtual), of the
    variable's shape (so a hostile declared size is never allocated). Every dataset is read
    before any variable is assigned; a missing or misfit one is a ``ValueError`` naming it.
    """
    import h5py

    from ..backend.host import assign_from_host

    layout = weights_layout(model)
    with h5py.File(file, "r") as f:
        plan = [
            (variable, value)
            for group in layout.groups
            # a group kept whole is not read (nor checked): e.g. the optimizer's, when the
            # file's optimizer state is skipped (another optimizer, or none saved)
            if not all(id(v) in keep for v in group.values)
            for variable, value in _read_group(f, group, source or file)
            if id(variable) not in keep
        ]
    assign_from_host(model, [v for v, _ in plan], [x for _, x in plan], owned=True)


def _child(parent: Any, name: str, kind: type, where: str) -> Any:
    """``parent[name]`` if it is a hard link to a ``kind`` (None if absent)."""
    import h5py

    link = parent.get(name, getlink=True)
    if link is None:
        return None
    if not isinstance(link, h5py.HardLink):
        raise ValueError(f"{where}: a {type(link).__name__} (refused)")
    obj = parent[name]
    if not isinstance(obj, kind):
        raise ValueError(f"{where}: expected an HDF5 {kind.__name__}, found {type(obj).__name__}")
    return obj


def _vars_group(f: Any, path: str, source: Any) -> Any:
    """The ``vars`` group of ``path``, or None if absent (as ``H5IOStore.get``)."""
    import h5py

    node = f
    for part in [*(path.split("/") if path else []), "vars"]:
        node = _child(node, part, h5py.Group, f"weights file {source}: '{path}/{part}'")
        if node is None:
            return None
    return node


def _read_dataset(group: Any, key: str, shape: tuple, where: str) -> np.ndarray:
    import h5py

    dataset = _child(group, key, h5py.Dataset, where)
    if dataset is None:
        raise ValueError(f"{where} is missing")
    if dataset.external or dataset.is_virtual:
        raise ValueError(f"{where}: stored outside the file (refused)")
    if tuple(dataset.shape) != shape:
        raise ValueError(f"{where} has shape {tuple(dataset.shape)}, the variable {shape}")
    if dataset.attrs.get("dtype") == "bfloat16":  # as H5IOStore writes it
        import ml_dtypes

        return np.array(dataset, dtype=ml_dtypes.bfloat16)
    out = aligned_empty(shape, dataset.dtype)  # (a large variable may take this memory over)
    dataset.read_direct(out)
    return out


def _read_group(f: Any, group: _Group, source: Any) -> list[tuple[Any, np.ndarray]]:
    where = f"weights file {source}: '{group.path + '/' if group.path else ''}vars"
    h5_group = _vars_group(f, group.path, source)
    found = len(h5_group) if h5_group is not None else 0
    if found == len(group.keys):
        keys = group.keys
    elif group.left_out and found == len(group.legacy_keys) + len(group.left_out):
        keys = group.legacy_keys  # written with the RNN states (save_weights on JAX)
    else:
        name = (group.metadata or {}).get("name", group.path)
        raise ValueError(
            f"{where}' holds {found} variables; the model's '{name}' has {len(group.keys)}"
        )
    return [
        (
            variable,
            _read_dataset(
                h5_group, key, tuple(variable.shape), f"{where}/{key}' ({variable.path})"
            ),
        )
        for key, variable in zip(keys, group.values, strict=True)
    ]
