"""What the train loop needs from a distributed engine, and the single-device default.

DeepTrain runs on each engine's own distribution (``keras.distribution`` on JAX,
``tf.distribute`` on TensorFlow, ``torch.distributed`` on torch); a :class:`Distribution`
is the thin adapter the TrainGenerator talks to. Its rules:

* **The batch is global.** Every process builds the same DataGenerators and serves the same
  global batch; the step functions made here feed each process's own rows of it to the
  engine (:meth:`Distribution.local_rows`), and return *global* results: train and evaluate
  metrics reduced over all rows, predictions gathered from all processes in row order. So
  histories, the best-model decision and ``metrics.jsonl`` are the same on every process.
* **One writer.** Only :attr:`Distribution.is_writer` (process 0) writes files; every
  process takes part in gathers and :meth:`Distribution.barrier`.
* **Agreement.** Anything that can differ across processes and decides control flow (a stop
  request, the data schedule, a model number) goes through
  :meth:`Distribution.max_over_processes`,
  :meth:`Distribution.check_same` or :meth:`Distribution.broadcast_int`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "Distribution",
    "DistributionError",
    "StepFn",
    "batch_rows",
    "check_split",
    "take_rows",
    "schedule_bytes",
]

StepFn = Callable[[Any, Any, Any], Any]


class DistributionError(ValueError):
    """A setting or input that cannot work under the chosen distribution."""


class Distribution:
    """One process on one device: every hook is the identity (the default)."""

    name = "single device"
    process_index = 0
    process_count = 1

    @property
    def replicas(self) -> int:
        """Data-parallel replicas: the global batch is split into this many equal parts."""
        return 1

    @property
    def distributed(self) -> bool:
        return self.process_count > 1 or self.replicas > 1

    @property
    def is_writer(self) -> bool:
        """Whether this process writes files (checkpoints, logs, figures)."""
        return self.process_index == 0

    def describe(self) -> str:
        return self.name

    # -- data ------------------------------------------------------------------------
    def check_batch_size(self, n: int, what: str) -> None:
        """Raise :class:`DistributionError` if a global batch of ``n`` rows cannot be split
        evenly (every replica must take the same number of rows, or collectives hang)."""
        check_split(n, self.replicas, self.describe(), what)

    def local_rows(self, n: int) -> slice | np.ndarray:
        """The rows of a global batch of ``n`` that this process feeds to the engine."""
        return slice(0, n)

    def _local(self, arrays: tuple[Any, ...]) -> tuple[Any, ...]:
        """This process's rows of each of ``(x, y, sw)`` of a global batch (None stays)."""
        n = batch_rows(arrays[0])
        self.check_batch_size(n, "a batch fed to the model (after the preprocessor)")
        rows = self.local_rows(n)
        return tuple(None if a is None else take_rows(a, rows) for a in arrays)

    # -- steps -----------------------------------------------------------------------
    def train_step(self, model: Any) -> StepFn:
        """``fn(x, y, sw) -> {metric: float}`` on the global batch (global metrics)."""
        from ..training.steppers import make_train_step

        return make_train_step(model)

    def evaluate_step(self, model: Any) -> StepFn:
        """``fn(x, y, sw) -> {metric: float}`` of the global batch."""
        return lambda x, y, sw: model.test_on_batch(x, y, sample_weight=sw, return_dict=True)

    def predict_step(self, model: Any) -> StepFn:
        """``fn(x, y, sw) -> predictions`` of every row of the global batch, in order."""
        return lambda x, y, sw: model.predict_on_batch(x)

    # -- agreement -------------------------------------------------------------------
    def barrier(self, name: str) -> None:
        """Wait until every process gets here."""

    def max_over_processes(self, value: int) -> int:
        """The largest ``value`` of all processes (a collective: all must call it)."""
        return int(value)

    def start_loop(self) -> None:
        """``train()`` or ``validate()`` begins (the outermost; on every process alike)."""

    def end_loop(self, error: BaseException | None) -> None:
        """The loop :meth:`start_loop` began ended, raising ``error`` (None: it returned)."""

    def agree_on_interrupt(self, pending: int) -> int:
        """What every process acts on at a boundary between iterations: the most urgent
        signal any of them holds (:meth:`max_over_processes` of ``pending``; a collective)."""
        return self.max_over_processes(pending)

    def broadcast_int(self, value: int) -> int:
        """Process 0's ``value``, on every process."""
        return int(value)

    def gather_bytes(self, data: bytes) -> list[bytes]:
        """``data`` of every process, in process order (a collective)."""
        return [data]

    def on_writer(self, fn: Callable[[], int], what: str) -> int:
        """``fn()`` run by the writer (process 0) alone; its result on every process. If it
        raises there, every process raises (the writer its error, the others one naming
        ``what``) rather than wait in the next collective for a process that has left."""
        result, error = 0, None
        if self.is_writer:
            try:
                result = fn()
            except BaseException as e:  # raised below, after the others learn of it (a
                error = e  # Ctrl-C too: they would wait in the next collective for good)
        if self.process_count > 1:
            if self.max_over_processes(int(error is not None)):
                if error is None:
                    raise DistributionError(f"process 0 failed to {what}; its log says why")
            else:
                result = self.broadcast_int(result)
        if error is not None:
            raise error
        return result

    def check_same(self, data: bytes, what: str) -> None:
        """Raise :class:`DistributionError` naming ``what`` unless every process passes the
        same ``data`` (compared by digest)."""
        digests = self.gather_bytes(hashlib.sha256(data).digest())
        differ = [i for i, d in enumerate(digests) if d != digests[0]]
        if differ:
            raise DistributionError(
                f"{what} differs between process 0 and process(es) {differ}; every process "
                "must build the same DataGenerators (same files, settings and seed=; or "
                "keras.utils.set_random_seed(same seed) on every process before building them)"
            )

    # -- checkpoints -----------------------------------------------------------------
    def scope(self) -> contextlib.AbstractContextManager[Any]:
        """Where the model's variables may be created and assigned (TF: the strategy)."""
        return contextlib.nullcontext()

    def writing(self) -> contextlib.AbstractContextManager[Any]:
        """Around the writer's own saving code (which no other process runs)."""
        return contextlib.nullcontext()

    def prepare(self, tg: Any) -> None:
        """Check the TrainGenerator's model, data and settings before training (every
        process); raise :class:`DistributionError` for what cannot work."""
        from ..backend.stateful import stateful_layers

        if self.distributed and stateful_layers(tg.model):
            raise DistributionError(
                f"stateful RNN layers cannot run under {self.describe()}: their state holds "
                "the whole batch, but each replica trains on a share of it (and carrying it "
                "across replicas is not verified). Train stateful models on one device."
            )


def check_split(n: int, replicas: int, where: str, what: str) -> None:
    """Raise :class:`DistributionError` unless ``n`` rows split evenly over ``replicas``."""
    if n % replicas:
        raise DistributionError(
            f"{what} holds {n} samples, which do not split evenly over the {replicas} "
            f"replicas of {where}: make the global batch size a multiple of {replicas}"
        )


def batch_rows(x: Any) -> int:
    """The rows of a batch of inputs: an array, or a list or dict of arrays (a model of
    several inputs), all of as many rows."""
    import keras

    return len(keras.tree.flatten(x)[0])


def take_rows(a: Any, rows: slice | np.ndarray) -> Any:
    """``rows`` of every array in ``a`` (an array, or a list or dict of arrays)."""
    import keras

    return keras.tree.map_structure(lambda leaf: np.asarray(leaf)[rows], a)


def schedule_bytes(*state_dicts: dict[str, Any]) -> bytes:
    """DataGenerators' positions and generators, as bytes to compare across processes: equal
    bytes mean the same schedule (files, order, shuffles, windows) from here on."""
    return json.dumps(state_dicts, sort_keys=True, default=str).encode("utf-8")
