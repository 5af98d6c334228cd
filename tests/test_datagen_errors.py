"""Bad input: each raises at construction, naming the path or argument and what was expected."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest

from datafactory import write_dataset
from deeptrain import DataGenerator
from deeptrain.data import generator as generator_module
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


BOOL_ARGS = (
    "shuffle",
    "preload_labels",
    "drop_remainder",
    "shuffle_group_batches",
    "shuffle_group_samples",
)


@pytest.mark.parametrize("name", BOOL_ARGS)
def test_boolean_settings_must_be_bools(npy_dir, name):
    with pytest.raises(TypeError, match=f"{name} must be True or False, got 'no'"):
        DataGenerator(npy_dir, batch_size=8, **{name: "no"})
    with pytest.raises(ValueError, match=f"{name} must be True or False, got 2"):
        DataGenerator(npy_dir, batch_size=8, **{name: 2})
    for ok in (np.bool_(False), 0, 1):
        assert getattr(DataGenerator(npy_dir, batch_size=8, **{name: ok}), name) is bool(ok)


def test_set_nums_empty_or_not_a_list(npy_dir):
    with pytest.raises(ValueError, match=r"set_nums is empty; pass None"):
        DataGenerator(npy_dir, batch_size=8, set_nums=[])
    with pytest.raises(TypeError, match=r"set_nums must be a list .*got '12' \(one set num"):
        DataGenerator(npy_dir, batch_size=8, set_nums="12")
    with pytest.raises(TypeError, match=r"set_nums must be a list .*got 1.5 in \[1, 1.5\]"):
        DataGenerator(npy_dir, batch_size=8, set_nums=[1, 1.5])
    assert DataGenerator(npy_dir, batch_size=8, set_nums=(2, "1")).set_nums_original == [
        "2",
        "1",
    ]


def test_superbatch_set_nums_not_a_list(npy_dir):
    with pytest.raises(TypeError, match=r"superbatch_set_nums must be a list .*got 5"):
        DataGenerator(npy_dir, batch_size=8, superbatch_set_nums=5)
    with pytest.raises(ValueError, match=r"superbatch_set_nums has duplicates: \['1', '1'\]"):
        DataGenerator(npy_dir, batch_size=8, superbatch_set_nums=["1", 1])
    assert DataGenerator(npy_dir, batch_size=8, superbatch_set_nums=[]).superbatch == {}
    assert len(DataGenerator(npy_dir, batch_size=8, superbatch_set_nums="all").superbatch) == 6


def test_seed_must_be_none_or_a_non_negative_int(npy_dir):
    for bad, error in (("x", TypeError), (1.5, TypeError), (True, TypeError), (-1, ValueError)):
        with pytest.raises(error, match=f"seed must be None or an int >= 0, got {bad!r}"):
            DataGenerator(npy_dir, batch_size=8, seed=bad)
    dg = DataGenerator(npy_dir, batch_size=8, seed=np.int64(3))
    assert dg.seed == 3 and type(dg.seed) is int


@pytest.mark.parametrize(
    "name, bad, error, minimum",
    [
        ("prefetch", -5, ValueError, 0),
        ("prefetch", 1.5, TypeError, 0),
        ("prefetch", "2", TypeError, 0),
        ("prefetch_workers", 0, ValueError, 1),
        ("prefetch_workers", -1, ValueError, 1),
        ("prefetch_workers", "1", TypeError, 1),
        ("array_set_size", 0, ValueError, 1),
    ],
)
def test_prefetch_settings_must_be_ints(npy_dir, name, bad, error, minimum):
    with pytest.raises(error, match=f"{name} must be an int >= {minimum}, got {bad!r}"):
        DataGenerator(npy_dir, batch_size=8, **{name: bad})


def test_memmap_threshold_must_be_a_number_of_bytes(npy_dir):
    with pytest.raises(TypeError, match="memmap_threshold must be None or a number .*'x'"):
        DataGenerator(npy_dir, batch_size=8, memmap_threshold="x")
    with pytest.raises(ValueError, match="memmap_threshold must be None or a number .*-1"):
        DataGenerator(npy_dir, batch_size=8, memmap_threshold=-1)
    assert DataGenerator(npy_dir, batch_size=8, memmap_threshold=None).memmap_threshold is None


def test_preprocessor_configs_are_named(npy_dir):
    with pytest.raises(
        TypeError,
        match=r"preprocessor_configs=\{\} does not fit preprocessor='timeseries'.*window_size",
    ):
        DataGenerator(npy_dir, batch_size=8, preprocessor="timeseries")
    with pytest.raises(TypeError, match=r"preprocessor_configs=\{'bogus': 1\} does not fit"):
        DataGenerator(npy_dir, batch_size=8, preprocessor_configs={"bogus": 1})
    for bad in (["x"], "x"):
        with pytest.raises(
            TypeError, match=f"preprocessor_configs must be None or a dict.*{bad!r}"
        ):
            DataGenerator(
                npy_dir, batch_size=8, preprocessor="timeseries", preprocessor_configs=bad
            )


@pytest.mark.parametrize("name", ["loadskip_list", "saveskip_list"])
def test_skip_lists_name_state_dict_keys(npy_dir, name):
    for bad in ("rng", 5):
        with pytest.raises(TypeError, match=f"{name} must be a list of state_dict keys"):
            DataGenerator(npy_dir, batch_size=8, **{name: bad})
    with pytest.raises(ValueError, match=f"{name} names 'epochs'.*did you mean 'epoch'"):
        DataGenerator(npy_dir, batch_size=8, **{name: ["epochs"]})
    with pytest.raises(ValueError, match=f"{name} names 'bogus', which is not"):
        DataGenerator(npy_dir, batch_size=8, **{name: ["bogus"]})
    dg = DataGenerator(npy_dir, batch_size=8, **{name: ("rng", "superbatch")})  # 0.6's too
    assert getattr(dg, name) == ["rng", "superbatch"]
    assert set(dg.state_dict()) - {"format"} <= set(generator_module.STATE_KEYS)


def test_batch_size_beyond_the_data_set_warns(npy_dir, caplog):
    with caplog.at_level(logging.WARNING):
        dg = DataGenerator(npy_dir, batch_size=64)
    assert "batch_size=64 exceeds the 48 samples of data_path" in caplog.text
    assert len(dg) == 1 and dg.batch_sizes() == {48}
    with pytest.raises(ValueError, match="batch_size=64 exceeds .*drop_remainder=True"):
        DataGenerator(npy_dir, batch_size=64, drop_remainder=True)
