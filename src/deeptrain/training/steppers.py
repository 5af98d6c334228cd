"""Fast train steps: ``model.train_on_batch`` minus its per-call overhead, per backend.

``fit_fn='train_on_batch'`` (the default) runs one of these. Each returns the same per-batch
metrics, and leaves the same weights, as ``model.train_on_batch(x, y, sample_weight=sw)``
(tested bit for bit on every backend); what they save is Keras' generic per-call plumbing,
which on a small model costs more than the step itself:

* TensorFlow: ``train_on_batch`` resets the metrics with one eager ``assign`` per metric
  variable, then goes through Keras' data-adapter iterator. Here one ``tf.function`` resets
  them *inside* the graph and runs ``model.train_step``.
* torch: ``train_on_batch`` walks every layer to check the model is built and remakes the
  train function each call; here ``model.train_function`` is called directly, on the
  batch as torch tensors, as ``fit`` feeds it (:func:`as_fit_feeds`).
* JAX: ``train_on_batch`` gathers every variable, runs the jitted step and assigns every
  variable back, every call. Here the state returned by one step is fed (donated) to the
  next and written back to the model only by :meth:`JaxStepper.sync`, as ``fit`` does per
  epoch. The TrainGenerator syncs before anything reads the model (validation, checkpoints,
  callbacks, RNN resets, the end of ``train()``).

The first call on torch goes through ``train_on_batch``, which builds the model, optimizer,
metrics and train function. On TensorFlow and JAX those are built symbolically (no step)
and the first step is already the stepper's own: one compilation of the train step, not
two (``train_on_batch`` would compile Keras' own first).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..backend.host import local_whole_copy, read_to_host
from .fitting import scalar_metric

__all__ = ["as_fit_feeds", "make_train_step"]


class _Stepper:
    name = "train_on_batch"

    def __init__(self, model: Any):
        self.model = model
        self._built_for: Any = None  # the model's train function when the step was built

    def __call__(self, x: Any, y: Any, sw: Any = None) -> dict[str, float]:
        """One train step on ``(x, y, sw)``; returns its metrics (each backend's)."""
        raise NotImplementedError

    def _ready(self) -> bool:
        """Built by a first ``train_on_batch``, and the step is current: ``compile()``
        replaces the model's train function, and then the step is rebuilt (a traced
        step would keep the old loss and optimizer)."""
        m = self.model
        if m.train_function is None or not m.optimizer.built:
            return False
        if m.train_function is not self._built_for:
            self._build()
            self._built_for = m.train_function
        return True

    def _build(self) -> None:
        """(Re)make the compiled step for the model as it is compiled now."""

    def _build_without_step(self, x: Any, y: Any, sw: Any) -> None:
        """Ready the step, building the model, its metrics, loss, optimizer and train
        function symbolically where they are not built: ``train_on_batch`` would compile
        Keras' own train function first, and the stepper then its own (two compilations
        of the whole train step: seconds on a small model, minutes on a large one)."""
        if not self._ready():
            self._symbolic_build(x, y, sw)
            self._ready()

    def _symbolic_build(self, x: Any, y: Any, sw: Any) -> None:
        m = self.model
        m._symbolic_build(data_batch=_present((x, y, sw)))
        m.make_train_function()

    def sync(self) -> None:
        """Write any state kept outside the model back into it (no-op here)."""

    def read(self, variables: Sequence[Any], fixed: bool = False) -> list[np.ndarray]:
        """Host copies of the current values of ``variables`` (the model's or its
        optimizer's), without ending any state kept outside the model; ``fixed``: they
        are not written by the train step (a learning rate), so a copy may be reused."""
        return read_to_host(self.model, variables)

    def discard(self) -> None:
        """Drop any state kept outside the model without writing it back (no-op here)."""


class TensorFlowStepper(_Stepper):
    """One ``tf.function``; under a ``tf.distribute`` strategy with several replicas the
    batch is split into equal per-replica shards (``train_on_batch`` would give every
    replica the whole batch) and the logs are averaged over replicas, as ``fit`` does."""

    def _build(self) -> None:
        import tensorflow as tf
        from keras.src.backend.tensorflow.trainer import reduce_per_replica

        model = self.model
        strategy = model.distribute_strategy

        def one_step(data):
            model.reset_metrics()  # per-batch metrics, as train_on_batch gives
            return model.train_step(data)

        def step(data):
            logs = reduce_per_replica(
                strategy.run(one_step, args=(data,)), strategy, reduction="auto"
            )
            return global_metrics(model, logs)

        self._step = (
            step
            if model.run_eagerly
            else tf.function(step, reduce_retracing=True, jit_compile=model.jit_compile)
        )

    @property
    def replicas(self) -> int:
        return int(self.model.distribute_strategy.num_replicas_in_sync)

    def __call__(self, x: Any, y: Any, sw: Any = None) -> dict[str, float]:
        # (with several replicas, train_on_batch would also give every replica the whole batch)
        self._build_without_step(x, y, sw)
        data = (x, y, sw) if self.replicas == 1 else split_for_replicas(self.model, (x, y, sw))
        return {k: scalar_metric(k, v) for k, v in self._step(data).items()}

    def _symbolic_build(self, x: Any, y: Any, sw: Any) -> None:
        with self.model.distribute_strategy.scope():
            super()._symbolic_build(x, y, sw)


def global_metrics(model: Any, logs: dict[str, Any]) -> dict[str, Any]:
    """``logs`` of a step under a ``tf.distribute`` strategy with the model's metrics read
    in cross-replica context: their variables (sums and counts, AUC's confusion buckets,
    ...) reduced over replicas as their aggregation says, so the results are the global
    batch's, as one device computes them. The logs' own values are each replica's result
    averaged, wrong for AUC, precision or weighted metrics; others (a custom
    ``train_step``'s) stay so."""
    if model.distribute_strategy.num_replicas_in_sync == 1:
        return logs
    results = model.get_metrics_result()
    return {k: results.get(k, v) for k, v in logs.items()}


def split_for_replicas(model: Any, arrays: tuple[Any, ...]) -> Any:
    """``(x, y[, sw])`` split along the batch into one equal shard per replica of the
    model's strategy, as distributed values (each replica receives only its shard)."""
    from ..distribute.base import batch_rows, check_split, take_rows

    strategy = model.distribute_strategy
    n_replicas = strategy.num_replicas_in_sync
    present = _present(arrays)
    n = batch_rows(present[0])
    what = "a batch fed to the model (after the preprocessor)"
    check_split(n, n_replicas, type(strategy).__name__, what)
    size = n // n_replicas

    def shard(ctx: Any) -> tuple[Any, ...]:
        i = ctx.replica_id_in_sync_group
        return tuple(take_rows(a, slice(i * size, (i + 1) * size)) for a in present)

    return strategy.experimental_distribute_values_from_function(shard)


def _present(arrays: tuple[Any, ...]) -> tuple[Any, ...]:
    """``(x, y, sw)`` without trailing Nones (no sample weight, or no labels)."""
    while len(arrays) > 1 and arrays[-1] is None:
        arrays = arrays[:-1]
    return arrays


def as_fit_feeds(arrays: tuple[Any, ...]) -> tuple[Any, ...]:
    """``(x, y, sw)`` as ``fit`` feeds them to the train and test steps: on torch, tensors
    on Keras' device (``train_on_batch`` passes NumPy arrays on, and then a loss or metric
    that works under ``fit``, ``y_true - y_pred``, fails, and each metric copies ``y`` to
    the GPU again); unchanged on the other backends, whose steps convert them."""
    import keras

    if keras.backend.backend() != "torch":
        return arrays
    return tuple(None if a is None else _to_torch(a) for a in arrays)


# NumPy dtypes torch takes as they are (Keras converts the others: uint32 to int64, ...)
_TORCH_NATIVE = frozenset(
    np.dtype(t)
    for t in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
)


def _to_torch(data: Any) -> Any:
    """``data`` (an array, or a structure of them: several inputs) as torch tensors."""
    import keras

    if isinstance(data, np.ndarray):
        return _array_to_torch(data)
    return keras.tree.map_structure(_array_to_torch, data, none_is_leaf=False)


def _array_to_torch(array: Any) -> Any:
    """A plain array without a copy on the CPU (``torch.as_tensor``, ~7 us); other dtypes
    and read-only memory through Keras' ``convert_to_tensor``, which copies every array
    (~50 us each: on a small model, 6% of a step)."""
    import keras
    import torch
    from keras.src.backend.torch.core import get_device

    if isinstance(array, np.ndarray) and array.dtype in _TORCH_NATIVE and array.flags.writeable:
        return torch.as_tensor(array, device=get_device())
    return keras.ops.convert_to_tensor(array)


class TorchStepper(_Stepper):
    def __call__(self, x: Any, y: Any, sw: Any = None) -> dict[str, float]:
        x, y, sw = as_fit_feeds((x, y, sw))
        if not self._ready():  # the first builds everything (a step: nothing is compiled)
            return self.model.train_on_batch(x, y, sample_weight=sw, return_dict=True)
        m = self.model
        m.reset_metrics()
        logs = m.train_function([(x, y, sw)])
        return {k: scalar_metric(k, v) for k, v in logs.items()}


class JaxStepper(_Stepper):
    """State kept on the device between steps; see the module docstring.

    Until :meth:`sync`, the model's variables hold donated (deleted) buffers: reading them
    fails loudly ("Array has been deleted") rather than giving stale weights. Metrics
    variables are not carried from step to step: each step starts from the values
    ``reset_metrics()`` gives, so the logs are the batch's own, as with ``train_on_batch``.
    Sync before recompiling the model (TrainGenerator does at the end of ``train()`` and
    before callbacks).
    """

    def __init__(self, model: Any):
        super().__init__(model)
        self.state: tuple | None = None
        self._slots: dict[int, tuple[int, int]] = {}  # id(variable) -> where in the state
        self._metric_slots: dict[int, int] = {}  # id(metric variable) -> its index
        self._metrics_vars: list | None = None
        self._metrics_reset: list | None = None
        self._fixed: dict[int, np.ndarray] = {}  # read(fixed=True) copies, this device state

    def _build(self) -> None:
        import jax

        model = self.model
        self._metrics_reset = None

        def step(state, metrics_reset, data):
            trainable, non_trainable, optimizer_vars = state
            logs, (trainable, non_trainable, optimizer_vars, metrics_vars) = model.train_step(
                (trainable, non_trainable, optimizer_vars, metrics_reset), data
            )
            return logs, (trainable, non_trainable, optimizer_vars), metrics_vars

        self._step = jax.jit(step, donate_argnums=0, **self._jit_options())

    def _jit_options(self) -> dict[str, Any]:
        """Extra ``jax.jit`` options (distributed steps pin the state's shardings)."""
        return {}

    def _start(self) -> None:
        import jax.numpy as jnp

        m = self.model
        m.reset_metrics()
        if self._metrics_reset is None:  # copies: the step must not donate the originals
            self._metrics_reset = [jnp.array(v.value, copy=True) for v in m.metrics_variables]
        groups = (m.trainable_variables, m.non_trainable_variables, m.optimizer.variables)
        self.state = tuple([v.value for v in group] for group in groups)
        self._slots = {id(v): (g, i) for g, group in enumerate(groups) for i, v in enumerate(group)}
        self._metric_slots = {id(v): i for i, v in enumerate(m.metrics_variables)}
        self._fixed = {}

    def __call__(self, x: Any, y: Any, sw: Any = None) -> dict[str, float]:
        import jax

        if self.state is None:
            self._build_without_step(x, y, sw)
            self._start()
        logs, self.state, self._metrics_vars = self._step(
            self.state, self._metrics_reset, (x, y, sw)
        )
        # waits for this step: DeepTrain's per-batch bookkeeping needs the numbers. One
        # device_get for all of them (their copies started together, one wait), not a
        # float() each (a wait and a copy in turn)
        return {k: scalar_metric(k, v) for k, v in jax.device_get(logs).items()}

    def sync(self) -> None:
        """Write the device state back into the model's variables; the next step reads
        them again, so changes made in between (loaded weights, reset states) count."""
        if self.state is None:
            return
        m = self.model
        for ref, value in self._state_pairs():
            ref.assign(value)
        if self._metrics_vars is not None:
            for ref, value in zip(m.metrics_variables, self._metrics_vars, strict=True):
                ref.assign(value)
        self.state = None

    def read(self, variables: Sequence[Any], fixed: bool = False) -> list[np.ndarray]:
        """Host copies of ``variables``, from the device state where it holds them (a
        learning rate read per epoch need not end it, nor write into the model).

        ``fixed``: variables the train step reads but does not write (a learning rate held
        in a Variable; Keras' optimizers only read it). Their values change only between
        device states (whoever sets one, a callback or the user, has the model synced
        first, and the next step starts a new state), so one copy per state is read: a
        read from the device costs ~50 us in place, next to a 0.3 ms step."""
        state = self.state
        if state is None:
            return super().read(variables)
        values = []
        for v in variables:
            copy = self._fixed.get(id(v)) if fixed else None
            if copy is None:
                copy = self._read_one(state, v)
                if fixed:
                    self._fixed[id(v)] = copy
            values.append(copy.copy() if fixed else copy)
        return values

    def _read_one(self, state: tuple, v: Any) -> np.ndarray:
        slot = self._slots.get(id(v))
        metric = self._metric_slots.get(id(v))
        if slot is not None:
            value = local_whole_copy(state[slot[0]][slot[1]])
        elif metric is not None and self._metrics_vars is not None:
            value = local_whole_copy(self._metrics_vars[metric])  # (the last step's)
        else:  # not in the device state: the model holds it
            return super().read([v])[0]
        if value is None:
            raise ValueError(f"{v.path} is split across processes: it cannot be read here")
        return np.array(value)  # (a copy: the next step donates the buffer)

    def _state_pairs(self) -> Iterator[tuple[Any, Any]]:
        """``(variable, device value)`` for every variable of the device state."""
        assert self.state is not None  # (the callers check)
        m = self.model
        refs = (m.trainable_variables, m.non_trainable_variables, m.optimizer.variables)
        for group, values in zip(refs, self.state, strict=True):
            yield from zip(group, values, strict=True)

    def discard(self) -> None:
        """Forget the device state (a step was cut half-way; a checkpoint is loaded next)."""
        self.state = self._metrics_vars = None


def make_train_step(model: Any) -> _Stepper:
    """The fast ``train_on_batch`` of the current Keras backend."""
    import keras

    backend = keras.backend.backend()
    cls = {"tensorflow": TensorFlowStepper, "torch": TorchStepper, "jax": JaxStepper}.get(backend)
    if cls is None:
        raise ValueError(f"no train step for Keras backend {backend!r}")
    return cls(model)
