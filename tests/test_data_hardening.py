"""Data hardening: a failed load changes nothing (a retry serves the right data), malformed
or non-regular data files are refused at construction naming the file, lz4 frames cannot
take more memory than their data, and HDF5 files that read other files are refused."""

from __future__ import annotations

import copy
import os
import threading
from contextlib import contextmanager
from pathlib import Path

import h5py
import lz4.frame
import numpy as np
import pytest

from datafactory import batch_for, ids_of, sample_ids, write_dataset
from deeptrain import DataGenerator
from deeptrain.util.data_loaders import DataLoadError


# -- (1) a retry after a failed load never serves stale data ---------------------------------
def make_dg(d: Path, prefetch: int, **kw) -> DataGenerator:
    labels = kw.pop("labels_path", d / "labels.h5")
    dg = DataGenerator(d, labels_path=labels, prefetch=prefetch, seed=5, **kw)
    dg._prefetcher.inline_below = 0.0  # load in the background, whatever the loop's speed
    return dg


def snapshot(dg: DataGenerator) -> tuple:
    """Everything a failed call must leave as it was."""
    batch = ids_of(dg.batch) if len(dg.batch) else []
    return (
        dg.state_dict(),
        list(dg.set_nums_to_process),
        dg.set_name,
        dg.set_num,
        dg.batch_loaded,
        dg.batch_exhausted,
        dg.all_data_exhausted,
        dg.slice_idx,
        batch,
        [int(v) for v in np.ravel(dg.labels)],
        dg._group,
    )


def step(dg: DataGenerator) -> tuple[str, list[int], list[int]]:
    x, y = dg.get()
    served = (dg.set_name, ids_of(x), [int(v) for v in np.ravel(y)])
    dg.update_state()
    if dg.all_data_exhausted:
        dg.on_epoch_end()
    return served


def serve(dg: DataGenerator, n_epochs: int = 2, outage: tuple[Path, Path] | None = None) -> list:
    """``n_epochs`` of (set name, sample ids, label ids). With ``outage`` = (path, moved to):
    a get() that fails must name the file and change nothing; the file is then moved back
    and get() called again."""
    served, failures = [], 0
    while dg.epoch < n_epochs:
        before = snapshot(dg)
        try:
            served.append(step(dg))
        except DataLoadError as e:
            assert outage is not None and outage[0].name in str(e), e
            assert snapshot(dg) == before
            os.rename(outage[1], outage[0])
            failures += 1
    assert failures == (outage is not None)
    return served


def move_away(path: Path) -> tuple[Path, Path]:
    away = path.with_name(path.name + ".away")
    os.rename(path, away)
    return path, away


CONFIGS = {
    "one file per batch": dict(batch_size=8),
    "split files": dict(batch_size=4, shuffle_group_batches=True),
    "combined files": dict(batch_size=16, shuffle_group_samples=True),
    "superbatch": dict(batch_size=8, superbatch_set_nums=[1, 2, 3]),
}


@pytest.mark.parametrize("prefetch", [0, 2])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_file_missing_mid_epoch_then_back_serves_the_uninterrupted_sequence(
    tmp_path, config, prefetch
):
    d = write_dataset(tmp_path / "d", n_files=7, file_size=8)
    kw = dict(CONFIGS[config], shuffle=True)
    reference = serve(make_dg(d, prefetch, **kw))
    dg = make_dg(d, prefetch, **kw)
    # the 5th file of the epoch (beyond the prefetch window) goes missing; with prefetch on,
    # its background load fails, then the fresh load in get() fails too: that error is raised
    victim = next(s for s in dg.set_nums_to_process[4:] if s not in dg.superbatch)
    assert serve(dg, outage=move_away(d / f"batch__{victim}.npy")) == reference


@pytest.mark.parametrize("prefetch", [0, 2])
def test_one_of_combined_files_missing(tmp_path, prefetch):
    """batch_size = 3 files: the group's 1st file loads, its 2nd is missing."""
    d = write_dataset(tmp_path / "d", n_files=7, file_size=8)
    reference = serve(make_dg(d, prefetch, batch_size=24))
    dg = make_dg(d, prefetch, batch_size=24)
    assert serve(dg, outage=move_away(d / "batch__5.npy")) == reference  # group 4+5+6


