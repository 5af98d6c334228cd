"""lz4-frame-compressed arrays stored as ``.npy`` (``numpy-lz4f``).

The ``.npy`` file holds the compressed bytes of a C-ordered array (as a 1-D ``uint8``
array, or the 0-d bytes array DeepTrain 0.6 wrote). The raw buffer carries no dtype or
shape, so the loader needs ``data_dtype`` and ``data_batch_shape``. In dataset mode the
decompressed buffer is ``(batches, *batch_shape)`` and is decompressed once, then cached.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import lz4.frame
import numpy as np

from .base import DataLoadError, FileFormat, FormatOptions
from .numpy import load_npy

__all__ = ["LZ4FrameFormat"]


def _decompress(path: Path, opts: FormatOptions) -> np.ndarray:
    # decompress straight from the array's buffer into a writable bytearray: no copies
    raw = lz4.frame.decompress(load_npy(path), return_bytearray=True)
    return np.frombuffer(raw, dtype=opts.dtype)


@lru_cache(maxsize=2)
def _whole_dataset(path: Path, mtime_ns: int, opts: FormatOptions) -> np.ndarray:
    flat = _decompress(path, opts)
    return _reshape(flat, (-1, *opts.batch_shape), path)


def _reshape(flat: np.ndarray, shape: tuple[int, ...], path: Path) -> np.ndarray:
    try:
        return flat.reshape(shape)
    except ValueError:
        raise DataLoadError(f"{path} decompresses to {flat.size} values of {flat.dtype}, "
                            f"which do not fit the shape {shape}") from None


class LZ4FrameFormat(FileFormat):
    name = "numpy-lz4f"
    extensions = ()  # .npy files are read as plain numpy unless numpy-lz4f is asked for

    def load_file(self, path: Path, opts: FormatOptions) -> np.ndarray:
        return _reshape(_decompress(path, opts), tuple(opts.batch_shape), path)

    def dataset_keys(self, path: Path, opts: FormatOptions) -> list[str]:
        return [str(i) for i in range(len(self._dataset(path, opts)))]

    def load_entry(self, path: Path, key: str, opts: FormatOptions) -> np.ndarray:
        return self._dataset(path, opts)[int(key)].copy()

    def file_length(self, path: Path, opts: FormatOptions) -> int | None:
        return opts.batch_shape[0] if opts.batch_shape else None

    def entry_length(self, path: Path, key: str, opts: FormatOptions) -> int | None:
        return opts.batch_shape[0] if opts.batch_shape else None

    @staticmethod
    def _dataset(path: Path, opts: FormatOptions) -> np.ndarray:
        return _whole_dataset(Path(path), Path(path).stat().st_mtime_ns, opts)
