"""``DataLoader``: reads one set num's array from a directory of files or from one file."""

from __future__ import annotations

import logging
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .autodata import discover
from .formats import (
    BUILTIN_FORMATS,
    SUPPORTED_EXTENSIONS,
    DataLoadError,
    FileFormat,
    FormatOptions,
    Header,
    format_for_extension,
)

__all__ = ["DataLoader", "DataLoadError"]

log = logging.getLogger(__name__)

LoaderSpec = str | Callable[..., Any] | type | None


class DataLoader:
    """Load the array of a set num from ``path``.

    ``loader`` is a built-in format name (``'numpy'``, ``'numpy-memmap'``, ``'numpy-lz4f'``,
    ``'hdf5'``, ``'csv'``), ``None`` to pick one by file extension, or a function
    ``fn(loader, set_num) -> array`` (bound to this object, so it may call
    ``loader._path(set_num)``). ``filepaths`` restricts a directory to those of its files;
    ``base_name`` picks the files named ``base_name`` + number in a directory that holds
    several numbered sets (``data_1.npy``..., ``labels_1.npy``...).
    Subclasses may override :meth:`load_fn`, :meth:`_path` and
    :meth:`_get_set_nums` for formats of their own.

    Large ``.npy`` files (any file over ``memmap_threshold`` bytes) are memory-mapped instead
    of read, so that only the batches in use are resident.
    """

    def __init__(
        self,
        path: str | Path,
        loader: LoaderSpec = None,
        dtype: Any = None,
        batch_shape: tuple[int, ...] | None = None,
        base_name: str | None = None,
        ext: str | None = None,
        filepaths: list[str] | None = None,
        *,
        argname: str = "path",
        exclude: str | Path | None = None,
        memmap_threshold: int | None = None,
    ):
        self.path = Path(path)
        self.argname = argname
        self.options = FormatOptions(
            dtype=dtype, batch_shape=None if batch_shape is None else tuple(batch_shape)
        )
        custom = loader if callable(loader) and not isinstance(loader, type) else None
        if loader is not None and custom is None and not isinstance(loader, str):
            raise TypeError(
                f"{argname} loader must be None, a format name "
                f"{list(BUILTIN_FORMATS)} or a function (loader, set_num) -> array; "
                f"got {loader!r}"
            )
        if isinstance(loader, str) and loader not in BUILTIN_FORMATS:
            raise ValueError(
                f"unknown loader {loader!r} for {argname}; built-in loaders are "
                f"{list(BUILTIN_FORMATS)}"
            )

        if loader is None:
            supported = SUPPORTED_EXTENSIONS
        elif isinstance(loader, str):
            supported = BUILTIN_FORMATS[loader].extensions or (".npy",)
        else:
            supported = None  # a custom function reads whatever is there
        found = discover(
            self.path, argname, supported, exclude=exclude, ext=ext, base_name=base_name
        )
        self._is_dataset = found.is_dataset
        self.path = found.path  # a directory holding one dataset file: that file
        self.ext = found.ext
        self.base_name = base_name if base_name is not None else found.base_name
        if filepaths is not None:  # only these of the files found
            wanted = {str(Path(p)) for p in filepaths}
            found.filepaths = {n: p for n, p in found.filepaths.items() if str(p) in wanted}
            if not found.filepaths:
                raise ValueError(
                    f"{argname}: none of filepaths={list(filepaths)[:3]}... is "
                    f"a numbered data file of {str(self.path)!r}"
                )
        self._filepaths = found.filepaths
        self.filepaths = [str(p) for p in found.filepaths.values()]

        self.format: FileFormat | None = None
        if custom is not None:
            # DeepTrain 0.6's API: the user's function becomes this instance's load_fn
            self.load_fn = types.MethodType(custom, self)  # type: ignore[method-assign]
            self.name = getattr(custom, "__name__", "custom")
        elif loader is None or isinstance(loader, str):
            self.format = self._choose_format(loader, memmap_threshold)
            self.name = self.format.name
            if self.format.name == "numpy-lz4f":
                self._check_lz4_options(dtype, batch_shape)

    # -- construction helpers --------------------------------------------------
    def _check_lz4_options(self, dtype: Any, batch_shape: Any) -> None:
        """lz4 frames carry no shape or dtype: the batch shape must be given; the dtype
        defaults to float64, as in DeepTrain 0.6 (``np.frombuffer``'s default)."""
        if batch_shape is None:
            raise ValueError(
                f"the numpy-lz4f loader of {self.argname}={str(self.path)!r} needs the "
                "arrays' batch shape: pass data_batch_shape= (labels_batch_shape= for "
                "labels) to DataGenerator"
            )
        if dtype is None:
            log.info(
                "%s: numpy-lz4f without a dtype: decoding as float64 (DeepTrain 0.6's "
                "default); pass data_dtype= / labels_dtype= if the arrays were saved as "
                "another dtype",
                self.argname,
            )
            self.options = FormatOptions(dtype=np.float64, batch_shape=self.options.batch_shape)

    def _choose_format(self, loader: str | None, memmap_threshold: int | None) -> FileFormat:
        fmt = BUILTIN_FORMATS[loader] if loader else format_for_extension(self.ext)
        if fmt is None:
            raise ValueError(
                f"{self.argname}={str(self.path)!r}: no built-in loader reads "
                f"{self.ext!r} files; supported extensions are "
                f"{list(SUPPORTED_EXTENSIONS)}, or pass a loader function"
            )
        if fmt.name == "numpy" and memmap_threshold is not None:
            biggest = max((p.stat().st_size for p in self._files()), default=0)
            if biggest > memmap_threshold:
                log.info(
                    "%s: .npy files up to %.1f MB exceed memmap_threshold=%d bytes; "
                    "memory-mapping them",
                    self.argname,
                    biggest / 2**20,
                    memmap_threshold,
                )
                fmt = BUILTIN_FORMATS["numpy-memmap"]
        return fmt

    def _files(self) -> list[Path]:
        return [self.path] if self._is_dataset else list(self._filepaths.values())

    # -- the loader interface ----------------------------------------------------
    @property
    def lazy(self) -> bool:
        """True when loaded arrays are memory maps read on access."""
        return bool(self.format and self.format.lazy)

    def _get_set_nums(self) -> list[str]:
        """All set nums available at ``path``, in numeric order."""
        if not self._is_dataset:
            return list(self._filepaths)
        if self.format is None:
            raise ValueError(
                f"{self.argname}={str(self.path)!r} is a single file read by a "
                "custom loader function: pass set_nums= to DataGenerator"
            )
        return self._guard(self.path, self.format.dataset_keys, self.path, self.options)

    def _path(self, set_num: str) -> Path:
        """The file that holds ``set_num``."""
        if self._is_dataset:
            return self.path
        try:
            return self._filepaths[str(set_num)]
        except KeyError:
            raise KeyError(f"{self.argname}: no file for set num {set_num!r}") from None

    def load_fn(self, set_num: str) -> np.ndarray:
        """The array of ``set_num``."""
        path, fmt = self._path(set_num), self.format
        if fmt is None:  # a custom function replaces this method
            raise TypeError(f"{self.argname}: no file format to read {path} with")
        if self._is_dataset:
            return self._guard(path, fmt.load_entry, path, str(set_num), self.options)
        return self._guard(path, fmt.load_file, path, self.options)

    def sample_count(self, set_num: str) -> int | None:
        """Samples in ``set_num`` without reading them, or None when that is not cheap."""
        if self.format is None:
            return None
        path = self._path(set_num)
        if self._is_dataset:
            return self._guard(path, self.format.entry_length, path, str(set_num), self.options)
        return self._guard(path, self.format.file_length, path, self.options)

    def header(self, set_num: str) -> Header | None:
        """Shape and dtype of ``set_num``'s array from the file's headers, without reading
        the data, or None when that is not cheap (csv, lz4, custom loaders)."""
        if self.format is None:
            return None
        path = self._path(set_num)
        if self._is_dataset:
            return self._guard(path, self.format.entry_header, path, str(set_num), self.options)
        return self._guard(path, self.format.file_header, path, self.options)

    def load(self, set_num: str) -> np.ndarray:
        """:meth:`load_fn` with errors that name the file, and a check for arrays."""
        path = self._path(set_num)
        try:
            data = self.load_fn(set_num)
        except DataLoadError:
            raise
        except Exception as e:
            raise DataLoadError(
                f"could not load set num {set_num} from {path}: {type(e).__name__}: {e}"
            ) from e
        if not hasattr(data, "shape") or not hasattr(data, "__len__"):
            data = np.asarray(data)
        if data.ndim == 0:
            raise DataLoadError(
                f"set num {set_num} from {path} loaded as a scalar; expected an "
                "array whose first axis is samples"
            )
        return data

    @staticmethod
    def _guard(path: Path, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except (DataLoadError, NotImplementedError):
            raise
        except Exception as e:
            raise DataLoadError(f"could not read {path}: {type(e).__name__}: {e}") from e

    def __repr__(self) -> str:
        mode = "dataset" if self._is_dataset else f"{len(self._filepaths)} files"
        return f"DataLoader({str(self.path)!r}, loader={self.name!r}, {mode})"
