"""``TrainGenerator``: placeholder until the train loop lands."""
from __future__ import annotations

from typing import Any

__all__ = ["TrainGenerator"]


class TrainGenerator:
    """The train and validation loop (not implemented yet)."""

    def __init__(self, *args: Any, **kwargs: Any):
        raise NotImplementedError("TrainGenerator is not implemented yet")
