"""Dataset builders that write the on-disk layouts ``DataGenerator`` reads.

Layouts:

* **numpy sets** (:func:`numpy_data_to_numpy_sets`): one ``<basename>__<k>.npy``
  per batch (``k`` from 1) plus a ``labels.h5`` with datasets ``'1'..'K'``.
* **hdf5 dataset** (:func:`data_to_hdf5`): one ``.h5`` with datasets
  ``'0','1',...`` of ``batch_size`` samples each (chunked, ``lzf`` by default).
* **lz4 frame npy** (:func:`numpy_to_lz4f`): the raw array bytes as an lz4 frame,
  saved as a 1-D ``uint8`` ``.npy``; readers supply dtype and shape.
* **csv labels** (:func:`numpy2D_to_csv`): one column per batch, one row per sample.

Every file is written atomically (temporary file in the target directory, fsync,
``os.replace``), so a failure never leaves a half-written file behind; the files of a
numpy set are committed together (all or none). An existing target is only replaced with
``overwrite=True``; otherwise ``FileExistsError``.
"""

from __future__ import annotations

import contextlib
import csv
import inspect
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import lz4.frame
import numpy as np
import numpy.typing as npt

from ..util.files import atomic_file, atomic_files
from ..util.misc import positive_int

__all__ = [
    "data_to_hdf5",
    "numpy_to_lz4f",
    "numpy_data_to_numpy_sets",
    "numpy2D_to_csv",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
_LABELS_FILENAME = "labels.h5"


# ---------------------------------------------------------------------------
# shared helpers


def _log(verbose: int | bool, msg: str, *args: Any) -> None:
    """Log at INFO if ``verbose`` else DEBUG."""
    logger.log(logging.INFO if verbose else logging.DEBUG, msg, *args)


def _check_overwrite_arg(overwrite: Any) -> None:
    if overwrite not in (None, True, False):
        raise TypeError(f"`overwrite` must be None, True or False, got {overwrite!r}")


def _check_target(path: Path, overwrite: bool | None) -> None:
    """Raise unless ``path`` may be written (missing, or existing file and
    ``overwrite is True``)."""
    if path.is_dir():
        raise IsADirectoryError(f"target {str(path)!r} is a directory, expected a file path")
    if path.exists() and overwrite is not True:
        raise FileExistsError(f"{str(path)!r} already exists; pass overwrite=True to replace it")
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"directory {str(path.parent)!r} of target {str(path)!r} does not exist"
        )


@contextlib.contextmanager
def _atomic_write(path: PathLike, overwrite: bool | None) -> Iterator[Path]:
    """:func:`~deeptrain.util.files.atomic_file` onto ``path`` once ``overwrite`` allows it.
    The temp name (``.<name>.<hex>.tmp``) never matches the extensions loaders look for."""
    path = Path(path)
    _check_target(path, overwrite)
    with atomic_file(path) as tmp:
        yield tmp


