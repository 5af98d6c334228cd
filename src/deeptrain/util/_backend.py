"""DeepTrain 0.6's ``deeptrain.util._backend``, for code that imports from it.

Kept: ``WARN`` / ``NOTE`` (message prefixes), ``IMPORTS`` (optional packages found),
``lz4f`` (``lz4.frame``, or None) and ``K`` (``keras.backend``). Not kept, by design:

* ``TF_KERAS`` (``os.environ['TF_KERAS'] = '0'`` chose standalone Keras 2): DeepTrain runs
  on Keras 3 only, whose backend is chosen with ``KERAS_BACKEND`` (tensorflow, torch, jax);
  importing this module with ``TF_KERAS=0`` raises.
* TF graph mode (``tf.compat.v1.disable_eager_execution()``): Keras 3 runs eagerly and
  compiles its own train step; a TrainGenerator refuses to start in graph mode.
* ``Unbuffered`` (0.6 replaced ``sys.stdout``): DeepTrain logs through ``logging``.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from ._legacy import not_kept

__all__ = ["WARN", "NOTE", "TF_KERAS", "IMPORTS", "lz4f", "Unbuffered"]  # and K, on demand

if os.environ.get("TF_KERAS", "1") == "0":
    raise ImportError(
        "TF_KERAS='0' (standalone Keras 2) is not supported: DeepTrain runs on Keras 3, "
        "whose backend is chosen with the KERAS_BACKEND environment variable "
        "('tensorflow', 'torch' or 'jax'). Unset TF_KERAS."
    )

WARN = "WARNING:"
NOTE = "NOTE:"
TF_KERAS = True  # always Keras 3 (tf.keras of Keras 2 is gone)
IMPORTS = {
    name: int(importlib.util.find_spec(module) is not None)
    for name, module in (("PIL", "PIL"), ("LZ4F", "lz4"))
}

try:
    import lz4.frame as lz4f
except ImportError:  # pragma: no cover - lz4 is a dependency
    lz4f = None

Unbuffered = not_kept(
    __name__,
    "Unbuffered",
    "DeepTrain leaves sys.stdout alone and logs through the logging module "
    "(logger 'deeptrain'; e.g. logging.basicConfig(level=logging.INFO))",
)


def __getattr__(name: str) -> Any:
    if name == "K":
        import keras

        return keras.backend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
