"""torch: ``torch.distributed`` process groups (gloo on CPU, NCCL on GPU).

Set up as torch documents it: launch with ``torchrun`` (or anything that sets ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) and call
``torch.distributed.init_process_group(backend)`` before building the model. One process is
one replica: it trains on its contiguous share of each global batch.

Keras 3.15 has no torch distribution of its own, so this is the one place where DeepTrain
adds the data-parallel piece, the smallest one possible: Keras' compiled train function
keeps doing the work, and the gradients are averaged across processes (one flat
``all_reduce``) before Keras applies them, through the optimizer's ``apply``. Weights start
equal (broadcast from process 0). When a Keras release ships torch distribution, this
module is what to replace.

State the forward pass updates (BatchNormalization's moving mean and variance: the float
non-trainable variables of the model's trainable layers) is averaged over processes at
every train step, so every process holds the same model: each process's change of it in
the step is averaged (a variable no step changes stays bitwise as it is). With equal shares
of the global batch the moving mean is then exactly the one device's (the mean of the
processes' batch means is the global batch's mean); the moving variance is the average of
the processes' batch variances, which leaves out the spread between their means (as
``DistributedDataParallel`` without ``SyncBatchNorm`` approximates; it is close for rows
shuffled across processes).

One collective per train step: with Keras' own ``train_step`` and ``compute_metrics``, the
optimizer's ``apply`` is deferred to the step's ``compute_metrics`` (which reads only the
predictions, not the weights), and one ``all_reduce`` there carries the gradients, the
metric variables (so the step's metrics are the global batch's) and the signals each
process holds (where gradients and metric variables are all float32; else two). A second
collective per step costs as much as the first on gloo (a rendezvous of every process:
~2 ms a step on a loaded 2-core machine). The forward pass's state (above) rides in the
same ``all_reduce``. A ``train_step`` or ``compute_metrics`` of the user's own (which may
read the weights after ``apply``, or apply twice) keeps ``apply`` where it is called,
averaging there, and has the metrics and the forward pass's state reduced after the step,
in a collective of their own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..training.interrupts import INTERRUPT, TERMINATE, InterruptGuard
from ..training.steppers import as_fit_feeds, make_train_step
from .base import Distribution, DistributionError, StepFn

__all__ = ["TorchDistribution", "from_environment"]


def from_environment() -> TorchDistribution | None:
    """The process group set up by the user, or None outside one; an error when a launcher
    started several processes but no process group exists."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return TorchDistribution() if dist.get_world_size() > 1 else None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise DistributionError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']} (a distributed launch), but no torch "
            "process group: call torch.distributed.init_process_group('gloo' or 'nccl') "
            "before building the model and the TrainGenerator"
        )
    return None


