"""TensorBoard event files from a finished (or running) run's metrics log and state: for
runs made before :class:`~deeptrain.tracking.TensorBoardLogger` was on.

The tags and steps are the logger's: ``train/<metric>`` per train batch and ``val/<metric>``
per validation at step ``batches_fit``; the settings of the newest checkpoint as
hyperparameters, and its history and report figures as images at its step.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..saving.checkpoint import STATE_FILE
from ..saving.errors import CorruptCheckpointError
from ..saving.safe_io import bytes_digest, read_capped, record_digest
from ..tracking.events import EventFile
from ..tracking.settings import state_settings
from ..training.progress import read_metrics_log
from .runinfo import PathError, read_run_state

__all__ = ["export_tensorboard"]

_NOT_METRICS = {
    "event",
    "epoch",
    "val_epoch",
    "batches_fit",
    "fit_iters",
    "times_validated",
    "set_name",
    "best_subset",
}
_PREFIX = {"train_batch": "train", "validation": "val"}
MAX_FIGURE_BYTES = 64 * 2**20


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)  # jsonl: numbers, and 'nan' / 'inf' as text; csv: all text
    except (TypeError, ValueError):
        return None


def _figures(checkpoint: Path, state: dict[str, Any]) -> dict[str, bytes]:
    """The checkpoint's history and report PNGs that match their recorded digest."""
    out = {}
    for name in ("history", "report"):
        record = state["files"].get(f"{name}.png")
        if record is None:
            continue
        try:
            data = read_capped(checkpoint / f"{name}.png", MAX_FIGURE_BYTES)
        except CorruptCheckpointError:
            continue
        algorithm, digest = record_digest(record)
        if bytes_digest(data, algorithm) == digest:
            out[name] = data
    return out


def export_tensorboard(run: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """Write ``<run>/tensorboard`` (or ``out``) from the run's metrics log and newest
    checkpoint. Returns what was written. An output directory that already holds event
    files is refused (a logger may have written them)."""
    run = Path(run)
    out = Path(out) if out is not None else run / "tensorboard"
    if out.is_dir() and any("tfevents" in p.name for p in out.iterdir()):
        raise FileExistsError(
            f"{out} already holds TensorBoard event files; give another output directory "
            "(--out DIR)"
        )
    rows = read_metrics_log(run)
    try:
        checkpoint, state = read_run_state(run)
    except (PathError, CorruptCheckpointError, ValueError):
        checkpoint, state = None, None
    if not rows and state is None:
        raise PathError(
            f"{run} has no metrics log (metrics.jsonl / metrics.csv) and no readable "
            f"checkpoint ({STATE_FILE})"
        )
    events = EventFile(out)
    scalars = images = 0
    now = time.time()
    try:
        if state is not None:
            val_tags = [f"val/{m}" for m in state["train_state"]["val_history"]]
            events.hparams(state_settings(state), val_tags)
        for row in rows:
            prefix = _PREFIX.get(str(row.get("event")))
            step = _number(row.get("batches_fit"))
            if prefix is None or step is None:
                continue
            values = {
                f"{prefix}/{k}": v
                for k, v in ((k, _number(v)) for k, v in row.items() if k not in _NOT_METRICS)
                if v is not None
            }
            events.scalars(values, int(step), now)
            scalars += len(values)
        if state is not None and checkpoint is not None:
            step = state["train_state"]["batches_fit"]
            for name, png in _figures(checkpoint, state).items():
                events.image(f"figures/{name}", png, step, now)
                images += 1
    finally:
        events.close()
    return {"directory": str(out), "scalars": scalars, "images": images, "file": str(events.path)}
