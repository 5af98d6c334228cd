"""Checkpoints: the on-disk format, crash-safe writing, and what a run's state holds.

* :mod:`.checkpoint`: the format (a directory per checkpoint, ``state.json`` with a digest,
  verified and validated reads, the ``latest`` pointer, sibling scans);
* :mod:`.atomic`, :mod:`.safe_io`: crash-safe writes; reads that follow no links;
* :mod:`.checkpointer`: when and where a TrainGenerator's checkpoints are written and read;
* :mod:`.traingen_state`, :mod:`.model_state`, :mod:`.state_schema`, :mod:`.rollback`: what
  goes in (TrainGenerator, model, random generators) and how it comes back, all or nothing;
* :mod:`.naming`, :mod:`.lock`, :mod:`.report`: run names and model numbers, one writer per
  log directory, the report image.
"""

from .checkpoint import (
    CorruptCheckpointError,
    NoIntactCheckpointError,
    list_checkpoints,
    read_checkpoint,
    resolve_loadpath,
    verify_checkpoint,
)
from .lock import LogdirLock, LogdirLockedError

__all__ = [
    "CorruptCheckpointError",
    "NoIntactCheckpointError",
    "list_checkpoints",
    "read_checkpoint",
    "resolve_loadpath",
    "verify_checkpoint",
    "LogdirLock",
    "LogdirLockedError",
]