@pytest.mark.parametrize("prefetch", [0, 2])
def test_labels_file_of_a_superbatch_set_num_missing(tmp_path, prefetch):
    d = write_dataset(tmp_path / "d", n_files=5, file_size=8, labels="dir")
    kw = dict(batch_size=8, labels_path=d / "labels", superbatch_set_nums="all")
    reference = serve(make_dg(d, prefetch, **kw))
    dg = make_dg(d, prefetch, **kw)
    assert serve(dg, outage=move_away(d / "labels" / "labels_3.npy")) == reference


@pytest.mark.parametrize("prefetch", [0, 2])
def test_advance_batch_failure_changes_nothing(tmp_path, prefetch):
    d = write_dataset(tmp_path / "d", n_files=4, file_size=8)
    kw = dict(batch_size=4, shuffle=True, shuffle_group_samples=True)
    reference = make_dg(d, prefetch, **kw)
    for _ in range(4):  # the first two files used up
        step(reference)
    reference.advance_batch()
    dg = make_dg(d, prefetch, **kw)
    victim = d / f"batch__{dg.set_nums_to_process[2]}.npy"  # beyond the prefetch window
    moved = move_away(victim)
    for _ in range(4):
        step(dg)
    before = snapshot(dg)
    with pytest.raises(DataLoadError, match=victim.name):
        dg.advance_batch()
    assert snapshot(dg) == before
    os.rename(moved[1], moved[0])
    dg.advance_batch()
    assert snapshot(dg) == snapshot(reference)


def test_get_after_the_epochs_end_failure_changes_nothing(tmp_path):
    """get() without on_epoch_end() starts the next epoch's data; failing, it leaves the
    finished epoch as it was."""
    d = write_dataset(tmp_path / "d", n_files=3, file_size=8)
    dg = make_dg(d, 0, batch_size=8, shuffle=True)
    for _ in range(3):
        dg.get()
        dg.update_state()
    assert dg.all_data_exhausted
    before = snapshot(dg)
    first = d / f"batch__{copy.deepcopy(dg._rng).permutation(3)[0] + 1}.npy"  # next epoch's 1st
    moved = move_away(first)
    with pytest.raises(DataLoadError, match=first.name):
        dg.get()
    assert snapshot(dg) == before
    os.rename(moved[1], moved[0])
    dg.get()
    assert dg.set_name == first.stem.split("__")[1] and dg.epoch == 0


@contextmanager
def prefetch_worker_held(dg: DataGenerator):
    """Hold the (single) prefetch worker: loads scheduled meanwhile run after the block."""
    for _, future in list(dg._prefetcher._pending):
        future.result()  # what was scheduled before loads now, before the hold
    release = threading.Event()
    dg._prefetcher._ensure_executor().submit(release.wait)
    try:
        yield
    finally:
        release.set()


def test_background_load_failed_while_the_file_was_briefly_missing_is_not_replayed(tmp_path):
    d = write_dataset(tmp_path / "d", n_files=6, file_size=8)
    reference = serve(make_dg(d, 2, batch_size=8))
    dg = make_dg(d, 2, batch_size=8)
    served = [step(dg)]  # serves 1, schedules 2 and 3
    with prefetch_worker_held(dg):
        served.append(step(dg))  # serves 2, schedules 3 (kept) and 4: waits behind the hold
        assert [k for k, _ in dg._prefetcher._pending] == ["3", "4"]
        moved = move_away(d / "batch__4.npy")  # removed after 4 was scheduled
    future = dict(dg._prefetcher._pending)["4"]
    assert isinstance(future.exception(), DataLoadError)  # its background load failed
    os.rename(moved[1], moved[0])  # back before it is needed
    served += serve(dg)
    assert served == reference


@pytest.mark.parametrize("mid_batch", [False, True])
def test_load_state_dict_failure_changes_nothing(tmp_path, mid_batch):
    d = write_dataset(tmp_path / "d", n_files=5, file_size=8, timesteps=8)
    kw = (
        dict(batch_size=8, preprocessor="timeseries", preprocessor_configs={"window_size": 4})
        if mid_batch
        else dict(batch_size=4, shuffle_group_samples=True)
    )
    kw.update(shuffle=True)
    saved_from = make_dg(d, 2, **kw)
    for _ in range(3):
        step(saved_from)
    state = saved_from.state_dict()
    assert state["group"]["next_batch"] > 0  # the group's files are loaded again
    assert state["preprocessor"]["batch_loaded"] == mid_batch  # and a batch served again
    victim = d / f"batch__{state['group']['set_nums'][0]}.npy"
    rest = serve(saved_from, n_epochs=2)

    dg = make_dg(d, 0, **kw)  # no prefetch: the victim cannot have been read before it left
    step(dg)
    before = snapshot(dg)
    moved = move_away(victim)
    with pytest.raises(DataLoadError, match=victim.name):
        dg.load_state_dict(state)
    assert snapshot(dg) == before
    os.rename(moved[1], moved[0])
    dg.load_state_dict(state)
    assert serve(dg, n_epochs=2) == rest


