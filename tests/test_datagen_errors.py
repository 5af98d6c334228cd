"""Bad input: each raises at construction, naming the path or argument and what was expected."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest

from datafactory import write_dataset
from deeptrain import DataGenerator
from deeptrain.util.data_loaders import DataLoadError


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_path=.*nope"):
        DataGenerator(tmp_path / "nope")
    write_dataset(tmp_path / "d", n_files=2, labels=None)
    with pytest.raises(FileNotFoundError, match="labels_path=.*missing.h5"):
        DataGenerator(tmp_path / "d", labels_path=tmp_path / "missing.h5")


def test_empty_directory_and_no_supported_files(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".hidden").write_text("x")
    with pytest.raises(ValueError, match="empty directory"):
        DataGenerator(tmp_path / "empty")
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "a1.txt").write_text("x")
    with pytest.raises(ValueError, match=r"no supported files.*'\.txt'"):
        DataGenerator(tmp_path / "txt")


def test_files_without_numbers(tmp_path):
    np.save(tmp_path / "data.npy", np.zeros((2, 2)))
    np.save(tmp_path / "other.npy", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="contains a number"):
        DataGenerator(tmp_path)


def test_mixed_extensions_warn_with_the_rule(tmp_path, caplog):
    d = write_dataset(tmp_path, n_files=3, labels=None)
    with h5py.File(d / "extra_1.h5", "w") as f:
        f["x"] = np.zeros((8, 3))
    with caplog.at_level(logging.WARNING):
        dg = DataGenerator(d, batch_size=8)
    assert "several supported file types" in caplog.text and "most frequent" in caplog.text
    assert dg.data_loader.ext == ".npy" and len(dg) == 3


def test_batch_size_not_a_multiple_or_fraction(npy_dir):
    with pytest.raises(
        ValueError,
        match=r"batch_size=6 must be an integer multiple or an "
        r"integer fraction of the samples per file \(8\)",
    ):
        DataGenerator(npy_dir, batch_size=6)
    with pytest.raises(ValueError, match="batch_size must be"):
        DataGenerator(npy_dir, batch_size=0)


def test_unequal_file_sizes(tmp_path):
    d = write_dataset(tmp_path, n_files=3, labels=None)
    np.save(d / "batch__2.npy", np.zeros((5, 3), np.float32))
    with pytest.raises(ValueError, match=r"batch__2.npy \(set num 2\) holds 5 samples"):
        DataGenerator(d, batch_size=8)


def test_labels_count_mismatch(tmp_path):
    d = write_dataset(tmp_path, n_files=3)
    with h5py.File(d / "labels.h5", "a") as f:
        del f["2"]
        f["2"] = np.zeros(7)
    with pytest.raises(ValueError, match="labels of set num 2 .* 7 samples .* holds 8"):
        DataGenerator(d, batch_size=8, labels_path=d / "labels.h5")


def test_labels_missing_for_a_set_num(tmp_path):
    d = write_dataset(tmp_path, n_files=3)
    with h5py.File(d / "labels.h5", "a") as f:
        del f["3"]
    with pytest.raises(ValueError, match=r"no labels for set nums \['3'\]"):
        DataGenerator(d, batch_size=8, labels_path=d / "labels.h5")


def test_requested_set_nums_not_found(npy_dir):
    with pytest.raises(ValueError, match=r"set_nums \['9'\] not found"):
        DataGenerator(npy_dir, set_nums=[1, 9])
    with pytest.raises(ValueError, match=r"superbatch_set_nums \['7'\]"):
        DataGenerator(npy_dir, batch_size=8, superbatch_set_nums=[7])


def test_unknown_keyword_suggests_the_closest(npy_dir):
    with pytest.raises(
        TypeError, match="'shuffle_group_sample'.*did you mean 'shuffle_group_samples'"
    ):
        DataGenerator(npy_dir, shuffle_group_sample=True)


@pytest.mark.parametrize(
    "typo, meant",
    [("shufle", "shuffle"), ("label_path", "labels_path"), ("batchsize", "batch_size")],
)
def test_a_typo_of_an_explicit_parameter_suggests_it(npy_dir, typo, meant):
    with pytest.raises(TypeError, match=f"'{typo}'; did you mean '{meant}'"):
        DataGenerator(npy_dir, **{typo: True})


def test_preprocessor_must_subclass_preprocessor(npy_dir):
    class NotAPreprocessor:
        def process(self, batch, labels):
            return batch, labels

    for bad in (NotAPreprocessor(), NotAPreprocessor, "windows"):
        with pytest.raises(TypeError, match="Preprocessor subclass"):
            DataGenerator(npy_dir, batch_size=8, preprocessor=bad)


def test_unknown_loader_name(npy_dir):
    with pytest.raises(ValueError, match="unknown loader 'npz'"):
        DataGenerator(npy_dir, data_loader="npz")


def test_file_corrupted_after_construction_is_named_at_load(tmp_path):
    d = write_dataset(tmp_path, n_files=3, labels=None)
    dg = DataGenerator(d, batch_size=8, prefetch=0)
    np.save(d / "batch__2.npy", np.zeros((3, 3)))  # wrong size now
    dg.get()
    dg.update_state()
    with pytest.raises(DataLoadError, match=r"batch__2.npy \(set num 2\) holds 3 samples"):
        dg.get()
