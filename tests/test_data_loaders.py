"""Each built-in loader, in directory and dataset mode, plus custom loaders."""

from __future__ import annotations

import csv

import h5py
import lz4.frame
import numpy as np
import pytest

from datafactory import batch_for, ids_of, run_epoch, sample_ids, write_dataset
from deeptrain import DataGenerator
from deeptrain.util.data_loaders import DataLoader, DataLoadError


def served_ids(dg) -> list[int]:
    return [i for _, ids, _ in run_epoch(dg) for i in ids]


ALL_IDS = [i for s in range(1, 5) for i in sample_ids(s, 8)]


@pytest.mark.parametrize("fmt", ["npy", "h5", "h5-dataset"])
def test_builtin_formats_by_extension(tmp_path, fmt):
    d = write_dataset(tmp_path, n_files=4, fmt=fmt, labels="h5")
    path = d / "data.h5" if fmt == "h5-dataset" else d
    dg = DataGenerator(path, batch_size=8, labels_path=d / "labels.h5")
    assert dg.data_loader.name == ("numpy" if fmt == "npy" else "hdf5")
    epoch = run_epoch(dg)
    assert [i for _, ids, _ in epoch for i in ids] == ALL_IDS
    assert all(ids == labels for _, ids, labels in epoch)


def test_npy_dataset_mode_reads_one_entry(tmp_path):
    d = write_dataset(tmp_path, n_files=4, fmt="npy-dataset", labels=None, first=0)
    dg = DataGenerator(d / "data.npy", batch_size=8)
    assert dg.set_nums_original == ["0", "1", "2", "3"]
    assert served_ids(dg) == [i for s in range(4) for i in sample_ids(s, 8)]


def test_hdf5_set_nums_are_ordered_numerically(tmp_path):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        for s in (0, 1, 2, 10, 11):
            f[str(s)] = batch_for(s, 4)
        f["meta"] = np.zeros(3)  # non-numeric keys are not set nums
    dg = DataGenerator(tmp_path / "d.h5", batch_size=4)
    assert dg.set_nums_original == ["0", "1", "2", "10", "11"]


