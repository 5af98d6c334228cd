"""CSV files, used for labels: in dataset mode one *column* per set num (the header row names
them), rows are samples; in directory mode each file is one batch with a header row.

A leading unnamed column (the index pandas writes by default) is ignored.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...util.files import file_version
from .base import DataLoadError, FileFormat, FormatOptions

__all__ = ["CSVFormat"]


@lru_cache(maxsize=8)
def _read_table(path: Path, version: tuple[int, ...]) -> tuple[list[str], np.ndarray]:
    """The header and the cells of ``path``; ``version`` (``file_version``) keys the cache."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise DataLoadError(f"{path} is empty")
    header, body = rows[0], rows[1:]
    first = 1 if header and header[0].strip() == "" else 0  # pandas' index column
    header = [h.strip() for h in header[first:]]
    cells = [row[first:] for row in body if row]
    if any(len(row) != len(header) for row in cells):
        raise DataLoadError(f"{path}: every row must have {len(header)} cells like the header")
    try:
        table = np.array(cells, dtype=np.int64)
    except ValueError:
        try:
            table = np.array(cells, dtype=np.float64)
        except ValueError as e:
            raise DataLoadError(f"{path} holds non-numeric cells: {e}") from None
    table.setflags(write=False)
    return header, table.reshape(len(cells), len(header))


def _table(path: Path) -> tuple[list[str], np.ndarray]:
    return _read_table(*file_version(path))


def _keyed_table(path: Path) -> tuple[list[str], np.ndarray]:
    """:func:`_table` of a dataset file, whose header names one set num per column: a name
    given twice is refused (which column is that set's?)."""
    header, table = _table(path)
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise DataLoadError(
            f"{path}: the header names column(s) {', '.join(map(repr, twice))} more than "
            "once; each column is one set num's labels"
        )
    return header, table


class CSVFormat(FileFormat):
    name = "csv"
    extensions = (".csv",)

    def load_file(self, path: Path, opts: FormatOptions) -> np.ndarray:
        return _table(path)[1].copy()

    def dataset_keys(self, path: Path, opts: FormatOptions) -> list[str]:
        return list(_keyed_table(path)[0])

    def load_entry(self, path: Path, key: str, opts: FormatOptions) -> np.ndarray:
        header, table = _keyed_table(path)
        if key not in header:
            raise DataLoadError(f"{path} has no column named {key!r}")
        return table[:, header.index(key)].copy()

    def file_length(self, path: Path, opts: FormatOptions) -> int | None:
        return len(_table(path)[1])

    def entry_length(self, path: Path, key: str, opts: FormatOptions) -> int | None:
        return len(_table(path)[1])