def _save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` without pickling to an exact path (no ``.npy`` appended)."""
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


def _as_array(name: str, data: Any) -> np.ndarray:
    """Convert ``data`` to an ndarray, rejecting paths and object dtypes."""
    if isinstance(data, (str, bytes, os.PathLike)):
        raise TypeError(f"`{name}` must be an array, got a path/str {data!r}")
    array = np.asarray(data)
    if array.dtype == object:
        raise TypeError(
            f"`{name}` must be a numeric/bool array, got object dtype (ragged or mixed-type input?)"
        )
    return array


# dtype kinds a format cannot store: (kind -> what it is, how to convert)
_UNSTORABLE = {
    "U": (
        "text (str)",
        "class indices (np.unique(x, return_inverse=True)[1]) or bytes (.astype('S'))",
    ),
    "M": ("datetime64", "numbers (.astype('int64'))"),
    "m": ("timedelta64", "numbers (.astype('int64'))"),
}


def _check_storable(name: str, dtype: np.dtype, fmt: str) -> None:
    """Raise ``TypeError`` naming ``name`` and its dtype if ``fmt`` cannot store it."""
    if dtype.kind in _UNSTORABLE:
        what, fix = _UNSTORABLE[dtype.kind]
        raise TypeError(
            f"{name} has dtype {dtype} ({what}), which {fmt} cannot store "
            f"as DeepTrain reads it back; convert it to {fix}"
        )


def _with_suffix(path: PathLike, suffixes: tuple[str, ...], name: str) -> Path:
    """``path``, with ``suffixes[0]`` appended (and a warning) if it ends in none of
    ``suffixes``: DeepTrain 0.6 appended it, and loaders read files by extension."""
    path = Path(path)
    if path.suffix.lower() in suffixes:
        return path
    new = path.with_name(path.name + suffixes[0])
    logger.warning("`%s` %r has no %r extension; saving to %s", name, str(path), suffixes[0], new)
    return new


def _fit_remainder(
    arrays: Sequence[np.ndarray],
    batch_size: int,
    oversample_remainder: bool,
    rng: np.random.Generator,
    verbose: int | bool,
) -> list[np.ndarray]:
    """Make the sample count (axis 0, shared by ``arrays``) a multiple of
    ``batch_size``: oversample the remainder with randomly drawn samples (same
    indices for every array), or drop it."""
    n = len(arrays[0])
    if n == 0:
        raise ValueError("`data` has no samples (len(data) == 0)")
    remainder = n % batch_size
    if remainder == 0:
        return list(arrays)
    if oversample_remainder:
        n_extra = batch_size - remainder
        idx = rng.choice(n, size=n_extra, replace=n_extra > n)
        _log(
            verbose,
            "Oversampled remainder: last batch holds the %d leftover "
            "samples + %d randomly drawn samples (batch_size=%d)",
            remainder,
            n_extra,
            batch_size,
        )
        return [np.concatenate([a, a[idx]]) for a in arrays]
    if n < batch_size:
        raise ValueError(
            f"`data` has {n} samples, fewer than batch_size={batch_size}, "
            "and oversample_remainder=False leaves no full batch; pass "
            "oversample_remainder=True or a smaller batch_size"
        )
    _log(
        verbose,
        "Dropped remainder: %d of %d samples discarded (batch_size=%d, oversample_remainder=False)",
        remainder,
        n,
        batch_size,
    )
    return [a[: n - remainder] for a in arrays]


def _natural_key(path: Path) -> list[Any]:
    """Sort key ordering numbers in names numerically ('b2' < 'b10')."""
    return [
        (0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", path.name) if t
    ]


# ---------------------------------------------------------------------------
# public API


def numpy_to_lz4f(
    data: npt.ArrayLike,
    savepath: PathLike | None = None,
    level: int = 9,
    overwrite: bool | None = None,
) -> bytes:
    """Compress an array's raw bytes into an lz4 frame.

    The frame (``content_checksum=True``) is saved, if ``savepath`` is given, with
    ``np.save`` as a 1-D ``uint8`` array. Read back with
    ``np.frombuffer(lz4.frame.decompress(np.load(p).tobytes()), dtype).reshape(shape)``
    (dtype and shape are not stored).

    A ``savepath`` not ending in ``.npy`` gets it appended (with a warning), as in 0.6.

    Returns the compressed bytes (nothing is written when ``savepath`` is None).
    """
    array = _as_array("data", data)
    if (
        isinstance(level, bool)
        or not isinstance(level, (int, np.integer))
        or not (lz4.frame.COMPRESSIONLEVEL_MIN <= level <= lz4.frame.COMPRESSIONLEVEL_MAX)
    ):
        raise ValueError(
            f"`level` must be an int in [{lz4.frame.COMPRESSIONLEVEL_MIN}, "
            f"{lz4.frame.COMPRESSIONLEVEL_MAX}], got {level!r}"
        )
    _check_overwrite_arg(overwrite)
    compressed = lz4.frame.compress(
        np.ascontiguousarray(array).tobytes(), compression_level=int(level), content_checksum=True
    )
    if savepath is not None:
        savepath = _with_suffix(savepath, (".npy",), "savepath")
        with _atomic_write(savepath, overwrite) as tmp:
            _save_npy(tmp, np.frombuffer(compressed, np.uint8))
        logger.debug(
            "Saved lz4f-compressed %s %s array (%d -> %d bytes) to %s",
            array.dtype,
            array.shape,
            array.nbytes,
            len(compressed),
            savepath,
        )
    return compressed


def numpy2D_to_csv(
    data: npt.ArrayLike,
    savepath: PathLike | None = None,
    batch_size: int | None = None,
    columns: Sequence[str] | None = None,
    sample_dim: int = 1,
    overwrite: bool | None = None,
) -> np.ndarray:
    """Lay out 2-D labels as a CSV table with one column per batch.

    ``sample_dim`` is the axis of ``data`` that holds samples: ``1`` for
    ``(batches, samples)``, ``0`` for ``(samples, batches)``. With ``batch_size``
    the samples (taken batch after batch) are re-chunked into columns of
    ``batch_size`` rows. The header row holds ``columns`` (default ``'0','1',...``);
    there is no index column.

    Returns the table, shaped ``(samples, batches)``; written to ``savepath`` if given.
    """
    array = _as_array("data", data)
    if array.ndim != 2:
        raise ValueError(f"`data` must be 2-D, got {array.ndim}-D with shape {array.shape}")
    if sample_dim not in (0, 1) or isinstance(sample_dim, bool):
        raise ValueError(f"`sample_dim` must be 0 or 1, got {sample_dim!r}")
    _check_storable("`data`", array.dtype, "a CSV file")
    _check_overwrite_arg(overwrite)
    table = array if sample_dim == 0 else array.T
    if batch_size is not None:
        batch_size = positive_int(batch_size, "`batch_size`")
        if table.size % batch_size:
            raise ValueError(
                f"`data` holds {table.size} values, not a multiple of batch_size={batch_size}"
            )
        table = table.T.reshape(-1, batch_size).T  # batch-major re-chunk
    if columns is None:
        columns = [str(i) for i in range(table.shape[1])]
    else:
        if isinstance(columns, str) or len(columns) != table.shape[1]:
            raise ValueError(
                f"`columns` must be a sequence of {table.shape[1]} names "
                f"(one per batch), got {columns!r}"
            )
        columns = [str(c) for c in columns]

    if savepath is not None:
        with _atomic_write(savepath, overwrite) as tmp:
            with open(tmp, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(columns)
                # (bools as 0/1: the CSV reader takes numbers)
                writer.writerows((table.astype(np.int8) if table.dtype == bool else table).tolist())
        logger.debug("Saved %d-sample x %d-batch CSV table to %s", *table.shape, savepath)
    return table


def data_to_hdf5(
    savepath: PathLike,
    batch_size: int,
    loaddir: PathLike | None = None,
    data: npt.ArrayLike | None = None,
    shuffle: bool = False,
    compression: str | int | None = "lzf",
    dtype: npt.DTypeLike | None = None,
    load_fn: Callable[..., npt.ArrayLike] | None = None,
    oversample_remainder: bool = True,
    batches_dim0: bool = False,
    overwrite: bool | None = None,
    verbose: int | bool = 1,
    *,
    seed: int | np.random.Generator | None = 0,
) -> None:
    """Write an ``.h5`` with datasets ``'0','1',...`` of ``batch_size`` samples each.

    Source is exactly one of:

    * ``data``: array ``(samples, ...)``, or ``(batches, samples, ...)`` with
      ``batches_dim0=True`` (flattened to samples, then re-batched). ``shuffle``
      shuffles samples; a remainder is oversampled with randomly drawn samples
      (``oversample_remainder``) or dropped.
    * ``loaddir``: its ``.npy`` files in natural numeric order of their names,
      loaded with ``np.load`` and stacked consecutively; file lengths must add up
      exactly to ``batch_size`` per dataset. ``shuffle`` shuffles the file order.
      With ``load_fn`` they (or, if there are none, its files of one other extension)
      are read by ``load_fn(path)``, or ``load_fn(paths, index)`` (0.6's signature).

    ``compression`` is passed to h5py (datasets are chunked); ``dtype`` casts each
    batch; ``seed`` seeds shuffling and oversampling: by default the same in every call, so
    that data and labels written by two calls (``data.h5``, ``labels.h5``) of the same
    sample count get the same order and extra samples (None: fresh randomness). Missing
    parent directories of ``savepath`` are created; a ``savepath`` not ending in ``.h5``
    or ``.hdf5`` gets ``.h5`` appended (with a warning), as in 0.6.
    """
    batch_size = positive_int(batch_size, "`batch_size`")
    _check_overwrite_arg(overwrite)
    rng = np.random.default_rng(seed)
    savepath = _with_suffix(savepath, (".h5", ".hdf5"), "savepath")

    batches: Iterable[np.ndarray]
    if data is not None and loaddir is None:
        batches = _array_batches(
            data, batch_size, shuffle, dtype, oversample_remainder, batches_dim0, rng, verbose
        )
    elif loaddir is not None and data is None:
        batches = _loaddir_batches(loaddir, batch_size, shuffle, load_fn, rng)
    else:
        raise ValueError("pass exactly one of `loaddir` and `data`")

    savepath.parent.mkdir(parents=True, exist_ok=True)  # as numpy_data_to_numpy_sets does
    with _atomic_write(savepath, overwrite) as tmp, h5py.File(tmp, "w") as f:
        n = 0
        for n, batch in enumerate(batches, 1):
            if dtype is not None:
                batch = np.asarray(batch, dtype=dtype)
            if batch.dtype == object:
                raise TypeError("batches have object dtype; pass a numeric `dtype`")
            source = "`data`" if data is not None else f"batch {n - 1} of `loaddir`"
            _check_storable(source, batch.dtype, "HDF5")
            f.create_dataset(str(n - 1), data=batch, chunks=True, compression=compression)
    _log(
        verbose,
        "Saved %d batches of %d samples to %s (compression=%r)",
        n,
        batch_size,
        savepath,
        compression,
    )


def _array_batches(
    data: npt.ArrayLike,
    batch_size: int,
    shuffle: bool,
    dtype: npt.DTypeLike | None,
    oversample_remainder: bool,
    batches_dim0: bool,
    rng: np.random.Generator,
    verbose: int | bool,
) -> np.ndarray:
    """``data_to_hdf5`` array source -> ``(batches, batch_size, ...)``."""
    if isinstance(data, (str, bytes, os.PathLike)):
        raise TypeError(
            f"`data` must be an array, got a path/str {data!r}; "
            "use `loaddir` for a directory of .npy files"
        )
    array = np.asarray(data)
    if array.dtype == object and dtype is None:
        raise TypeError("`data` has object dtype; pass a numeric `dtype`")
    _check_storable("`data`", np.dtype(dtype) if dtype is not None else array.dtype, "HDF5")
    if batches_dim0:
        if array.ndim < 2:
            raise ValueError(
                "`data` must be at least 2-D (batches, samples, ...) "
                f"with batches_dim0=True, got shape {array.shape}"
            )
        array = array.reshape(-1, *array.shape[2:])
    elif array.ndim < 1:
        raise ValueError("`data` must be at least 1-D (samples, ...), got a scalar")
    if shuffle:
        array = array[rng.permutation(len(array))]
    (array,) = _fit_remainder([array], batch_size, oversample_remainder, rng, verbose)
    return array.reshape(-1, batch_size, *array.shape[1:])


def _loaddir_batches(
    loaddir: PathLike,
    batch_size: int,
    shuffle: bool,
    load_fn: Callable[..., npt.ArrayLike] | None,
    rng: np.random.Generator,
) -> Iterator[np.ndarray]:
    """Yield ``batch_size``-sample stacks of consecutive files of ``loaddir``."""
    paths = _loaddir_paths(Path(loaddir), load_fn is not None)
    if shuffle:
        paths = [paths[i] for i in rng.permutation(len(paths))]
    load = _loader(load_fn, [str(p) for p in paths])

    def batches() -> Iterator[np.ndarray]:
        group: list[np.ndarray] = []
        names: list[str] = []
        count = 0
        for index, path in enumerate(paths):
            array = np.asarray(load(index))
            if array.ndim < 1:
                raise ValueError(f"{path.name!r} holds a scalar, expected (samples, ...)")
            group.append(array)
            names.append(path.name)
            count += len(array)
            if count > batch_size:
                raise ValueError(
                    "file lengths must sum exactly to "
                    f"batch_size={batch_size} per dataset, but files "
                    f"{names} hold {count} samples"
                )
            if count == batch_size:
                yield group[0] if len(group) == 1 else np.concatenate(group)
                group, names, count = [], [], 0
        if group:
            raise ValueError(
                f"file lengths must sum exactly to batch_size={batch_size} "
                f"per dataset, but the last files {names} hold only "
                f"{count} samples"
            )

    return batches()


def _loaddir_paths(loaddir: Path, any_extension: bool) -> list[Path]:
    """The visible ``.npy`` files of ``loaddir`` in natural order; for a ``load_fn``, where
    there are none, its files of one other extension (as DeepTrain 0.6 read them)."""
    if not loaddir.is_dir():
        raise NotADirectoryError(f"`loaddir` {str(loaddir)!r} is not a directory")
    files = [p for p in loaddir.iterdir() if p.is_file() and not p.name.startswith(".")]
    npy = [p for p in files if p.suffix == ".npy"]
    if npy or not any_extension:
        files = npy
    if not files:
        what = "files" if any_extension else ".npy files (pass `load_fn` to read others)"
        raise ValueError(f"`loaddir` {str(loaddir)!r} contains no {what}")
    suffixes = sorted({p.suffix for p in files})
    if len(suffixes) > 1:
        raise ValueError(
            f"`loaddir` {str(loaddir)!r} holds no .npy files and files of several "
            f"extensions {suffixes}; `load_fn` reads the files of one"
        )
    return sorted(files, key=_natural_key)


def _loader(
    load_fn: Callable[..., npt.ArrayLike] | None, paths: list[str]
) -> Callable[[int], npt.ArrayLike]:
    """``index -> array``: ``np.load(path)`` (pickles refused), ``load_fn(path)``, or
    ``load_fn(paths, index)`` for DeepTrain 0.6's two-argument ``load_fn``."""
    if load_fn is None:
        return lambda i: np.load(paths[i], allow_pickle=False)
    if _takes_two_args(load_fn):
        return lambda i: load_fn(paths, i)
    return lambda i: load_fn(paths[i])


def _takes_two_args(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` needs two positional arguments (0.6's ``load_fn(paths, index)``)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # no signature (some builtins): the one-argument form
        return False
    try:
        sig.bind("path")
        return False
    except TypeError:
        pass
    try:
        sig.bind(["path"], 0)
        return True
    except TypeError:
        raise TypeError(
            f"`load_fn` {fn!r} must take one argument, a path (or two, 0.6's paths and "
            f"index), but its signature is {sig}"
        ) from None


def numpy_data_to_numpy_sets(
    data: npt.ArrayLike,
    labels: npt.ArrayLike,
    savedir: PathLike | None = None,
    batch_size: int = 32,
    shuffle: bool = True,
    data_basename: str = "batch",
    oversample_remainder: bool = True,
    overwrite: bool | None = None,
    verbose: int | bool = 1,
    *,
    seed: int | np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Batch ``data``/``labels`` and save them as numpy sets.

    Shuffles samples jointly (``shuffle``, ``seed``), oversamples the remainder
    with randomly drawn samples or drops it (``oversample_remainder``), reshapes to
    ``(K, batch_size, ...)`` and writes ``<data_basename>__<k>.npy`` (k = 1..K) plus
    ``labels.h5`` (datasets ``'1'..'K'``) to ``savedir`` (created if missing). 1-D
    ``labels`` are saved and returned as ``(samples, 1)``, as in DeepTrain 0.6. If any
    target exists and ``overwrite`` is not True, nothing is written; the files are
    committed together, so an error (or Ctrl-C) leaves ``savedir`` as it was.

    Returns ``(data_batches, labels_batches)``; ``savedir=None`` only returns them.
    """
    if isinstance(data, (str, bytes, os.PathLike)):
        raise TypeError(
            f"`data` must be an array, got a path/str {data!r}; "
            "`savedir` is the third argument: call "
            "numpy_data_to_numpy_sets(data, labels, savedir, ...)"
        )
    data = _as_array("data", data)
    labels = _as_array("labels", labels)
    _check_storable("`labels`", labels.dtype, "labels.h5 (HDF5)")
    if labels.ndim == 1:  # 0.6's layout: one label per row, (samples, 1)
        labels = labels[:, None]
    batch_size = positive_int(batch_size, "`batch_size`")
    _check_overwrite_arg(overwrite)
    if data.ndim < 1 or labels.ndim < 1 or len(data) != len(labels):
        raise ValueError(
            "`data` and `labels` must have the same number of samples "
            f"along axis 0, got shapes {data.shape} and {labels.shape}"
        )
    if (
        not isinstance(data_basename, str)
        or not data_basename
        or os.sep in data_basename
        or "/" in data_basename
    ):
        raise ValueError(
            "`data_basename` must be a non-empty file name without "
            f"path separators, got {data_basename!r}"
        )

    rng = np.random.default_rng(seed)
    if shuffle:
        perm = rng.permutation(len(data))
        data, labels = data[perm], labels[perm]
    data, labels = _fit_remainder([data, labels], batch_size, oversample_remainder, rng, verbose)
    data_batches = data.reshape(-1, batch_size, *data.shape[1:])
    labels_batches = labels.reshape(-1, batch_size, *labels.shape[1:])
    if savedir is None:
        return data_batches, labels_batches

    savedir = Path(savedir)
    savedir.mkdir(parents=True, exist_ok=True)
    n_batches = len(data_batches)
    data_paths = [savedir / f"{data_basename}__{k}.npy" for k in range(1, n_batches + 1)]
    labels_path = savedir / _LABELS_FILENAME
    for path in (*data_paths, labels_path):  # refuse before writing anything
        _check_target(path, overwrite)
    stale = _stale_sets(savedir, data_basename, n_batches, overwrite)

    # every file is written and fsynced as a temp, then all are moved into place (labels
    # last) and an older set's extra files removed; on any error the existing files are
    # put back: the directory is as it was
    with atomic_files([*data_paths, labels_path], remove=stale) as temps:
        for tmp, batch in zip(temps, data_batches, strict=False):
            _save_npy(tmp, batch)
        with h5py.File(temps[-1], "w") as f:
            for k, batch in enumerate(labels_batches, 1):
                f.create_dataset(str(k), data=batch)
    _log(
        verbose,
        "Saved %d batches of %d samples (%s__1..%d.npy + %s) to %s",
        n_batches,
        batch_size,
        data_basename,
        n_batches,
        _LABELS_FILENAME,
        savedir,
    )
    return data_batches, labels_batches


def _stale_sets(
    savedir: Path, data_basename: str, n_batches: int, overwrite: bool | None
) -> list[Path]:
    """``<basename>__<k>.npy`` with k > n_batches, left from an older, longer set: a loader
    would read them as extra batches (with no labels of the new set). They are part of the
    set being replaced, so ``overwrite=True`` removes them with the commit (logged);
    otherwise the write is refused like any other existing target."""
    pattern = re.compile(rf"{re.escape(data_basename)}__(\d+)\.npy")
    stale = sorted(
        (
            p
            for p in savedir.iterdir()
            if (m := pattern.fullmatch(p.name)) and int(m.group(1)) > n_batches
        ),
        key=_natural_key,
    )
    if stale and overwrite is not True:
        raise FileExistsError(
            f"{str(savedir)!r} holds {len(stale)} set files beyond the {n_batches} to write "
            f"({', '.join(p.name for p in stale[:3])} ...), from an older set; pass "
            "overwrite=True to replace the whole set (they are removed), or write elsewhere"
        )
    if stale:
        logger.warning(
            "%s: removing %d files of the older set beyond the %d written (%s ...)",
            savedir,
            len(stale),
            n_batches,
            ", ".join(p.name for p in stale[:3]),
        )
    return stale
