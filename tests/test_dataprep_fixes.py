"""Data-preparation fixes: numpy sets committed all or none, DeepTrain 0.6's builder
behaviours (extensions, ``load_fn`` signatures, 1-D labels), caches that notice a replaced
file, and errors that name the problem. Real files in tmp_path."""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from deeptrain import DataGenerator
from deeptrain.preprocessing import (
    data_to_hdf5,
    numpy2D_to_csv,
    numpy_data_to_numpy_sets,
    numpy_to_lz4f,
)
from deeptrain.util import files
from deeptrain.util.data_loaders import DataLoadError
from test_preprocessing import _data, _listing, _read_h5, _read_labels

BUILDERS_LOG = "deeptrain.data.builders"


# -- (1) numpy sets: all files committed together, or none -----------------------------------
def _old_set(directory: Path) -> dict[str, bytes]:
    """Write a 4-batch set (labels = first feature) and return the directory's bytes."""
    data, labels = _data(n=32, dim=2)
    numpy_data_to_numpy_sets(data, labels, directory, batch_size=8, shuffle=False, verbose=0)
    return _listing(directory)


def _overwrite(directory: Path) -> None:
    data, labels = _data(n=32, dim=2)
    numpy_data_to_numpy_sets(
        data + 1000, labels + 1000, directory, batch_size=8, shuffle=False, overwrite=True
    )


def _fail_on_move(monkeypatch, k: int, error: BaseException) -> None:
    """Make the ``k``-th move of a new file into place (os.replace of a ``.tmp``) raise."""
    real, moves = os.replace, []

    def replace(src, dst, **kw):
        if str(src).endswith(".tmp"):
            moves.append(dst)
            if len(moves) == k:
                raise error
        return real(src, dst, **kw)

    monkeypatch.setattr(files.os, "replace", replace)


@pytest.mark.parametrize("k", [2, 3, 5])  # after labels.h5 / batch files went in (old order)
@pytest.mark.parametrize(
    "error", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()]
)
def test_numpy_sets_failed_commit_leaves_the_directory_as_before(tmp_path, monkeypatch, k, error):
    before = _old_set(tmp_path)
    _fail_on_move(monkeypatch, k, error)
    with pytest.raises(type(error)):
        _overwrite(tmp_path)
    assert _listing(tmp_path) == before  # same names (no temp, no backup), same bytes


def test_numpy_sets_failed_fsync_replaces_nothing(tmp_path, monkeypatch):
    before = _old_set(tmp_path)
    real, synced = files.fsync_path, []

    def fsync_path(path):
        if not Path(path).is_dir():
            synced.append(path)
            if len(synced) == 3:
                raise OSError(errno.EIO, "Input/output error")
        real(path)

    monkeypatch.setattr(files, "fsync_path", fsync_path)
    with pytest.raises(OSError, match="Input/output"):
        _overwrite(tmp_path)
    assert _listing(tmp_path) == before


def test_numpy_sets_failed_commit_without_hard_links_and_into_a_fresh_dir(tmp_path, monkeypatch):
    before = _old_set(tmp_path)

    def no_link(*args, **kw):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(files.os, "link", no_link)  # backups by rename instead
    _fail_on_move(monkeypatch, 4, OSError(errno.EIO, "Input/output error"))
    with pytest.raises(OSError):
        _overwrite(tmp_path)
    assert _listing(tmp_path) == before
    _fail_on_move(monkeypatch, 2, OSError(errno.EIO, "Input/output error"))
    with pytest.raises(OSError):
        _overwrite(tmp_path / "fresh")
    assert _listing(tmp_path / "fresh") == {}


@pytest.mark.parametrize("hard_links", [True, False])
def test_numpy_sets_failed_removal_of_an_older_sets_extra_files_restores_all(
    tmp_path, monkeypatch, hard_links
):
    """A shorter set replacing a longer one removes the older set's extra files in the
    same commit: a failure removing the last one puts back the ones removed before it and
    the files the new set replaced."""
    before = _old_set(tmp_path)  # 4 batches
    if not hard_links:
        monkeypatch.setattr(files.os, "link", lambda *a, **kw: _raise(errno.EPERM))
    real_unlink, real_replace = Path.unlink, os.replace

    def unlink(path, missing_ok=False):
        if path.name == "batch__4.npy":
            raise OSError(errno.EIO, "Input/output error")
        return real_unlink(path, missing_ok=missing_ok)

    def replace(src, dst, **kw):  # (without hard links the backup is a rename)
        if Path(src).name == "batch__4.npy":
            raise OSError(errno.EIO, "Input/output error")
        return real_replace(src, dst, **kw)

    monkeypatch.setattr(Path, "unlink", unlink)
    monkeypatch.setattr(files.os, "replace", replace)
    data, labels = _data(n=32, dim=2)
    with pytest.raises(OSError, match="Input/output"):
        numpy_data_to_numpy_sets(data, labels, tmp_path, batch_size=16, overwrite=True)
    assert _listing(tmp_path) == before


