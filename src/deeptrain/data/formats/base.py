"""The interface every on-disk format implements."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FileFormat", "FormatOptions", "DataLoadError", "Header"]

Header = tuple[tuple[int, ...], np.dtype]  # (shape, dtype) of an array, samples on axis 0


class DataLoadError(OSError):
    """A file could not be read, or held something other than what was expected."""


@dataclass(frozen=True)
class FormatOptions:
    """Per-loader options some formats need (the raw lz4 buffer has no dtype or shape)."""

    dtype: Any = None
    batch_shape: tuple[int, ...] | None = None


class FileFormat:
    """One on-disk format.

    A format reads either one batch per file (*directory mode*, :meth:`load_file`) or
    many batches from one file keyed by set num (*dataset mode*, :meth:`dataset_keys`
    and :meth:`load_entry`). The ``*_length`` probes return the sample count, and the
    ``*_header`` probes the shape and dtype, without reading the data, or ``None`` when that
    is not cheap.
    """

    name: str = ""
    extensions: tuple[str, ...] = ()
    lazy: bool = False  # True: load results are views on disk (memmap), read on access

    def load_file(self, path: Path, opts: FormatOptions) -> np.ndarray:
        raise NotImplementedError

    def dataset_keys(self, path: Path, opts: FormatOptions) -> list[str]:
        raise NotImplementedError(f"the {self.name!r} format has no dataset (single-file) mode")

    def load_entry(self, path: Path, key: str, opts: FormatOptions) -> np.ndarray:
        raise NotImplementedError(f"the {self.name!r} format has no dataset (single-file) mode")

    def file_length(self, path: Path, opts: FormatOptions) -> int | None:
        return None

    def entry_length(self, path: Path, key: str, opts: FormatOptions) -> int | None:
        return None

    def file_header(self, path: Path, opts: FormatOptions) -> Header | None:
        """Shape and dtype of the file's array, read from its header alone."""
        return None

    def entry_header(self, path: Path, key: str, opts: FormatOptions) -> Header | None:
        """Shape and dtype of the entry ``key`` of a dataset-mode file, from headers alone."""
        return None
