"""Registry of the built-in file formats, by loader name and by file extension."""

from __future__ import annotations

from .base import DataLoadError, FileFormat, FormatOptions, Header
from .csv import CSVFormat
from .hdf5 import HDF5Format
from .lz4 import LZ4FrameFormat
from .numpy import NumpyFormat, NumpyMemmapFormat

__all__ = [
    "BUILTIN_FORMATS",
    "DataLoadError",
    "FileFormat",
    "FormatOptions",
    "Header",
    "format_for_extension",
    "SUPPORTED_EXTENSIONS",
]

BUILTIN_FORMATS: dict[str, FileFormat] = {
    fmt.name: fmt
    for fmt in (NumpyFormat(), NumpyMemmapFormat(), HDF5Format(), CSVFormat(), LZ4FrameFormat())
}
SUPPORTED_EXTENSIONS: tuple[str, ...] = tuple(
    ext for fmt in BUILTIN_FORMATS.values() for ext in fmt.extensions if fmt.name != "numpy-memmap"
)


def format_for_extension(ext: str) -> FileFormat | None:
    """The default format for a file extension such as ``'.npy'``, or ``None``."""
    for fmt in BUILTIN_FORMATS.values():
        if ext.lower() in fmt.extensions:
            return fmt
    return None
