"""HDF5 files: one dataset per file, or one file with a dataset per set num ('0', '1', ...).

A file must hold its data itself: external links, datasets stored in external raw files and
virtual datasets (all of which read other files) are refused, see :func:`check_self_contained`.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from .base import DataLoadError, FileFormat, FormatOptions, Header

__all__ = ["HDF5Format", "NotSelfContainedError", "check_self_contained"]


class NotSelfContainedError(DataLoadError, ValueError):
    """An HDF5 file refers to data in other files."""


def check_self_contained(path: str | Path, h5file: h5py.Group | None = None) -> None:
    """Raise :class:`NotSelfContainedError` (a ``ValueError``) naming ``path`` and the object
    if the HDF5 file reads anything outside itself: an external link, a dataset with external
    raw storage, or a virtual dataset. ``h5file``: the file, when it is already open."""
    if h5file is None:
        with h5py.File(path, "r") as f:
            return check_self_contained(path, f)

    def problem(
        name: str, link: h5py.HardLink | h5py.SoftLink | h5py.ExternalLink
    ) -> Exception | None:
        # returned, not raised: an exception raised inside the visit callback is mangled
        if isinstance(link, h5py.ExternalLink):
            return _external_link_error(path, name, link)
        if isinstance(link, h5py.HardLink):  # soft links name objects of this file
            try:
                obj = h5file[name]
            except Exception as e:  # noqa: BLE001 - raised below, outside the callback
                return e
            if isinstance(obj, h5py.Dataset):
                return _storage_error(obj, path, name)
        return None  # go on

    found = h5file.visititems_links(problem)  # stops at the first non-None
    if found is not None:
        raise found


def _checked_dataset(h5file: h5py.File, key: str, path: Path) -> h5py.Dataset:
    """The dataset ``key`` of ``h5file``, refused if its data lives outside the file."""
    link = h5file.get(key, getlink=True)
    if link is None:
        raise DataLoadError(f"{path} has no dataset named {key!r}")
    if isinstance(link, h5py.ExternalLink):
        raise _external_link_error(path, key, link)
    try:
        obj = h5file[key]
    except KeyError:
        raise DataLoadError(
            f"{path}: {key!r} is a soft link to {link.path!r}, which does not exist"
        ) from None
    if not isinstance(obj, h5py.Dataset):
        raise DataLoadError(f"{path}: {key!r} is a {type(obj).__name__}, expected a dataset")
    if obj.file.filename != h5file.filename:  # a soft link through an external link
        raise NotSelfContainedError(
            f"{path}: dataset {key!r} resolves to {obj.file.filename}"
            f"{obj.name}, outside the file; refused"
        )
    error = _storage_error(obj, path, key)
    if error is not None:
        raise error
    return _not_empty(obj, path, key)


def _not_empty(dataset: h5py.Dataset, path: str | Path, name: str) -> h5py.Dataset:
    """``dataset``, refused if it has no dataspace (``h5py.Empty``: no shape, no data)."""
    if dataset.shape is None:
        raise DataLoadError(
            f"{path}: dataset {name!r} is empty (an HDF5 null dataspace, h5py.Empty): it has "
            "no shape and no samples"
        )
    return dataset


def _storage_error(
    dataset: h5py.Dataset, path: str | Path, name: str
) -> NotSelfContainedError | None:
    if dataset.external is not None:
        files = sorted({str(entry[0]) for entry in dataset.external})
        return NotSelfContainedError(
            f"{path}: dataset {name!r} keeps its data in external "
            f"raw files {files}, outside the HDF5 file; refused"
        )
    if dataset.is_virtual:
        sources = sorted({str(m.file_name) for m in dataset.virtual_sources()})
        return NotSelfContainedError(
            f"{path}: dataset {name!r} is a virtual dataset mapping "
            f"data from {sources}; refused (only data stored in the "
            "file itself is read)"
        )
    return None


def _external_link_error(
    path: str | Path, name: str, link: h5py.ExternalLink
) -> NotSelfContainedError:
    return NotSelfContainedError(
        f"{path}: {name!r} is an external link to {link.filename!r}:"
        f"{link.path!r}; refused (only data stored in the file itself "
        "is read)"
    )


def _only_dataset(f: h5py.File, path: Path) -> h5py.Dataset:
    """The file's dataset (the first by name, if several) in directory mode."""
    check_self_contained(path, f)
    names = sorted(k for k, v in f.items() if isinstance(v, h5py.Dataset))
    if not names:
        raise DataLoadError(f"{path} holds no HDF5 dataset")
    return _not_empty(f[names[0]], path, names[0])


def _is_number(key: str) -> bool:
    """Whether ``key`` names a set num: ASCII digits only (``'²'.isdigit()`` is True)."""
    return key.isascii() and key.isdigit()


def _header(dataset: h5py.Dataset) -> Header:
    return tuple(dataset.shape), np.dtype(dataset.dtype)


class HDF5Format(FileFormat):
    name = "hdf5"
    extensions = (".h5", ".hdf5")

    def load_file(self, path: Path, opts: FormatOptions) -> np.ndarray:
        with h5py.File(path, "r") as f:
            return _only_dataset(f, path)[()]

    def dataset_keys(self, path: Path, opts: FormatOptions) -> list[str]:
        with h5py.File(path, "r") as f:
            check_self_contained(path, f)
            keys = [k for k, v in f.items() if isinstance(v, h5py.Dataset) and _is_number(k)]
        return sorted(keys, key=int)

    def load_entry(self, path: Path, key: str, opts: FormatOptions) -> np.ndarray:
        with h5py.File(path, "r") as f:
            return _checked_dataset(f, key, path)[()]

    def file_length(self, path: Path, opts: FormatOptions) -> int | None:
        with h5py.File(path, "r") as f:
            return _only_dataset(f, path).shape[0]

    def entry_length(self, path: Path, key: str, opts: FormatOptions) -> int | None:
        with h5py.File(path, "r") as f:
            if f.get(key, getlink=True) is None:
                return None
            return _checked_dataset(f, key, path).shape[0]

    def file_header(self, path: Path, opts: FormatOptions) -> Header | None:
        with h5py.File(path, "r") as f:
            return _header(_only_dataset(f, path))

    def entry_header(self, path: Path, key: str, opts: FormatOptions) -> Header | None:
        with h5py.File(path, "r") as f:
            return _header(_checked_dataset(f, key, path))
