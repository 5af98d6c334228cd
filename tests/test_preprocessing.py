"""Tests for deeptrain.preprocessing: real files in tmp_path, exact contents."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import h5py
import lz4.frame
import numpy as np
import pytest

from deeptrain import DataGenerator
from deeptrain.data import builders as pp  # (its functions, monkeypatched below)
from deeptrain.preprocessing import (
    data_to_hdf5,
    numpy2D_to_csv,
    numpy_data_to_numpy_sets,
    numpy_to_lz4f,
)


def _data(n: int = 100, dim: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Unique rows; labels = first feature, so pairs can be checked."""
    data = np.arange(n * dim, dtype=np.float64).reshape(n, dim)
    return data, data[:, 0].copy()


def _listing(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _read_labels(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}


def _read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


# ---------------------------------------------------------------------------
# numpy sets


def test_numpy_sets_oversample(tmp_path, caplog):
    data, labels = _data()
    with caplog.at_level(logging.INFO, logger="deeptrain.data.builders"):
        db, lb = numpy_data_to_numpy_sets(data, labels, tmp_path, batch_size=32, shuffle=False)
    assert "Oversampled remainder" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "batch__1.npy",
        "batch__2.npy",
        "batch__3.npy",
        "batch__4.npy",
        "labels.h5",
    ]
    assert db.shape == (4, 32, 3) and lb.shape == (4, 32, 1)  # 1-D labels: (n, 1), as 0.6

    for k in range(1, 5):
        saved = np.load(tmp_path / f"batch__{k}.npy")
        assert saved.dtype == np.float64 and saved.shape == (32, 3)
        np.testing.assert_array_equal(saved, db[k - 1])
    # shuffle=False keeps order; last batch = 4 leftovers + 28 drawn from the data
    for k in range(3):
        np.testing.assert_array_equal(db[k], data[32 * k : 32 * (k + 1)])
    last = np.load(tmp_path / "batch__4.npy")
    np.testing.assert_array_equal(last[:4], data[96:])
    rows = {tuple(r) for r in data}
    assert all(tuple(r) in rows for r in last[4:])

    saved_labels = _read_labels(tmp_path / "labels.h5")
    assert sorted(saved_labels, key=int) == ["1", "2", "3", "4"]
    for k in range(1, 5):
        np.testing.assert_array_equal(saved_labels[str(k)], lb[k - 1])
        np.testing.assert_array_equal(
            saved_labels[str(k)], np.load(tmp_path / f"batch__{k}.npy")[:, :1]
        )


def test_numpy_sets_drop_remainder(tmp_path, caplog):
    data, labels = _data()
    with caplog.at_level(logging.INFO, logger="deeptrain.data.builders"):
        db, lb = numpy_data_to_numpy_sets(
            data,
            labels,
            tmp_path,
            batch_size=32,
            shuffle=False,
            data_basename="128batch",
            oversample_remainder=False,
        )
    assert "Dropped remainder: 4 of 100" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "128batch__1.npy",
        "128batch__2.npy",
        "128batch__3.npy",
        "labels.h5",
    ]
    np.testing.assert_array_equal(db.reshape(-1, 3), data[:96])
    assert sorted(_read_labels(tmp_path / "labels.h5"), key=int) == ["1", "2", "3"]


def test_numpy_sets_joint_shuffle_keeps_pairs(tmp_path):
    data, labels = _data(n=96)
    db, lb = numpy_data_to_numpy_sets(data, labels, tmp_path, batch_size=16, seed=0)
    flat = db.reshape(-1, 3)
    assert not np.array_equal(flat, data)  # actually shuffled
    np.testing.assert_array_equal(np.sort(flat[:, 0]), data[:, 0])  # a permutation
    saved_labels = _read_labels(tmp_path / "labels.h5")
    for k in range(1, 7):
        batch = np.load(tmp_path / f"batch__{k}.npy")
        np.testing.assert_array_equal(saved_labels[str(k)], batch[:, :1])
    # same seed -> same result; savedir=None writes nothing
    db2, lb2 = numpy_data_to_numpy_sets(data, labels, batch_size=16, seed=0)
    np.testing.assert_array_equal(db, db2)
    np.testing.assert_array_equal(lb, lb2)