def test_csv_labels_one_column_per_set_num_and_pandas_index_column(tmp_path):
    d = write_dataset(tmp_path, n_files=3, labels="csv")
    dg = DataGenerator(d, batch_size=8, labels_path=d / "labels.csv")
    assert dg.preload_labels and sorted(dg.all_labels) == ["1", "2", "3"]
    assert all(ids == labels for _, ids, labels in run_epoch(dg))
    # a pandas-style file: unnamed index column first
    with open(d / "labels.csv", newline="") as f:
        rows = list(csv.reader(f))
    with open(d / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([[""] + rows[0]] + [[str(i)] + r for i, r in enumerate(rows[1:])])
    dg = DataGenerator(d, batch_size=8, labels_path=d / "labels.csv")
    assert all(ids == labels for _, ids, labels in run_epoch(dg))
    # a set num named twice: which column holds its labels is not for the loader to guess
    with open(d / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([["1", "2", "2"], *rows[1:]])
    with pytest.raises(DataLoadError, match=r"names column\(s\) '2' more than once"):
        DataGenerator(d, batch_size=8, labels_path=d / "labels.csv")


def test_labels_directory_loaded_per_batch(tmp_path):
    d = write_dataset(tmp_path, n_files=3, labels="dir")
    dg = DataGenerator(d, batch_size=8, labels_path=d / "labels")
    assert not dg.preload_labels and dg.all_labels == {}
    assert all(ids == labels for _, ids, labels in run_epoch(dg))


def test_lz4_frame_directory_and_dataset_modes(tmp_path):
    d = write_dataset(tmp_path / "dir", n_files=4, fmt="lz4", labels=None)
    dg = DataGenerator(
        d, batch_size=8, data_loader="numpy-lz4f", data_dtype="float32", data_batch_shape=(8, 3)
    )
    assert served_ids(dg) == ALL_IDS
    # DeepTrain 0.6 wrote a 0-d bytes array; its trailing zero bytes must survive
    arr = np.stack([batch_for(s, 8) for s in range(3)])
    np.save(tmp_path / "all.npy", np.array(lz4.frame.compress(arr.tobytes())))
    dg = DataGenerator(
        tmp_path / "all.npy",
        batch_size=8,
        data_loader="numpy-lz4f",
        data_dtype="float32",
        data_batch_shape=(8, 3),
    )
    assert dg.set_nums_original == ["0", "1", "2"]
    assert served_ids(dg) == [i for s in range(3) for i in sample_ids(s, 8)]
    with pytest.raises(ValueError, match="needs the arrays' batch shape: pass data_batch_shape="):
        DataGenerator(d, batch_size=8, data_loader="numpy-lz4f")  # (the dtype defaults)


def test_memmap_by_argument_and_by_size_threshold(tmp_path):
    d = write_dataset(tmp_path, n_files=3, labels=None)
    dg = DataGenerator(d, batch_size=4, data_loader="numpy-memmap")
    assert dg.data_loader.lazy
    x, _ = dg.get()
    assert type(x) is np.ndarray and x.flags.c_contiguous  # served batches are read into RAM
    # the current batch is not used up until update_state(), so the epoch starts with it
    assert served_ids(dg) == [i for s in range(1, 4) for i in sample_ids(s, 8)]
    assert DataGenerator(d, batch_size=4, memmap_threshold=10).data_loader.lazy
    assert not DataGenerator(d, batch_size=4).data_loader.lazy


def test_custom_loader_function_class_and_instance(tmp_path):
    d = write_dataset(tmp_path, n_files=3, labels=None)

    def doubled(self, set_num):
        return np.load(self._path(set_num)) * 2

    class Doubled(DataLoader):
        def load_fn(self, set_num):
            return np.load(self._path(set_num)) * 2

    expected = [2 * i for s in range(1, 4) for i in sample_ids(s, 8)]
    for loader in (doubled, Doubled, Doubled(d, argname="data_path")):
        assert served_ids(DataGenerator(d, batch_size=8, data_loader=loader)) == expected


def test_corrupt_and_truncated_files_are_named(tmp_path):
    d = write_dataset(tmp_path, n_files=3, labels=None)
    raw = (d / "batch__2.npy").read_bytes()
    (d / "batch__2.npy").write_bytes(raw[: len(raw) // 2])  # truncated
    with pytest.raises(DataLoadError, match="batch__2.npy"):
        DataGenerator(d, batch_size=8)
    (d / "batch__2.npy").write_bytes(b"not a numpy file at all" * 10)
    with pytest.raises(DataLoadError, match="batch__2.npy"):
        DataGenerator(d, batch_size=8)


def test_corrupt_h5_file_named_at_load(tmp_path):
    d = write_dataset(tmp_path, n_files=3, fmt="h5", labels=None)
    (d / "batch__3.h5").write_bytes(b"\x89HDF garbage" * 50)
    with pytest.raises(DataLoadError, match="batch__3.h5"):
        DataGenerator(d, batch_size=8)


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "b_1.npy", np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
    np.save(tmp_path / "b_2.npy", np.zeros((4, 2)))
    with pytest.raises(DataLoadError, match="b_1.npy"):
        dg = DataGenerator(tmp_path, batch_size=4, prefetch=0)
        ids_of(dg.get()[0])


MEMMAP_CHILD = r"""
import sys
sys.path.insert(0, {src!r})
import numpy as np
from deeptrain import DataGenerator

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

dg = DataGenerator({path!r}, batch_size=256, memmap_threshold=2**20, prefetch=0)
assert dg.data_loader.lazy
base = rss_mb()
for _ in range(6):
    x, _ = dg.get()
    x.sum()
    dg.update_state()
print(rss_mb() - base)
"""


@pytest.mark.subprocess
def test_memmap_keeps_only_served_batches_resident(tmp_path):
    """A 256 MB dataset file: serving 6 batches of 2 MB must not read the file into RAM."""
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "big.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(4, 8192, 2048))
    mm[:] = 1.0
    mm.flush()
    del mm
    script = MEMMAP_CHILD.format(src=str(Path(__file__).parents[1] / "src"), path=str(path))
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stderr
    grown_mb = float(out.stdout.strip().splitlines()[-1])
    assert grown_mb < 64, f"RSS grew by {grown_mb:.0f} MB for 12 MB of batches"


def test_load_npy_matches_np_load_and_is_thread_safe(tmp_path):
    """DeepTrain's .npy reader (headers parsed under a lock: CPython 3.11's AST is not
    thread-safe, python/cpython#106905) reads what np.load reads, from many threads."""
    import threading

    from deeptrain.data.formats.numpy import load_npy

    rng = np.random.default_rng(0)
    arrays = [
        rng.normal(size=(16, 3, 2)).astype("float32"),
        np.asfortranarray(rng.integers(0, 9, (5, 7))),
        np.array(b"bytes"),
        np.arange(6, dtype=">i4"),
    ]
    paths = []
    for i, a in enumerate(arrays):
        paths.append(tmp_path / f"a{i}.npy")
        np.save(paths[-1], a)
    for path, a in zip(paths, arrays, strict=True):
        for mmap in (False, True):
            got = load_npy(path, mmap=mmap) if a.ndim else load_npy(path)
            np.testing.assert_array_equal(got, a)
            assert got.dtype == a.dtype and got.shape == a.shape
    errors, results = [], []

    def work():
        try:
            for _ in range(200):
                results.append(
                    all(np.array_equal(load_npy(p), a) for p, a in zip(paths, arrays, strict=True))
                )
        except Exception as e:  # noqa: BLE001 - collected for the assertion below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 800 and all(results)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="object array"):
        load_npy(tmp_path / "obj.npy")
    raw = paths[0].read_bytes()
    (tmp_path / "cut.npy").write_bytes(raw[: len(raw) - 40])
    with pytest.raises(ValueError, match="truncated"):
        load_npy(tmp_path / "cut.npy")
