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

from ..training.steppers import make_train_step
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
        self._prepared_model: Any = None
        self._device = _collective_device()

    @property
    def replicas(self) -> int:
        return self.process_count

    def describe(self) -> str:
        import torch.distributed as dist

        return f"torch.distributed ({dist.get_backend()}, {self.process_count} processes)"

    def local_rows(self, n: int) -> slice:
        size = n // self.process_count
        return slice(self.process_index * size, (self.process_index + 1) * size)

    def _local(self, arrays: tuple[Any, ...]) -> tuple[Any, ...]:
        rows = self.local_rows(len(arrays[0]))
        return tuple(None if a is None else a[rows] for a in arrays)

    # -- steps -----------------------------------------------------------------------
    def train_step(self, model: Any) -> StepFn:
        step = make_train_step(model)

        def train(x: Any, y: Any, sw: Any) -> Any:
            self._ready(model)
            return self._mean(step(*self._local((x, y, sw))))

        train.sync = step.sync  # type: ignore[attr-defined]  # the stepper's protocol
        train.discard = step.discard  # type: ignore[attr-defined]
        return train

    def evaluate_step(self, model: Any) -> StepFn:
        def evaluate(x: Any, y: Any, sw: Any) -> Any:
            x, y, sw = self._local((x, y, sw))
            return self._mean(model.test_on_batch(x, y, sample_weight=sw, return_dict=True))

        return evaluate

    def predict_step(self, model: Any) -> StepFn:
        def predict(x: Any, y: Any, sw: Any) -> Any:
            import torch
            import torch.distributed as dist

            local = np.asarray(model.predict_on_batch(self._local((x,))[0]))
            local_t = torch.as_tensor(local, device=self._device)
            parts = [torch.empty_like(local_t) for _ in range(self.process_count)]
            dist.all_gather(parts, local_t)
            return torch.cat(parts).cpu().numpy()

        return predict

    def _mean(self, logs: dict[str, Any]) -> dict[str, float]:
        """Logs averaged over processes (each process's are its own rows'; equal shares)."""
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
        """Once per model: start from process 0's weights, average gradients."""
        if self._prepared_model is model:
            return
        import torch.distributed as dist

        for v in model.variables:
            dist.broadcast(v.value.data, src=0)
        average_gradients(model.optimizer, self.process_count)
        self._prepared_model = model

    # -- agreement -------------------------------------------------------------------
    def barrier(self, name: str) -> None:
        import torch.distributed as dist

        dist.barrier()

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
