"""HDF5 files: one dataset per file, or one file with a dataset per set num ('0', '1', ...)."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from .base import DataLoadError, FileFormat, FormatOptions

__all__ = ["HDF5Format"]


def _only_dataset(f: h5py.File, path: Path) -> h5py.Dataset:
    names = sorted(k for k, v in f.items() if isinstance(v, h5py.Dataset))
    if not names:
        raise DataLoadError(f"{path} holds no HDF5 dataset")
    return f[names[0]]


class HDF5Format(FileFormat):
    name = "hdf5"
    extensions = (".h5", ".hdf5")

    def load_file(self, path: Path, opts: FormatOptions) -> np.ndarray:
        with h5py.File(path, "r") as f:
            return _only_dataset(f, path)[()]

    def dataset_keys(self, path: Path, opts: FormatOptions) -> list[str]:
        with h5py.File(path, "r") as f:
            keys = [k for k, v in f.items() if isinstance(v, h5py.Dataset) and k.isdigit()]
        return sorted(keys, key=int)

    def load_entry(self, path: Path, key: str, opts: FormatOptions) -> np.ndarray:
        with h5py.File(path, "r") as f:
            if key not in f:
                raise DataLoadError(f"{path} has no dataset named {key!r}")
            return f[key][()]

    def file_length(self, path: Path, opts: FormatOptions) -> int | None:
        with h5py.File(path, "r") as f:
            return _only_dataset(f, path).shape[0]

    def entry_length(self, path: Path, key: str, opts: FormatOptions) -> int | None:
        with h5py.File(path, "r") as f:
            return f[key].shape[0] if key in f else None
