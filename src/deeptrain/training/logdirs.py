"""A TrainGenerator's log directory: which one (given, continued, or a new model number under
``logs_dir``), taken with a lock so that one writer uses it, and, for a continued run, its
checkpoint numbering and figures brought to the loaded state."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ..saving.checkpoint import CHECKPOINTS_DIR, list_checkpoints
from ..saving.lock import LogdirLock
from ..saving.naming import model_num_of, reserve_model_num

if TYPE_CHECKING:
    from .generator import TrainGenerator

__all__ = ["rewind_figures", "run_dir_of", "set_up_logdir"]

log = logging.getLogger("deeptrain")


def run_dir_of(tg: TrainGenerator, checkpoint: Path | None) -> Path | None:
    """The run whose checkpoint was loaded, when ``tg`` continues it:
    ``<run>/checkpoints/<checkpoint>`` with ``continue_run`` and no ``logdir`` given."""
    if checkpoint is None or tg.logdir is not None or not tg.continue_run:
        return None
    checkpoints = checkpoint.parent
    return checkpoints.parent if checkpoints.name == CHECKPOINTS_DIR else None


def set_up_logdir(tg: TrainGenerator, run_dir: Path | None = None) -> None:
    """The log directory: ``logdir`` if given; else the run being continued (``run_dir``);
    else ``logs_dir/<model_name>`` with a new model number; none: no logs."""
    if run_dir is not None:
        tg.logdir = run_dir
        tg.model_num = model_num_of(run_dir.name, default=tg.model_num)
        if tg.logs_dir is None:
            tg.logs_dir = run_dir.parent
    elif tg.logdir is None and tg.logs_dir is not None:
        logs_dir = Path(tg.logs_dir)
        tg.model_num = tg.distribution.on_writer(  # claims the number; others learn it
            lambda: reserve_model_num(logs_dir, tg.new_model_num),
            f"reserve a model number in {logs_dir}",
        )
        tg.model_name = tg.get_unique_model_name()
        tg.logdir = Path(tg.logs_dir) / tg.model_name
    tg.model_name = tg.get_unique_model_name()
    if tg.logdir is None:
        log.info("logs_dir and logdir are None: no logs, checkpoints or figures are saved")
        return
    tg.distribution.on_writer(lambda: _lock_logdir(tg), f"lock {tg.logdir}")  # one writer
    if run_dir is not None:
        continue_numbering(tg, tg.logdir)
        log.info("Continuing run %s", tg.logdir)
    else:
        log.info("Logging to %s", tg.logdir)


def _lock_logdir(tg: TrainGenerator) -> int:
    """Take the log directory (made if missing) for this TrainGenerator: another one
    of this or any process writing there is refused."""
    assert tg.logdir is not None  # (the caller checks)
    tg.logdir.mkdir(parents=True, exist_ok=True)
    tg._lock = LogdirLock(tg.logdir)
    tg._lock.acquire()
    return 0


def continue_numbering(tg: TrainGenerator, logdir: Path) -> None:
    """New checkpoints of a continued run sort after all its existing ones, even when it
    continues from an older checkpoint (the newer ones are kept; pruning, oldest first,
    would otherwise remove the new ones first)."""
    newest = max((seq for seq, _ in list_checkpoints(logdir / CHECKPOINTS_DIR)), default=0)
    if newest > tg.state.save_seq:
        log.warning(
            "Continuing %s from a checkpoint older than its newest one; the newer "
            "checkpoints are kept, and new ones are numbered after them",
            tg.logdir,
        )
        tg.state.save_seq = newest


def rewind_figures(tg: TrainGenerator, checkpoint: Path) -> None:
    """A continued run's ``history.png`` and ``report.png`` show the loaded state: the
    checkpoint's own copies, or drawn anew where it has none (temp checkpoints)."""
    logdir = tg._require_logdir("rewinding figures")
    for name in ("history", "report"):
        current, saved = logdir / f"{name}.png", checkpoint / f"{name}.png"
        if saved.is_file():
            shutil.copyfile(saved, current)
        elif current.exists():
            tg.write_figure(name, current)
