"""Copies of a model's variables to host memory and back (``backend.host``), on a real model
with variables both small and large (TensorFlow assigns arrays of 1 MiB and more one by
one, the rest in one batched call)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from deeptrain.backend.host import assign_from_host, read_to_host


@pytest.mark.backends
def test_values_assigned_from_host_read_back_equal_large_and_small():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((500,)), keras.layers.Dense(600), keras.layers.Dense(3)]
    )  # a 1.2 MB kernel among small variables
    model.compile("adam", "mse")
    model.optimizer.build(model.trainable_variables)
    variables = [*model.trainable_variables, *model.optimizer.variables]
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
