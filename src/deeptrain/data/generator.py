"""``DataGenerator``: a directory of enumerated files in, batches out, with exact position.

The life of a batch::

    advance_batch()   pop the next file(s) off `set_nums_to_process`, serve one batch
    get()             preprocessor.process(batch, labels) -> what the model sees
    update_state()    preprocessor.update_state(); flags the epoch's end
    on_epoch_end()    epoch += 1, refill (and reshuffle) the queue

``get()`` advances by itself when the current batch is used up, so one epoch is::

    while True:
        x, y = dg.get()
        ...
        dg.update_state()
        if dg.all_data_exhausted:  # as in 0.6, stays True until the next batch is loaded
            dg.on_epoch_end()
            break

which is what ``for x, y in dg:`` does.

Everything random is drawn from one seeded generator owned by the DataGenerator, and the
whole position (queue, group, slice, preprocessor, generator) is in :meth:`state_dict`.

A load that fails (a file missing, unreadable or malformed) raises ``DataLoadError`` naming
the file and changes nothing: calling again, once the file is back, loads the same batch.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..util.jsonstate import to_json
from ..util.misc import check_kwargs, positive_int
from .arrays import ArrayLoader, check_source, describe_source, is_array
from .batching import Group, GroupPlan
from .checks import (
    as_bool,
    as_int,
    check_configs_fit,
    check_memmap_threshold,
    check_preprocessor_configs,
    check_seed,
    check_set_nums,
    check_skip_names,
)
from .formats import DataLoadError
from .loader import DataLoader
from .prefetch import Prefetcher
from .preprocessors import GenericPreprocessor, Preprocessor, TimeseriesPreprocessor
from .signature import FirstSeen, Signature, describe, signature

__all__ = ["DataGenerator", "DATAGEN_KWARGS"]

log = logging.getLogger(__name__)

STATE_FORMAT = 1
# what saveskip_list / loadskip_list may name ("format" is always saved)
STATE_KEYS = (
    "epoch",
    "set_nums_original",
    "set_nums_to_process",
    "group",
    "set_num",
    "set_name",
    "all_data_exhausted",
    "rng",
    "seed",
    "preprocessor",
)

DATAGEN_KWARGS: dict[str, Any] = {
    "shuffle_group_batches": False,  # shuffle the order of batches cut from one file
    "shuffle_group_samples": False,  # shuffle samples across the batches of one group
    "data_batch_shape": None,  # needed by the numpy-lz4f loader
    "labels_batch_shape": None,
    "data_dtype": None,
    "labels_dtype": None,
    "loadskip_list": [],  # state_dict keys that load_state_dict leaves alone
    "saveskip_list": [],  # state_dict keys left out
    "seed": None,  # seed of the generator behind all shuffles
    "prefetch": 2,  # files loaded ahead in the background; 0 = off
    "prefetch_workers": 1,
    "memmap_threshold": 2**30,  # .npy files larger than this (bytes) are memory-mapped
    "drop_remainder": False,  # drop the short last batch of an epoch (combined files), or an
    # array's last samples that fill no set
    "array_set_size": None,  # arrays as data: samples per set num (default: batch_size)
}


class DataGenerator:
    """Serve batches from ``data_path`` (a directory of enumerated files, one file, or an
    array).

    Args:
        data_path: directory of files ``<base><num>.<ext>`` (``.npy``, ``.h5``, ``.csv``),
            a single file holding all batches keyed by set num, or a NumPy array of samples
            (``np.memmap`` too), cut into sets of ``array_set_size`` samples (default:
            ``batch_size``; see :mod:`deeptrain.data.arrays`).
        batch_size: samples per batch; files are split (integer multiple) or combined
            (integer fraction) to match. ``None`` serves files as they are.
        labels_path: labels file (one entry per set num) or directory, or, with an array
            as ``data_path``, an array of as many labels; None for no labels.
        preprocessor: None (identity), ``'timeseries'``, a ``Preprocessor`` subclass
            (instantiated with ``preprocessor_configs``) or instance.
        data_loader, labels_loader: None (by extension), a built-in name (``'numpy'``,
            ``'numpy-memmap'``, ``'numpy-lz4f'``, ``'hdf5'``, ``'csv'``), a function
            ``fn(loader, set_num)``, a ``DataLoader`` subclass or instance.
        preload_labels: load all labels at construction (default: when in one file).
        shuffle: shuffle the file order at the start of every epoch.
        superbatch_path, superbatch_set_nums: hold all (``'all'``) or the listed set nums
            in RAM, loaded once; read from ``superbatch_path`` if given, else ``data_path``.
        set_nums: use only these set nums, in this order.
        **kwargs: see ``DATAGEN_KWARGS`` (shuffle_group_batches, shuffle_group_samples,
            seed, prefetch, memmap_threshold, dtypes and batch shapes for lz4,
            array_set_size, drop_remainder ...).

    The keyword settings are attributes of the same name, declared below; a keyword not
    passed takes its value from :data:`DATAGEN_KWARGS` when the DataGenerator is built.
    """

    # -- keyword settings (defaults: DATAGEN_KWARGS) ----------------------------------------
    shuffle_group_batches: bool  #: shuffle the order of the batches cut from one file
    shuffle_group_samples: bool  #: shuffle samples across the batches of one file (group)
    data_batch_shape: tuple[int, ...] | None  #: shape of a data file's array (lz4 files)
    labels_batch_shape: tuple[int, ...] | None  #: shape of a labels file's array (lz4 files)
    data_dtype: Any  #: dtype of the data files (lz4 files; others: from the file)
    labels_dtype: Any  #: dtype of the labels files (lz4 files; others: from the file)
    loadskip_list: list[str]  #: ``state_dict`` keys that ``load_state_dict`` leaves alone
    saveskip_list: list[str]  #: ``state_dict`` keys left out
    seed: int  #: seed of the generator behind every shuffle (None: drawn from NumPy's)
    prefetch: int  #: files loaded ahead in background threads; 0: off
    prefetch_workers: int  #: threads that load files ahead
    memmap_threshold: int  #: ``.npy`` files larger than this (bytes) are memory-mapped
    drop_remainder: bool  #: drop an epoch's short last batch (files combined into batches)
    array_set_size: int | None  #: arrays as data: samples per set num (None: batch_size)

    def __init__(
        self,
        data_path: str | Path | np.ndarray,
        batch_size: int | None = 32,
        labels_path: str | Path | np.ndarray | None = None,
        preprocessor: Preprocessor | type | str | None = None,
        preprocessor_configs: dict | None = None,
        data_loader: Any = None,
        labels_loader: Any = None,
        preload_labels: bool | None = None,
        shuffle: bool = False,
        superbatch_path: str | Path | None = None,
        set_nums: Sequence[int | str] | None = None,
        superbatch_set_nums: Sequence[int | str] | str | None = None,
        **kwargs: Any,
    ):
        check_kwargs(kwargs, DATAGEN_KWARGS, "DataGenerator", signature_of=DataGenerator.__init__)
        settings = {name: kwargs.get(name, default) for name, default in DATAGEN_KWARGS.items()}
        for name, value in _checked_settings(settings).items():
            setattr(self, name, value)
        if batch_size is not None:
            batch_size = positive_int(batch_size, "batch_size")
        shuffle = as_bool(shuffle, "shuffle")
        if preload_labels is not None:
            preload_labels = as_bool(preload_labels, "preload_labels")
        set_nums = check_set_nums(set_nums, "set_nums")
        superbatch_set_nums = _check_superbatch_set_nums(superbatch_set_nums)
        configs = check_preprocessor_configs(preprocessor_configs)
        if self.shuffle_group_samples and self.shuffle_group_batches:
            log.warning(
                "shuffle_group_samples and shuffle_group_batches are both set; "
                "shuffling samples (which also mixes the batches)"
            )
        self.batch_size = batch_size
        self.data_path = check_source(data_path, "data_path")
        self.labels_path = None if labels_path is None else check_source(labels_path, "labels_path")
        _check_arrays(self.data_path, self.labels_path)
        self._data_name = describe_source(self.data_path)
        self._labels_name = describe_source(self.labels_path)
        self.superbatch_path = Path(superbatch_path) if superbatch_path is not None else None
        self.shuffle = shuffle

        self.preprocessor = _make_preprocessor(preprocessor, configs)
        self._data_loader_spec = data_loader  # superbatch_path is read the same way
        self.data_loader = self._make_loader(
            data_loader,
            self.data_path,
            "data_path",
            self.data_dtype,
            self.data_batch_shape,
            exclude=self.labels_path,
        )
        self.labels_loader = (
            None
            if self.labels_path is None
            else self._make_loader(
                labels_loader,
                self.labels_path,
                "labels_path",
                self.labels_dtype,
                self.labels_batch_shape,
                exclude=self.data_path,
            )
        )
        if self.labels_loader is not None and _same_files(self.data_loader, self.labels_loader):
            raise ValueError(
                f"labels_path={self._labels_name!r} reads the same files as data_path "
                f"({self.data_loader.filepaths[0]!r}, ...): the labels would be the data. Pass "
                "labels_loader=DataLoader(labels_path, base_name=...) (and data_loader= likewise) "
                "to pick each set of files"
            )

        self.set_nums_original = self._select_set_nums(set_nums)
        self.preload_labels = (
            self.labels_loader is not None and self.labels_loader._is_dataset
            if preload_labels is None
            else preload_labels
        )
        self.all_labels: dict[str, np.ndarray] = {}
        if self.preload_labels and self.labels_loader is not None:
            self.preload_all_labels()
        self._plan = GroupPlan.create(
            self._file_size(),
            self.batch_size,
            shuffle_group_samples=self.shuffle_group_samples,
            shuffle_group_batches=self.shuffle_group_batches,
        )
        self._check_batch_fits()
        self._check_files()
        # loaded arrays must match the first one loaded (covers formats without cheap headers)
        self._loaded_data = FirstSeen("data_path")
        self._loaded_labels = FirstSeen("labels_path")

        self.superbatch: dict[str, np.ndarray] = {}
        self.superbatch_set_nums = self._select_superbatch(superbatch_set_nums)
        if self.superbatch_set_nums:
            self.preload_superbatch()

        if self.seed is None:  # reproducible under a global seed (keras.utils.set_random_seed)
            self.seed = int(np.random.randint(0, 2**31 - 1))
        self._rng = np.random.default_rng(self.seed)
        # the prefetcher holds only a weak reference to us, so dropping the DataGenerator
        # frees it at once (and its finalizer stops the worker threads)
        if isinstance(self.data_loader, ArrayLoader):
            self.prefetch = 0  # in RAM (or a memory map read batch by batch): nothing to load
        self._prefetcher: Prefetcher[tuple[np.ndarray, Any]] = Prefetcher(
            _weak_method(self._read_set),
            depth=int(self.prefetch or 0),
            workers=int(self.prefetch_workers),
        )

        self.epoch = 0
        self.batch: Any = []
        self._served_window: int | None = None  # the window the last get() served
        self.labels: Any = []
        self.set_num: str | None = None
        self.set_name: str | None = None
        self.all_data_exhausted = False
        self._group: Group | None = None
        self._group_data: tuple[Any, Any] | None = None
        self.reset_state()

    # -- construction ------------------------------------------------------------
    def _make_loader(
        self,
        spec: Any,
        path: Path | np.ndarray,
        argname: str,
        dtype: Any,
        batch_shape: Any,
        exclude: Path | np.ndarray | None,
    ) -> DataLoader:
        if isinstance(spec, DataLoader):
            return spec
        if isinstance(path, np.ndarray):
            if spec is not None:
                raise ValueError(f"{argname} is an array: it takes no loader (got {spec!r})")
            set_size = self.array_set_size or self.batch_size or len(path)
            set_size = positive_int(set_size, "array_set_size")
            return ArrayLoader(path, set_size, argname, bool(self.drop_remainder))
        exclude = None if is_array(exclude) else exclude
        kwargs = dict(
            dtype=dtype,
            batch_shape=batch_shape,
            argname=argname,
            exclude=exclude,
            memmap_threshold=self.memmap_threshold,
        )
        if isinstance(spec, type):
            if not issubclass(spec, DataLoader):
                raise TypeError(f"{argname} loader class must subclass DataLoader, got {spec!r}")
            return spec(path, **kwargs)
        return DataLoader(path, spec, **kwargs)

    def _select_set_nums(self, requested: list[str] | None) -> list[str]:
        available = self.data_loader._get_set_nums()
        if not available:
            raise ValueError(f"data_path={self._data_name!r} holds no set nums")
        if requested is None:
            selected = available
        else:
            selected = requested
            missing = [s for s in selected if s not in set(available)]
            if missing:
                raise ValueError(
                    f"set_nums {missing} not found in data_path="
                    f"{self._data_name!r}; available: {_preview(available)}"
                )
        if self.labels_loader is not None:
            have = set(self.labels_loader._get_set_nums())
            missing = [s for s in selected if s not in have]
            if missing:
                raise ValueError(
                    f"labels_path={self._labels_name!r} has no labels for set "
                    f"nums {_preview(missing)}; it has {_preview(sorted(have, key=_num_key))}"
                )
        return selected

    def _file_size(self) -> int:
        first = self.set_nums_original[0]
        size = self.data_loader.sample_count(first)
        size = len(self.data_loader.load(first)) if size is None else size
        if size == 0:
            raise ValueError(
                f"{self.data_loader._path(first)} (set num {first}) holds no samples; every "
                "file of data_path must hold at least one"
            )
        return size

    def _check_batch_fits(self) -> None:
        """Warn if ``batch_size`` exceeds the whole data set (one short batch an epoch);
        raise if, with ``drop_remainder``, that leaves no batch at all."""
        total = self._plan.file_size * len(self.set_nums_original)
        if self.batch_size is None or self.batch_size <= total:
            return
        if self.drop_remainder:
            raise ValueError(
                f"batch_size={self.batch_size} exceeds the {total} samples of data_path, "
                "and drop_remainder=True drops the short batch: an epoch would hold no batch"
            )
        log.warning(
            "batch_size=%d exceeds the %d samples of data_path: every epoch is one batch "
            "of %d samples",
            self.batch_size,
            total,
            total,
        )

    def _check_files(self) -> None:
        """Compare every file's sample count, and its samples' shape and dtype, with the
        first file's and with its labels', where cheap to get (file headers), so that bad
        data fails here rather than hours into training."""
        data = self._probe(self.data_loader)
        labels_loader = self.labels_loader
        labels = {} if labels_loader is None else self._probe(labels_loader, self.all_labels)
        expected = self._plan.file_size
        for set_num, (size, _) in data.items():
            if size is not None and size != expected:
                raise ValueError(
                    f"{self.data_loader._path(set_num)} (set num {set_num}) holds {size} samples "
                    f"but {self.data_loader._path(self.set_nums_original[0])} holds {expected}; "
                    "all files of data_path must hold the same number of samples"
                )
            n_labels = labels.get(set_num, (None, None))[0]
            mismatch = n_labels is not None and size is not None and n_labels != size
            if mismatch and labels_loader is not None:
                raise ValueError(
                    f"labels of set num {set_num} ({labels_loader._path(set_num)}) hold "
                    f"{n_labels} samples but its data ({self.data_loader._path(set_num)}) "
                    f"holds {size}"
                )
        _check_alike(data, self.data_loader)
        if labels_loader is not None:
            _check_alike(labels, labels_loader)

    def _probe(
        self, loader: DataLoader, arrays: dict[str, np.ndarray] | None = None
    ) -> dict[str, tuple[int | None, Signature | None]]:
        """Sample count and signature of each set num in use, from ``arrays`` (preloaded)
        or the file headers; None where that is not cheap (csv, lz4, custom loaders)."""
        probed: dict[str, tuple[int | None, Signature | None]] = {}
        for set_num in self.set_nums_original:
            array = (arrays or {}).get(set_num)
            header = (array.shape, array.dtype) if array is not None else loader.header(set_num)
            if header is None:
                probed[set_num] = (loader.sample_count(set_num), None)
            elif not header[0]:
                raise ValueError(
                    f"{loader._path(set_num)} (set num {set_num}) holds a scalar; "
                    "expected an array whose first axis is samples"
                )
            else:
                probed[set_num] = (int(header[0][0]), signature(*header))
        return probed

    def _select_superbatch(self, requested: list[str] | str | None) -> list[str]:
        if requested is None:
            return list(self.set_nums_original) if self.superbatch_path is not None else []
        if requested == "all":
            return list(self.set_nums_original)
        selected = list(requested)
        missing = [s for s in selected if s not in set(self.set_nums_original)]
        if missing:
            raise ValueError(
                f"superbatch_set_nums {missing} are not among the set nums in use "
                f"({_preview(self.set_nums_original)})"
            )
        return selected

    def preload_superbatch(self) -> None:
        """Load the superbatch set nums into RAM (``superbatch``), once."""
        source = self.data_loader
        if self.superbatch_path is not None and not (
            isinstance(self.data_path, Path) and self.superbatch_path == self.data_path
        ):
            source = self._make_loader(
                _spec_for_another_path(self._data_loader_spec),
                self.superbatch_path,
                "superbatch_path",
                self.data_dtype,
                self.data_batch_shape,
                exclude=self.labels_path,
            )
            missing = [s for s in self.superbatch_set_nums if s not in set(source._get_set_nums())]
            if missing:
                raise ValueError(
                    f"superbatch_path={str(self.superbatch_path)!r} has no set nums "
                    f"{_preview(missing)}"
                )
        for set_num in self.superbatch_set_nums:
            if set_num not in self.superbatch:
                array = _in_ram(source.load(set_num))
                array.setflags(write=False)  # served as views: in-place edits would leak
                self.superbatch[set_num] = self._checked(set_num, array, source)
        n_samples = sum(len(a) for a in self.superbatch.values())
        log.info(
            "Superbatch: %d set nums, %d samples, %.1f MB in RAM",
            len(self.superbatch),
            n_samples,
            sum(a.nbytes for a in self.superbatch.values()) / 2**20,
        )

    def preload_all_labels(self) -> None:
        """Load the labels of every set num in use into ``all_labels``."""
        if self.labels_loader is None:
            raise ValueError(
                "preload_all_labels() needs labels: this DataGenerator has no labels_path"
            )
        for set_num in self.set_nums_original:
            self.all_labels[set_num] = np.asarray(self.labels_loader.load(set_num))

    # -- synced preprocessor attributes --------------------------------------------
    batch_exhausted = property(
        lambda self: self.preprocessor.batch_exhausted,
        lambda self, v: setattr(self.preprocessor, "batch_exhausted", v),
    )
    batch_loaded = property(
        lambda self: self.preprocessor.batch_loaded,
        lambda self, v: setattr(self.preprocessor, "batch_loaded", v),
    )
    slices_per_batch = property(
        lambda self: self.preprocessor.slices_per_batch,
        lambda self, v: setattr(self.preprocessor, "slices_per_batch", v),
    )
    slice_idx = property(
        lambda self: self.preprocessor.slice_idx,
        lambda self, v: setattr(self.preprocessor, "slice_idx", v),
    )

    @property
    def load_data(self) -> Callable[[str], Any]:
        return self.data_loader.load_fn

    @property
    def load_labels(self) -> Callable[[str], Any] | None:
        return None if self.labels_loader is None else self.labels_loader.load_fn

    def __len__(self) -> int:
        """Batches in one full epoch."""
        n_files = len(self.set_nums_original)
        if self.drop_remainder:
            n_files -= n_files % self._plan.files_per_batch
        return self._plan.batches_per_epoch(n_files)

    def batch_sizes(self) -> set[int]:
        """The numbers of samples the batches of an epoch hold (before any preprocessor):
        one size, or two when combined files leave a short last batch."""
        plan = self._plan
        if plan.files_per_batch == 1:
            return {plan.file_size // plan.batches_per_file}
        full, remainder = divmod(len(self.set_nums_original), plan.files_per_batch)
        sizes = {plan.file_size * plan.files_per_batch} if full else set()
        if remainder and not self.drop_remainder:
            sizes.add(plan.file_size * remainder)
        return sizes

    # -- the batch loop ----------------------------------------------------------------
    def get(self, skip_validation: bool = False) -> tuple[Any, Any]:
        """``preprocessor.process(batch, labels)``, advancing to the next batch if needed.

        ``skip_validation=True`` only processes the current batch (for callbacks): as the
        last ``get()`` served it (the window the model was fed, though ``update_state()``
        has moved the preprocessor on to the next one).
        """
        if skip_validation:
            return self._as_served()
        if self.batch_exhausted:
            if self._data_left():
                self.advance_batch()
            else:
                log.warning(
                    "get() after the epoch's data was exhausted: starting the next "
                    "epoch's data without on_epoch_end()"
                )
                with self._unchanged_on_failure():
                    self.reset_state()
                    self.advance_batch()
        self._served_window = self.slice_idx
        return self.preprocessor.process(self.batch, self.labels)

    def _as_served(self) -> tuple[Any, Any]:
        """The current batch processed at the window the last :meth:`get` served (the
        current one if none was served since the batch was loaded)."""
        served, current = self._served_window, self.slice_idx
        if served is None or current is None or served == current:
            return self.preprocessor.process(self.batch, self.labels)
        self.slice_idx = served
        try:
            return self.preprocessor.process(self.batch, self.labels)
        finally:
            self.slice_idx = current

    def advance_batch(self, forced: bool = False, is_recursive: bool = False) -> None:
        """Load the next batch: the next cut of the current group, or a new group.

        A new group is taken off the queue only once its files are loaded: if loading fails,
        queue, generator and batch are as before, and a retry loads the same group.
        (``is_recursive`` is DeepTrain 0.6's internal flag, accepted and unused.)"""
        if self.batch_loaded and not forced:
            log.warning(
                "advance_batch() while a batch is loaded and not exhausted; "
                "pass forced=True to skip the rest of it"
            )
            return
        current = self._current_group()
        new_group = current is None
        if new_group and not self.set_nums_to_process:
            raise IndexError(
                "no set nums left to process in this epoch; call "
                "on_epoch_end() or reset_state() first"
            )
        rng_state = self._rng.bit_generator.state if new_group else None
        try:
            if current is None:
                group = self._plan.next_group(self.set_nums_to_process, self._rng)
                current = group, self._load_group(group)
            group, data = current
            batch, labels = self._cut(group, data, group.next_batch)
        except BaseException:
            if rng_state is not None:
                self._rng.bit_generator.state = rng_state  # the group's shuffles: drawn again
            raise
        if new_group:  # loaded: now it is taken off the queue
            del self.set_nums_to_process[: len(group.set_nums)]
            self._group, self._group_data = group, data
        self._serve(group, group.next_batch, batch, labels)
        group.next_batch += 1
        self._schedule(timed=True)  # the caller trains now: see Prefetcher's adaptive rule

    def hold_next_batch(self) -> bool:
        """Load now the batch the next :meth:`get` would load (none is loaded, and the epoch
        has data left), so that ``batch`` and ``labels`` hold it; returns whether it did.
        The same load, only earlier: what is served, and in which order, is unchanged."""
        if not self.batch_exhausted or not self._data_left():
            return False
        self.advance_batch()
        return True

    def update_state(self) -> None:
        """End of an iteration: let the preprocessor advance, and flag the epoch's end."""
        self.preprocessor.update_state()
        if self.batch_exhausted and not self._data_left():
            self.all_data_exhausted = True

    def _data_left(self) -> bool:
        """Whether batches remain to be served in this epoch."""
        return bool(self.set_nums_to_process) or (
            self._group is not None and self._group.remaining > 0
        )

    def on_epoch_end(self) -> int:
        """Count the epoch, tell the preprocessor, refill the queue. Returns the new epoch."""
        self.epoch += 1
        self.preprocessor.on_epoch_end(self.epoch)
        self.reset_state()
        return self.epoch

    def reset_state(self, shuffle: bool | None = None) -> None:
        """Start the epoch's data over: full queue (shuffled if enabled), no batch loaded."""
        self.preprocessor.reset_state()
        self.batch_exhausted = True
        self.batch_loaded = False
        queue = list(self.set_nums_original)
        if self.shuffle if shuffle is None else shuffle:
            queue = [queue[i] for i in self._rng.permutation(len(queue))]
            log.debug("Data set_nums shuffled")
        if self.drop_remainder and len(queue) % self._plan.files_per_batch:
            dropped = queue[len(queue) - len(queue) % self._plan.files_per_batch :]
            queue = queue[: len(queue) - len(dropped)]
            log.debug("drop_remainder: set nums %s not used this epoch", dropped)
        self.set_nums_to_process = queue
        self._group = None
        self._group_data = None
        self._schedule()

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        """Iterate over what remains of the current epoch, then call :meth:`on_epoch_end`."""
        while True:
            yield self.get()
            self.update_state()
            if self.all_data_exhausted:
                self.on_epoch_end()
                return

    # -- loading -------------------------------------------------------------------
    def _schedule(self, timed: bool = False) -> None:
        """Tell the prefetcher which set nums will be read from disk next, in order; not
        when prefetch is off or every set num is in the superbatch (nothing to read)."""
        # superbatch keys are a subset of set_nums_original (unique): equal sizes = all in RAM
        if self._prefetcher.enabled and len(self.superbatch) < len(self.set_nums_original):
            self._prefetcher.schedule(self._upcoming(), timed=timed)

    def _upcoming(self) -> Iterator[str]:
        """Set nums that will be read from disk next, in order (for the prefetcher)."""
        return (s for s in self.set_nums_to_process if s not in self.superbatch)

    def _read_set(self, set_num: str) -> tuple[Any, Any]:
        """Data and labels of one set num, from disk (runs in the prefetch thread)."""
        data = self._checked(set_num, self.data_loader.load(set_num), self.data_loader)
        return data, self._labels_of(set_num, len(data))

    def _labels_of(self, set_num: str, n_samples: int) -> Any:
        if self.labels_loader is None:
            return None
        labels = self.all_labels.get(set_num)
        if labels is None:
            labels = np.asarray(self.labels_loader.load(set_num))
        if len(labels) != n_samples:
            raise DataLoadError(
                f"labels of set num {set_num} ({self.labels_loader._path(set_num)}) "
                f"hold {len(labels)} samples but its data holds {n_samples}"
            )
        path = self.labels_loader._path(set_num)
        self._loaded_labels.check(labels, f"{path} (labels of set num {set_num})", path)
        return labels

    def _checked(self, set_num: str, data: Any, loader: DataLoader) -> Any:
        if len(data) != self._plan.file_size:
            raise DataLoadError(
                f"{loader._path(set_num)} (set num {set_num}) holds {len(data)} samples; the "
                f"files of data_path hold {self._plan.file_size} (all files must be equal)"
            )
        path = loader._path(set_num)
        self._loaded_data.check(data, f"{path} (set num {set_num})", path)
        return data

    def _load_group(self, group: Group) -> tuple[Any, Any]:
        # no schedule() here: the last one (end of the previous batch, or reset_state)
        # queued these files, in this order; if the plan changed since (load_state_dict),
        # get() drops the stale loads and reads directly
        parts = [
            (self.superbatch[s], self._labels_of(s, len(self.superbatch[s])))
            if s in self.superbatch
            else self._prefetcher.get(s)
            for s in group.set_nums
        ]
        if len(parts) == 1:
            return parts[0]
        data = np.concatenate([p[0] for p in parts])
        labels = None if parts[0][1] is None else np.concatenate([p[1] for p in parts])
        return data, labels

    def _current_group(self) -> tuple[Group, tuple[Any, Any]] | None:
        """The group being served and its loaded data; None when a new one is due."""
        group, data = self._group, self._group_data
        if group is None or data is None or group.remaining == 0:
            return None
        return group, data

    def _cut(self, group: Group, data: tuple[Any, Any], served_index: int) -> tuple[Any, Any]:
        """The batch and labels served ``served_index``-th from the group's loaded ``data``."""
        batch = group.take(data[0], served_index)
        if self.data_loader.lazy:
            batch = np.ascontiguousarray(batch)  # read this batch (only) from the memmap
        labels: Any = [] if data[1] is None else np.asarray(group.take(data[1], served_index))
        return batch, labels

    def _serve(self, group: Group, served_index: int, batch: Any, labels: Any) -> None:
        """Make ``batch`` (cut ``served_index``-th from ``group``) the current batch."""
        self.batch, self.labels = batch, labels
        self.set_num = group.set_nums[0]
        self.set_name = group.name(served_index)
        self.batch_loaded = True
        self.batch_exhausted = False
        self.all_data_exhausted = False
        self.slice_idx = 0 if self.slices_per_batch is not None else None
        self._served_window = None  # (none of this batch yet)

    # -- state -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The exact position in the epoch as JSON-serialisable data."""
        group = self._group.state_dict() if self._group is not None else None
        state = {
            "format": STATE_FORMAT,
            "epoch": self.epoch,
            "set_nums_original": list(self.set_nums_original),
            "set_nums_to_process": list(self.set_nums_to_process),
            "group": group,
            "set_num": self.set_num,
            "set_name": self.set_name,
            "all_data_exhausted": self.all_data_exhausted,
            "rng": to_json(self._rng.bit_generator.state),
            "seed": self.seed,
            "preprocessor": self.preprocessor.state_dict(),
        }
        return {k: v for k, v in state.items() if k not in self.saveskip_list}

    def check_state_dict(self, state: dict[str, Any]) -> None:
        """Raise ``ValueError`` (naming the key) if ``state`` cannot be loaded into this
        DataGenerator by :meth:`load_state_dict`; changes nothing."""
        if not isinstance(state, dict):
            raise ValueError(f"DataGenerator state must be a dict, got {type(state).__name__}")
        if state.get("format") != STATE_FORMAT:
            raise ValueError(
                f"DataGenerator state has format {state.get('format')!r}; this "
                f"version reads format {STATE_FORMAT}"
            )
        state = {k: v for k, v in state.items() if k not in self.loadskip_list}
        saved = state.get("set_nums_original")
        if saved is not None and saved != self.set_nums_original:
            raise ValueError(
                f"the saved DataGenerator state was made with set nums "
                f"{_preview(saved)}, but this one has {_preview(self.set_nums_original)} "
                f"(data_path={self._data_name!r})"
            )
        _check_state_values(state, set(self.set_nums_original), self._plan)
        if "rng" in state:
            try:  # tried on a new generator of the same kind: ours is left alone
                type(self._rng.bit_generator)().state = state["rng"]
            except (TypeError, ValueError, KeyError, OverflowError) as e:
                raise ValueError(
                    f"DataGenerator state 'rng' is not a valid "
                    f"{type(self._rng.bit_generator).__name__} state ({e})"
                ) from None
        if "preprocessor" in state:
            self.preprocessor.check_state_dict(state["preprocessor"])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the next batch served is the one that would have been.
        The state is checked first (:meth:`check_state_dict`), and a load that fails (a file
        of the group cannot be read) changes nothing."""
        self.check_state_dict(state)
        # within a batch (served, not used up), as saved: also when the preprocessor's
        # state is not loaded (loadskip_list), where the live preprocessor's flag is this
        # generator's own (a batch held before the load), not the saved position's. A state
        # saved without it (saveskip_list) does not say: the live flag is all there is
        saved = state.get("preprocessor")
        mid_batch = (
            bool(saved.get("batch_loaded")) if isinstance(saved, dict) else self.batch_loaded
        )
        state = {k: v for k, v in state.items() if k not in self.loadskip_list}
        with self._unchanged_on_failure():  # it loads the group's files, which may fail
            self._restore(state, mid_batch)
        self._schedule()

    def _restore(self, state: dict[str, Any], mid_batch: bool) -> None:
        self.epoch = state.get("epoch", self.epoch)
        if isinstance(state.get("seed"), int):  # (what made the saved generator's state)
            self.seed = state["seed"]
        if "rng" in state:
            self._rng.bit_generator.state = state["rng"]
        if "set_nums_to_process" in state:
            self.set_nums_to_process = list(state["set_nums_to_process"])
        self.all_data_exhausted = state.get("all_data_exhausted", self.all_data_exhausted)
        if "preprocessor" in state:
            self.preprocessor.load_state_dict(state["preprocessor"])
        elif not mid_batch:  # (its state not loaded: at a boundary no batch is held)
            self.batch_exhausted, self.batch_loaded = True, False
        self._group = self._group_data = None
        if state.get("group") is not None:
            group = Group.from_state_dict(state["group"])
            if mid_batch and group.next_batch > 0:
                # mid-batch (e.g. between windows): bring the current batch back
                data = self._load_group(group)
                kept = dict(vars(self.preprocessor))  # (when its state is not loaded)
                self._serve(
                    group, group.next_batch - 1, *self._cut(group, data, group.next_batch - 1)
                )
                if "preprocessor" in state:  # _serve reset slice_idx
                    self.preprocessor.load_state_dict(state["preprocessor"])
                else:
                    vars(self.preprocessor).update(kept)
                self.all_data_exhausted = state.get("all_data_exhausted", False)  # and this
            elif group.remaining:
                data = self._load_group(group)
            else:
                data = None
            self._group, self._group_data = group, data
        self.set_num, self.set_name = state.get("set_num"), state.get("set_name")

    @contextmanager
    def _unchanged_on_failure(self) -> Iterator[None]:
        """Put the position (everything :meth:`state_dict` holds, and the batch) back as it
        was if the block raises, e.g. when a file fails to load."""
        saved = (
            self.epoch,
            list(self.set_nums_to_process),
            self._rng.bit_generator.state,
            None if self._group is None else dataclasses.replace(self._group),
            self._group_data,
            self.batch,
            self.labels,
            self.set_num,
            self.set_name,
            self.all_data_exhausted,
            dict(vars(self.preprocessor)),
            self.seed,
        )
        try:
            yield
        except BaseException:
            (
                self.epoch,
                self.set_nums_to_process,
                rng_state,
                self._group,
                self._group_data,
                self.batch,
                self.labels,
                self.set_num,
                self.set_name,
                self.all_data_exhausted,
                preprocessor,
                self.seed,
            ) = saved
            self._rng.bit_generator.state = rng_state
            vars(self.preprocessor).clear()
            vars(self.preprocessor).update(preprocessor)
            raise

    # -- resources -------------------------------------------------------------------
    def close(self) -> None:
        """Stop the prefetch thread (also done automatically when the object is collected)."""
        self._prefetcher.close()

    def __enter__(self) -> DataGenerator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"DataGenerator({self._data_name!r}, batch_size={self.batch_size}, "
            f"{len(self.set_nums_original)} set nums, epoch={self.epoch})"
        )


def _check_state_values(state: dict[str, Any], known: set[str], plan: GroupPlan) -> None:
    """Types and cross-field consistency of a DataGenerator state against the live data."""

    def fail(key: str, what: str) -> None:
        raise ValueError(f"DataGenerator state {key!r}: {what}")

    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if "epoch" in state and not (is_int(state["epoch"]) and state["epoch"] >= 0):
        fail("epoch", f"must be an int >= 0, got {state['epoch']!r}")
    for key in ("set_num", "set_name"):
        if state.get(key) is not None and not isinstance(state[key], str):
            fail(key, f"must be a string or None, got {state[key]!r}")
    if "all_data_exhausted" in state and not isinstance(state["all_data_exhausted"], bool):
        fail("all_data_exhausted", f"must be a bool, got {state['all_data_exhausted']!r}")
    queue = state.get("set_nums_to_process", [])
    if not isinstance(queue, list) or not all(isinstance(s, str) for s in queue):
        fail("set_nums_to_process", "must be a list of set nums (strings)")
    if len(set(queue)) != len(queue) or not set(queue) <= known:
        fail(
            "set_nums_to_process",
            f"{_preview(queue)} repeats set nums or holds some not "
            f"in use ({_preview(sorted(known, key=_num_key))})",
        )
    group = state.get("group")
    if group is None:
        return
    fields = {"set_nums", "n_samples", "n_batches", "sample_order", "batch_order", "next_batch"}
    if not isinstance(group, dict) or set(group) != fields:
        fail("group", f"must be a dict with the keys {sorted(fields)}")
    set_nums = group["set_nums"]
    if (
        not isinstance(set_nums, list)
        or not set_nums
        or not set(set_nums) <= known
        or len(set(set_nums)) != len(set_nums)
        or set(set_nums) & set(queue)
        or len(set_nums) > plan.files_per_batch
    ):
        fail(
            "group.set_nums",
            f"{set_nums!r} must be 1 to {plan.files_per_batch} distinct set "
            "nums in use and not in the queue",
        )
    if (
        not (is_int(group["n_samples"]) and is_int(group["n_batches"]))
        or group["n_samples"] != plan.file_size * len(set_nums)
        or group["n_batches"] != plan.batches_per_file
    ):
        fail(
            "group",
            f"{group['n_samples']!r} samples in {group['n_batches']!r} batches do not "
            f"fit files of {plan.file_size} samples in batches of {plan.batch_size}",
        )
    if not (is_int(group["next_batch"]) and 0 <= group["next_batch"] <= group["n_batches"]):
        fail(
            "group.next_batch",
            f"must be an int in [0, {group['n_batches']}], got {group['next_batch']!r}",
        )
    for key, size in (("sample_order", group["n_samples"]), ("batch_order", group["n_batches"])):
        order = group[key]
        if order is not None and (
            not isinstance(order, list)
            or not all(map(is_int, order))
            or sorted(order) != list(range(size))
        ):
            fail(f"group.{key}", f"must be None or a permutation of range({size})")


def _checked_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The keyword settings (``DATAGEN_KWARGS``) checked and normalised."""
    s = dict(settings)
    for name in ("shuffle_group_batches", "shuffle_group_samples", "drop_remainder"):
        s[name] = as_bool(s[name], name)
    for name in ("loadskip_list", "saveskip_list"):
        s[name] = check_skip_names(s[name], name, STATE_KEYS)
    s["seed"] = check_seed(s["seed"])
    s["prefetch"] = 0 if s["prefetch"] is None else as_int(s["prefetch"], "prefetch", 0)
    s["prefetch_workers"] = as_int(s["prefetch_workers"], "prefetch_workers", 1)
    s["memmap_threshold"] = check_memmap_threshold(s["memmap_threshold"])
    if s["array_set_size"] is not None:
        s["array_set_size"] = as_int(s["array_set_size"], "array_set_size", 1)
    return s


def _check_superbatch_set_nums(value: Any) -> list[str] | str | None:
    """None, ``'all'``, or a list of set nums (empty: no superbatch), as strings."""
    if isinstance(value, str) and value != "all":
        raise ValueError(f"superbatch_set_nums must be 'all' or a list of set nums, got {value!r}")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and not value:
        return []
    return check_set_nums(value, "superbatch_set_nums")


def _check_arrays(data: Path | np.ndarray, labels: Path | np.ndarray | None) -> None:
    """Labels as an array go with data as an array, sample for sample."""
    if labels is None or not is_array(labels):
        return
    if not is_array(data):
        raise TypeError(
            "labels_path may be an array only when data_path is one too (an array of "
            "samples); for data files, give the labels as a file or directory"
        )
    if len(labels) != len(data):
        raise ValueError(
            f"labels_path holds {len(labels)} labels but data_path {len(data)} samples; "
            "they must be sample for sample"
        )


def _spec_for_another_path(spec: Any) -> Any:
    """The ``data_loader`` argument that reads another directory as ``spec`` reads its own:
    a DataLoader object's class, or the format or function it was made with."""
    if not isinstance(spec, DataLoader):
        return spec
    if type(spec) is not DataLoader:
        return type(spec)
    return spec.format.name if spec.format is not None else spec.load_fn.__func__  # type: ignore[attr-defined]


def _in_ram(array: Any) -> np.ndarray:
    """``array`` as an array in memory (a memory map is read in)."""
    array = np.asarray(array)
    if isinstance(array, np.memmap) or isinstance(array.base, np.memmap):
        array = np.array(array)
    return array


def _same_files(a: DataLoader, b: DataLoader) -> bool:
    """Whether two directory loaders read the very same files."""
    files_a, files_b = (getattr(x, "filepaths", None) for x in (a, b))
    if not files_a or not files_b:  # dataset mode, arrays
        return False
    return [os.path.realpath(p) for p in files_a] == [os.path.realpath(p) for p in files_b]


def _make_preprocessor(spec: Any, configs: dict) -> Preprocessor:
    cls: Any = None
    if spec is None:
        cls = GenericPreprocessor
    elif isinstance(spec, str) and spec == "timeseries":
        cls = TimeseriesPreprocessor
    elif isinstance(spec, type) and issubclass(spec, Preprocessor):
        cls = spec
    if cls is not None:
        check_configs_fit(cls, configs, spec)
        return cls(**configs)
    if isinstance(spec, Preprocessor):
        if configs:
            log.warning("preprocessor_configs is ignored when preprocessor is an instance")
        return spec
    raise TypeError(
        f"preprocessor must be None, 'timeseries', a Preprocessor subclass or an "
        f"instance of one (deeptrain.data.preprocessors.Preprocessor); got {spec!r}"
    )


def _weak_method(method: Callable[..., Any]) -> Callable[..., Any]:
    ref = weakref.WeakMethod(method)

    def call(*args: Any) -> Any:
        bound = ref()
        if bound is None:
            raise ReferenceError("the DataGenerator was garbage-collected")
        return bound(*args)

    return call


def _num_key(s: str) -> tuple[int, str]:
    return (int(s), s) if s.isdigit() else (2**63, s)


def _preview(items: Sequence[Any], n: int = 8) -> str:
    items = list(items)
    return str(items[:n])[:-1] + (f", ... ({len(items)} in all)]" if len(items) > n else "]")


def _check_alike(
    probed: dict[str, tuple[int | None, Signature | None]], loader: DataLoader
) -> None:
    """Raise naming the first file whose samples' shape or dtype differ from the first's."""
    first: tuple[str, Signature] | None = None
    for set_num, (_, sig) in probed.items():
        if sig is None:
            continue
        if first is None:
            first = (set_num, sig)
        elif sig != first[1]:
            raise ValueError(
                f"{loader._path(set_num)} (set num {set_num}) holds {describe(sig)}, but "
                f"{loader._path(first[0])} (set num {first[0]}) holds {describe(first[1])}; all "
                f"files of {loader.argname} must hold samples of one shape and dtype"
            )
