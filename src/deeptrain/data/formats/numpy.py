"""``.npy`` files: read into RAM (``numpy``) or memory-mapped (``numpy-memmap``).

In dataset mode the file holds an array ``(batches, samples, ...)`` and set num ``i`` is
``array[i]``; it is always opened memory-mapped so that reading one batch does not read the
whole file. ``numpy`` copies the requested entry into RAM; ``numpy-memmap`` returns views
that are read from disk only when a batch is served, for data larger than RAM.
Pickled (object) arrays are refused: loading a data file never runs code.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from .base import DataLoadError, FileFormat, FormatOptions, Header

__all__ = ["NumpyFormat", "NumpyMemmapFormat", "load_npy", "npy_header"]

# NumPy parses a .npy header with ast.literal_eval, and CPython 3.11's AST construction is
# not thread-safe (python/cpython#106905): two threads parsing at once (the prefetch thread
# and the main thread, or the train and validation prefetchers) can fail with "SystemError:
# AST constructor recursion depth mismatch". Headers are parsed under this lock; the data,
# the slow part, is read outside it.
_HEADER_LOCK = threading.Lock()
_READ_HEADER = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _read_header(f: BinaryIO, path: Path) -> tuple[tuple[int, ...], bool, np.dtype] | None:
    """``(shape, fortran_order, dtype)`` from the open file ``f`` (left at the data), or None
    for a header version this reader leaves to NumPy. Object (pickled) arrays are refused."""
    with _HEADER_LOCK:
        version = np.lib.format.read_magic(f)
        if version not in _READ_HEADER:  # rare (3.0: utf-8 field names): numpy reads it
            return None
        shape, fortran, dtype = _READ_HEADER[version](f)
    if dtype.hasobject:
        raise ValueError(
            f"{path} holds an object array, which needs pickle to load: "
            "refused (allow_pickle=False)"
        )
    return shape, fortran, dtype


def npy_header(path: Path) -> Header:
    """Shape and dtype of the array in the ``.npy`` file ``path``, from its header alone;
    safe to call from several threads at once."""
    with open(path, "rb") as f:
        header = _read_header(f, path)
    if header is None:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        return tuple(array.shape), array.dtype
    return tuple(header[0]), header[2]


def load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """``np.load(path, allow_pickle=False, mmap_mode='r' if mmap else None)``, safe to call
    from several threads at once. Object (pickled) arrays are refused."""
    with open(path, "rb") as f:
        header = _read_header(f, path)
        if header is None:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        shape, fortran, dtype = header
        order: Literal["F", "C"] = "F" if fortran else "C"
        if mmap:
            return np.memmap(path, dtype=dtype, mode="r", shape=shape, order=order, offset=f.tell())
        count = int(np.prod(shape, dtype=np.int64))
        data = np.fromfile(f, dtype=dtype, count=count)
    if data.size != count:
        raise ValueError(f"{path} is truncated: {data.size} of {count} values")
    return data.reshape(shape, order=order)


def _open(path: Path) -> np.ndarray:
    return load_npy(path, mmap=True)


def _check_dataset_shape(path: Path, shape: tuple[int, ...]) -> None:
    """A ``.npy`` dataset file is ``(batches, samples, ...)``: refuse fewer dimensions."""
    if len(shape) < 2:
        raise DataLoadError(
            f"{path} holds an array of shape {shape}; as a dataset (one file of batches) it "
            "must be (batches, samples, ...). A file of one batch is named with its number "
            "(batch__1.npy)"
        )


def _open_dataset(path: Path) -> np.ndarray:
    array = _open(path)
    _check_dataset_shape(path, array.shape)
    return array


class NumpyFormat(FileFormat):
    name = "numpy"
    extensions = (".npy",)

    def load_file(self, path: Path, opts: FormatOptions) -> np.ndarray:
        return load_npy(path)

    def dataset_keys(self, path: Path, opts: FormatOptions) -> list[str]:
        return [str(i) for i in range(len(_open_dataset(path)))]

    def load_entry(self, path: Path, key: str, opts: FormatOptions) -> np.ndarray:
        return np.array(_open_dataset(path)[int(key)])

    def file_length(self, path: Path, opts: FormatOptions) -> int | None:
        return len(_open(path))

    def entry_length(self, path: Path, key: str, opts: FormatOptions) -> int | None:
        return _open_dataset(path).shape[1]

    def file_header(self, path: Path, opts: FormatOptions) -> Header | None:
        return npy_header(path)

    def entry_header(self, path: Path, key: str, opts: FormatOptions) -> Header | None:
        shape, dtype = npy_header(path)  # one array (batches, samples, ...): entries alike
        _check_dataset_shape(path, shape)
        return shape[1:], dtype


class NumpyMemmapFormat(NumpyFormat):
    name = "numpy-memmap"
    lazy = True

    def load_file(self, path: Path, opts: FormatOptions) -> np.ndarray:
        return _open(path)

    def load_entry(self, path: Path, key: str, opts: FormatOptions) -> np.ndarray:
        return _open_dataset(path)[int(key)]