def test_numpy_sets_multidim_labels_and_dtypes(tmp_path):
    data = np.random.default_rng(1).integers(0, 255, (40, 4, 4, 1)).astype(np.uint8)
    labels = np.eye(10, dtype=np.float32)[np.arange(40) % 10]
    numpy_data_to_numpy_sets(data, labels, tmp_path / "new" / "dir", batch_size=8, shuffle=False)
    out = tmp_path / "new" / "dir"
    first = np.load(out / "batch__1.npy")
    assert first.dtype == np.uint8 and first.shape == (8, 4, 4, 1)
    np.testing.assert_array_equal(first, data[:8])
    lab = _read_labels(out / "labels.h5")
    assert lab["5"].dtype == np.float32 and lab["5"].shape == (8, 10)
    np.testing.assert_array_equal(lab["5"], labels[32:])


def test_numpy_sets_savedir_first_is_clear_error(tmp_path):
    data, labels = _data()
    with pytest.raises(TypeError, match="savedir` is the third argument"):
        numpy_data_to_numpy_sets(str(tmp_path), data, labels)
    with pytest.raises(TypeError, match="savedir` is the third argument"):
        numpy_data_to_numpy_sets(tmp_path, data, labels)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(batch_size=0), ValueError, "batch_size` must be an int >= 1"),
        (dict(batch_size=2.0), ValueError, "batch_size` must be an int >= 1"),
        (dict(batch_size=True), ValueError, "batch_size` must be an int >= 1"),
        (
            dict(batch_size=200, oversample_remainder=False),
            ValueError,
            "100 samples, fewer than batch_size=200",
        ),
        (dict(data_basename="a/b"), ValueError, "data_basename"),
        (dict(overwrite="yes"), TypeError, "overwrite` must be None, True or False"),
    ],
)
def test_numpy_sets_bad_args(tmp_path, kwargs, exc, match):
    data, labels = _data()
    with pytest.raises(exc, match=match):
        numpy_data_to_numpy_sets(data, labels, tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_numpy_sets_bad_labels():
    data, _ = _data()
    with pytest.raises(ValueError, match="same number of samples"):
        numpy_data_to_numpy_sets(data, np.zeros(99))
    with pytest.raises(TypeError, match="`labels` must be a numeric"):
        numpy_data_to_numpy_sets(data, np.array([None] * 100))


def test_numpy_sets_small_data_oversampled():
    data, labels = _data(n=5)
    db, lb = numpy_data_to_numpy_sets(data, labels, batch_size=8, seed=3)
    assert db.shape == (1, 8, 3)
    np.testing.assert_array_equal(lb[0], db[0][:, :1])


def test_numpy_sets_overwrite(tmp_path, caplog):
    data, labels = _data()
    numpy_data_to_numpy_sets(data, labels, tmp_path, batch_size=32, seed=0)
    before = _listing(tmp_path)
    for ow in (None, False):
        with pytest.raises(FileExistsError, match="overwrite=True") as e:
            numpy_data_to_numpy_sets(data * 2, labels, tmp_path, batch_size=32, overwrite=ow)
        assert "batch__1.npy" in str(e.value)
        assert _listing(tmp_path) == before
    # only labels.h5 existing is enough to refuse, before any .npy is written
    other = tmp_path / "other"
    other.mkdir()
    (other / "labels.h5").write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="labels.h5"):
        numpy_data_to_numpy_sets(data, labels, other, batch_size=32)
    assert _listing(other) == {"labels.h5": b"keep"}

    # overwrite=True replaces the whole set: fewer batches now -> the older set's extra
    # files are removed (a loader would read them as batches of no labels), and logged
    with caplog.at_level(logging.WARNING, logger="deeptrain.data.builders"):
        db, _ = numpy_data_to_numpy_sets(
            data * 2, labels, tmp_path, batch_size=50, shuffle=False, overwrite=True
        )
    np.testing.assert_array_equal(np.load(tmp_path / "batch__1.npy"), data[:50] * 2)
    assert "removing 2 files" in caplog.text and "batch__3.npy" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "batch__1.npy",
        "batch__2.npy",
        "labels.h5",
        "other",
    ]
    assert set(_read_labels(tmp_path / "labels.h5")) == {"1", "2"}
    dg = DataGenerator(tmp_path, batch_size=50, labels_path=None, shuffle=False)
    assert sorted(dg.set_nums_original) == ["1", "2"]


