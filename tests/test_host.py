"""Copies of a model's variables to host memory and back (``backend.host``), on a real model
with variables both small and large (TensorFlow assigns arrays of 1 MiB and more one by
one, the rest in one batched call)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from deeptrain.backend.host import (
    EAGER_READS,
    aligned_empty,
    assign_from_host,
    read_to_host,
    values_kept,
)


def small_and_large() -> tuple:
    """A compiled model and its variables with the optimizer's: a 1.2 MB kernel (and its
    Adam moments) among small ones."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((500,)), keras.layers.Dense(600), keras.layers.Dense(3)])
    model.compile("adam", "mse")
    model.optimizer.build(model.trainable_variables)
    return model, [*model.trainable_variables, *model.optimizer.variables]


@pytest.mark.backends
def test_values_assigned_from_host_read_back_equal_large_and_small():
    model, variables = small_and_large()
    assert any(np.prod(v.shape) * 4 >= 2**20 for v in variables)
    rng = np.random.default_rng(1)
    values = [rng.normal(size=v.shape).astype(v.dtype) for v in variables]
    assign_from_host(model, variables, values)
    for got, want in zip(read_to_host(model, variables), values, strict=True):
        np.testing.assert_array_equal(got, want)
    doubled = [2 * x for x in values]  # a second call (the batched writer is kept)
    assign_from_host(model, variables, doubled)
    for v, want in zip(variables, doubled, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), want)