class TorchDistribution(Distribution):
    def __init__(self) -> None:
        import torch.distributed as dist

        self.process_index = dist.get_rank()
        self.process_count = dist.get_world_size()
        self._prepared: tuple[Any, Any] | None = None  # (model, optimizer) made ready
        self._device = _collective_device()
        self._carried: int | None = None  # signals agreed on in a step (agree_on_interrupt)
        self._deferring = False  # in a Keras train_step: its optimizer.apply waits
        self._deferred: tuple[Any, ...] | None = None  # (apply, grads, variables) waiting
        self._metrics_reduced = False  # the step's collective reduced its metrics
        self._forward_state: list[Any] = []  # the prepared model's (see _forward_state)
        self._state_before: list[Any] | None = None  # their values before this train step

    @property
    def replicas(self) -> int:
        return self.process_count

    def describe(self) -> str:
        import torch.distributed as dist

        return f"torch.distributed ({dist.get_backend()}, {self.process_count} processes)"

    def local_rows(self, n: int) -> slice:
        size = n // self.process_count
        return slice(self.process_index * size, (self.process_index + 1) * size)

    # -- steps -----------------------------------------------------------------------
    def train_step(self, model: Any) -> StepFn:
        step = make_train_step(model)

        def train(x: Any, y: Any, sw: Any) -> Any:
            self._ready(model)
            self._deferring, self._metrics_reduced = _keras_step(model), False
            self._state_before = [v.value.detach().clone() for v in self._forward_state]
            try:
                logs = step(*self._local((x, y, sw)))
                if self._deferred is not None:  # no compute_metrics after apply
                    self._apply_deferred(model, with_metrics=False)
                return self._global_logs(model, logs)  # (the state too, if not yet)
            finally:
                self._deferring, self._deferred, self._state_before = False, None, None

        train.sync = step.sync  # type: ignore[attr-defined]  # the stepper's protocol
        train.discard = step.discard  # type: ignore[attr-defined]
        return train

    def evaluate_step(self, model: Any) -> StepFn:
        def evaluate(x: Any, y: Any, sw: Any) -> Any:
            self._ready(model)
            self._metrics_reduced = False
            x, y, sw = as_fit_feeds(self._local((x, y, sw)))
            logs = model.test_on_batch(x, y, sample_weight=sw, return_dict=True)
            return self._global_logs(model, logs)

        return evaluate

    def predict_step(self, model: Any) -> StepFn:
        def predict(x: Any, y: Any, sw: Any) -> Any:
            import torch
            import torch.distributed as dist

            self._ready(model)
            local = np.asarray(model.predict_on_batch(self._local((x,))[0]))
            local_t = torch.as_tensor(local, device=self._device)
            parts = [torch.empty_like(local_t) for _ in range(self.process_count)]
            dist.all_gather(parts, local_t)
            return torch.cat(parts).cpu().numpy()

        return predict

    def _global_logs(self, model: Any, logs: dict[str, Any]) -> dict[str, float]:
        """This batch's logs over every process's rows, as one device computes them.

        The model's metrics hold this batch's state, each process its own rows': their
        variables (sums and counts, AUC's confusion buckets, ...) are reduced over the
        processes as their ``aggregation`` says, and the metrics read from them (a mean of
        each process's result would be wrong for AUC, precision or weighted metrics). Logs
        that are no metric's (a custom ``train_step``'s) are averaged over processes. (A
        train step's metric variables may be reduced already, in its one collective.)"""
        if not self._metrics_reduced:
            self._reduce_metric_variables(model)
        self._metrics_reduced = False
        results = model.get_metrics_result()
        others = self._mean({k: v for k, v in logs.items() if k not in results})
        return {k: float(results[k]) if k in results else others[k] for k in logs}

    def _reduce_metric_variables(self, model: Any) -> None:
        """Sum (or average) the metric variables over processes, in one flat all_reduce
        (float64), with the signals each process holds; variables of other aggregations
        take process 0's value. In a train step whose collective has not run, the forward
        pass's state (:meth:`_state_parts`) goes in it too."""
        import torch
        import torch.distributed as dist

        variables = model.metrics_variables
        state = self._state_parts(torch.float64)
        if not variables and not state:
            return
        parts = [*state, *self._metric_parts(variables, torch.float64)]
        flat = torch.cat(parts).to(self._device)
        dist.all_reduce(flat)
        n = sum(len(p) for p in state)
        self._take_state_parts(flat[:n])
        self._take_metric_parts(variables, flat[n:], [len(p) for p in parts[len(state) :]])

    def _state_parts(self, dtype: Any) -> list[Any]:
        """This train step's change of the forward pass's state (:meth:`_forward_state`),
        flat, as contributions to a sum over processes; none outside a train step or once
        taken (:meth:`_take_state_parts`)."""
        if self._state_before is None:
            return []
        return [
            (v.value.detach() - before).reshape(-1).to(dtype)
            for v, before in zip(self._forward_state, self._state_before, strict=True)
        ]

    def _take_state_parts(self, flat_sum: Any) -> None:
        """Each variable of the forward pass's state set to its value before the step plus
        the processes' mean change in it (``flat_sum``: the reduced :meth:`_state_parts`)."""
        if self._state_before is None:
            return
        offset = 0
        for v, before in zip(self._forward_state, self._state_before, strict=True):
            change = flat_sum[offset : offset + before.numel()] / self.process_count
            offset += before.numel()
            new = before + change.reshape(before.shape).to(before.device, before.dtype)
            v.value.data.copy_(new)
        self._state_before = None

    def _metric_parts(self, variables: list[Any], dtype: Any) -> list[Any]:
        """The metric variables' contributions to a sum over processes, flat, then the
        signals this process holds (SIGTERM, Ctrl-C): the boundary after this step agrees
        on them without a collective of its own."""
        import torch

        held = [*variables, *self._forward_state]
        device = held[0].value.device if held else self._device  # (the model's: a GPU's)
        parts = [
            v.value.detach().reshape(-1).to(dtype)
            if v.aggregation in ("sum", "mean") or self.process_index == 0
            else torch.zeros(v.value.numel(), dtype=dtype, device=device)  # (process 0's)
            for v in variables
        ]
        pending = InterruptGuard.pending()
        signals = [pending == TERMINATE, pending == INTERRUPT]
        return [*parts, torch.tensor(signals, dtype=dtype, device=device)]

    def _take_metric_parts(self, variables: list[Any], flat: Any, sizes: list[int]) -> None:
        """Assign the reduced :meth:`_metric_parts` (``flat``, of parts of ``sizes``); keep
        the agreed signals."""
        import torch

        *values, held = torch.split(flat.cpu(), sizes)  # (one copy from a GPU)
        self._carried = TERMINATE if held[0] else INTERRUPT if held[1] else 0
        for v, part in zip(variables, values, strict=True):
            if v.aggregation == "mean":
                part = part / self.process_count
            v.value.data.copy_(part.reshape(v.value.shape).to(v.value.dtype))
        self._metrics_reduced = True

    def _apply_deferred(self, model: Any, with_metrics: bool) -> None:
        """The deferred ``apply``, its gradients averaged over processes first; with
        ``with_metrics``, in the same all_reduce as the forward pass's state, the metric
        variables and signals (where all of them are float32; else two)."""
        import torch
        import torch.distributed as dist

        assert self._deferred is not None
        apply, grads, trainable_variables = self._deferred
        self._deferred, self._deferring = None, False  # (an apply inside this one: now)
        present = [g for g in grads if g is not None]
        variables = model.metrics_variables if with_metrics else []
        state = [v.value for v in self._forward_state] if self._state_before is not None else []
        fused = bool(variables) and all(
            x.dtype == torch.float32 for x in (*present, *state, *(v.value for v in variables))
        )
        if not fused:
            _all_reduce_mean(present, self.process_count)
        else:
            state_parts = self._state_parts(torch.float32)
            metric_parts = self._metric_parts(variables, torch.float32)
            flat = torch.cat([*(g.reshape(-1) for g in present), *state_parts, *metric_parts])
            dist.all_reduce(flat)
            n = sum(g.numel() for g in present)
            k = n + sum(len(p) for p in state_parts)
            _take_mean(present, flat[:n], self.process_count)
            self._take_state_parts(flat[n:k])
            self._take_metric_parts(variables, flat[k:], [len(p) for p in metric_parts])
        with torch.no_grad():  # (as Keras' train_step applies)
            apply(grads, trainable_variables)
        if with_metrics and not fused:
            self._reduce_metric_variables(model)

    def _mean(self, logs: dict[str, Any]) -> dict[str, float]:
        """Logs averaged over processes (each process's are its own rows'; equal shares)."""
        if not logs:
            return {}
        import torch
        import torch.distributed as dist

        names = list(logs)
        values = torch.tensor(
            [float(logs[k]) for k in names], dtype=torch.float64, device=self._device
        )
        dist.all_reduce(values)
        totals = values.tolist()  # one copy from the device (NCCL), not one per metric
        return {k: v / self.process_count for k, v in zip(names, totals, strict=True)}

    def _ready(self, model: Any) -> None:
        """Before the first step of a model, or of an optimizer (a recompile): start from
        process 0's weights, average the optimizer's gradients; find the forward pass's
        state to average at each train step."""
        if self._prepared is not None:
            prepared_model, prepared_optimizer = self._prepared
            if prepared_model is model and prepared_optimizer is model.optimizer:
                return
        import torch.distributed as dist

        for v in model.variables:
            dist.broadcast(v.value.data, src=0)
        if model.optimizer is not None:
            average_gradients(model.optimizer, self.process_count, self._defer)
        self._reduce_in_compute_metrics(model)
        self._forward_state = _forward_state(model)
        self._prepared = (model, model.optimizer)

    def _defer(self, apply: Any, grads: list[Any], trainable_variables: Any) -> bool:
        """Inside a Keras ``train_step``: the ``apply`` waits for ``compute_metrics``."""
        if not self._deferring or self._deferred is not None:
            return False
        self._deferred = (apply, grads, trainable_variables)
        return True

    def _reduce_in_compute_metrics(self, model: Any) -> None:
        """Make ``model.compute_metrics`` run the deferred ``apply`` and the step's one
        collective once the metrics are updated; idempotent."""
        compute_metrics = model.compute_metrics
        if getattr(compute_metrics, "_deeptrain_reduces", False) or not _keras_step(model):
            return

        def reducing_compute_metrics(*args: Any, **kwargs: Any) -> Any:
            results = compute_metrics(*args, **kwargs)
            if self._deferred is None:
                return results
            self._apply_deferred(model, with_metrics=True)
            return model.get_metrics_result()

        reducing_compute_metrics._deeptrain_reduces = True  # type: ignore[attr-defined]
        model.__dict__["compute_metrics"] = reducing_compute_metrics  # (no Keras tracking)

    def prepare(self, tg: Any) -> None:
        super().prepare(tg)
        if not tg.model.built or not tg.model.variables:
            raise DistributionError(
                f"the model is not built: under {self.describe()} every process starts from "
                "process 0's weights, which a model builds only with its first batch (each "
                "process its own). Build it before the TrainGenerator: give it a "
                "keras.Input(shape), or call model.build(input_shape)."
            )

    # -- agreement -------------------------------------------------------------------
    def barrier(self, name: str) -> None:
        import torch.distributed as dist

        dist.barrier()

    def start_loop(self) -> None:
        """What a step of an earlier loop carried is stale (that loop broke off after it,
        at a callback's stop or an error): the first boundary agrees with a collective."""
        self._carried = None

    def agree_on_interrupt(self, pending: int) -> int:
        """The signals agreed on by the last step's metric reduction, if one ran since the
        last boundary (every process runs the same steps: all have it, or none); otherwise
        a collective. A signal that came after that reduction is acted on one step later."""
        carried, self._carried = self._carried, None
        return self.max_over_processes(pending) if carried is None else carried

    def max_over_processes(self, value: int) -> int:
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([int(value)], dtype=torch.int64, device=self._device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return int(tensor.item())

    def broadcast_int(self, value: int) -> int:
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([int(value)], dtype=torch.int64, device=self._device)
        dist.broadcast(tensor, src=0)
        return int(tensor.item())

    def gather_bytes(self, data: bytes) -> list[bytes]:
        import torch.distributed as dist

        out: list[Any] = [None] * self.process_count
        dist.all_gather_object(out, data)
        return [bytes(b) for b in out]


def _collective_device() -> Any:
    """Where this process group's collectives take their tensors: a group of NCCL alone
    carries CUDA tensors only (this process's GPU: ``torch.cuda.set_device(LOCAL_RANK)``);
    gloo, or torch's default of gloo and NCCL together, carries CPU ones. (Other
    device-only backends, e.g. ``xccl``, are not handled: CPU tensors.)"""
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _forward_state(model: Any) -> list[Any]:
    """The variables a train step's forward pass may update, which no gradient reaches:
    the float non-trainable variables of the model's trainable layers (BatchNormalization's
    moving statistics). Not a frozen layer's weights (a frozen BatchNormalization runs in
    inference mode), nor integer state (seed generators: alike on every process), nor the
    optimizer's or the metrics' variables (reduced as what they are)."""
    import keras

    found: dict[int, Any] = {}
    for layer in model._flatten_layers(include_self=True):
        if not layer.trainable:
            continue
        for v in getattr(layer, "_non_trainable_variables", ()):
            if not v.trainable and keras.backend.is_float_dtype(v.dtype):
                found.setdefault(id(v), v)
    return list(found.values())


def _keras_step(model: Any) -> bool:
    """Whether ``model`` trains with Keras' own torch ``train_step`` (one ``apply``, then
    ``compute_metrics``) and ``compute_metrics`` (which reads the predictions alone, and
    returns the metrics' results): then its ``apply`` may wait for ``compute_metrics``.
    Not with either set on the class or the instance (DeepTrain's own wrapper aside)."""
    try:
        from keras.src.backend.torch.trainer import TorchTrainer
        from keras.src.trainers.trainer import Trainer
    except ImportError:  # pragma: no cover - another Keras layout: never deferred
        return False
    own = vars(model)
    return (
        type(model).train_step is TorchTrainer.train_step
        and type(model).compute_metrics is Trainer.compute_metrics
        and "train_step" not in own
        and getattr(own.get("compute_metrics"), "_deeptrain_reduces", True)
    )


def average_gradients(
    optimizer: Any, world_size: int, defer: Callable[[Any, list[Any], Any], bool] | None = None
) -> None:
    """Make ``optimizer.apply`` average the gradients over all processes first (one flat
    ``all_reduce``), unless ``defer(apply, grads, variables)`` takes the call over (then
    it returns None: Keras' ``train_step`` does not use what ``apply`` returns);
    idempotent."""
    if getattr(optimizer.apply, "_deeptrain_averaged", False):
        return
    apply = optimizer.apply

    def apply_averaged(grads: list[Any], trainable_variables: Any = None) -> Any:
        if defer is not None and defer(apply, grads, trainable_variables):
            return None
        _all_reduce_mean([g for g in grads if g is not None], world_size)
        return apply(grads, trainable_variables)

    apply_averaged._deeptrain_averaged = True  # type: ignore[attr-defined]
    optimizer.apply = apply_averaged


def _all_reduce_mean(grads: list[Any], world_size: int) -> None:
    """Average ``grads`` over all processes, in place, in one flat ``all_reduce``."""
    if not grads:
        return
    import torch
    import torch.distributed as dist

    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    _take_mean(grads, flat, world_size)


def _take_mean(grads: list[Any], flat_sum: Any, world_size: int) -> None:
    """``grads`` set to their parts of ``flat_sum`` over ``world_size``."""
    flat_sum /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat_sum[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
