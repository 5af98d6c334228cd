"""JAX: ``keras.distribution`` (``DataParallel``, ``ModelParallel``), one or many processes.

Set up as Keras documents it: ``keras.distribution.initialize(...)`` first (several
processes), then ``keras.distribution.set_distribution(...)`` before the model is built.

Which rows a process feeds comes from the distribution's data layout, never from a process
index: with a mesh whose model axis spans processes, every process must feed the *whole*
global batch (rows derived from ``data_shard_id`` would silently train on wrong rows).
Inputs become global arrays with ``jax.make_array_from_process_local_data`` and the jitted
step gets the variables' shardings as ``out_shardings``, as Keras' own trainer does: the
step is then bitwise equal to ``train_on_batch`` under the same distribution.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..backend.host import held_whole
from ..training.steppers import JaxStepper
from .base import Distribution, DistributionError, StepFn, batch_rows
from .failure_watch import FailureWatch

__all__ = ["JaxDistribution", "DistributedJaxStepper"]


class JaxDistribution(Distribution):
    def __init__(self, distribution: Any):
        import jax

        self.keras_distribution = distribution
        self.process_index = jax.process_index()
        self.process_count = jax.process_count()
        self._rows: dict[int, slice | np.ndarray] = {}
        self._shardings: dict[tuple[int, ...], Any] = {}
        self._watch: FailureWatch | None = None  # (several processes: see start_loop)

    @property
    def replicas(self) -> int:
        mesh = self.keras_distribution.device_mesh
        return int(dict(zip(mesh.axis_names, mesh.shape, strict=True))[self._batch_axis])

    @property
    def _batch_axis(self) -> str:
        return self.keras_distribution.batch_dim_name

    def describe(self) -> str:
        mesh = self.keras_distribution.device_mesh
        shape = ", ".join(f"{n}={s}" for n, s in zip(mesh.axis_names, mesh.shape, strict=True))
        return (
            f"JAX {type(self.keras_distribution).__name__} (mesh {shape}; "
            f"{self.process_count} process(es))"
        )

    # -- data ------------------------------------------------------------------------
    def local_rows(self, n: int) -> slice | np.ndarray:
        rows = self._rows.get(n)
        if rows is None:
            layout = self.keras_distribution.get_data_layout((n,)).backend_layout
            spans = sorted(
                {
                    (s[0].start or 0, n if s[0].stop is None else s[0].stop)
                    for s in layout.addressable_devices_indices_map((n,)).values()
                }
            )
            merged: list[list[int]] = []
            for start, stop in spans:
                if merged and start <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], stop)
                else:
                    merged.append([start, stop])
            rows = (
                slice(*merged[0])
                if len(merged) == 1
                else np.concatenate([np.arange(a, b) for a, b in merged])
            )
            self._rows[n] = rows
        return rows

    def to_global(self, arrays: tuple[Any, ...], n: int) -> tuple[Any, ...]:
        """This process's rows of a global batch of ``n`` as global arrays, laid out as the
        distribution says."""
        import jax

        leaves, tree = jax.tree_util.tree_flatten(arrays)  # (None leaves drop out)
        leaves = [np.asarray(a) for a in leaves]
        shapes = [(n, *a.shape[1:]) for a in leaves]
        shardings = [self._sharding(shape) for shape in shapes]
        if self.process_count == 1:  # every row is here: one transfer call for all of them
            staged = jax.device_put(leaves, shardings)  # (~40% less host time per step)
        else:
            staged = [
                jax.make_array_from_process_local_data(sharding, a, shape)
                for a, sharding, shape in zip(leaves, shardings, shapes, strict=True)
            ]
        return tuple(jax.tree_util.tree_unflatten(tree, staged))

    def _sharding(self, shape: tuple[int, ...]) -> Any:
        """The data layout of a global input of ``shape`` (one per shape, built once)."""
        sharding = self._shardings.get(shape)
        if sharding is None:
            layout = self.keras_distribution.get_data_layout(shape)
            sharding = self._shardings[shape] = layout.backend_layout
        return sharding

    # -- steps -----------------------------------------------------------------------
    def train_step(self, model: Any) -> StepFn:
        return DistributedJaxStepper(model, self)

    def evaluate_step(self, model: Any) -> StepFn:
        def evaluate(x: Any, y: Any, sw: Any) -> Any:
            x, y, sw = self._local((x, y, sw))
            return model.test_on_batch(x, y, sample_weight=sw, return_dict=True)

        return evaluate

    def predict_step(self, model: Any) -> StepFn:
        def predict(x: Any, y: Any, sw: Any) -> Any:
            n = batch_rows(x)
            (local_x,) = self._local((x,))
            return self._gather_rows(np.asarray(model.predict_on_batch(local_x)), n)

        return predict

    def _gather_rows(self, local: np.ndarray, n: int) -> np.ndarray:
        """Every process's predictions, put back in global row order."""
        rows = np.arange(n)[self.local_rows(n)]
        if len(rows) == n or self.process_count == 1:
            return local
        from jax.experimental import multihost_utils

        preds = np.asarray(multihost_utils.process_allgather(local, tiled=False))
        where = np.asarray(multihost_utils.process_allgather(rows, tiled=False))
        out = np.empty((n, *local.shape[1:]), dtype=local.dtype)
        for p_rows, p_preds in zip(where, preds, strict=True):
            out[p_rows] = p_preds
        return out

    # -- agreement -------------------------------------------------------------------
    def start_loop(self) -> None:
        # an error on one process must stop the others in seconds (see .failure_watch)
        if self.process_count > 1:
            if self._watch is None:
                from jax._src import distributed  # (its client: no public name for it)

                self._watch = FailureWatch(distributed.global_state.client, self.process_index)
            self._watch.start()

    def end_loop(self, error: BaseException | None) -> None:
        if self._watch is None:
            return
        if isinstance(error, Exception):  # (Ctrl-C and SIGTERM: agreed on by all)
            self._watch.report(error)
        else:
            self._watch.stop()

    def barrier(self, name: str) -> None:
        if self.process_count > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"deeptrain:{name}")

    def max_over_processes(self, value: int) -> int:
        if self.process_count == 1:
            return int(value)
        from jax.experimental import multihost_utils

        return int(np.max(multihost_utils.process_allgather(np.asarray([value], np.int64))))

    def broadcast_int(self, value: int) -> int:
        if self.process_count == 1:
            return int(value)
        from jax.experimental import multihost_utils

        return int(multihost_utils.broadcast_one_to_all(np.asarray(value, np.int64)))

    def gather_bytes(self, data: bytes) -> list[bytes]:
        if self.process_count == 1:
            return [data]
        from jax.experimental import multihost_utils

        size = int(np.max(multihost_utils.process_allgather(np.asarray([len(data)], np.int64))))
        padded = np.zeros(size, np.uint8)
        padded[: len(data)] = np.frombuffer(data, np.uint8)
        lengths = np.asarray(
            multihost_utils.process_allgather(np.asarray([len(data)], np.int64))
        ).reshape(-1)
        blocks = np.asarray(multihost_utils.process_allgather(padded, tiled=False))
        return [bytes(b[:k]) for b, k in zip(blocks, lengths, strict=True)]

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        # Keras' save_weights builds a throw-away optimizer whose variable placement is a
        # collective under a distribution: on process 0 alone it would wait forever for the
        # others. Without the distribution it is local (the variables keep their layout).
        import keras

        keras.distribution.set_distribution(None)
        try:
            yield
        finally:
            keras.distribution.set_distribution(self.keras_distribution)

    def prepare(self, tg: Any) -> None:
        import jax

        super().prepare(tg)
        model = tg.model
        n_devices = len(self.keras_distribution.device_mesh.devices.reshape(-1))
        local = [
            v.path
            for v in model.variables
            if isinstance(v.value.sharding, jax.sharding.SingleDeviceSharding)
        ]
        split = [v.path for v in model.variables if not held_whole(v.value)]
        writes = any(
            getattr(tg, n, None) is not None for n in ("logs_dir", "logdir", "best_models_dir")
        )
        if split and writes:
            raise DistributionError(
                f"variables such as {split[0]!r} are split across processes by "
                f"{self.describe()}: checkpoints of such variables are not supported yet "
                "(no process holds them whole). Lay the model axis out within each process, "
                "or train without logs_dir / logdir / best_models_dir."
            )
        if n_devices > 1 and local:
            raise DistributionError(
                f"the model's variables (e.g. {local[0]!r}) live on one device, but "
                f"{self.describe()} spans {n_devices}: the model was built before "
                "keras.distribution.set_distribution(...). Set the distribution first, "
                "then build and compile the model."
            )


class DistributedJaxStepper(JaxStepper):
    """:class:`~deeptrain.training.steppers.JaxStepper` fed global arrays, with the
    variables' shardings pinned as the jitted step's ``out_shardings``."""

    def __init__(self, model: Any, dist: JaxDistribution):
        super().__init__(model)
        self.dist = dist

    def _jit_options(self) -> dict[str, Any]:
        trainable, non_trainable, optimizer, metrics = self.model._get_state_sharding_spec()
        return {"out_shardings": (None, (trainable, non_trainable, optimizer), metrics)}

    def __call__(self, x: Any, y: Any, sw: Any = None) -> dict[str, float]:
        local = self.dist._local((x, y, sw))
        return super().__call__(*self.dist.to_global(local, batch_rows(x)))
