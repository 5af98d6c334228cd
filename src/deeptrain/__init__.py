"""DeepTrain: full knowledge and control of the train state, on Keras 3.

``DataGenerator`` needs only NumPy and h5py; ``TrainGenerator`` (and anything else that
needs Keras) is imported on first use, so ``import deeptrain`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from .data.generator import DataGenerator

__version__ = "0.7.0.dev0"
__all__ = ["DataGenerator", "TrainGenerator", "set_seeds", "__version__"]

_LAZY = {"TrainGenerator": ".training.generator", "set_seeds": ".callbacks"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'deeptrain' has no attribute {name!r}")
