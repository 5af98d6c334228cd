"""Errors of reading checkpoints."""

from __future__ import annotations

__all__ = ["CorruptCheckpointError", "NoIntactCheckpointError"]


class CorruptCheckpointError(ValueError):
    """A checkpoint directory that is incomplete, truncated, altered, or names anything
    outside itself; the message names the checkpoint and what is wrong."""


class NoIntactCheckpointError(FileNotFoundError, CorruptCheckpointError):
    """No checkpoint at a load path passes verification (the message lists why each
    candidate was refused)."""