def _raise(code: int):
    raise OSError(code, os.strerror(code))


def test_numpy_sets_overwrite_commits_every_file_and_leaves_no_backup(tmp_path):
    _old_set(tmp_path)
    _overwrite(tmp_path)
    assert sorted(_listing(tmp_path)) == [f"batch__{k}.npy" for k in range(1, 5)] + ["labels.h5"]
    labels = _read_labels(tmp_path / "labels.h5")
    for k in range(1, 5):
        np.testing.assert_array_equal(np.load(tmp_path / f"batch__{k}.npy")[:, :1], labels[str(k)])
        assert labels[str(k)].min() >= 1000


# -- (2) DeepTrain 0.6's builder behaviours --------------------------------------------------
def test_savepaths_without_extension_get_the_06_extension(tmp_path, caplog):
    x = np.arange(8, dtype=np.float32).reshape(8, 1)
    with caplog.at_level(logging.WARNING, logger=BUILDERS_LOG):
        data_to_hdf5(str(tmp_path / "data"), 4, data=x, verbose=0)
        numpy_to_lz4f(x, str(tmp_path / "batch__1"))
    assert sorted(_listing(tmp_path)) == ["batch__1.npy", "data.h5"]
    assert "no '.h5' extension" in caplog.text and "no '.npy' extension" in caplog.text
    np.testing.assert_array_equal(_read_h5(tmp_path / "data.h5")["1"], x[4:])
    data_to_hdf5(tmp_path / "d.hdf5", 4, data=x, verbose=0)  # an HDF5 extension is kept
    assert (tmp_path / "d.hdf5").is_file()


def _source_dir(directory: Path, ext: str) -> np.ndarray:
    """Two files of 4 samples each, saved as ``.npy`` or text; returns all 8 samples."""
    directory.mkdir()
    x = np.arange(8, dtype=np.float64).reshape(8, 1)
    for i in range(2):
        if ext == ".npy":
            np.save(directory / f"{i}.npy", x[4 * i : 4 * i + 4])
        else:
            np.savetxt(directory / f"{i}{ext}", x[4 * i : 4 * i + 4])
    return x


def test_load_fn_takes_06s_paths_and_index(tmp_path):
    x = _source_dir(tmp_path / "src", ".npy")
    data_to_hdf5(
        tmp_path / "b.h5", 4, loaddir=tmp_path / "src", load_fn=lambda p, j: np.load(p[j]) * 2
    )
    out = _read_h5(tmp_path / "b.h5")
    np.testing.assert_array_equal(np.concatenate([out["0"], out["1"]]), x * 2)
    with pytest.raises(TypeError, match="must take one argument, a path"):
        data_to_hdf5(tmp_path / "c.h5", 4, loaddir=tmp_path / "src", load_fn=lambda a, b, c: a)


def test_load_fn_reads_files_other_than_npy(tmp_path):
    x = _source_dir(tmp_path / "src", ".txt")
    with pytest.raises(ValueError, match="no .npy files.*load_fn"):
        data_to_hdf5(tmp_path / "a.h5", 4, loaddir=tmp_path / "src")
    load = lambda p: np.loadtxt(p).reshape(-1, 1)  # noqa: E731
    data_to_hdf5(tmp_path / "b.h5", 4, loaddir=tmp_path / "src", load_fn=load)
    out = _read_h5(tmp_path / "b.h5")
    np.testing.assert_array_equal(np.concatenate([out["0"], out["1"]]), x)


def test_1d_labels_are_saved_and_served_as_06s_column(tmp_path):
    x, y = np.arange(8.0).reshape(8, 1), np.arange(8.0)
    _, lb = numpy_data_to_numpy_sets(x, y, tmp_path, batch_size=4, shuffle=False, verbose=0)
    assert lb.shape == (2, 4, 1) and _read_labels(tmp_path / "labels.h5")["1"].shape == (4, 1)
    np.testing.assert_array_equal(lb[..., 0], y.reshape(2, 4))  # the 0.6 idiom
    dg = DataGenerator(tmp_path, batch_size=4, labels_path=tmp_path / "labels.h5")
    for batch, labels in dg:
        assert labels.shape == (4, 1)
        np.testing.assert_array_equal(batch, labels)


