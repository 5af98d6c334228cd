"""In-memory arrays (and memory maps) as DataGenerator data: served exactly as the same
samples in files are (batching, shuffles, preprocessors, state), without copies or threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from datafactory import batch_for, run_epoch, sample_ids, write_dataset
from deeptrain import DataGenerator
from deeptrain.util.preprocessors import TimeseriesPreprocessor

N_FILES, FILE_SIZE = 6, 8


def as_arrays(timesteps=None) -> tuple[np.ndarray, np.ndarray]:
    """The samples and labels ``write_dataset`` puts in files, as two arrays."""
    sets = range(1, N_FILES + 1)
    x = np.concatenate([batch_for(s, FILE_SIZE, timesteps=timesteps) for s in sets])
    return x, np.concatenate([sample_ids(s, FILE_SIZE) for s in sets])


@pytest.fixture
def files(tmp_path):
    return write_dataset(tmp_path / "data", n_files=N_FILES, file_size=FILE_SIZE)


def from_files(files, **kw) -> DataGenerator:
    return DataGenerator(files, labels_path=files / "labels.h5", **kw)


def from_arrays(**kw) -> DataGenerator:
    x, y = as_arrays()
    return DataGenerator(x, labels_path=y, array_set_size=FILE_SIZE, **kw)


@pytest.mark.parametrize(
    "kw",
    [
        dict(batch_size=8, shuffle=True),
        dict(batch_size=4, shuffle=True, shuffle_group_batches=True),  # files split
        dict(batch_size=16, shuffle=True, shuffle_group_samples=True),  # files combined
        dict(batch_size=None),
    ],
)
def test_an_array_is_served_as_the_same_samples_in_files(files, kw):
    on_disk, in_ram = from_files(files, seed=4, **kw), from_arrays(seed=4, **kw)
    assert len(in_ram) == len(on_disk)
    for _ in range(2):
        assert run_epoch(in_ram) == run_epoch(on_disk)


def test_set_size_defaults_to_batch_size_and_shuffle_draws_batches(files):
    x, y = as_arrays()
    dg = DataGenerator(x, batch_size=4, labels_path=y, shuffle=True, seed=0)
    assert dg.set_nums_original == [str(i) for i in range(1, 13)] and len(dg) == 12
    epochs = [run_epoch(dg) for _ in range(2)]
    for epoch in epochs:
        assert sorted(i for _, ids, _ in epoch for i in ids) == sorted(y.tolist())
        assert all(ids == labels for _, ids, labels in epoch)
    assert [e[0] for e in epochs[0]] != [e[0] for e in epochs[1]]  # reshuffled
    whole = DataGenerator(x, batch_size=None, labels_path=y)
    assert [len(ids) for _, ids, _ in run_epoch(whole)] == [len(x)]  # served as it is


def test_a_preprocessor_sees_the_same_batches(tmp_path):
    kw = dict(
        batch_size=8,
        preprocessor=TimeseriesPreprocessor,
        preprocessor_configs=dict(window_size=2),
        shuffle=True,
    )
    files = write_dataset(tmp_path / "ts", n_files=N_FILES, file_size=FILE_SIZE, timesteps=6)
    x, y = as_arrays(timesteps=6)
    on_disk = from_files(files, seed=1, **kw)
    in_ram = DataGenerator(x, labels_path=y, seed=1, **kw)
    for _ in range(2 * N_FILES * 3):
        (a, la), (b, lb) = in_ram.get(), on_disk.get()
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
        assert in_ram.set_name == on_disk.set_name and in_ram.slice_idx == on_disk.slice_idx
        in_ram.update_state(), on_disk.update_state()
        if in_ram.all_data_exhausted:
            assert on_disk.all_data_exhausted
            in_ram.on_epoch_end(), on_disk.on_epoch_end()


def test_state_dict_resumes_exactly_in_a_new_generator():
    dg = from_arrays(batch_size=4, shuffle=True, shuffle_group_samples=True, seed=7)
    for _ in range(5):
        dg.get()
        dg.update_state()
    state = dg.state_dict()
    resumed = from_arrays(batch_size=4, shuffle=True, shuffle_group_samples=True, seed=0)
    resumed.load_state_dict(state)
    for _ in range(2):
        assert run_epoch(resumed) == run_epoch(dg)


def test_no_threads_no_copies_and_the_users_array_stays_writable():
    x, y = as_arrays()
    before = threading.active_count()
    dg = DataGenerator(x, batch_size=8, labels_path=y, prefetch=2)
    batch, labels = dg.get()
    assert dg.prefetch == 0 and not dg._prefetcher.enabled
    assert threading.active_count() == before
    assert np.shares_memory(batch, x) and not batch.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        batch[0] = 0
    x[0] = -1  # the user's array is theirs
    assert x.flags.writeable and batch[0, 0] == -1


def test_a_memory_map_is_read_batch_by_batch(tmp_path):
    x, y = as_arrays()
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    dg = DataGenerator(mm, batch_size=8, labels_path=y, shuffle=True, seed=2)
    batch, _ = dg.get()
    assert type(batch) is np.ndarray and batch.flags.c_contiguous  # read in, this batch only
    assert run_epoch(dg)[1:] == run_epoch(from_arrays(batch_size=8, shuffle=True, seed=2))[1:]


def test_wrong_types_and_shapes_are_refused_naming_what_is_accepted(files):
    x, y = as_arrays()
    for bad in (x.tolist(), 3, {"x": x}):
        with pytest.raises(TypeError, match=r"data_path must be a path.*NumPy array.*got"):
            DataGenerator(bad)
    with pytest.raises(TypeError, match="numpy_data_to_numpy_sets, data_to_hdf5"):
        DataGenerator(x.tolist())
    with pytest.raises(TypeError, match="labels_path must be a path"):
        DataGenerator(x, labels_path=y.tolist())
    with pytest.raises(ValueError, match="47 labels but data_path 48 samples"):
        DataGenerator(x, labels_path=y[:-1])
    with pytest.raises(TypeError, match="only when data_path is one too"):
        DataGenerator(files, labels_path=y)
    with pytest.raises(ValueError, match="48 samples do not make whole sets of 10.*drop_remain"):
        DataGenerator(x, batch_size=10)
    kept = DataGenerator(x, batch_size=10, labels_path=y, drop_remainder=True)
    assert len(kept) == 4 and sum(len(ids) for _, ids, _ in run_epoch(kept)) == 40
    with pytest.raises(ValueError, match="takes no loader"):
        DataGenerator(x, data_loader="numpy")


@pytest.mark.slow
def test_a_run_on_arrays_resumes_exactly_from_a_checkpoint(tmp_path):
    from deeptrain import TrainGenerator
    from test_train_generator import classifier

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 160)
    x = (rng.normal(size=(160, 8)) + labels[:, None]).astype("float32")
    y = np.eye(2, dtype="float32")[labels]

    def run(epochs, **kw):
        dg = DataGenerator(x[:128], batch_size=16, labels_path=y[:128], shuffle=True, seed=1)
        vdg = DataGenerator(x[128:], batch_size=16, labels_path=y[128:])
        tg = TrainGenerator(
            classifier(), dg, vdg, epochs=epochs, iter_verbosity=0, plot_history_freq=None, **kw
        )
        tg.train()
        return tg

    reference = run(2)
    first = run(1, logs_dir=tmp_path / "logs", temp_checkpoint_freq={"batch": 3})
    (temp,) = (first.logdir / "checkpoints").glob("_temp_*")  # batch 6 of 8
    assert first.state.batches_fit == 8 and "6iters" in temp.name
    resumed = run(2, loadpath=temp)
    for a, b in zip(resumed.model.get_weights(), reference.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert resumed.history == reference.history