@pytest.mark.backends
def test_owned_aligned_values_are_taken_over_and_train_like_copies():
    """``owned=True`` (what loading a weights file passes): TensorFlow holds 64-byte-aligned
    arrays' memory instead of copying it; the values read back equal, a train step on them
    gives bitwise what it gives on copied values, and unaligned ones are copied (TensorFlow
    would abort the process on them)."""
    keras.utils.set_random_seed(0)

    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(8, 500)).astype("float32"), rng.normal(size=(8, 3)).astype("float32")
    copied, variables = small_and_large()
    values = [np.abs(rng.normal(size=v.shape)).astype(v.dtype) for v in variables]  # (Adam's)
    assign_from_host(copied, variables, values)
    owned, variables = small_and_large()
    mine = []
    for value in values:
        out = aligned_empty(value.shape, value.dtype)
        out[...] = value
        mine.append(out)
    unaligned = np.empty(mine[0].size + 1, mine[0].dtype)[1:].reshape(mine[0].shape)
    unaligned[...] = values[0]
    assert unaligned.ctypes.data % 64 and mine[0].ctypes.data % 64 == 0
    assign_from_host(owned, variables, [unaligned, *mine[1:]], owned=True)
    if keras.backend.backend() == "tensorflow":  # the large aligned ones' memory is held
        large = [i for i, a in enumerate(mine) if i and a.nbytes >= 2**20]
        assert large  # (Adam's moments of the kernel)
        for i in large:
            mine[i].flat[0] = 7.0  # (the caller must not: seen here in the variable)
            assert keras.ops.convert_to_numpy(variables[i]).flat[0] == 7.0
            mine[i].flat[0] = values[i].flat[0]
    del mine, unaligned
    for got, want in zip(read_to_host(owned, variables), values, strict=True):
        np.testing.assert_array_equal(got, want)
    for model in (copied, owned):
        model.train_on_batch(x, y)
    for a, b in zip(copied.weights, owned.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    assert float(owned.evaluate(x, y, verbose=0)) == float(copied.evaluate(x, y, verbose=0))


@pytest.mark.backends
def test_values_are_read_into_the_arrays_offered_where_they_fit():
    """``out``: an earlier read's arrays. A large one of its variable's shape and dtype is
    written into and returned (what a snapshot does with the previous one's); small ones,
    ones of another shape, read-only ones and a list of another length get new arrays. The
    values read are the variables' in every case, and later updates do not show in them."""
    model, variables = small_and_large()
    first = read_to_host(model, variables)
    large = [i for i, a in enumerate(first) if a.nbytes >= 2**20]
    assert large and len(large) < len(first)
    offered: list = [np.full_like(a, -1.0) for a in first]
    offered[large[-1]] = np.full((2, 3), -1.0, "float32")  # another shape
    read_only = offered[large[0]].copy()
    read_only.flags.writeable = False
    offered[large[0]] = read_only
    rng = np.random.default_rng(3)
    values = [rng.normal(size=v.shape).astype(v.dtype) for v in variables]
    assign_from_host(model, variables, values)
    got = read_to_host(model, variables, offered)
    for i, (a, want) in enumerate(zip(got, values, strict=True)):
        np.testing.assert_array_equal(a, want)
        reused = i in large[1:-1]
        assert (a is offered[i]) == reused, i
    assert len(large) > 2  # (the kernel's Adam moments: some were reused)
    assign_from_host(model, variables, [2 * x for x in values])
    for a, want in zip(got, values, strict=True):
        np.testing.assert_array_equal(a, want)  # copies: the variables moved on
    again = read_to_host(model, variables, offered[:-1])  # another length: all new
    assert not any(a is o for a, o in zip(again, offered, strict=False))


@pytest.mark.backends
def test_a_few_variables_read_one_by_one_equal_a_batched_read_and_stay_copies():
    """Up to ``EAGER_READS`` variables are read one by one (TensorFlow: eager reads, cheaper
    than a traced call for a learning rate read per epoch), more in one batched call: both
    give the values, as copies that the train step after the read does not change."""
    model, variables = small_and_large()
    assert len(variables) > EAGER_READS
    rng = np.random.default_rng(4)
    values = [rng.normal(size=v.shape).astype(v.dtype) for v in variables]
    assign_from_host(model, variables, values)
    few = read_to_host(model, variables[:3])
    every = read_to_host(model, variables)
    x, y = rng.normal(size=(8, 500)).astype("float32"), rng.normal(size=(8, 3)).astype("float32")
    model.train_on_batch(x, y)
    for got in (few, every[:3]):
        for a, want in zip(got, values, strict=False):
            np.testing.assert_array_equal(a, want)
    after = read_to_host(model, variables[:3])
    assert not np.array_equal(after[0], values[0])  # (the step changed the kernel)
    np.testing.assert_array_equal(after[0], read_to_host(model, variables)[0])


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's reader")
def test_a_tensor_numpy_cannot_view_is_copied_into_the_array_offered(monkeypatch):
    """TensorFlow: a tensor in memory NumPy cannot view through DLPack (a GPU's) is copied
    to the host first, then into the array offered."""
    model = keras.Sequential([keras.Input((500,)), keras.layers.Dense(600)])
    (kernel,) = [v for v in model.variables if len(v.shape) == 2]
    offered = [np.zeros(kernel.shape, "float32")]

    def not_host_memory(x):
        raise BufferError("not host memory")

    monkeypatch.setattr(np, "from_dlpack", not_host_memory)
    (got,) = read_to_host(model, [kernel], offered)
    assert got is offered[0]
    np.testing.assert_array_equal(got, keras.ops.convert_to_numpy(kernel))


@pytest.mark.backends
@pytest.mark.parametrize("owned", [False, True], ids=["copied", "owned"])
def test_values_kept_stay_as_they_were_when_the_variables_are_assigned(owned):
    """What a load's rollback holds (``values_kept``: no copy on TensorFlow and JAX): the
    variables' values as they were, whatever a load then assigns (large arrays taken over
    by TensorFlow with ``owned``, small ones batched); assigned back, the variables hold
    them again."""
    model, variables = small_and_large()
    before = read_to_host(model, variables)
    kept = values_kept(model, variables)
    rng = np.random.default_rng(4)
    new = []
    for v in variables:
        out = aligned_empty(v.shape, v.dtype)
        out[...] = rng.normal(size=v.shape).astype(v.dtype)
        new.append(out)
    assign_from_host(model, variables, new, owned=owned)
    for v, value, old in zip(variables, kept, before, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(value), old)
        assert not np.array_equal(keras.ops.convert_to_numpy(v), old) or old.size < 2
    for v, value in zip(variables, kept, strict=True):
        v.assign(value)
    for got, old in zip(read_to_host(model, variables), before, strict=True):
        np.testing.assert_array_equal(got, old)
