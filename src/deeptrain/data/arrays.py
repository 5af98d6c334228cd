"""In-memory arrays as a DataGenerator's data: ``DataGenerator(x, labels_path=y)``.

An array (or ``np.memmap``) of samples is cut into *sets* of ``set_size`` consecutive
samples, numbered ``'1'``, ``'2'``, ... as the dataset builders number files, and from there
on served exactly as files are: the same batching (files split or combined), shuffling,
preprocessors, ``state_dict`` and exact resume. Nothing is copied: a set is a read-only view
of the array (a memory map is read batch by batch), and no prefetch thread runs, since
there is nothing to load.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from .loader import DataLoader

__all__ = ["ArrayLoader", "is_array", "check_source", "describe_source"]

log = logging.getLogger(__name__)

BUILDERS = (
    "deeptrain.preprocessing.numpy_data_to_numpy_sets, data_to_hdf5, numpy_to_lz4f, numpy2D_to_csv"
)


def is_array(value: Any) -> TypeGuard[np.ndarray]:
    return isinstance(value, np.ndarray)


def check_source(value: Any, argname: str) -> Path | np.ndarray:
    """``value`` as a ``Path`` or an array, or a ``TypeError`` naming what is accepted."""
    if is_array(value):
        if value.ndim == 0 or value.dtype == object:
            raise TypeError(
                f"{argname}: an array must have samples on its first axis and a numeric or "
                f"bool dtype; got shape {value.shape}, dtype {value.dtype}"
            )
        return value
    if isinstance(value, (str, os.PathLike)):
        return Path(value)
    raise TypeError(
        f"{argname} must be a path (str or os.PathLike: a directory of numbered files, or one "
        f"file) or a NumPy array of samples (np.memmap too); got {type(value).__qualname__}. "
        f"To write data to files DataGenerator reads, see {BUILDERS}"
    )


def describe_source(value: Path | np.ndarray | None) -> str | None:
    """How errors and reprs name a data source: a path, or ``array(shape, dtype)``."""
    if value is None:
        return None
    if is_array(value):
        kind = "memmap" if isinstance(value, np.memmap) else "array"
        return f"{kind}{tuple(value.shape)} {value.dtype}"
    return str(value)


def _check_set_size(n: int, set_size: int, argname: str, drop_remainder: bool) -> None:
    """Raise unless ``n`` samples make at least one set of ``set_size`` (whole sets only,
    unless ``drop_remainder``)."""
    if n < set_size:
        raise ValueError(
            f"{argname}: the array has {n} samples, fewer than one set of {set_size} "
            "(batch_size, or array_set_size): no batch can be formed; pass a smaller "
            "batch_size (or array_set_size) or more samples"
        )
    remainder = n % set_size
    if remainder and not drop_remainder:
        raise ValueError(
            f"{argname}: the array's {n} samples do not make whole sets of {set_size} "
            "(batch_size, or array_set_size); choose a size that divides "
            f"{n}, or pass drop_remainder=True to leave the last {remainder} out"
        )


class ArrayLoader(DataLoader):
    """Set num ``'i'`` of ``array``: samples ``[(i - 1) * set_size, i * set_size)``, a
    read-only view (the array itself stays writable). Trailing samples that fill no set
    are left out (``drop_remainder``), or an error."""

    def __init__(self, array: np.ndarray, set_size: int, argname: str, drop_remainder: bool):
        n = len(array)
        remainder = n % set_size
        _check_set_size(n, set_size, argname, drop_remainder)
        if remainder:
            log.info(
                "%s: the last %d samples fill no set of %d: left out", argname, remainder, set_size
            )
        view = array.view()
        view.setflags(write=False)  # batches are views: a preprocessor's edits must not leak
        self.array = view
        self.set_size = set_size
        self.n_sets = n // set_size
        self.path = None  # type: ignore[assignment]  # no file: every other use of .path is a file's
        self.argname = argname
        self.format = None
        self.name = "array"
        self._is_dataset = True  # one source keyed by set num (labels: preloaded views)
        self._filepaths = {}
        self.filepaths = []

    @property
    def lazy(self) -> bool:
        return isinstance(self.array, np.memmap)

    def _get_set_nums(self) -> list[str]:
        return [str(i) for i in range(1, self.n_sets + 1)]

    def _path(self, set_num: str) -> str:  # type: ignore[override]  # names it in messages
        start = (int(set_num) - 1) * self.set_size
        return f"{self.argname}[{start}:{start + self.set_size}]"

    def load_fn(self, set_num: str) -> np.ndarray:
        i = int(set_num)
        if not 1 <= i <= self.n_sets:
            raise KeyError(f"{self.argname}: no set num {set_num!r} (1 to {self.n_sets})")
        return self.array[(i - 1) * self.set_size : i * self.set_size]

    def sample_count(self, set_num: str) -> int:
        return self.set_size

    def header(self, set_num: str) -> tuple[tuple[int, ...], np.dtype]:
        return (self.set_size, *self.array.shape[1:]), self.array.dtype

    def __repr__(self) -> str:
        return f"ArrayLoader({describe_source(self.array)}, {self.n_sets} sets of {self.set_size})"
