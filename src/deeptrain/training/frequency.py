"""Frequency configs: ``None`` (never) or one pair ``{'iter'|'batch'|'epoch'|'val': n}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..util.misc import positive_int

__all__ = ["FREQ_MODES", "check_freq", "should_do"]

FREQ_MODES = ("iter", "batch", "epoch", "val")


def check_freq(freq: Any, name: str) -> dict[str, int] | None:
    """Validate a frequency config, naming it in errors."""
    if freq is None:
        return None
    if not isinstance(freq, Mapping) or len(freq) != 1:
        raise ValueError(
            f"{name} must be None or a dict with one pair like {{'epoch': 1}}, got {freq!r}"
        )
    ((mode, n),) = freq.items()
    if mode not in FREQ_MODES:
        raise ValueError(f"{name}: mode {mode!r} is not one of {FREQ_MODES}")
    return {mode: positive_int(n, f"{name}: the count")}


def should_do(
    freq: Mapping[str, int] | None,
    *,
    iters: int,
    batches: int,
    epochs: int,
    validations: int,
    batch_ended: bool,
    epoch_ended: bool,
    validation_ended: bool = False,
) -> bool:
    """Whether an event with config ``freq`` fires now.

    ``'iter'``: every n-th train iteration; ``'batch'``: at the end of every n-th batch;
    ``'epoch'``: at the end of every n-th epoch; ``'val'``: at the end of every n-th
    validation (meaningless for ``val_freq`` itself, which rejects it).
    """
    if not freq:
        return False
    ((mode, n),) = freq.items()
    if mode == "iter":
        return iters > 0 and iters % n == 0
    if mode == "batch":
        return batch_ended and batches > 0 and batches % n == 0
    if mode == "epoch":
        return epoch_ended and epochs > 0 and epochs % n == 0
    return validation_ended and validations > 0 and validations % n == 0
