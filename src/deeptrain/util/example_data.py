"""Datasets for DeepTrain's examples, built on first use from data that ships in packages.

Nothing here needs the network except :func:`build` of ``'mnist'``. Each dataset is a
directory ``<root>/<name>/`` with ``train/`` and ``val/`` in a layout ``DataGenerator`` reads:

``image``
    scikit-learn's 1797 real 8x8 handwritten digits (``load_digits``), bilinearly resized to
    28x28x1 and scaled to [0, 1] (float32), shuffled with seed 0: ``128batch__<k>.npy`` files
    of shape ``(128, 28, 28, 1)`` plus ``labels.h5`` (datasets ``'1'..'K'``, one-hot
    ``(128, 10)`` float32). train: 10 files (1280 samples), val: 4 files (512; the 5 leftover
    samples are dropped).
``image_lz4f``
    the same batches, each ``.npy`` holding the lz4 frame of the raw float32 bytes; read with
    ``data_loader='numpy-lz4f', data_dtype='float32', data_batch_shape=(128, 28, 28, 1)``.
``timeseries``
    ItalyPowerDemand (shipped by sktime, from the UCR archive): 1096 days of Italian
    electrical power demand, 24 hourly values each (z-normalised per day); label 1 for days
    from April to September, 0 for October to March. The UCR train/test split is pooled,
    shuffled with seed 0 and split again: ``data.h5`` (datasets ``'0','1',...``, each
    ``(64, 24, 1)`` float32) and ``labels.h5`` (same keys, ``(64, 1)`` float32); train: 13
    batches (832 samples), val: 4 batches (256; 8 leftover samples dropped).
``mnist``
    real MNIST via ``keras.datasets.mnist`` (downloaded once to ``~/.keras/datasets``): the
    ``image`` layout with 469 train / 79 val files (the last file of each is filled up with
    randomly drawn samples).

``small=True`` builds ``<name>_small`` instead: the first 4 train and 2 val batches of the
same data (for tests and quick runs).

A dataset is built in a hidden temporary directory next to its target and renamed into place
when complete, so concurrent first uses never see or leave a half-written dataset (the
slower builder discards its copy). A complete dataset holds ``dataset.json`` (what it is,
shapes, source); it is never rebuilt or overwritten.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..data.builders import data_to_hdf5, numpy_data_to_numpy_sets, numpy_to_lz4f

__all__ = ["DATASETS", "build", "digits_28x28", "italy_power_demand", "resize_bilinear"]

log = logging.getLogger(__name__)

DATASETS = ("image", "image_lz4f", "timeseries", "mnist")
SMALL_BATCHES = {"train": 4, "val": 2}
IMAGE_BATCH_SIZE = 128
TS_BATCH_SIZE = 64
INFO_FILE = "dataset.json"


# -- public API ------------------------------------------------------------------------


def build(name: str, root: str | os.PathLike, small: bool = False) -> Path:
    """Return ``<root>/<name>`` (``<name>_small`` with ``small``), building it if missing."""
    if name not in DATASETS:
        raise ValueError(f"unknown example dataset {name!r}; choose from {DATASETS}")
    target = Path(root) / (f"{name}_small" if small else name)
    if (target / INFO_FILE).is_file():
        return target
    if target.exists():
        raise FileExistsError(
            f"{target} exists but is not a complete example dataset (no {INFO_FILE}); "
            "remove it to have it rebuilt"
        )
    builder = _BUILDERS[name]
    log.info("Building example dataset %r in %s (first use)", target.name, target.parent)
    return _build_atomically(target, lambda tmp: builder(tmp, small))


def resize_bilinear(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``(n, h, w)`` images to ``(n, *size)``, bilinear with half-pixel centres
    (as ``keras.ops.image.resize(..., antialias=False)``)."""
    images = np.asarray(images, dtype=np.float64)
    rows = _interpolation_matrix(images.shape[1], size[0])
    cols = _interpolation_matrix(images.shape[2], size[1])
    return np.einsum("ih,nhw,jw->nij", rows, images, cols)


def digits_28x28() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 digits as ``(1797, 28, 28, 1)`` float32 in [0, 1] and int labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = resize_bilinear(digits.images / 16.0, (28, 28))
    return np.clip(x, 0, 1).astype(np.float32)[..., None], digits.target.astype(np.int64)


def italy_power_demand() -> tuple[np.ndarray, np.ndarray]:
    """ItalyPowerDemand (UCR train + test, in file order) from sktime's data files:
    ``(1096, 24, 1)`` float32 and labels ``(1096,)`` int (1: April..September)."""
    directory = _sktime_data_dir() / "ItalyPowerDemand"
    parts = [
        _read_ts_file(directory / f"ItalyPowerDemand_{split}.ts") for split in ("TRAIN", "TEST")
    ]
    x = np.concatenate([p[0] for p in parts]).astype(np.float32)[..., None]
    labels = np.concatenate([p[1] for p in parts])
    return x, (labels == "2").astype(np.int64)


# -- builders --------------------------------------------------------------------------


