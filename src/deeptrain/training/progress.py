"""What a user sees: a progress bar per epoch, one line per validation, and a metrics log.

The bar (tqdm, on stderr) shows batches done and total, ETA, running metrics and the set
being fit. Messages go through ``logging``. Every train batch and every validation is
appended to ``<logdir>/metrics.jsonl`` (or ``.csv``), one JSON object per line.
"""
from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping

from tqdm.auto import tqdm

__all__ = ["EpochProgress", "MetricsLog", "format_metrics"]

log = logging.getLogger("deeptrain")


def format_metrics(metrics: Mapping[str, Any], aliases: Mapping[str, str],
                   skip: list[str] | tuple = ()) -> str:
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

    def start(self, epoch: int, total: int, done: int = 0) -> None:
        if self.verbosity and self.bar is None:
            self.bar = tqdm(total=total, initial=done, desc=f"Epoch {epoch + 1}", unit="batch",
                            dynamic_ncols=True, leave=True)

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

    def write(self, event: str, **record: Any) -> None:
        if self.path is None:
            return
        record = {"event": event, **{k: _clean(v) for k, v in record.items()}}
        with open(self.path, "a", newline="") as f:
            if self.fmt == "jsonl":
                f.write(json.dumps(record) + "\n")
                return
            if self._csv_fields is None:
                self._csv_fields = list(record)
                if f.tell() == 0:
                    csv.writer(f).writerow(self._csv_fields)
            csv.DictWriter(f, self._csv_fields, extrasaction="ignore").writerow(record)
