"""The fast train steps behind ``fit_fn='train_on_batch'`` give exactly what
``model.train_on_batch`` gives: per-batch metrics, weights, optimizer and metric variables,
bit for bit, on the backend KERAS_BACKEND selects (across a JAX sync and a recompile).
Dropout is seeded: on torch an unseeded one draws from the global RNG the two models share."""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")

from deeptrain.training.steppers import as_fit_feeds, make_train_step  # noqa: E402

pytestmark = pytest.mark.backends


def model():
    keras.utils.set_random_seed(0)
    m = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dropout(0.25, seed=1),
            keras.layers.Dense(3, "softmax"),
        ]
    )
    m.compile(keras.optimizers.Adam(0.01), "categorical_crossentropy", metrics=["accuracy"])
    return m


def test_stepper_matches_train_on_batch_bit_for_bit():
    rng = np.random.default_rng(0)
    batches = [
        (
            rng.normal(size=(8, 6)).astype("float32"),
            np.eye(3, dtype="float32")[rng.integers(0, 3, 8)],
            rng.random(8).astype("float32") if i % 3 == 0 else None,
        )
        for i in range(12)
    ]
    ref, fast = model(), model()
    step = make_train_step(fast)
    for i, (x, y, sw) in enumerate(batches):
        a = ref.train_on_batch(x, y, sample_weight=sw, return_dict=True)
        b = step(x, y, sw)
        assert sorted(a) == sorted(b)
        for k in a:
            assert np.float32(a[k]) == np.float32(b[k]), (i, k, a[k], b[k])
        if i == 5:
            step.sync()  # a sync point in the middle, then carry on from the model
        if i == 8:  # recompiled mid-run (multi-phase training): the step follows
            step.sync()  # as TrainGenerator does before user code runs (end of train())
            for m in (ref, fast):
                m.compile(keras.optimizers.SGD(0.05, momentum=0.5), "mse", metrics=["mae"])
    step.sync()
    for group in ("variables", "metrics_variables"):
        for va, vb in zip(getattr(ref, group), getattr(fast, group), strict=True):
            np.testing.assert_array_equal(np.asarray(va), np.asarray(vb), err_msg=va.path)
    for va, vb in zip(ref.optimizer.variables, fast.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(va), np.asarray(vb), err_msg=va.path)


def test_the_train_step_is_traced_once():
    """On TensorFlow and JAX the first call builds the model, metrics and optimizer
    symbolically and runs the stepper's own step: the train step is traced and compiled
    once (``train_on_batch`` would compile Keras' own train function first). On torch,
    which compiles nothing, every step runs it."""
    rng = np.random.default_rng(2)
    m, traces = model(), []
    train_step = m.train_step

    def counted(*args):
        traces.append(1)
        return train_step(*args)

    m.train_step = counted
    step = make_train_step(m)
    for _ in range(4):
        step(rng.normal(size=(8, 6)).astype("float32"), np.eye(3, dtype="float32")[[0, 1] * 4])
    assert len(traces) == (4 if keras.backend.backend() == "torch" else 1)


def test_read_gives_current_values_and_the_step_goes_on():
    """``read`` gives host copies of the variables as they are now (on JAX, from the device
    state, which it neither ends nor writes into the model), and training goes on exactly
    as without the reads."""
    rng = np.random.default_rng(1)
    labels = np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2, 0, 1]]
    batches = [(rng.normal(size=(8, 6)).astype("float32"), labels) for _ in range(6)]
    ref, fast = model(), model()
    ref_step, step = make_train_step(ref), make_train_step(fast)
    for i, (x, y) in enumerate(batches):
        ref_step(x, y)
        step(x, y)
        iterations, kernel = step.read([fast.optimizer.iterations, fast.trainable_variables[0]])
        if hasattr(step, "state"):
            assert step.state is not None  # the device state goes on
        assert int(iterations) == i + 1
        ref_step.sync()
        np.testing.assert_array_equal(kernel, np.asarray(ref.trainable_variables[0]))
        kernel[...] = 0  # the caller's own copy
        (again,) = step.read([fast.trainable_variables[0]])
        np.testing.assert_array_equal(again, np.asarray(ref.trainable_variables[0]))
        ref_metrics = [np.asarray(v) for v in ref.metrics_variables]
        for value, expected in zip(step.read(fast.metrics_variables), ref_metrics, strict=True):
            np.testing.assert_array_equal(value, expected)  # the last step's metrics
    step.sync()
    for va, vb in zip(ref.variables, fast.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(va), np.asarray(vb), err_msg=va.path)


def test_a_fixed_read_is_the_current_value_after_the_model_is_changed_between_steps():
    """``read(..., fixed=True)`` (a learning rate: the step reads it, never writes it) may
    reuse its copy while the device state goes on (JAX), and gives the new value once the
    variable was set after a sync (what a callback that sets it gets first); its copies
    are the caller's."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 6)).astype("float32")
    y = np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2, 0, 1]]
    m = model()
    step = make_train_step(m)
    rate = m.optimizer._learning_rate
    seen = []
    for new_rate in (None, 0.5, None, 0.25):
        if new_rate is not None:
            step.sync()  # (the TrainGenerator syncs before a callback that may set it)
            m.optimizer.learning_rate = new_rate
        step(x, y)
        for _ in range(2):
            (value,) = step.read([rate], fixed=True)
            seen.append(float(value))
            value[...] = -1  # the caller's own copy
    assert seen == [np.float32(r) for r in (0.01, 0.01, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25)]
    (iterations,) = step.read([m.optimizer.iterations])
    assert int(iterations) == 4


def test_batches_reach_the_step_as_fit_gives_them():
    """torch: tensors of Keras' convert_to_tensor's dtypes and values, plain arrays without
    a copy, nested inputs and read-only memory (no torch warning) included; the other
    backends: the arrays as they are."""
    x = np.arange(6, dtype="float32").reshape(2, 3)[:, :2]  # a window: not contiguous
    read_only = np.arange(4.0).reshape(2, 2)
    read_only.flags.writeable = False
    labels = {"a": read_only, "b": np.arange(2, dtype="uint32")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fed = as_fit_feeds((x, labels, None))
    if keras.backend.backend() != "torch":
        assert fed == (x, labels, None)
        return
    expected = keras.tree.map_structure(keras.ops.convert_to_tensor, (x, labels))
    assert fed[2] is None
    for got, want in zip(keras.tree.flatten(fed[:2]), keras.tree.flatten(expected), strict=True):
        assert got.dtype == want.dtype and got.device == want.device
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(got), keras.ops.convert_to_numpy(want)
        )
    if fed[0].device.type == "cpu":  # the array's own memory, not a copy
        x[0, 0] = 7.0
        assert float(fed[0][0, 0]) == 7.0
