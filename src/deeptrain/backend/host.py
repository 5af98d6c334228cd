"""Keras variables to and from host memory, for checkpoints: few backend calls.

:func:`read_to_host`: each array returned is the caller's own (later updates of the
variable do not show in it) and was copied once, into an array of an earlier read where the
caller offers one (a checkpoint's snapshot reuses the previous one's: writing into fresh
memory costs its page faults, 30-70 ms for 120 MB here, several times the copy).
TensorFlow reads many variables in one traced function (its call costs ~0.2 ms, an eager
read ~25 us a variable: a few, e.g. a learning rate read per epoch, are read eagerly); JAX
fetches them in one ``device_get``; torch copies each tensor's memory directly.
:func:`assign_from_host` assigns many at once (TensorFlow: one traced function).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "read_to_host",
    "values_kept",
    "assign_from_host",
    "local_whole_copy",
    "held_whole",
]

_readers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # owner -> {key: reader}
_writers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_PER_OWNER = 4  # sets of variables kept per owner (snapshot, load, rollback capture)


def _cached(cache: weakref.WeakKeyDictionary, owner: Any, key: tuple, make: Callable) -> Any:
    """``make()``, kept in ``cache`` for ``owner`` and ``key`` (the newest few)."""
    try:
        entries = cache.setdefault(owner, {})
    except TypeError:  # not weak-referenceable: no cache
        return make()
    if key not in entries:
        if len(entries) >= _PER_OWNER:
            del entries[next(iter(entries))]
        entries[key] = make()
    return entries[key]


REUSED_BYTES = 2**20  # arrays this large are written into an offered one (small: new)
EAGER_READS = 8  # TensorFlow: up to this many variables read eagerly, more in a traced call


def read_to_host(
    owner: Any, variables: Sequence[Any], out: Sequence[np.ndarray | None] | None = None
) -> list[np.ndarray]:
    """Copies of ``variables``' values; the backend's batched reader is kept on ``owner``
    (e.g. the model) while the set of variables stays the same. ``out``: arrays of an
    earlier read of the same variables, no longer used (None where not offered): one of
    :data:`REUSED_BYTES` or more, of its variable's shape and dtype, is written into and
    returned instead of a new array."""
    import keras

    if not variables:
        return []
    targets = _reusable(variables, out)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        if len(variables) <= EAGER_READS:
            tensors = [v.value.read_value() for v in variables]
        else:
            tensors = _tensorflow_reader(owner, variables)()
        return [_tensor_to_host(t, o) for t, o in zip(tensors, targets, strict=True)]
    if backend == "jax":
        return _jax_read(variables, targets)
    if backend == "torch":
        return [_torch_copy(v, o) for v, o in zip(variables, targets, strict=True)]
    return [v.numpy() for v in variables]


def values_kept(owner: Any, variables: Sequence[Any]) -> list[Any]:
    """The variables' current values, to assign back later, without a copy where the
    backend never changes them in place: TensorFlow (a read held aliases the variable's
    buffer, and a write then gives the variable a new one) and JAX (immutable arrays);
    torch updates tensors in place, so its are host copies."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        return list(_tensorflow_reader(owner, variables)()) if variables else []
    if backend == "jax":
        return [v.value for v in variables]
    return read_to_host(owner, variables)


def _reusable(
    variables: Sequence[Any], out: Sequence[np.ndarray | None] | None
) -> list[np.ndarray | None]:
    """Per variable, the offered array to write into, or None (a new one)."""
    if out is None or len(out) != len(variables):
        return [None] * len(variables)
    return [
        o
        if o is not None
        and o.nbytes >= REUSED_BYTES
        and o.dtype.kind in "fiub"  # (bfloat16 and the like: new arrays)
        and o.flags.c_contiguous
        and o.flags.writeable
        and o.shape == tuple(v.shape)
        and str(o.dtype) == str(v.dtype)
        else None
        for v, o in zip(variables, out, strict=True)
    ]


def _tensorflow_reader(owner: Any, variables: Sequence[Any]) -> Callable[[], list[Any]]:
    def make() -> Callable[[], list[Any]]:
        import tensorflow as tf

        values = [v.value for v in variables]  # the tf.Variables

        @tf.function(autograph=False)
        def read() -> list:
            return [tf.identity(v) for v in values]

        return read

    return _cached(_readers, owner, tuple(id(v) for v in variables), make)


def _tensor_to_host(tensor: Any, out: np.ndarray | None) -> np.ndarray:
    """A TensorFlow tensor's value, copied once: into ``out`` (through a DLPack view of the
    tensor's memory; a GPU's is copied to the host first), or into a new array (np.array
    copies the tensor's buffer)."""
    if out is None:
        return np.array(tensor)
    try:
        view = np.from_dlpack(tensor)
    except (BufferError, RuntimeError, TypeError, ValueError):  # not host memory
        view = tensor.numpy()
    np.copyto(out, view)
    return out


_ONE_BY_ONE_BYTES = 2**20  # TensorFlow: arrays this large are assigned one at a time


