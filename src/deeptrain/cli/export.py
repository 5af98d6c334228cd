"""TensorBoard event files from a finished (or running) run's metrics log and state: for
runs made before :class:`~deeptrain.tracking.TensorBoardLogger` was on.

The tags and steps are the logger's: ``train/<metric>`` per train batch and ``val/<metric>``
per validation at step ``batches_fit``; the settings of the newest checkpoint as
hyperparameters, and its history and report figures as images at its step.

Damaged rows are left out and counted: a row whose step is not an integer
``0 <= step < 2**53``, and values that are not numbers (a number beyond float32's range is
``+-inf``, as the logger stores it). The event file is written under a temporary directory
in the output directory and moved into place when complete: a failed export leaves nothing.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..saving.checkpoint import STATE_FILE
from ..saving.errors import CorruptCheckpointError
from ..saving.safe_io import bytes_digest, read_capped, record_digest
from ..tracking.events import EventFile
from ..tracking.records import MAX_STEP, scalar_records
from ..tracking.settings import state_settings
from ..training.progress import METRICS_FILES, parse_jsonl, read_metrics_log
from .runinfo import PathError, read_run_state

__all__ = ["export_tensorboard", "ExportError"]

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
_TEMP_PREFIX = ".export-"
_ROWS_PER_WRITE = 4096  # scalar events encoded together (of one set of tags)
MAX_FIGURE_BYTES = 64 * 2**20


class ExportError(ValueError):
    """A metrics log whose rows to export are all damaged (the message says where)."""


@dataclass
class _Scalars:
    """A metrics log's scalar events ``(step, {tag: value})``, and what was left out of
    them: rows (a bad step) and values (not numbers), the first at ``first_bad``."""

    file: Path | None = None
    rows: int = 0
    events: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    skipped_rows: int = 0
    skipped_values: int = 0
    first_bad: str | None = None

    def skip(self, where: str, rows: int = 0, values: int = 0) -> None:
        self.skipped_rows += rows
        self.skipped_values += values
        self.first_bad = self.first_bad or where


def _number(value: Any) -> float | None:
    """``value`` as a float (an integer beyond float64's range: +-inf); None if it is not a
    number."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)  # jsonl: numbers, and 'nan' / 'inf' as text; csv: all text
    except OverflowError:  # (an int of hundreds of digits)
        return float("inf") if value > 0 else float("-inf")
    except (TypeError, ValueError):
        return None


def _step(value: Any) -> int | None:
    """``value`` as an event's step, if it is an integer ``0 <= step < 2**53``."""
    step = _number(value)
    if step is None or not 0 <= step < MAX_STEP or not step.is_integer():  # (NaN: False)
        return None
    return int(step)


def _tag(prefix: str, key: str) -> str | None:
    """``<prefix>/<key>``, if it is text an event can hold (UTF-8: no lone surrogates)."""
    tag = f"{prefix}/{key}"
    try:
        tag.encode()
    except UnicodeEncodeError:
        return None
    return tag


def _numbered_rows(run: Path) -> tuple[Path | None, list[tuple[str, dict[str, Any]]]]:
    """The metrics log and its rows, each with where it is (``line N`` of a jsonl, ``row N``
    of a csv)."""
    jsonl, csv_file = (run / name for name in METRICS_FILES)
    if jsonl.is_file():
        lines = parse_jsonl(jsonl.read_bytes().splitlines(keepends=True), jsonl)
        return jsonl, [(f"line {n}", row) for n, row in enumerate(lines, 1) if row]
    rows = read_metrics_log(run)
    return (csv_file if rows else None), [(f"row {n}", row) for n, row in enumerate(rows, 1)]


def _scalars(run: Path) -> _Scalars:
    """The scalar events of ``run``'s metrics log, damaged rows and values left out."""
    file, rows = _numbered_rows(run)
    out = _Scalars(file, len(rows))
    for where, row in rows:
        prefix = _PREFIX.get(str(row.get("event")))
        if prefix is None:
            continue
        step = _step(row.get("batches_fit"))
        if step is None:
            out.skip(where, rows=1)
            continue
        values = {}
        for key, value in row.items():
            if key in _NOT_METRICS:
                continue
            number, tag = _number(value), _tag(prefix, key)
            if number is not None and tag is not None:
                values[tag] = number
            elif value not in (None, ""):  # (csv: a row's empty cells)
                out.skip(where, values=1)
        out.events.append((step, values))
    return out


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


def _write_events(
    directory: Path, scalars: _Scalars, state: dict[str, Any] | None, figures: dict[str, bytes]
) -> Path:
    """An event file in ``directory`` (which exists) of the hyperparameters, scalars and
    figures; its path."""
    events = EventFile(directory)
    now = time.time()
    try:
        if state is not None:
            val_tags = [f"val/{m}" for m in state["train_state"]["val_history"]]
            events.hparams(state_settings(state), val_tags)
        for tags, group in itertools.groupby(scalars.events, key=lambda e: tuple(e[1])):
            rows = [(step, now, *values.values()) for step, values in group]
            for at in range(0, len(rows), _ROWS_PER_WRITE):
                events.write_records(scalar_records(tags, rows[at : at + _ROWS_PER_WRITE]))
        if state is not None:
            step = state["train_state"]["batches_fit"]
            for name, png in figures.items():
                events.image(f"figures/{name}", png, step, now)
    finally:
        events.close()
    return events.path


def _write_atomically(out: Path, *args: Any) -> Path:
    """:func:`_write_events` into a temporary directory in ``out``, the file moved into
    ``out`` when complete; on any failure nothing is left (``out`` too, if made here)."""
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        temp = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX, dir=out))
        try:
            written = _write_events(temp, *args)
            path = out / written.name
            os.replace(written, path)
        finally:
            shutil.rmtree(temp, ignore_errors=True)
    except BaseException:
        if made:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    return path