# -- (8) malformed data is caught at construction, naming the file ---------------------------
def make_directory(p: Path) -> None:
    p.mkdir()


def make_fifo(p: Path) -> None:
    os.mkfifo(p)


def make_broken_symlink(p: Path) -> None:
    os.symlink(p.parent / "nowhere.npy", p)


def make_symlink_loop(p: Path) -> None:
    os.symlink(p.name, p)  # points at itself


@pytest.mark.parametrize(
    "make, kind",
    [
        (make_directory, "a directory"),
        (make_fifo, "a FIFO"),
        (make_broken_symlink, "a broken symlink"),
        (make_symlink_loop, "a symlink loop"),
    ],
)
def test_entry_named_like_a_data_file_but_not_a_regular_file_is_refused(tmp_path, make, kind):
    d = write_dataset(tmp_path / "d", n_files=4, file_size=8)
    (d / "batch__3.npy").unlink()
    make(d / "batch__3.npy")
    with pytest.raises(ValueError, match=rf"batch__3\.npy.* is {kind}"):
        DataGenerator(d, batch_size=8)
    # in a labels directory too
    d = write_dataset(tmp_path / "l", n_files=4, file_size=8, labels="dir")
    (d / "labels" / "labels_2.npy").unlink()
    make(d / "labels" / "labels_2.npy")
    with pytest.raises(ValueError, match=rf"labels_path: .*labels_2\.npy.* is {kind}"):
        DataGenerator(d, batch_size=8, labels_path=d / "labels")


def test_symlink_to_a_regular_file_is_read(tmp_path):
    d = write_dataset(tmp_path / "d", n_files=3, file_size=8, labels=None)
    os.rename(d / "batch__2.npy", tmp_path / "elsewhere.npy")
    os.symlink(tmp_path / "elsewhere.npy", d / "batch__2.npy")
    dg = DataGenerator(d, batch_size=8, prefetch=0)
    assert [ids for _, ids, _ in serve(dg, n_epochs=1)] == [
        list(sample_ids(s, 8)) for s in (1, 2, 3)
    ]


def rewrite(path: Path, array: np.ndarray) -> None:
    if path.suffix == ".npy":
        np.save(path, array)
    else:
        with h5py.File(path, "w") as f:
            f["data"] = array


@pytest.mark.parametrize("fmt", ["npy", "h5"])
@pytest.mark.parametrize("odd", ["shape", "dtype"])
def test_file_with_other_samples_refused_at_construction(tmp_path, fmt, odd):
    d = write_dataset(tmp_path / "d", n_files=4, file_size=8, fmt=fmt, labels=None)
    other = batch_for(3, 8, n_features=4) if odd == "shape" else batch_for(3, 8, dtype=np.float64)
    rewrite(d / f"batch__3.{fmt}", other)
    expected = r"\(4,\) and dtype float32" if odd == "shape" else r"\(3,\) and dtype float64"
    with pytest.raises(
        ValueError,
        match=rf"batch__3\.{fmt} \(set num 3\) holds samples of "
        rf"shape {expected}, but .*batch__1\.{fmt}",
    ):
        DataGenerator(d, batch_size=8)


