"""Small shared helpers (argument checks, JSON state, example data), and DeepTrain 0.6's
``deeptrain.util`` namespace: its submodules (``configs``, ``_default_configs``, ``misc``,
``algorithms``, ``searching``, ``data_loaders``, ``preprocessors``, ``training``,
``saving``, ``logging``, ``experimental``) are attributes imported on first use, and the
preprocessors are importable from here (``from deeptrain.util import Preprocessor``)."""

from __future__ import annotations

import importlib
from typing import Any

_PREPROCESSORS = ("Preprocessor", "GenericPreprocessor", "TimeseriesPreprocessor")
_SUBMODULES = (
    "_backend",
    "_default_configs",
    "algorithms",
    "configs",
    "data_loaders",
    "example_data",
    "experimental",
    "files",
    "jsonstate",
    "logging",
    "misc",
    "preprocessors",
    "saving",
    "searching",
    "training",
    "unpickle",
)


def __getattr__(name: str) -> Any:
    if name in _PREPROCESSORS:
        return getattr(importlib.import_module("..data.preprocessors", __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'deeptrain.util' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PREPROCESSORS, *_SUBMODULES})