def export_tensorboard(run: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """Write ``<run>/tensorboard`` (or ``out``) from the run's metrics log and newest
    checkpoint. Returns what was written, and what of the metrics log was left out
    (``skipped_rows``, ``skipped_values``, the first at ``first_bad`` of ``metrics_file``).
    An output directory that already holds event files is refused (a logger may have
    written them); a metrics log whose rows are all damaged, with no figures to export, is
    an :class:`ExportError`."""
    run = Path(run)
    out = Path(out) if out is not None else run / "tensorboard"
    if out.is_dir() and any("tfevents" in p.name for p in out.iterdir()):
        raise FileExistsError(
            f"{out} already holds TensorBoard event files; give another output directory "
            "(--out DIR)"
        )
    scalars = _scalars(run)
    try:
        checkpoint, state = read_run_state(run)
    except (PathError, CorruptCheckpointError, ValueError):
        checkpoint, state = None, None
    if not scalars.rows and state is None:
        raise PathError(
            f"{run} has no metrics log (metrics.jsonl / metrics.csv) and no readable "
            f"checkpoint ({STATE_FILE})"
        )
    figures = _figures(checkpoint, state) if checkpoint is not None and state else {}
    n_scalars = sum(len(values) for _, values in scalars.events)
    if scalars.first_bad and not n_scalars and not figures:
        raise ExportError(
            f"{scalars.file} has no usable rows ({scalars.skipped_rows} rows with a step that "
            f"is not an integer 0 <= step < 2**53, {scalars.skipped_values} values that are "
            f"not numbers; the first at {scalars.first_bad}): nothing exported"
        )
    path = _write_atomically(out, scalars, state, figures)
    return {
        "directory": str(out),
        "scalars": n_scalars,
        "images": len(figures),
        "file": str(path),
        "metrics_file": None if scalars.file is None else str(scalars.file),
        "skipped_rows": scalars.skipped_rows,
        "skipped_values": scalars.skipped_values,
        "first_bad": scalars.first_bad,
    }