def test_dataset_mode_entry_and_labels_with_other_samples_refused(tmp_path):
    d = write_dataset(tmp_path / "d", n_files=4, file_size=8, fmt="h5-dataset")
    with h5py.File(d / "data.h5", "a") as f:
        del f["2"]
        f["2"] = batch_for(2, 8)[:, :2]
    with pytest.raises(ValueError, match=r"data\.h5 \(set num 2\) holds samples of shape \(2,\)"):
        DataGenerator(d / "data.h5", batch_size=8)
    d = write_dataset(tmp_path / "e", n_files=4, file_size=8)
    with h5py.File(d / "labels.h5", "a") as f:  # preloaded labels
        del f["4"]
        f["4"] = sample_ids(4, 8).astype(np.int32)
    with pytest.raises(
        ValueError,
        match=r"labels\.h5 \(set num 4\) holds samples of shape \(\) "
        r"and dtype int32.*int64.*labels_path",
    ):
        DataGenerator(d, batch_size=8, labels_path=d / "labels.h5")
    d = write_dataset(tmp_path / "f", n_files=4, file_size=8, labels="dir")
    np.save(d / "labels" / "labels_3.npy", np.stack([sample_ids(3, 8)] * 2, axis=1))
    with pytest.raises(
        ValueError,
        match=r"labels_3\.npy \(set num 3\) holds samples of shape "
        r"\(2,\)",
    ):
        DataGenerator(d, batch_size=8, labels_path=d / "labels")


def expect_load_failure(dg: DataGenerator, name: str, n_ok: int) -> None:
    """``n_ok`` batches are served, then get() fails naming ``name`` and changes nothing."""
    for _ in range(n_ok):
        step(dg)
    before = snapshot(dg)
    with pytest.raises(DataLoadError, match=name):
        dg.get()
    assert snapshot(dg) == before


def write_csv_batch(directory: Path, set_num: int, n_features: int) -> None:
    """``b_<set_num>.csv``: a batch of 8 samples of ``n_features`` with a header row."""
    np.savetxt(
        directory / f"b_{set_num}.csv",
        batch_for(set_num, 8, n_features=n_features),
        delimiter=",",
        header=",".join(f"f{i}" for i in range(n_features)),
        comments="",
    )


def test_samples_checked_at_load_where_headers_are_not_cheap(tmp_path):
    d = write_dataset(tmp_path / "d", n_files=4, file_size=8, labels=None)

    def loader(self, set_num):  # a custom loader: nothing to check before loading
        x = np.load(self._path(set_num))
        return x[:, :2] if set_num == "3" else x

    expect_load_failure(
        DataGenerator(d, batch_size=8, data_loader=loader, prefetch=0),
        r"batch__3\.npy \(set num 3\) holds samples of shape \(2,\) and dtype "
        r"float32, but .*batch__1\.npy \(set num 1\) \(the first file loaded\) "
        r"holds samples of shape \(3,\)",
        n_ok=2,
    )
    # csv files: a table with an extra column
    c = tmp_path / "c"
    c.mkdir()
    for s in range(1, 4):
        write_csv_batch(c, s, 3 if s == 2 else 2)
    expect_load_failure(
        DataGenerator(c, batch_size=8, prefetch=2), r"b_2\.csv \(set num 2\)", n_ok=1
    )


def test_a_bad_first_file_once_fixed_no_longer_fails_the_others(tmp_path):
    """Formats without headers are checked against the first file loaded; when that file
    is the bad one, the error names it beside the good one, and once it is rewritten the
    next get() loads on (the reference is not stuck to its old samples)."""
    c = tmp_path / "c"
    c.mkdir()
    for s in range(1, 4):
        write_csv_batch(c, s, 3 if s == 1 else 2)  # the first file loaded is the odd one
    dg = DataGenerator(c, batch_size=8, prefetch=0)
    expect_load_failure(dg, r"b_2\.csv \(set num 2\).*b_1\.csv", n_ok=1)
    write_csv_batch(c, 1, 2)
    served = []
    for _ in range(2):
        x, _ = dg.get()
        dg.update_state()
        served.append(x.shape)
    assert served == [(8, 2), (8, 2)]


def test_file_replaced_after_construction_is_checked_at_load(tmp_path):
    d = write_dataset(tmp_path / "d", n_files=4, file_size=8, fmt="h5")
    dg = DataGenerator(d, batch_size=8, labels_path=d / "labels.h5", prefetch=0)
    rewrite(d / "batch__2.h5", batch_for(2, 8, dtype=np.float16))
    expect_load_failure(
        dg,
        r"batch__2\.h5 \(set num 2\) holds samples of shape \(3,\) and "
        r"dtype float16",
        n_ok=1,
    )


