"""lz4-frame-compressed arrays stored as ``.npy`` (``numpy-lz4f``).

The ``.npy`` file holds the compressed bytes of a C-ordered array (as a 1-D ``uint8``
array, or the 0-d bytes array DeepTrain 0.6 wrote). The raw buffer carries no dtype or
shape, so the loader needs ``data_dtype`` and ``data_batch_shape``. In dataset mode the
decompressed buffer is ``(batches, *batch_shape)`` and is decompressed once, then cached.

A frame's size is checked before it is decompressed, so that a damaged or hostile file
cannot take more memory than its data: in directory mode it must decompress to exactly one
batch; in dataset mode to whole batches, and to no more than lz4 can produce from the file's
compressed size (:data:`MAX_RATIO`). A size the frame header declares is checked before
anything is allocated; without one, decompression stops at that bound.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import lz4.frame
import numpy as np

from ...util.files import file_version
from .base import DataLoadError, FileFormat, FormatOptions
from .numpy import load_npy

__all__ = ["LZ4FrameFormat", "MAX_RATIO"]


# lz4 writes at most 255 bytes of output per byte of input (a match's length grows by 255
# per extra length byte), so an honest frame of n bytes decompresses to under 255 * n bytes
MAX_RATIO = 255


def _batch_shape(opts: FormatOptions) -> tuple[int, ...]:
    if opts.batch_shape is None:  # DataLoader refuses numpy-lz4f without one
        raise ValueError("the numpy-lz4f format needs the arrays' batch shape")
    return tuple(opts.batch_shape)


def _decompress(path: Path, opts: FormatOptions, dataset: bool) -> np.ndarray:
    """The flat array in the frame at ``path``; the size is checked before decompressing."""
    frame = load_npy(path)
    shape = _batch_shape(opts)
    batch_bytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(opts.dtype).itemsize
    what = f"one batch of shape {shape} and dtype {np.dtype(opts.dtype)} is {batch_bytes} bytes"
    if dataset:
        limit = MAX_RATIO * frame.nbytes // batch_bytes * batch_bytes
        if limit == 0:
            raise DataLoadError(
                f"{path}: {frame.nbytes} compressed bytes cannot hold one batch ({what})"
            )
    else:
        limit = batch_bytes
    declared = lz4.frame.get_frame_info(frame)["content_size"]  # 0: not declared
    if declared:
        _check_declared(path, declared, batch_bytes, limit, dataset, what, frame.nbytes)
        # decompress straight from the array's buffer into a writable bytearray: no copies
        raw = lz4.frame.decompress(frame, return_bytearray=True)
    else:
        raw = _decompress_at_most(frame, limit, path, what)
        if not dataset:  # a batch is served writable, like the other formats' (entries of a
            raw = bytearray(raw)  # dataset are copied out of the cached whole)
    return np.frombuffer(raw, dtype=opts.dtype)


def _check_declared(
    path: Path,
    declared: int,
    batch_bytes: int,
    limit: int,
    dataset: bool,
    what: str,
    compressed: int,
) -> None:
    if not dataset and declared != batch_bytes:
        raise DataLoadError(
            f"{path}: the lz4 frame declares {declared} bytes of data, but "
            f"{what}; refused before decompressing"
        )
    if dataset and declared % batch_bytes:
        raise DataLoadError(
            f"{path}: the lz4 frame declares {declared} bytes of data, not a "
            f"whole number of batches ({what}); refused before decompressing"
        )
    if dataset and declared > limit:
        raise DataLoadError(
            f"{path}: the lz4 frame declares {declared} bytes of data, more "
            f"than {compressed} compressed bytes can hold (lz4 expands at most "
            f"{MAX_RATIO}x); refused before decompressing"
        )


def _decompress_at_most(frame: np.ndarray, limit: int, path: Path, what: str) -> bytes:
    """Decompress a frame that declares no size, stopping at ``limit`` bytes."""
    decompressor = lz4.frame.LZ4FrameDecompressor()
    raw = decompressor.decompress(frame, max_length=limit)
    if not decompressor.eof:
        if len(raw) >= limit:
            raise DataLoadError(f"{path} decompresses to more than {limit} bytes ({what}); refused")
        raise DataLoadError(
            f"{path} is truncated: its lz4 frame ends after {len(raw)} bytes of data"
        )
    return raw


@lru_cache(maxsize=2)
def _whole_dataset(path: Path, version: tuple[int, ...], opts: FormatOptions) -> np.ndarray:
    """The decompressed dataset; ``version`` (``file_version``) keys the cache."""
    flat = _decompress(path, opts, dataset=True)
    return _reshape(flat, (-1, *_batch_shape(opts)), path)


def _reshape(flat: np.ndarray, shape: tuple[int, ...], path: Path) -> np.ndarray:
    try:
        return flat.reshape(shape)
    except ValueError:
        raise DataLoadError(
            f"{path} decompresses to {flat.size} values of {flat.dtype}, "
            f"which do not fit the shape {shape}"
        ) from None


class LZ4FrameFormat(FileFormat):
    name = "numpy-lz4f"
    extensions = ()  # .npy files are read as plain numpy unless numpy-lz4f is asked for

    def load_file(self, path: Path, opts: FormatOptions) -> np.ndarray:
        return _reshape(_decompress(path, opts, dataset=False), _batch_shape(opts), path)

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
        return _whole_dataset(*file_version(path), opts)
