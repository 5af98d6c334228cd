"""What a user sees: a progress bar per epoch, one line per validation, and a metrics log.

The bar (tqdm, on stderr) shows batches done and total, ETA, running metrics and the set
being fit. Messages go through ``logging``. Every train batch and every validation is
appended to ``<logdir>/metrics.jsonl`` (or ``.csv``), one JSON object per line.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..saving.atomic import TEMP_PREFIX, atomic_write_text
from ..util.files import atomic_file

__all__ = [
    "EpochProgress",
    "MetricsLog",
    "format_metrics",
    "read_metrics_log",
    "parse_jsonl",
    "METRICS_FILES",
]

METRICS_FILES = ("metrics.jsonl", "metrics.csv")

log = logging.getLogger("deeptrain")


def format_metrics(
    metrics: Mapping[str, Any], aliases: Mapping[str, str], skip: list[str] | tuple = ()
) -> str:
    parts = []
    for name, value in metrics.items():
        if name in skip:
            continue
        alias = aliases.get(name, name)
        if isinstance(value, (list, tuple)):
            parts.append(f"{alias}=({', '.join(f'{v:.6f}' for v in value)})")
        else:
            parts.append(f"{alias}={value:.6f}")
    return ", ".join(parts)


class EpochProgress:
    """One tqdm bar per epoch; silent with ``iter_verbosity=0``."""

    def __init__(self, verbosity: int):
        self.verbosity = verbosity
        self.bar: tqdm | None = None

    def start(self, epoch: int, epochs: int, total: int, done: int = 0) -> None:
        """A bar for ``epoch`` (numbered from 1) of ``epochs``: ``total`` batches, ``done``
        of them already fit (a resumed epoch)."""
        if self.verbosity and self.bar is None:
            self.bar = tqdm(
                total=total,
                initial=done,
                desc=f"Epoch {epoch}/{epochs}",
                unit="batch",
                dynamic_ncols=True,
                leave=True,
            )

    def iteration(self, set_name: str | None, postfix: str) -> None:
        if self.bar is not None and self.verbosity >= 2:
            self.bar.set_postfix_str(f"set {set_name} {postfix}", refresh=False)

    def batch(self, set_name: str | None, postfix: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"set {set_name} {postfix}", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _before(row: Mapping[str, Any], batches_fit: int, times_validated: int) -> bool:
    """Whether a metrics row happened at or before the given position."""
    try:
        if row.get("event") == "train_batch":
            return int(row["batches_fit"]) <= batches_fit
        if row.get("event") == "validation":
            return int(row["times_validated"]) <= times_validated
    except (KeyError, TypeError, ValueError):
        pass
    return True  # rows of unknown shape are kept


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class MetricsLog:
    """Append-only log of train batches and validations in the run's log directory."""

    def __init__(self, logdir: str | Path | None, fmt: str | None):
        if fmt not in (None, "jsonl", "csv"):
            raise ValueError(f"metrics_log must be 'jsonl', 'csv' or None, got {fmt!r}")
        self.path = None if logdir is None or fmt is None else Path(logdir) / f"metrics.{fmt}"
        self.fmt = fmt
        self._csv_fields: list[str] | None = None

    def rewind(self, batches_fit: int, times_validated: int) -> None:
        """Drop the rows of train batches and validations after a checkpoint's position
        (``batches_fit``, ``times_validated``): a run continued from that checkpoint
        repeats them. The file is replaced atomically."""
        if self.path is None or not self.path.is_file():
            return
        if self.fmt == "jsonl":
            lines = self.path.read_bytes().splitlines(keepends=True)
            parsed = parse_jsonl(lines, self.path)
            keep = [r is not None and _before(r, batches_fit, times_validated) for r in parsed]
            kept = [line for line, k in zip(lines, keep, strict=True) if k]
            if kept and not kept[-1].endswith(b"\n"):  # rows appended next start a line
                kept[-1] += b"\n"
            if kept != lines:
                with atomic_file(self.path, prefix=TEMP_PREFIX) as tmp:  # bytes as they were
                    tmp.write_bytes(b"".join(kept))
                log.info(
                    "metrics log: %d rows after the loaded checkpoint removed", keep.count(False)
                )
            return
        with open(self.path, newline="", encoding="utf-8", errors="replace") as f:
            reader = csv.DictReader(f)
            self._csv_fields = list(reader.fieldnames or [])
            rows = list(reader)
        keep = [_before(row, batches_fit, times_validated) for row in rows]
        if all(keep):
            return
        out = io.StringIO(newline="")
        writer = csv.DictWriter(out, self._csv_fields or [], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(row for row, k in zip(rows, keep, strict=True) if k)
        atomic_write_text(self.path, out.getvalue())
        log.info("metrics log: %d rows after the loaded checkpoint removed", keep.count(False))

    def write(self, event: str, **record: Any) -> None:
        if self.path is None:
            return
        record = {"event": event, **{k: _clean(v) for k, v in record.items()}}
        if self.fmt == "jsonl":
            with open(self.path, "a", newline="") as f:
                f.write(json.dumps(record) + "\n")
            return
        if self._csv_fields is None:  # the file's columns (a continued run's), if any
            self._csv_fields = self._csv_header()
        new = [k for k in record if k not in self._csv_fields]
        if new:  # (a validation's metrics, at the first one): the header gains columns
            self._csv_fields += new
            self._rewrite_csv()
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self._csv_fields, extrasaction="ignore").writerow(record)

    def _csv_header(self) -> list[str]:
        assert self.path is not None
        if not self.path.is_file():
            return []
        with open(self.path, newline="", encoding="utf-8", errors="replace") as f:
            return next(csv.reader(f), [])

    def _rewrite_csv(self) -> None:
        """The file with the current columns, its rows as they were (replaced atomically)."""
        assert self.path is not None
        rows: list[dict[str, Any]] = []
        if self.path.is_file():
            with open(self.path, newline="", encoding="utf-8", errors="replace") as f:
                rows = list(csv.DictReader(f))
        out = io.StringIO(newline="")
        writer = csv.DictWriter(out, self._csv_fields or [], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path, out.getvalue())