# -- lz4 frames cannot take more memory than their data --------------------------------------
def xxh32(data: bytes, seed: int = 0) -> int:
    """xxHash32 of a short input (< 16 bytes), for lz4 frame header checksums."""
    p1, p2, p3, p4, p5, mask = 2654435761, 2246822519, 3266489917, 668265263, 374761393, 2**32 - 1
    assert len(data) < 16

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & mask

    h = (seed + p5 + len(data)) & mask
    i = 0
    while i + 4 <= len(data):
        h = (rotl((h + int.from_bytes(data[i : i + 4], "little") * p3) & mask, 17) * p4) & mask
        i += 4
    for byte in data[i:]:
        h = (rotl((h + byte * p5) & mask, 11) * p1) & mask
    h ^= h >> 15
    h = (h * p2) & mask
    h ^= h >> 13
    h = (h * p3) & mask
    return h ^ (h >> 16)


def frame_declaring(data: bytes, content_size: int) -> bytes:
    """An lz4 frame of ``data`` whose header declares ``content_size`` bytes."""
    plain = lz4.frame.compress(data, store_size=False)
    magic, flg, bd = plain[:4], plain[4] | 0x08, plain[5]  # 0x08: a content size follows
    descriptor = bytes([flg, bd]) + content_size.to_bytes(8, "little")
    return magic + descriptor + bytes([(xxh32(descriptor) >> 8) & 0xFF]) + plain[7:]


def test_frame_builder_matches_lz4():
    data = batch_for(1, 8).tobytes()
    assert frame_declaring(data, len(data)) == lz4.frame.compress(data, store_size=True)
    assert lz4.frame.get_frame_info(frame_declaring(data, 2**42))["content_size"] == 2**42


def save_frame(path: Path, frame: bytes) -> None:
    np.save(path, np.frombuffer(frame, np.uint8))


LZ4_KW = dict(
    batch_size=8,
    data_loader="numpy-lz4f",
    data_dtype="float32",
    data_batch_shape=(8, 3),
    prefetch=0,
)


def test_lz4_file_declaring_a_wrong_size_is_refused_before_decompressing(tmp_path):
    d = write_dataset(tmp_path / "d", n_files=3, file_size=8, fmt="lz4", labels=None)
    save_frame(d / "batch__2.npy", frame_declaring(batch_for(2, 8).tobytes(), 2**42))  # 4 TiB
    expect_load_failure(
        DataGenerator(d, **LZ4_KW),
        r"batch__2\.npy: the lz4 frame declares 4398046511104 bytes of data, but "
        r"one batch of shape \(8, 3\) and dtype float32 is 96 bytes; refused",
        n_ok=1,
    )


def test_lz4_dataset_declaring_an_impossible_size_is_refused(tmp_path):
    data = np.stack([batch_for(s, 8) for s in range(3)]).tobytes()
    path = tmp_path / "all.npy"
    save_frame(path, frame_declaring(data, 96 * 2**36))  # 6 TiB: whole batches, but absurd
    with pytest.raises(
        DataLoadError,
        match=r"all\.npy: the lz4 frame declares 6597069766656 "
        r"bytes of data, more than \d+ compressed bytes can "
        r"hold \(lz4 expands at most 255x\)",
    ):
        DataGenerator(path, **LZ4_KW)
    save_frame(path, frame_declaring(data[:-4], len(data) - 4))
    with pytest.raises(
        DataLoadError,
        match=r"all\.npy: the lz4 frame declares 284 bytes of "
        r"data, not a whole number of batches",
    ):
        DataGenerator(path, **LZ4_KW)
    save_frame(path, lz4.frame.compress(data, store_size=False))  # no size declared: fine
    dg = DataGenerator(path, **LZ4_KW)
    assert [ids for _, ids, _ in serve(dg, n_epochs=1)] == [
        list(sample_ids(s, 8)) for s in range(3)
    ]


