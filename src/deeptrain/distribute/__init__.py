"""Training on many devices and processes, on each engine's own distribution.

* JAX: ``keras.distribution`` (``DataParallel``, ``ModelParallel``), set before the model is
  built; several processes with ``keras.distribution.initialize(...)``.
* TensorFlow: ``tf.distribute.MirroredStrategy``, model built under ``strategy.scope()``.
* torch: ``torch.distributed`` process groups (``torchrun``, ``init_process_group``).

:func:`detect` finds what the user set up (no DeepTrain argument); the rest of DeepTrain
talks to the :class:`~deeptrain.distribute.base.Distribution` it returns. See
:mod:`deeptrain.distribute.base` for the rules (global batch, one writer, agreement).
"""

from __future__ import annotations

from typing import Any

from .base import Distribution, DistributionError

__all__ = ["Distribution", "DistributionError", "detect"]


def detect(model: Any) -> Distribution:
    """The distribution ``model`` trains under, per the current Keras backend."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        current = keras.distribution.distribution()
        if current is not None:
            from .jax import JaxDistribution

            return JaxDistribution(current)
    elif backend == "tensorflow":
        strategy = getattr(model, "distribute_strategy", None)
        # any strategy but TF's default one (a MirroredStrategy of one replica too: its
        # variables are created under its scope); the unsupported ones are refused there
        if strategy is not None and type(strategy).__name__ != "_DefaultDistributionStrategy":
            from .tensorflow import TensorFlowDistribution

            return TensorFlowDistribution(strategy)
    elif backend == "torch":
        from .torch import from_environment

        found = from_environment()
        if found is not None:
            return found
    return Distribution()