def assign_from_host(
    owner: Any, variables: Sequence[Any], values: Sequence[np.ndarray], owned: bool = False
) -> None:
    """``variable.assign(value)`` for each pair (values of the variables' shapes); the
    backend's batched writer is kept on ``owner`` as the reader is. ``owned``: the values
    are the caller's alone and not used afterwards, so TensorFlow may take over the memory
    of those :func:`aligned_empty` made instead of copying it."""
    import keras

    if keras.backend.backend() != "tensorflow" or not variables:
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)
        return
    pairs = [
        (v, np.asarray(x, dtype=v.value.dtype.as_numpy_dtype))
        for v, x in zip(variables, values, strict=True)
    ]
    # Large arrays one by one: the batched call converts all its inputs to tensors first (a
    # copy of the whole state into fresh memory); one at a time, each copy reuses the last
    # one's memory (1.2 GB of Adam state: 280 ms against 400-480 batched). Small ones in one
    # call: an eager assign costs ~50 us each, hundreds of variables add up.
    small = [(v, x) for v, x in pairs if x.nbytes < _ONE_BY_ONE_BYTES]
    for v, x in pairs:
        if x.nbytes >= _ONE_BY_ONE_BYTES:  # (as the batched writer assigns: the backend's)
            v.value.assign(_adopted(x) if owned and _adoptable(x) else x)
    if small:
        _tensorflow_writer(owner, [v for v, _ in small])([x for _, x in small])


def aligned_empty(shape: Sequence[int], dtype: Any) -> np.ndarray:
    """An uninitialised C-ordered array whose data starts on a 64-byte boundary, where
    TensorFlow's kernels require a tensor's memory to start (so it can be adopted)."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    buffer = np.empty(nbytes + _ALIGNMENT, np.uint8)
    start = -buffer.ctypes.data % _ALIGNMENT
    return buffer[start : start + nbytes].view(dtype).reshape(shape)


_ALIGNMENT = 64  # TensorFlow's EIGEN_MAX_ALIGN_BYTES, its CPU allocator's alignment


def _adoptable(x: np.ndarray) -> bool:
    """Whether TensorFlow can hold ``x``'s memory as a tensor's (unaligned memory would make
    its kernels abort the process: checked here, never left to TensorFlow)."""
    return (
        x.flags.c_contiguous
        and x.flags.writeable
        and x.ctypes.data % _ALIGNMENT == 0
        and x.dtype.kind in "fiub"
        and x.dtype.isnative
    )


def _adopted(x: np.ndarray) -> Any:
    """``x`` as a TensorFlow tensor on the same memory (DLPack): converting it would copy
    it into fresh memory, whose page faults cost more than the copy (1.2 GB: ~2.5 s here)."""
    import tensorflow as tf

    try:
        return tf.experimental.dlpack.from_dlpack(x.__dlpack__())
    except (AttributeError, BufferError):  # (a TensorFlow or NumPy without it: a copy)
        return x


def _tensorflow_writer(owner: Any, variables: Sequence[Any]) -> Callable[[list], None]:
    def make() -> Callable[[list], None]:
        import tensorflow as tf

        targets = [v.value for v in variables]
        signature = [tf.TensorSpec(v.shape, v.dtype) for v in targets]

        @tf.function(autograph=False, input_signature=[signature])
        def write(values: list) -> None:
            for target, value in zip(targets, values, strict=True):
                target.assign(value)

        return write

    return _cached(_writers, owner, tuple(id(v) for v in variables), make)


def held_whole(value: Any) -> bool:
    """Whether this process's devices hold every element of the JAX array ``value``
    (always, unless some of its parts live only on other processes' devices)."""
    if getattr(value, "is_fully_addressable", True):
        return True
    covered = np.zeros(value.shape, bool)
    for shard in value.addressable_shards:
        covered[shard.index] = True
    return bool(covered.all())


def local_whole_copy(value: Any) -> Any:
    """The JAX array ``value`` whole, from this process's devices alone (no collective):
    itself when all its devices are local, else one local copy of it (replicated across
    processes), else assembled from the local shards; None when some of its parts live
    only on other processes."""
    if getattr(value, "is_fully_addressable", True):
        return value
    shards = value.addressable_shards
    for shard in shards:  # replicated across processes: any local copy
        if shard.data.shape == value.shape:
            return shard.data
    if not held_whole(value):
        return None
    whole = np.empty(value.shape, value.dtype)  # sharded within this process
    for shard in shards:
        whole[shard.index] = np.asarray(shard.data)
    return whole


def _jax_read(variables: Sequence[Any], out: Sequence[np.ndarray | None]) -> list[np.ndarray]:
    import jax

    values = [local_whole_copy(v.value) for v in variables]
    missing = [v.path for v, x in zip(variables, values, strict=True) if x is None]
    if missing:
        raise ValueError(f"variables split across processes cannot be read here: {missing[:3]}")
    fetched = jax.device_get(values)
    return [_own_copy(a, o) for a, o in zip(fetched, out, strict=True)]


def _own_copy(fetched: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """A fetched JAX value as the caller's own array: copied into ``out``, or itself when
    ``device_get`` made it (on CPU it may hand out views of the device buffers: copied)."""
    if out is not None:
        np.copyto(out, fetched)
        return out
    return fetched if fetched.flags.owndata and fetched.flags.writeable else np.array(fetched)


def _torch_copy(variable: Any, out: np.ndarray | None = None) -> np.ndarray:
    tensor = variable.value.detach()
    if str(tensor.dtype) == "torch.bfloat16":  # no NumPy view of bfloat16: Keras converts
        return variable.numpy()
    if out is not None:  # (from a GPU: copied straight into it)
        import torch

        torch.from_numpy(out).copy_(tensor)
        return out
    if tensor.device.type == "cpu":
        return tensor.numpy().copy()  # a view of the live tensor: copied
    return tensor.cpu().numpy()  # a new host tensor: already a copy