LZ4_CHILD = r"""
import resource, sys
sys.path.insert(0, {src!r})
from deeptrain import DataGenerator
from deeptrain.util.data_loaders import DataLoadError
dg = DataGenerator({path!r}, batch_size=8, data_loader="numpy-lz4f", data_dtype="float32",
                   data_batch_shape=(8, 3), prefetch=0)
dg.get()
dg.update_state()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    dg.get()
except DataLoadError as e:
    print(e)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""


@pytest.mark.subprocess
def test_lz4_frame_without_size_that_decompresses_to_too_much_stops_early(tmp_path):
    """256 MiB of zeros compress to ~1 MiB; a batch is 96 bytes: decompression stops there."""
    import subprocess
    import sys

    d = write_dataset(tmp_path / "d", n_files=2, file_size=8, fmt="lz4", labels=None)
    save_frame(d / "batch__2.npy", lz4.frame.compress(bytes(2**28), store_size=False))
    script = LZ4_CHILD.format(src=str(Path(__file__).parents[1] / "src"), path=str(d))
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stderr
    message, grown_mb = out.stdout.strip().splitlines()
    assert "batch__2.npy decompresses to more than 96 bytes (one batch of shape (8, 3)" in message
    assert float(grown_mb) < 32, f"peak memory grew by {grown_mb} MiB"


# -- (4) HDF5 files that read other files are refused ----------------------------------------
def other_file(tmp_path: Path, array: np.ndarray) -> Path:
    """An HDF5 file outside the data directory, and the raw bytes of ``array`` beside it."""
    path = tmp_path / "elsewhere.h5"
    with h5py.File(path, "w") as f:
        f["x"] = array
    (tmp_path / "elsewhere.bin").write_bytes(np.ascontiguousarray(array).tobytes())
    return path


def add_external(f: h5py.Group, name: str, kind: str, source: Path, like: np.ndarray) -> None:
    if kind == "external link":
        f[name] = h5py.ExternalLink(str(source), "/x")
    elif kind == "external storage":
        f.create_dataset(
            name,
            shape=like.shape,
            dtype=like.dtype,
            external=[(str(source.with_suffix(".bin")), 0, like.nbytes)],
        )
    else:
        layout = h5py.VirtualLayout(shape=like.shape, dtype=like.dtype)
        layout[:] = h5py.VirtualSource(str(source), "x", shape=like.shape)
        f.create_virtual_dataset(name, layout)


KINDS = {
    "external link": r"'(/)?(data|\d)' is an external link to",
    "external storage": r"dataset '(/)?(data|\d)' keeps its data in external raw files",
    "virtual dataset": r"dataset '(/)?(data|\d)' is a virtual dataset mapping data from",
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_hdf5_data_reading_other_files_is_refused(tmp_path, kind):
    stranger = batch_for(9, 8)  # what the other file holds
    source = other_file(tmp_path, stranger)
    # directory mode: one file's dataset
    d = write_dataset(tmp_path / "d", n_files=3, file_size=8, fmt="h5", labels=None)
    with h5py.File(d / "batch__2.h5", "w") as f:
        add_external(f, "data", kind, source, stranger)
    with pytest.raises(ValueError, match=rf"batch__2\.h5: {KINDS[kind]}"):
        DataGenerator(d, batch_size=8)
    # dataset mode: one entry
    d = write_dataset(tmp_path / "e", n_files=3, file_size=8, fmt="h5-dataset", labels=None)
    with h5py.File(d / "data.h5", "a") as f:
        del f["3"]
        add_external(f, "3", kind, source, stranger)
    with pytest.raises(ValueError, match=rf"data\.h5: {KINDS[kind]}"):
        DataGenerator(d / "data.h5", batch_size=8)
    # labels (dataset mode)
    labels = sample_ids(9, 8)
    source = other_file(tmp_path / "d", labels)
    d = write_dataset(tmp_path / "f", n_files=3, file_size=8)
    with h5py.File(d / "labels.h5", "a") as f:
        del f["2"]
        add_external(f, "2", kind, source, labels)
    with pytest.raises(ValueError, match=rf"labels\.h5: {KINDS[kind]}"):
        DataGenerator(d, batch_size=8, labels_path=d / "labels.h5")


@pytest.mark.parametrize("kind", list(KINDS))
def test_hdf5_file_replaced_by_one_reading_other_files_is_refused_at_load(tmp_path, kind):
    stranger = batch_for(2, 8)  # even holding the right samples
    source = other_file(tmp_path, stranger)
    d = write_dataset(tmp_path / "d", n_files=3, file_size=8, fmt="h5", labels="dir")
    dg = DataGenerator(d, batch_size=8, labels_path=d / "labels", prefetch=0)
    with h5py.File(d / "batch__2.h5", "w") as f:
        add_external(f, "data", kind, source, stranger)
    expect_load_failure(dg, rf"batch__2\.h5: {KINDS[kind]}", n_ok=1)


def test_check_self_contained_names_the_file_and_the_object(tmp_path):
    from deeptrain.data.formats.hdf5 import check_self_contained

    source = other_file(tmp_path, np.arange(4.0))
    path = tmp_path / "model.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_group("layers/dense").create_dataset("kernel", data=np.ones((2, 2)))
        f["layers/dense/alias"] = h5py.SoftLink("/layers/dense/kernel")
    check_self_contained(path)  # plain data and soft links within the file: fine
    for kind, name in [
        ("external link", "layers/dense/bias"),
        ("external storage", "layers/other/vars/0"),
        ("virtual dataset", "top"),
    ]:
        with h5py.File(path, "a") as f:
            add_external(f, name, kind, source, np.arange(4.0))
        with pytest.raises(ValueError, match=rf"model\.weights\.h5: .*'{name}'"):
            check_self_contained(path)
        with h5py.File(path, "a") as f:
            del f[name]
    check_self_contained(path)


# -- (5) which files, read how: names, loaders, empty files ---------------------------------
def test_the_set_num_is_the_number_that_numbers_the_files(tmp_path, caplog):
    """``batch_1_fp32``, ``batch_2_fp32``, ``batch_10_fp32``: set nums 1, 2, 10 (not three
    files numbered 32, two of them left out); the last number wins where both number them."""
    for n in (1, 2, 10):
        np.save(tmp_path / f"batch_{n}_fp32.npy", batch_for(n, 4))
    dg = DataGenerator(tmp_path, batch_size=4, prefetch=0, shuffle=False)
    assert dg.set_nums_original == ["1", "2", "10"]
    assert [ids_of(step(dg)[1])[0] for _ in range(3)] == [1000, 2000, 10000]
    assert "ignoring" not in caplog.text

    single = tmp_path / "single"  # 128 or 1? the last number
    single.mkdir()
    np.save(single / "128batch__1.npy", batch_for(1, 4))
    assert DataGenerator(single, batch_size=4, prefetch=0).set_nums_original == ["1"]


def test_two_equal_sets_of_files_in_one_directory_are_refused_and_base_name_picks(tmp_path):
    for n in (1, 2, 3):
        np.save(tmp_path / f"data_{n}.npy", batch_for(n, 4))
        np.save(tmp_path / f"labels_{n}.npy", sample_ids(n, 4).astype("float32"))
    with pytest.raises(ValueError, match=r"cannot tell which files.*'data_'.*'labels_'.*base_name"):
        DataGenerator(tmp_path, labels_path=tmp_path, batch_size=4, prefetch=0)

    from deeptrain.data.loader import DataLoader

    dg = DataGenerator(
        tmp_path,
        labels_path=tmp_path,
        data_loader=DataLoader(tmp_path, base_name="data_"),
        labels_loader=DataLoader(tmp_path, base_name="labels_"),
        batch_size=4,
        prefetch=0,
        shuffle=False,
    )
    x, y = dg.get()
    assert ids_of(x) == [int(v) for v in y] == [1000, 1001, 1002, 1003]
    with pytest.raises(ValueError, match=r"no '\.npy' file is named 'inputs_' \+ number"):
        DataLoader(tmp_path, base_name="inputs_")


def test_labels_path_reading_the_data_files_is_refused(tmp_path):
    d = write_dataset(tmp_path / "d", labels=None)
    with pytest.raises(ValueError, match=r"labels_path=.* reads the same files as data_path"):
        DataGenerator(d, labels_path=d, batch_size=8, prefetch=0)


def test_file_without_samples_is_refused_at_construction(tmp_path):
    for n in (1, 2):
        np.save(tmp_path / f"batch__{n}.npy", np.zeros((0, 3), "float32"))
    for batch_size in (32, None):
        with pytest.raises(ValueError, match=r"batch__1\.npy \(set num 1\) holds no samples"):
            DataGenerator(tmp_path, batch_size=batch_size, prefetch=0)


def scaled(loader, set_num):  # a custom data_loader (DeepTrain 0.6's signature)
    return np.load(loader._path(set_num)) / 1000


@pytest.mark.parametrize("loader", ["custom", "lz4"])
def test_superbatch_path_is_read_by_the_data_loader(tmp_path, loader):
    """A superbatch_path copy of the data serves what data_path serves, read by the same
    data_loader (a function, or a format the extension does not name)."""
    fmt, spec, kw = (
        ("npy", scaled, {})
        if loader == "custom"
        else ("lz4", "numpy-lz4f", {"data_batch_shape": (8, 3), "data_dtype": "float32"})
    )
    data = write_dataset(tmp_path / "data", n_files=3, fmt=fmt)
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    for f in data.iterdir():
        (copy_dir / f.name).write_bytes(f.read_bytes())
    common = dict(labels_path=data / "labels.h5", data_loader=spec, shuffle=False, prefetch=0, **kw)
    plain = DataGenerator(data, **common)
    in_ram = DataGenerator(data, superbatch_path=copy_dir, superbatch_set_nums="all", **common)
    for _ in range(3):
        np.testing.assert_array_equal(step(in_ram)[1], step(plain)[1])


def test_a_superbatch_of_memory_mapped_files_is_in_ram(tmp_path):
    data = write_dataset(tmp_path / "data", n_files=2)
    dg = DataGenerator(
        data, data_loader="numpy-memmap", superbatch_set_nums="all", prefetch=0, batch_size=8
    )
    for array in dg.superbatch.values():
        assert not isinstance(array, np.memmap) and not isinstance(array.base, np.memmap)


# -- (6) preprocessor states that do not fit ------------------------------------------------
def windowed(d: Path, window: int = 4, **kw) -> DataGenerator:
    return DataGenerator(
        d,
        batch_size=8,
        prefetch=0,
        seed=0,
        preprocessor="timeseries",
        preprocessor_configs={"window_size": window},
        **kw,
    )


def test_state_of_a_generator_without_windows_is_refused_by_one_with_them(tmp_path):
    d = write_dataset(tmp_path / "d", labels=None, timesteps=12)
    plain = DataGenerator(d, batch_size=8, prefetch=0, seed=0)
    plain.get()
    plain.update_state()
    ts = windowed(d)
    before = ts.state_dict()
    for saved, into in ((plain.state_dict(), ts), (ts.state_dict(), plain)):
        with pytest.raises(ValueError, match=r"preprocessor state is of one that"):
            into.load_state_dict(saved)
    assert ts.state_dict() == before


def test_resuming_between_windows_with_other_windows_is_refused(tmp_path):
    d = write_dataset(tmp_path / "d", labels=None, timesteps=12)
    dg = windowed(d)
    for _ in range(2):  # two of a batch's three windows served
        dg.get()
        dg.update_state()
    state = dg.state_dict()
    with pytest.raises(ValueError, match=r"saved at window 2 of a batch.*window_size 4 -> 6"):
        windowed(d, window=6).load_state_dict(state)
    same = windowed(d)
    same.load_state_dict(state)
    assert same.get()[0].shape == (8, 4, 3)

    dg.get()  # the third window: the batch is used up, and other windows are fine
    dg.update_state()
    boundary = dg.state_dict()
    assert boundary["preprocessor"]["batch_loaded"] is False
    other = windowed(d, window=6)
    other.load_state_dict(boundary)
    assert other.get()[0].shape == (8, 6, 3)


@pytest.mark.parametrize("skip", ["loadskip_list", "saveskip_list"])
def test_a_mid_batch_state_without_the_preprocessor_loads(tmp_path, skip):
    d = write_dataset(tmp_path / "d", file_size=8)
    dg = DataGenerator(
        d, labels_path=d / "labels.h5", batch_size=4, seed=1, prefetch=0, **{skip: ["preprocessor"]}
    )
    dg.get()
    dg.update_state()
    dg.get()  # the second half of the first file, loaded
    state = dg.state_dict()
    other = DataGenerator(
        d, labels_path=d / "labels.h5", batch_size=4, seed=1, prefetch=0, **{skip: ["preprocessor"]}
    )
    other.get()
    other.load_state_dict(state)
    assert ids_of(other.get()[0]) == ids_of(dg.get()[0])
    assert other.state_dict() == dg.state_dict()


def test_the_seed_comes_back_with_the_state(tmp_path):
    d = write_dataset(tmp_path / "d")
    saved = DataGenerator(d, labels_path=d / "labels.h5", seed=3, prefetch=0, shuffle=True)
    other = DataGenerator(d, labels_path=d / "labels.h5", seed=5, prefetch=0, shuffle=True)
    other.load_state_dict(saved.state_dict())
    assert other.seed == 3 and other.state_dict() == saved.state_dict()
