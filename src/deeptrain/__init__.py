"""DeepTrain: full knowledge and control of the train state, on Keras 3.

``DataGenerator`` needs only NumPy and h5py; ``TrainGenerator`` (and anything else that
needs Keras or matplotlib) is imported on first use, so ``import deeptrain`` stays light.
As in DeepTrain 0.6, the submodules (``deeptrain.metrics``, ``.callbacks``, ``.visuals``,
``.introspection``, ``.preprocessing``, ``.util`` ...) are attributes of the package; each
is imported when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from .data.generator import DataGenerator

__version__ = "0.7.0.dev0"
__all__ = ["DataGenerator", "TrainGenerator", "set_seeds", "scalefig", "__version__"]

_LAZY = {"TrainGenerator": ".training.generator", "set_seeds": ".callbacks", "scalefig": ".visuals"}
_SUBMODULES = (
    "backend",
    "callbacks",
    "data",
    "data_generator",
    "introspection",
    "metrics",
    "migrate",
    "preprocessing",
    "saving",
    "train_generator",
    "training",
    "util",
    "visuals",
)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'deeptrain' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})