# -- (3) caches notice a file replaced with the same mtime -----------------------------------
def _replace_keeping_mtime(src: Path, dst: Path, mtime_of: Path) -> None:
    """Copy ``src`` over ``dst`` as ``cp -p`` does, with ``mtime_of``'s times."""
    st = mtime_of.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    shutil.copy2(src, dst)
    assert dst.stat().st_mtime_ns == st.st_mtime_ns


def test_csv_labels_replaced_with_the_same_mtime_are_reread(tmp_path):
    d = tmp_path / "data"
    numpy_data_to_numpy_sets(np.zeros((8, 1)), np.zeros((8, 1)), d, batch_size=4, verbose=0)
    a, b, lab = tmp_path / "a.csv", tmp_path / "b.csv", d / "labels.csv"
    numpy2D_to_csv(np.zeros((2, 4), int), a, columns=["1", "2"])
    numpy2D_to_csv(np.ones((2, 4), int), b, columns=["1", "2"])
    shutil.copy2(a, lab)
    assert DataGenerator(d, batch_size=4, labels_path=lab).all_labels["1"].tolist() == [0] * 4
    _replace_keeping_mtime(b, lab, mtime_of=lab)
    assert DataGenerator(d, batch_size=4, labels_path=lab).all_labels["1"].tolist() == [1] * 4


def test_lz4_dataset_replaced_with_the_same_mtime_is_reread(tmp_path):
    a, b, path = tmp_path / "a.npy", tmp_path / "b.npy", tmp_path / "data" / "all.npy"
    path.parent.mkdir()
    numpy_to_lz4f(np.full((2, 4, 1), 2, np.float32), a)
    numpy_to_lz4f(np.full((2, 4, 1), 3, np.float32), b)
    assert a.stat().st_size == b.stat().st_size
    kw = dict(batch_size=4, data_loader="numpy-lz4f", data_dtype="float32", data_batch_shape=(4, 1))
    shutil.copy2(a, path)
    assert next(iter(DataGenerator(path, **kw)))[0].max() == 2
    _replace_keeping_mtime(b, path, mtime_of=path)
    assert next(iter(DataGenerator(path, **kw)))[0].min() == 3


# -- (4) errors that name the problem ---------------------------------------------------------
def test_empty_hdf5_dataset_is_named(tmp_path):
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f.create_dataset("0", data=h5py.Empty("f4"))
        f["1"] = np.zeros((4, 2))
    with pytest.raises(DataLoadError, match=r"dataset '0' is empty \(an HDF5 null dataspace"):
        DataGenerator(tmp_path / "data.h5", batch_size=4)


def test_hdf5_key_of_non_ascii_digits_is_not_a_set_num(tmp_path):
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["0"] = np.zeros((4, 2))
        f["\u00b2"] = np.ones((4, 2))  # '²'.isdigit() is True, int('²') fails
    dg = DataGenerator(tmp_path / "data.h5", batch_size=4)
    assert dg.set_nums_original == ["0"]


def test_1d_npy_dataset_file_is_named(tmp_path):
    np.save(tmp_path / "data.npy", np.arange(4.0))
    with pytest.raises(DataLoadError, match=r"shape \(4,\); .* must be \(batches, samples"):
        DataGenerator(tmp_path / "data.npy", batch_size=4)


@pytest.mark.parametrize("labels", [np.array(list("abcd")), np.arange(4).astype("M8[s]")])
def test_builders_name_the_argument_and_dtype_they_cannot_store(tmp_path, labels):
    x, dtype = np.zeros((4, 1)), re.escape(str(labels.dtype))
    with pytest.raises(TypeError, match=rf"`labels` has dtype {dtype}.*convert it to"):
        numpy_data_to_numpy_sets(x, labels, tmp_path / "sets", batch_size=2)
    with pytest.raises(TypeError, match=rf"`data` has dtype {dtype}.*HDF5"):
        data_to_hdf5(tmp_path / "d.h5", 2, data=labels)
    with pytest.raises(TypeError, match=rf"`data` has dtype {dtype}.*CSV"):
        numpy2D_to_csv(labels.reshape(2, 2), tmp_path / "l.csv")
    assert _listing(tmp_path) == {}


def test_fewer_samples_than_batch_size_says_no_batch_can_be_formed():
    with pytest.raises(ValueError, match="fewer than one set of 4.*no batch can be formed") as e:
        DataGenerator(np.zeros((3, 2)), batch_size=4, labels_path=np.zeros(3), drop_remainder=True)
    assert "drop_remainder" not in str(e.value)