def test_numpy_sets_refuses_an_older_sets_extra_files(tmp_path):
    """Files of an older, longer set alone (its first files and labels gone) are targets
    too: without overwrite=True nothing is written."""
    data, labels = _data()
    numpy_data_to_numpy_sets(data, labels, tmp_path, batch_size=20, seed=0)
    for name in ("batch__1.npy", "batch__2.npy", "labels.h5"):
        (tmp_path / name).unlink()
    before = _listing(tmp_path)
    with pytest.raises(FileExistsError, match=r"beyond the 2 to write \(batch__3.npy"):
        numpy_data_to_numpy_sets(data, labels, tmp_path, batch_size=50)
    assert _listing(tmp_path) == before


def test_numpy_sets_atomic_on_failure(tmp_path, monkeypatch):
    data, labels = _data()
    numpy_data_to_numpy_sets(data, labels, tmp_path, batch_size=32, seed=0)
    (tmp_path / "unrelated.txt").write_text("x")
    before = _listing(tmp_path)

    real_save = pp._save_npy
    calls = []

    def failing_save(path, array):
        calls.append(path)
        if len(calls) == 3:
            Path(path).write_bytes(b"partial")  # half-written, then crash
            raise OSError("disk full")
        real_save(path, array)

    monkeypatch.setattr(pp, "_save_npy", failing_save)
    with pytest.raises(OSError, match="disk full"):
        numpy_data_to_numpy_sets(data * 3, labels, tmp_path, batch_size=32, overwrite=True)
    assert _listing(tmp_path) == before  # nothing replaced, no temp left
    calls[:] = ["(so the second batch fails)"]  # fewer batches: the older set's extra
    with pytest.raises(OSError, match="disk full"):  # files stay too
        numpy_data_to_numpy_sets(data * 3, labels, tmp_path, batch_size=50, overwrite=True)
    assert _listing(tmp_path) == before
    # fresh dir: nothing at all appears
    fresh = tmp_path / "fresh"
    calls.clear()
    with pytest.raises(OSError):
        numpy_data_to_numpy_sets(data, labels, fresh, batch_size=32)
    assert list(fresh.iterdir()) == []


def test_verbose_controls_log_level(tmp_path, caplog):
    data, labels = _data()
    with caplog.at_level(logging.INFO, logger="deeptrain.data.builders"):
        numpy_data_to_numpy_sets(data, labels, tmp_path, batch_size=32, verbose=0)
    assert caplog.records == []
    with caplog.at_level(logging.DEBUG, logger="deeptrain.data.builders"):
        numpy_data_to_numpy_sets(data, labels, batch_size=32, verbose=0)
    assert {r.levelno for r in caplog.records} == {logging.DEBUG}


# ---------------------------------------------------------------------------
# lz4 frame


def _load_lz4f(path: Path, dtype, shape) -> np.ndarray:
    raw = lz4.frame.decompress(np.load(path).tobytes())
    return np.frombuffer(raw, dtype).reshape(shape)


@pytest.mark.parametrize(
    "array",
    [
        np.random.default_rng(0).standard_normal((16, 7, 3)),
        np.random.default_rng(0).integers(-128, 128, (50, 9), dtype=np.int8),
        np.asfortranarray(np.arange(60, dtype=np.float64).reshape(6, 10)),
    ],
    ids=["float64", "int8", "fortran"],
)
def test_lz4f_round_trip(tmp_path, array):
    path = tmp_path / "x.npy"
    compressed = numpy_to_lz4f(array, path)
    saved = np.load(path)
    assert saved.dtype == np.uint8 and saved.ndim == 1
    assert saved.tobytes() == compressed
    out = _load_lz4f(path, array.dtype, array.shape)
    assert out.dtype == array.dtype
    np.testing.assert_array_equal(out, array)


def test_lz4f_compresses_and_no_write_without_path(tmp_path):
    array = np.zeros((128, 28, 28, 1))
    array[:, 10:18, 10:18] = 1.0
    compressed = numpy_to_lz4f(array, level=3)
    assert list(tmp_path.iterdir()) == []
    assert isinstance(compressed, bytes)
    path = tmp_path / "c.npy"
    numpy_to_lz4f(array, path)
    np.save(tmp_path / "raw.npy", array)
    assert path.stat().st_size < (tmp_path / "raw.npy").stat().st_size / 10
    np.testing.assert_array_equal(_load_lz4f(path, array.dtype, array.shape), array)