def read_metrics_log(logdir: str | Path) -> list[dict[str, Any]]:
    """The rows of a run's ``metrics.jsonl`` (or ``metrics.csv``: values as text), in order;
    none without a log. Lines that are not rows (a write cut short by a crash, damage) are
    left out, with a warning."""
    jsonl, csv_file = (Path(logdir) / name for name in METRICS_FILES)
    if jsonl.is_file():
        lines = jsonl.read_bytes().splitlines(keepends=True)
        return [row for row in parse_jsonl(lines, jsonl) if row]
    if csv_file.is_file():
        with open(csv_file, newline="", encoding="utf-8", errors="replace") as f:
            rows = list(csv.DictReader(f))
        whole = [row for row in rows if None not in row.values() and None not in row]
        if len(whole) < len(rows):
            log.warning("%s: %d rows of another length left out", csv_file, len(rows) - len(whole))
        return whole
    return []


def parse_jsonl(lines: list[bytes], path: Path) -> list[dict[str, Any] | None]:
    """A row per line: ``{}`` for a blank or damaged line (kept, with a warning), ``None``
    for a last line cut short (no newline: a write a crash interrupted; dropped)."""
    rows: list[dict[str, Any] | None] = []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line) if line.strip() else {}
            if not isinstance(row, dict):
                raise ValueError("not an object")
        except ValueError:  # (JSON and UTF-8 decoding errors)
            torn = number == len(lines) and not line.endswith(b"\n")
            log.warning(
                "%s line %d is not a metrics row%s",
                path,
                number,
                " (a write cut short: dropped)" if torn else "; left as it is",
            )
            row = None if torn else {}
        rows.append(row)
    return rows
