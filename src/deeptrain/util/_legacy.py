"""Helpers of DeepTrain 0.6's module paths: functions that are deliberately not kept raise
an error naming what replaced them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["not_kept"]


def not_kept(module: str, name: str, replacement: str) -> Callable[..., Any]:
    """A function ``module.name`` that raises ``NotImplementedError`` naming
    ``replacement``."""

    def fn(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f"{module}.{name} (DeepTrain 0.6) is not kept in this version: {replacement}"
        )

    fn.__name__ = fn.__qualname__ = name
    fn.__module__ = module
    fn.__doc__ = f"Not kept from DeepTrain 0.6: {replacement}"
    return fn
