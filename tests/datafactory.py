"""Build small, self-describing datasets on disk for the tests.

Every sample's features all equal ``set_num * 1000 + index_in_file`` so a test can tell
from a served batch exactly which samples it holds; labels hold the same id.
"""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import lz4.frame
import numpy as np


def sample_ids(set_num: int, file_size: int) -> np.ndarray:
    return set_num * 1000 + np.arange(file_size)


def batch_for(
    set_num: int,
    file_size: int,
    n_features: int = 3,
    timesteps: int | None = None,
    dtype=np.float32,
) -> np.ndarray:
    ids = sample_ids(set_num, file_size).astype(dtype)
    shape = (file_size,) + ((timesteps,) if timesteps else ()) + (n_features,)
    return np.broadcast_to(ids.reshape((-1,) + (1,) * (len(shape) - 1)), shape).copy()


def ids_of(batch: np.ndarray) -> list[int]:
    """The sample ids of a served batch."""
    return [int(v) for v in np.asarray(batch).reshape(len(batch), -1)[:, 0]]


def write_dataset(
    directory: Path,
    n_files: int = 6,
    file_size: int = 8,
    fmt: str = "npy",
    labels: str | None = "h5",
    n_features: int = 3,
    timesteps: int | None = None,
    first: int = 1,
    base: str = "batch__",
) -> Path:
    """Write ``n_files`` batches in format ``fmt`` ('npy', 'h5', 'h5-dataset', 'npy-dataset',
    'lz4') and labels ('h5', 'csv', 'dir' or None). Returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    set_nums = range(first, first + n_files)
    batches = {s: batch_for(s, file_size, n_features, timesteps) for s in set_nums}
    if fmt == "npy":
        for s, b in batches.items():
            np.save(directory / f"{base}{s}.npy", b)
    elif fmt == "lz4":
        for s, b in batches.items():
            np.save(
                directory / f"{base}{s}.npy",
                np.frombuffer(lz4.frame.compress(b.tobytes()), np.uint8),
            )
    elif fmt == "h5":
        for s, b in batches.items():
            with h5py.File(directory / f"{base}{s}.h5", "w") as f:
                f["data"] = b
    elif fmt == "h5-dataset":
        with h5py.File(directory / "data.h5", "w") as f:
            for s, b in batches.items():
                f[str(s)] = b
    elif fmt == "npy-dataset":
        assert first == 0, "dataset-mode .npy set nums are array indices"
        np.save(directory / "data.npy", np.stack(list(batches.values())))
    else:
        raise ValueError(fmt)

    if labels == "h5":
        with h5py.File(directory / "labels.h5", "w") as f:
            for s in set_nums:
                f[str(s)] = sample_ids(s, file_size)
    elif labels == "csv":
        with open(directory / "labels.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow([str(s) for s in set_nums])
            for row in zip(*(sample_ids(s, file_size) for s in set_nums), strict=True):
                w.writerow(row)
    elif labels == "dir":
        (directory / "labels").mkdir()
        for s in set_nums:
            np.save(directory / "labels" / f"labels_{s}.npy", sample_ids(s, file_size))
    return directory


def run_epoch(dg) -> list[tuple[str, list[int], list[int]]]:
    """Serve one epoch: (set_name, data ids, label ids) per batch."""
    out = []
    for x, y in dg:
        out.append((dg.set_name, ids_of(x), [] if len(y) == 0 else [int(v) for v in y]))
    return out
