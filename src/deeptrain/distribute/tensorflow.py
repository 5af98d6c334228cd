"""TensorFlow: ``tf.distribute.MirroredStrategy`` (one process, several devices).

Set up as TensorFlow documents it: build and compile the model under ``strategy.scope()``;
DeepTrain finds the strategy on the model (``model.distribute_strategy``). Each step splits
the global batch into one equal shard per replica (:func:`split_for_replicas`) and runs
Keras' own ``train_step`` / ``test_step`` / ``predict_step`` on the replicas; logs are
averaged over replicas and predictions concatenated in replica (= row) order, as ``fit``,
``evaluate`` and ``predict`` do. ``train_on_batch`` and friends are never used under a
strategy: they give every replica the whole batch (N-fold redundant work, and ``predict``
returns every row N times).

``MultiWorkerMirroredStrategy`` (several processes) is refused with a clear error: Keras
3.15's own paths fail under it, and DeepTrain's checkpoints would need a cross-worker
barrier that ``tf.distribute`` does not expose publicly.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from ..training.fitting import scalar_metric
from ..training.steppers import global_metrics, split_for_replicas
from .base import Distribution, DistributionError, StepFn

__all__ = ["TensorFlowDistribution"]


class TensorFlowDistribution(Distribution):
    def __init__(self, strategy: Any):
        import tensorflow as tf

        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            raise DistributionError(
                "MultiWorkerMirroredStrategy is not supported: Keras 3.15's train and "
                "evaluate paths fail under it. Use MirroredStrategy (one process, several "
                "devices), or the JAX backend with keras.distribution for several processes."
            )
        if not isinstance(strategy, tf.distribute.MirroredStrategy):
            raise DistributionError(
                f"{type(strategy).__name__} is not supported: DeepTrain trains under "
                "tf.distribute.MirroredStrategy on TensorFlow (or keras.distribution on JAX)."
            )
        self.strategy = strategy

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    def describe(self) -> str:
        return f"TensorFlow {type(self.strategy).__name__} ({self.replicas} replicas)"

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        return self.strategy.scope()

    def evaluate_step(self, model: Any) -> StepFn:
        def one_step(data: Any) -> Any:
            model.reset_metrics()  # this batch's metrics, as test_on_batch gives
            return model.test_step(data)

        step = self._replica_function(model, one_step, "auto")

        def evaluate(x: Any, y: Any, sw: Any) -> Any:
            self._build(model, x, y, sw)
            logs = step(split_for_replicas(model, (x, y, sw)))
            return {k: scalar_metric(k, v) for k, v in logs.items()}

        return evaluate

    def predict_step(self, model: Any) -> StepFn:
        step = self._replica_function(model, lambda data: model.predict_step(data), "concat")

        def predict(x: Any, y: Any, sw: Any) -> Any:
            self._build(model, x, y, sw)
            out = step(split_for_replicas(model, (x,)))
            return np.asarray(out) if not isinstance(out, (list, tuple, dict)) else out

        return predict

    def _replica_function(self, model: Any, fn: Any, reduction: str) -> Any:
        import tensorflow as tf
        from keras.src.backend.tensorflow.trainer import reduce_per_replica

        strategy = self.strategy

        def step(data: Any) -> Any:
            out = reduce_per_replica(strategy.run(fn, args=(data,)), strategy, reduction)
            return global_metrics(model, out) if reduction == "auto" else out  # (logs)

        return step if model.run_eagerly else tf.function(step, reduce_retracing=True)

    def _build(self, model: Any, x: Any, y: Any, sw: Any) -> None:
        with self.strategy.scope():
            model._symbolic_build(data_batch=(x, y) if sw is None else (x, y, sw))
