"""A checkpoint's HDF5 file may not refer to any other file.

HDF5 can point outside a file in three ways, all followed by h5py when the data is read:
external links, datasets stored in external raw files, and virtual datasets. Keras'
``load_weights`` reads the weights file with h5py, so a checkpoint's ``model.weights.h5`` is
checked (by the data layer's :func:`~deeptrain.data.formats.hdf5.check_self_contained`)
before it is loaded.
"""

from __future__ import annotations

from pathlib import Path

from .errors import CorruptCheckpointError
from .safe_io import open_binary

__all__ = ["check_hdf5_self_contained"]


def check_hdf5_self_contained(path: str | Path) -> None:
    """Raise :class:`CorruptCheckpointError` if the HDF5 file ``path`` (a regular file,
    not a link) holds an external link, a dataset with external raw storage, or a virtual
    dataset."""
    import h5py

    from ..data.formats.hdf5 import NotSelfContainedError, check_self_contained

    path = Path(path)
    try:
        with open_binary(path) as fobj, h5py.File(fobj, "r") as f:
            check_self_contained(path, f)
    except CorruptCheckpointError:
        raise
    except NotSelfContainedError as e:  # names the file and the object
        raise CorruptCheckpointError(
            f"{e}: a checkpoint's HDF5 file must be self-contained"
        ) from None
    except (OSError, ValueError, KeyError) as e:
        raise CorruptCheckpointError(f"{path} is not a readable HDF5 file ({e})") from None
