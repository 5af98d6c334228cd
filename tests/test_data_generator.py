"""DataGenerator batching: exactly-once coverage, flexible batch size, shuffles, superbatch."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datafactory import run_epoch, sample_ids, write_dataset
from deeptrain import DataGenerator


def all_ids(n_files: int, file_size: int) -> list[int]:
    return [i for s in range(1, n_files + 1) for i in sample_ids(s, file_size)]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n_files=st.integers(1, 7),
    file_size=st.sampled_from([4, 8]),
    factor=st.sampled_from([0.25, 0.5, 1, 2, 4]),
    shuffle=st.booleans(),
    group=st.sampled_from(["none", "batches", "samples"]),
    superbatch=st.booleans(),
    prefetch=st.sampled_from([0, 2]),
    seed=st.integers(0, 3),
)
def test_every_sample_exactly_once_per_epoch(
    tmp_path_factory, n_files, file_size, factor, shuffle, group, superbatch, prefetch, seed
):
    d = write_dataset(tmp_path_factory.mktemp("d"), n_files=n_files, file_size=file_size)
    batch_size = int(file_size * factor)
    dg = DataGenerator(
        d,
        batch_size=batch_size,
        labels_path=d / "labels.h5",
        shuffle=shuffle,
        shuffle_group_batches=group == "batches",
        shuffle_group_samples=group == "samples",
        superbatch_set_nums="all" if superbatch else None,
        prefetch=prefetch,
        seed=seed,
    )
    for epoch in range(2):
        served = run_epoch(dg)
        ids = [i for _, x, _ in served for i in x]
        assert Counter(ids) == Counter(all_ids(n_files, file_size)), f"epoch {epoch}"
        assert all(x == y for _, x, y in served)  # labels travel with their samples
        assert len(served) == len(dg)
        # all batches full except possibly the last (combined files, n_files not divisible)
        assert all(len(x) == batch_size for _, x, _ in served[:-1])
        assert dg.epoch == epoch + 1


def test_split_names_and_no_remainder_leak_into_next_epoch(npy_dir):
    dg = DataGenerator(npy_dir, batch_size=4)
    names = [name for name, _, _ in run_epoch(dg)]
    assert names == [f"{s}-{c}" for s in "123456" for c in "ab"]
    # as in 0.6, the flag stays up after on_epoch_end until the next batch is loaded
    assert dg.all_data_exhausted is True and dg.set_nums_to_process == list("123456")
    assert [n for n, _, _ in run_epoch(dg)][0] == "1-a"  # the new epoch starts fresh


def test_epoch_end_fires_only_after_the_last_sub_batch(npy_dir):
    dg = DataGenerator(npy_dir, batch_size=2, set_nums=[5, 6])
    flags = []
    for _ in range(8):
        dg.get()
        dg.update_state()
        flags.append(dg.all_data_exhausted)
    assert flags == [False] * 7 + [True] and dg.set_name == "6-d"


def test_combined_files_and_short_final_batch(npy_dir):
    dg = DataGenerator(npy_dir, batch_size=32)  # 6 files of 8: 4 + 2
    served = run_epoch(dg)
    assert [n for n, _, _ in served] == ["1+2+3+4", "5+6"]
    assert [len(x) for _, x, _ in served] == [32, 16]
    dg = DataGenerator(npy_dir, batch_size=32, drop_remainder=True)
    assert [n for n, _, _ in run_epoch(dg)] == ["1+2+3+4"] and len(dg) == 1


def test_epochs_follow_each_other_without_warnings_or_extra_shuffles(npy_dir, caplog):
    dg = DataGenerator(npy_dir, batch_size=8, shuffle=True, seed=2)
    reference = np.random.default_rng(2)
    for _ in range(3):
        order = [str(i + 1) for i in reference.permutation(6)]
        assert [n for n, _, _ in run_epoch(dg)] == order  # one permutation per epoch
    assert not [r for r in caplog.records if r.name == "deeptrain.data_generator"]


def test_shuffle_is_seeded_per_epoch_and_reproducible(npy_dir):
    def orders(seed):
        dg = DataGenerator(npy_dir, batch_size=8, shuffle=True, seed=seed)
        return [[n for n, _, _ in run_epoch(dg)] for _ in range(3)]

    a, b = orders(1), orders(1)
    assert a == b
    assert len({tuple(o) for o in a}) > 1  # reshuffled between epochs
    assert a != orders(2)
    np.random.seed(5)
    first = DataGenerator(npy_dir, batch_size=8, shuffle=True).seed
    np.random.seed(5)
    assert DataGenerator(npy_dir, batch_size=8, shuffle=True).seed == first  # global seeding


def test_shuffle_group_batches_permutes_whole_sub_batches(npy_dir):
    dg = DataGenerator(npy_dir, batch_size=2, shuffle_group_batches=True, seed=3)
    served = run_epoch(dg)
    names = [n for n, _, _ in served]
    assert sorted(names) == sorted(f"{s}-{c}" for s in "123456" for c in "abcd")
    assert names != sorted(names)
    for name, ids, _ in served:  # a sub-batch keeps its samples, contiguous and in order
        s, part = name.split("-")
        start = int(s) * 1000 + "abcd".index(part) * 2
        assert ids == [start, start + 1]


def test_shuffle_group_samples_mixes_samples_across_sub_batches(npy_dir):
    dg = DataGenerator(npy_dir, batch_size=4, shuffle_group_samples=True, seed=0)
    served = run_epoch(dg)
    assert any(ids != sorted(ids) or ids[-1] - ids[0] != 3 for _, ids, _ in served)
    for name, ids, _ in served:
        assert {i // 1000 for i in ids} == {int(name.split("-")[0])}  # within its own file


def test_set_nums_selection_and_order(npy_dir):
    dg = DataGenerator(npy_dir, batch_size=8, set_nums=[4, "2", 6])
    assert [n for n, _, _ in run_epoch(dg)] == ["4", "2", "6"]


def test_queue_can_be_edited_live_even_with_prefetch(npy_dir):
    dg = DataGenerator(npy_dir, batch_size=8, labels_path=npy_dir / "labels.h5", prefetch=3)
    dg.get()
    dg.update_state()
    dg.set_nums_to_process = ["6", "6", "3"]  # skip and repeat, after loads were scheduled
    rest = run_epoch(dg)
    assert [(n, x[0]) for n, x, _ in rest] == [("6", 6000), ("6", 6000), ("3", 3000)]


def test_superbatch_holds_each_set_once_read_only_and_serves_views(npy_dir):
    dg = DataGenerator(npy_dir, batch_size=4, superbatch_set_nums=[1, 2])
    assert sorted(dg.superbatch) == ["1", "2"]
    x, _ = dg.get()
    assert np.shares_memory(x, dg.superbatch["1"])  # no copy per batch
    with pytest.raises(ValueError, match="read-only"):
        x[:] = 0  # an in-place edit would otherwise leak into the next epoch
    assert [n for n, _, _ in run_epoch(dg)][-1] == "6-b"  # other set nums come from disk


def test_superbatch_path_is_actually_used(tmp_path):
    disk = write_dataset(tmp_path / "disk", n_files=3, labels=None)
    ram = write_dataset(tmp_path / "ram", n_files=3, labels=None)
    for s in range(1, 4):  # distinguishable copy
        np.save(ram / f"batch__{s}.npy", -np.load(ram / f"batch__{s}.npy"))
    dg = DataGenerator(disk, batch_size=8, superbatch_path=ram)
    assert dg.superbatch_set_nums == ["1", "2", "3"]
    assert all(ids[0] < 0 for _, ids, _ in run_epoch(dg))


def test_timeseries_windows_through_the_datagen(tmp_path):
    d = write_dataset(tmp_path, n_files=2, file_size=4, timesteps=20, labels="h5")
    dg = DataGenerator(
        d,
        batch_size=4,
        labels_path=d / "labels.h5",
        preprocessor="timeseries",
        preprocessor_configs={"window_size": 4, "start_increments": [0, 2]},
    )
    shapes = [(dg.set_name, x.shape, dg.slice_idx) for x, _ in dg]
    assert shapes == [(s, (4, 4, 3), i) for s in "12" for i in range(5)]
    assert dg.preprocessor.start_increment == 2  # epoch 1
    assert sum(1 for _ in dg) == 2 * 4


def test_reading_never_writes_into_the_data_directory(tmp_path):
    d = write_dataset(tmp_path, n_files=4, labels="csv")
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in d.iterdir()}
    dg = DataGenerator(
        d, batch_size=4, labels_path=d / "labels.csv", shuffle=True, superbatch_set_nums="all"
    )
    for _ in range(2):
        run_epoch(dg)
    dg.load_state_dict(dg.state_dict())
    dg.close()
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in d.iterdir()}
    assert after == before
