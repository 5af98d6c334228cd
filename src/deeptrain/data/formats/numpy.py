"""``.npy`` files: read into RAM (``numpy``) or memory-mapped (``numpy-memmap``).

In dataset mode the file holds an array ``(batches, samples, ...)`` and set num ``i`` is
``array[i]``; it is always opened memory-mapped so that reading one batch does not read the
whole file. ``numpy`` copies the requested entry into RAM; ``numpy-memmap`` returns views
that are read from disk only when a batch is served, for data larger than RAM.
Pickled (object) arrays are refused: loading a data file never runs code.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import FileFormat, FormatOptions

__all__ = ["NumpyFormat", "NumpyMemmapFormat"]


def _open(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r", allow_pickle=False)


class NumpyFormat(FileFormat):
    name = "numpy"
    extensions = (".npy",)

    def load_file(self, path: Path, opts: FormatOptions) -> np.ndarray:
        return np.load(path, allow_pickle=False)

    def dataset_keys(self, path: Path, opts: FormatOptions) -> list[str]:
        return [str(i) for i in range(len(_open(path)))]

    def load_entry(self, path: Path, key: str, opts: FormatOptions) -> np.ndarray:
        return np.array(_open(path)[int(key)])

    def file_length(self, path: Path, opts: FormatOptions) -> int | None:
        return len(_open(path))

    def entry_length(self, path: Path, key: str, opts: FormatOptions) -> int | None:
        return _open(path).shape[1]


class NumpyMemmapFormat(NumpyFormat):
    name = "numpy-memmap"
    lazy = True

    def load_file(self, path: Path, opts: FormatOptions) -> np.ndarray:
        return _open(path)

    def load_entry(self, path: Path, key: str, opts: FormatOptions) -> np.ndarray:
        return _open(path)[int(key)]