def test_lz4f_overwrite_and_args(tmp_path):
    path = tmp_path / "x.npy"
    path.write_bytes(b"original")
    for ow in (None, False):
        with pytest.raises(FileExistsError, match="x.npy.*overwrite=True"):
            numpy_to_lz4f(np.arange(5), path, overwrite=ow)
        assert path.read_bytes() == b"original"
    numpy_to_lz4f(np.arange(5), path, overwrite=True)
    np.testing.assert_array_equal(_load_lz4f(path, np.int64, (5,)), np.arange(5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]
    with pytest.raises(ValueError, match="`level` must be an int in"):
        numpy_to_lz4f(np.arange(5), level=17)
    with pytest.raises(TypeError, match="`data` must be an array"):
        numpy_to_lz4f(str(path))


# ---------------------------------------------------------------------------
# hdf5


def _read_h5(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        assert all(f[k].compression == "lzf" and f[k].chunks for k in f)
        return {k: f[k][()] for k in f}


def test_hdf5_from_array(tmp_path, caplog):
    data = np.arange(100 * 4, dtype=np.float32).reshape(100, 4)
    path = tmp_path / "data.h5"
    with caplog.at_level(logging.INFO, logger="deeptrain.data.builders"):
        data_to_hdf5(path, 32, data=data, seed=0)
    assert "Oversampled remainder" in caplog.text
    out = _read_h5(path)
    assert sorted(out, key=int) == ["0", "1", "2", "3"]
    for k in range(3):
        assert out[str(k)].dtype == np.float32
        np.testing.assert_array_equal(out[str(k)], data[32 * k : 32 * (k + 1)])
    np.testing.assert_array_equal(out["3"][:4], data[96:])
    assert {tuple(r) for r in out["3"][4:]} <= {tuple(r) for r in data}

    path2 = tmp_path / "dropped.h5"
    data_to_hdf5(
        path2, 32, data=data, oversample_remainder=False, dtype=np.float64, compression="gzip"
    )
    with h5py.File(path2, "r") as f:
        assert sorted(f) == ["0", "1", "2"]
        assert f["0"].compression == "gzip" and f["0"].dtype == np.float64
        np.testing.assert_array_equal(np.concatenate([f[k][()] for k in "012"]), data[:96])


def test_hdf5_batches_dim0_and_shuffle(tmp_path):
    batches = np.arange(16 * 16 * 2).reshape(16, 16, 2)  # 16 batches of 16
    path = tmp_path / "d.h5"
    data_to_hdf5(path, 16, data=batches, batches_dim0=True)
    out = _read_h5(path)
    assert len(out) == 16
    for k in range(16):
        np.testing.assert_array_equal(out[str(k)], batches[k])
    # re-chunked: pairs merged
    data_to_hdf5(tmp_path / "m.h5", 32, data=batches, batches_dim0=True)
    out = _read_h5(tmp_path / "m.h5")
    assert len(out) == 8
    np.testing.assert_array_equal(out["1"], batches[2:4].reshape(32, 2))
    # shuffle permutes samples, keeps rows intact
    data_to_hdf5(tmp_path / "s.h5", 32, data=batches, batches_dim0=True, shuffle=True, seed=1)
    flat = np.concatenate(list(_read_h5(tmp_path / "s.h5").values()))
    assert not np.array_equal(flat, batches.reshape(-1, 2))
    np.testing.assert_array_equal(np.sort(flat[:, 0]), batches.reshape(-1, 2)[:, 0])
    np.testing.assert_array_equal(flat[:, 1], flat[:, 0] + 1)


def test_hdf5_from_dir(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    arrays = {}
    for k in (1, 2, 10, 11):  # natural order: 2 before 10
        arrays[k] = rng.integers(0, 100, (8, 3)).astype(np.int16)
        np.save(src / f"b__{k}.npy", arrays[k])
    (src / "notes.txt").write_text("ignored")
    path = tmp_path / "out.h5"
    data_to_hdf5(path, 16, loaddir=src)
    out = _read_h5(path)
    assert sorted(out) == ["0", "1"]
    assert out["0"].dtype == np.int16
    np.testing.assert_array_equal(out["0"], np.concatenate([arrays[1], arrays[2]]))
    np.testing.assert_array_equal(out["1"], np.concatenate([arrays[10], arrays[11]]))
    # one file per dataset, custom load_fn + dtype
    data_to_hdf5(
        tmp_path / "out8.h5", 8, loaddir=src, dtype=np.float32, load_fn=lambda p: np.load(p) * 2
    )
    out = _read_h5(tmp_path / "out8.h5")
    assert len(out) == 4 and out["2"].dtype == np.float32
    np.testing.assert_array_equal(out["2"], arrays[10] * 2)


def test_hdf5_dir_lengths_must_match(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for k, n in ((1, 8), (2, 6), (3, 8)):
        np.save(src / f"b{k}.npy", np.zeros((n, 2)))
    with pytest.raises(
        ValueError,
        match=r"sum exactly to batch_size=16.*b1\.npy"
        r".*b2\.npy.*b3\.npy.*22 samples",
    ):
        data_to_hdf5(tmp_path / "o.h5", 16, loaddir=src)
    with pytest.raises(ValueError, match=r"last files \['b3\.npy'\] hold only 8"):
        data_to_hdf5(tmp_path / "o.h5", 14, loaddir=src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_hdf5_atomic_on_load_failure(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for k in range(1, 4):
        np.save(src / f"{k}.npy", np.full((4, 2), k))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    path = out_dir / "data.h5"
    data_to_hdf5(path, 4, loaddir=src)
    before = _listing(out_dir)

    calls = []

    def load_fn(p):
        calls.append(p)
        if len(calls) == 2:
            raise RuntimeError("corrupt file")
        return np.load(p) * 10

    with pytest.raises(RuntimeError, match="corrupt file"):
        data_to_hdf5(path, 4, loaddir=src, load_fn=load_fn, overwrite=True)
    assert _listing(out_dir) == before
    with pytest.raises(RuntimeError):
        calls.clear()
        data_to_hdf5(out_dir / "new.h5", 4, loaddir=src, load_fn=load_fn)
    assert _listing(out_dir) == before


def test_hdf5_atomic_on_conversion_failure(tmp_path):
    data = np.empty((12, 2), dtype=object)
    data[:] = 1.5
    data[9, 0] = "not a number"  # batch 2 fails to convert
    with pytest.raises(ValueError, match="not a number"):
        data_to_hdf5(tmp_path / "d.h5", 4, data=data, dtype=np.float64)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(TypeError, match="object dtype; pass a numeric `dtype`"):
        data_to_hdf5(tmp_path / "d.h5", 4, data=data)


def test_hdf5_overwrite(tmp_path):
    path = tmp_path / "data.h5"
    data_to_hdf5(path, 4, data=np.arange(8))
    original = path.read_bytes()
    for ow in (None, False):
        with pytest.raises(FileExistsError, match="data.h5.*pass overwrite=True"):
            data_to_hdf5(path, 4, data=np.arange(8) + 1, overwrite=ow)
        assert path.read_bytes() == original
    data_to_hdf5(path, 2, data=np.arange(8) + 1, overwrite=True, compression=None)
    with h5py.File(path, "r") as f:
        assert sorted(f, key=int) == ["0", "1", "2", "3"]
        assert f["0"].compression is None
        np.testing.assert_array_equal(f["3"][()], [7, 8])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.h5"]


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(batch_size=-1, data=np.zeros(4)), ValueError, "batch_size` must be an int >= 1"),
        (dict(batch_size=4), ValueError, "exactly one of `loaddir` and `data`"),
        (dict(batch_size=4, data=np.zeros(4), loaddir="."), ValueError, "exactly one"),
        (
            dict(batch_size=8, data=np.zeros(4), oversample_remainder=False),
            ValueError,
            "4 samples, fewer than batch_size=8",
        ),
        (dict(batch_size=4, data=np.zeros(4), batches_dim0=True), ValueError, "at least 2-D"),
        (dict(batch_size=4, data="some/dir"), TypeError, "use `loaddir`"),
        (dict(batch_size=4, loaddir="does/not/exist"), NotADirectoryError, "loaddir"),
    ],
)
def test_hdf5_bad_args(tmp_path, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        data_to_hdf5(tmp_path / "x.h5", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_hdf5_empty_dir_and_missing_parent(tmp_path):
    with pytest.raises(ValueError, match="no .npy files"):
        data_to_hdf5(tmp_path / "x.h5", 4, loaddir=tmp_path)
    data_to_hdf5(tmp_path / "missing" / "parents" / "x.h5", 4, data=np.arange(8))  # created
    with h5py.File(tmp_path / "missing" / "parents" / "x.h5", "r") as f:
        assert sorted(f) == ["0", "1"] and f["1"][:].tolist() == [4, 5, 6, 7]


def test_hdf5_data_and_labels_written_by_two_calls_stay_paired(tmp_path):
    """``data.h5`` and ``labels.h5`` written by two calls (0.6's layout), shuffled and
    with the remainder oversampled: by default every call draws alike, so sample ``i``'s
    data and label stay together, read back through a DataGenerator."""
    from deeptrain import DataGenerator

    n = 101
    x = np.arange(3 * n, dtype=np.float32).reshape(n, 3)
    y = np.arange(n, dtype=np.float32)
    data_to_hdf5(tmp_path / "data.h5", 8, data=x, shuffle=True)
    data_to_hdf5(tmp_path / "labels.h5", 8, data=y, shuffle=True)
    dg = DataGenerator(tmp_path / "data.h5", batch_size=8, labels_path=tmp_path / "labels.h5")
    seen = 0
    for batch, labels in dg:
        np.testing.assert_array_equal(batch[:, 0], 3 * labels)
        seen += len(labels)
    assert seen == 104  # 101 and 3 oversampled


# ---------------------------------------------------------------------------
# csv


def test_csv_sample_dim_1(tmp_path):
    data = np.array([[1, 2], [3, 4], [5, 6]])  # 3 batches x 2 samples
    path = tmp_path / "labels.csv"
    table = numpy2D_to_csv(data, path, sample_dim=1)
    np.testing.assert_array_equal(table, [[1, 3, 5], [2, 4, 6]])
    assert _read_csv(path) == [["0", "1", "2"], ["1", "3", "5"], ["2", "4", "6"]]


def test_csv_of_bool_labels_reads_back(tmp_path):
    """Bool labels are written as 0/1, which the CSV reader takes."""
    from deeptrain.data.formats.csv import CSVFormat

    path = tmp_path / "b.csv"
    numpy2D_to_csv(np.array([[True, False, True], [False, True, True]]), path)
    assert _read_csv(path)[1:] == [["1", "0"], ["0", "1"], ["1", "1"]]
    np.testing.assert_array_equal(CSVFormat().load_entry(path, "1", None), [0, 1, 1])


def test_csv_sample_dim_0_rechunk_and_columns(tmp_path):
    data = np.array([[0.5, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]])  # 4 samples x 2
    path = tmp_path / "l.csv"
    numpy2D_to_csv(data, path, sample_dim=0, columns=["a", "b"])
    assert _read_csv(path) == [
        ["a", "b"],
        ["0.5", "1.0"],
        ["2.0", "3.0"],
        ["4.0", "5.0"],
        ["6.0", "7.0"],
    ]
    # re-chunk 2 batches of 4 -> 4 batches of 2 (batch-major order)
    table = numpy2D_to_csv(data, tmp_path / "r.csv", batch_size=2, sample_dim=0)
    assert table.shape == (2, 4)
    assert _read_csv(tmp_path / "r.csv") == [
        ["0", "1", "2", "3"],
        ["0.5", "4.0", "1.0", "5.0"],
        ["2.0", "6.0", "3.0", "7.0"],
    ]
    # sample_dim=1 + re-chunk: 16 batches x 16 -> 8 columns of 32
    labels = np.arange(256).reshape(16, 16)
    table = numpy2D_to_csv(labels, tmp_path / "t.csv", batch_size=32)
    assert table.shape == (32, 8)
    rows = _read_csv(tmp_path / "t.csv")
    assert rows[0] == [str(i) for i in range(8)] and len(rows) == 33
    for col in range(8):
        assert [int(r[col]) for r in rows[1:]] == list(range(32 * col, 32 * col + 32))


def test_csv_errors_and_overwrite(tmp_path):
    with pytest.raises(ValueError, match="`data` must be 2-D, got 1-D"):
        numpy2D_to_csv(np.arange(4))
    with pytest.raises(ValueError, match="`sample_dim` must be 0 or 1"):
        numpy2D_to_csv(np.zeros((2, 2)), sample_dim=2)
    with pytest.raises(ValueError, match="not a multiple of batch_size=3"):
        numpy2D_to_csv(np.zeros((2, 2)), batch_size=3)
    with pytest.raises(ValueError, match="`columns` must be a sequence of 2 names"):
        numpy2D_to_csv(np.zeros((2, 2)), columns=["a"])
    path = tmp_path / "l.csv"
    path.write_text("old")
    for ow in (None, False):
        with pytest.raises(FileExistsError, match="overwrite=True"):
            numpy2D_to_csv(np.ones((2, 2)), path, overwrite=ow)
        assert path.read_text() == "old"
    numpy2D_to_csv(np.ones((2, 2), dtype=int), path, overwrite=True)
    assert _read_csv(path) == [["0", "1"], ["1", "1"], ["1", "1"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.csv"]
    assert not any(tmp_path.glob(".*"))