def _split(n: int, n_train: int, n_val: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return perm[:n_train], perm[n_train : n_train + n_val]


def _counts(small: bool, train: int, val: int) -> dict[str, int]:
    return dict(SMALL_BATCHES) if small else {"train": train, "val": val}


def _build_image(tmp: Path, small: bool, lz4f: bool = False) -> None:
    x, y = digits_28x28()
    counts = _counts(small, 10, 4)
    bs = IMAGE_BATCH_SIZE
    train, val = _split(len(x), 10 * bs, 4 * bs)
    onehot = np.eye(10, dtype=np.float32)[y]
    for split, idx in (("train", train), ("val", val)):
        idx = idx[: counts[split] * bs]
        batches, _ = numpy_data_to_numpy_sets(
            x[idx],
            onehot[idx],
            tmp / split,
            batch_size=bs,
            shuffle=False,
            data_basename="128batch",
            oversample_remainder=False,
            verbose=0,
        )
        if lz4f:
            for k, batch in enumerate(batches, 1):
                numpy_to_lz4f(batch, tmp / split / f"128batch__{k}.npy", overwrite=True)
    _write_info(
        tmp,
        {
            "source": "sklearn.datasets.load_digits, resized 8x8 -> 28x28 (bilinear), / 16",
            "layout": "128batch__<k>.npy"
            + (" (lz4 frame of float32 bytes)" if lz4f else "")
            + " + labels.h5 (one-hot)",
            "data": {"shape": [bs, 28, 28, 1], "dtype": "float32", "range": [0.0, 1.0]},
            "labels": {"shape": [bs, 10], "dtype": "float32"},
            "batches": counts,
        },
    )


def _build_image_lz4f(tmp: Path, small: bool) -> None:
    _build_image(tmp, small, lz4f=True)


def _build_timeseries(tmp: Path, small: bool) -> None:
    x, y = italy_power_demand()
    bs = TS_BATCH_SIZE
    counts = _counts(small, 13, 4)
    train, val = _split(len(x), 13 * bs, 4 * bs)
    for split, idx in (("train", train), ("val", val)):
        idx = idx[: counts[split] * bs]
        (tmp / split).mkdir()
        for fname, array in (("data.h5", x[idx]), ("labels.h5", y[idx, None].astype(np.float32))):
            data_to_hdf5(
                tmp / split / fname,
                batch_size=bs,
                data=array,
                shuffle=False,
                oversample_remainder=False,
                verbose=0,
            )
    _write_info(
        tmp,
        {
            "source": "ItalyPowerDemand (UCR archive, as shipped by sktime); train+test pooled",
            "layout": "data.h5 + labels.h5, datasets '0', '1', ...",
            "data": {"shape": [bs, 24, 1], "dtype": "float32"},
            "labels": {
                "shape": [bs, 1],
                "dtype": "float32",
                "meaning": "1: a day from April to September, 0: October to March",
            },
            "batches": counts,
        },
    )


def _build_mnist(tmp: Path, small: bool) -> None:
    import keras

    (x_train, y_train), (x_val, y_val) = keras.datasets.mnist.load_data()
    bs = IMAGE_BATCH_SIZE
    for split, x, y in (("train", x_train, y_train), ("val", x_val, y_val)):
        if small:
            x, y = x[: SMALL_BATCHES[split] * bs], y[: SMALL_BATCHES[split] * bs]
        x = (x.astype(np.float32) / 255.0)[..., None]
        numpy_data_to_numpy_sets(
            x,
            np.eye(10, dtype=np.float32)[y],
            tmp / split,
            batch_size=bs,
            data_basename="128batch",
            seed=0,
            verbose=0,
        )
    _write_info(
        tmp,
        {
            "source": "keras.datasets.mnist, / 255",
            "layout": "128batch__<k>.npy + labels.h5 (one-hot)",
            "data": {"shape": [bs, 28, 28, 1], "dtype": "float32", "range": [0.0, 1.0]},
            "labels": {"shape": [bs, 10], "dtype": "float32"},
        },
    )


_BUILDERS: dict[str, Callable[[Path, bool], None]] = {
    "image": _build_image,
    "image_lz4f": _build_image_lz4f,
    "timeseries": _build_timeseries,
    "mnist": _build_mnist,
}


# -- helpers ---------------------------------------------------------------------------


def _build_atomically(target: Path, build_into: Callable[[Path], None]) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
    tmp.mkdir()  # (unlike tempfile.mkdtemp, honours the umask)
    try:
        build_into(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / INFO_FILE).is_file():
                raise
            log.debug("%s was built concurrently; discarding this copy", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _write_info(directory: Path, info: dict[str, Any]) -> None:
    (directory / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")


def _interpolation_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` matrix of linear interpolation weights (half-pixel centres)."""
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    matrix = np.zeros((n_out, n_in))
    np.add.at(matrix, (np.arange(n_out), lo), 1 - frac)
    np.add.at(matrix, (np.arange(n_out), hi), frac)
    return matrix


def _sktime_data_dir() -> Path:
    spec = importlib.util.find_spec("sktime")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the timeseries example data ships with sktime: pip install "
            "'deeptrain[examples]' (or sktime)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def _read_ts_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Values and class labels of an equal-length univariate ``.ts`` file (sktime format:
    ``#`` comments, ``@`` headers, then one ``v1,v2,...:label`` line per series)."""
    rows, labels = [], []
    in_data = False
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            in_data = line.lower() == "@data"
            continue
        values, label = line.rsplit(":", 1)
        rows.append(np.array(values.split(","), dtype=np.float64))
        labels.append(label)
    if not rows:
        raise ValueError(f"{path} holds no series after '@data'")
    return np.stack(rows), np.array(labels)
