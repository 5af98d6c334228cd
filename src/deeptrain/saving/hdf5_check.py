"""A checkpoint's HDF5 file may not refer to any other file.

HDF5 can point outside a file in three ways, all followed by h5py when the data is read:
external links (to an object in another file), datasets stored in external raw files, and
virtual datasets (mapped from other files). Keras' ``load_weights`` reads the weights file
with h5py, so a checkpoint's ``model.weights.h5`` is checked before it is loaded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import CorruptCheckpointError
from .safe_io import open_binary

__all__ = ["check_hdf5_self_contained"]


def _references(f: Any) -> list[str]:
    """What in the open file ``f`` refers to other files (external links are not
    followed: only the links are listed)."""
    import h5py

    found: list[str] = []

    def visit(name: str, link: Any) -> None:
        if isinstance(link, h5py.ExternalLink):
            found.append(f"external link {name!r} to {link.filename!r}:{link.path!r}")
        elif isinstance(link, h5py.HardLink):
            obj = f.get(name)
            if isinstance(obj, h5py.Dataset):
                if obj.external:
                    files = sorted({str(entry[0]) for entry in obj.external})
                    found.append(f"dataset {name!r} stored in external file(s) {files}")
                if obj.is_virtual:
                    found.append(f"virtual dataset {name!r}")
    f.visititems_links(visit)
    return found


def check_hdf5_self_contained(path: str | Path) -> None:
    """Raise :class:`CorruptCheckpointError` if the HDF5 file ``path`` (a regular file,
    not a link) holds an external link, a dataset with external raw storage, or a virtual
    dataset."""
    import h5py

    path = Path(path)
    try:
        with open_binary(path) as fobj, h5py.File(fobj, "r") as f:
            found = _references(f)
    except CorruptCheckpointError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise CorruptCheckpointError(f"{path} is not a readable HDF5 file ({e})") from None
    if found:
        more = f" and {len(found) - 5} more" if len(found) > 5 else ""
        raise CorruptCheckpointError(
            f"{path} refers to other files ({'; '.join(found[:5])}{more}); a checkpoint's "
            "HDF5 file must be self-contained")
