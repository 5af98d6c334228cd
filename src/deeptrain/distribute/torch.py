"""torch: ``torch.distributed`` process groups (gloo on CPU, NCCL on GPU).

Set up as torch documents it: launch with ``torchrun`` (or anything that sets ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) and call
``torch.distributed.init_process_group(backend)`` before building the model. One process is
one replica: it trains on its contiguous share of each global batch.

Keras 3.15 has no torch distribution of its own, so this is the one place where DeepTrain
adds the data-parallel piece, the smallest one possible: Keras' compiled train function
keeps doing the work, and the gradients are averaged across processes (one flat
``all_reduce``) inside the optimizer's ``apply``, before Keras applies them. Weights start
equal (broadcast from process 0). When a Keras release ships torch distribution, this
module is what to replace.
"""

from __future__ import annotations

import os
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
            return self._global_logs(model, step(*self._local((x, y, sw))))

        train.sync = step.sync  # type: ignore[attr-defined]  # the stepper's protocol
        train.discard = step.discard  # type: ignore[attr-defined]
        return train

    def evaluate_step(self, model: Any) -> StepFn:
        def evaluate(x: Any, y: Any, sw: Any) -> Any:
            self._ready(model)
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
        that are no metric's (a custom ``train_step``'s) are averaged over processes."""
        self._reduce_metric_variables(model)
        results = model.get_metrics_result()
        others = self._mean({k: v for k, v in logs.items() if k not in results})
        return {k: float(results[k]) if k in results else others[k] for k in logs}

    def _reduce_metric_variables(self, model: Any) -> None:
        """Sum (or average) the metric variables over processes, in one flat all_reduce;
        variables of other aggregations take process 0's value."""
        import torch
        import torch.distributed as dist

        variables = model.metrics_variables
        if not variables:
            return
        device = variables[0].value.device  # (the model's: a GPU's, where Keras has one)
        parts = [
            v.value.detach().reshape(-1).to(torch.float64)
            if v.aggregation in ("sum", "mean") or self.process_index == 0
            else torch.zeros(v.value.numel(), dtype=torch.float64, device=device)  # (process 0's)
            for v in variables
        ]
        # the signals this process holds ride along (counts of SIGTERM and Ctrl-C): the
        # boundary after this step agrees on them without a collective of its own, which
        # costs as much as this one on gloo (~0.3 ms at 2 processes)
        pending = InterruptGuard.pending()
        signals = [pending == TERMINATE, pending == INTERRUPT]
        parts.append(torch.tensor(signals, dtype=torch.float64, device=device))
        flat = torch.cat(parts).to(self._device)
        dist.all_reduce(flat)
        *values, held = torch.split(flat.cpu(), [len(part) for part in parts])
        self._carried = TERMINATE if held[0] else INTERRUPT if held[1] else 0
        for v, part in zip(variables, values, strict=True):
            if v.aggregation == "mean":
                part = part / self.process_count
            v.value.data.copy_(part.reshape(v.value.shape).to(v.value.dtype))

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
        process 0's weights, average the optimizer's gradients."""
        if self._prepared is not None:
            prepared_model, prepared_optimizer = self._prepared
            if prepared_model is model and prepared_optimizer is model.optimizer:
                return
        import torch.distributed as dist

        for v in model.variables:
            dist.broadcast(v.value.data, src=0)
        if model.optimizer is not None:
            average_gradients(model.optimizer, self.process_count)
        self._prepared = (model, model.optimizer)

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


def average_gradients(optimizer: Any, world_size: int) -> None:
    """Make ``optimizer.apply`` average the gradients over all processes first (one flat
    ``all_reduce``); idempotent."""
    if getattr(optimizer.apply, "_deeptrain_averaged", False):
        return
    import torch
    import torch.distributed as dist

    apply = optimizer.apply

    def apply_averaged(grads: list[Any], trainable_variables: Any = None) -> Any:
        present = [g for g in grads if g is not None]
        if present:
            flat = torch.cat([g.reshape(-1) for g in present])
            dist.all_reduce(flat)
            flat /= world_size
            offset = 0
            for g in present:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()
        return apply(grads, trainable_variables)

    apply_averaged._deeptrain_averaged = True  # type: ignore[attr-defined]
    optimizer.apply = apply_averaged
