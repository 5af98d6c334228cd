"""Checkpoint files under crashes, hostile contents and bad neighbours (TensorFlow backend).

- replacing a checkpoint of the same name is crash-safe (a failure at every step; a real
  SIGKILL between the two renames, in a subprocess);
- a checkpoint names nothing outside its checkpoints directory (pointer, links, unlisted
  files, HDF5 references to other files);
- ``state.json`` is integrity-checked and validated, and a load is all or nothing;
- an unreadable sibling (deeply nested, FIFO, huge, 100k-digit integer) is skipped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import resource
import shutil
import signal
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import jobs
from deeptrain.callbacks import TraingenCallback
from deeptrain.saving import model_state
from deeptrain.saving.checkpoint import (
    CorruptCheckpointError,
    NoIntactCheckpointError,
    _encode_state,
    list_checkpoints,
    resolve_loadpath,
    state_digest,
)
from deeptrain.saving.hdf5_check import check_hdf5_self_contained
from deeptrain.saving.rollback import whole_datagen_state
from test_checkpoint import make_tg, model, weights_of
from test_train_generator import classification_data

pytestmark = pytest.mark.slow

TEMP = dict(unique_checkpoint_freq=None, temp_checkpoint_freq={"epoch": 1})  # no figures
NAME = "_temp_6iters_1vals"  # the temp checkpoint at the end of the first epoch


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return classification_data(tmp_path_factory.mktemp("hdata"), n_train=96, n_val=32)


@pytest.fixture(scope="module")
def base(data, tmp_path_factory):
    """A run trained one epoch with one temp checkpoint; tests work on copies of it."""
    tg = make_tg(data, tmp_path_factory.mktemp("base"), **TEMP)
    tg.train()
    return tg.logdir


def copy_run(base: Path, tmp_path: Path) -> Path:
    logdir = tmp_path / "run" / base.name
    shutil.copytree(base, logdir)
    return logdir


def edit_state(ckpt: Path, edit, redigest: bool = True) -> None:
    """Change ``state.json`` with ``edit(state)``; ``redigest``: as someone who knows the
    format would, so that only the schema and the checks stand in the way."""
    state = json.loads((ckpt / "state.json").read_text())
    edit(state)
    if redigest:
        state["state_sha256"] = state_digest(state)
    (ckpt / "state.json").write_text(json.dumps(state))


def rehash(ckpt: Path, name: str) -> None:
    import xxhash

    raw = (ckpt / name).read_bytes()

    def edit(state):
        state["files"][name] = {"bytes": len(raw), "xxh128": xxhash.xxh3_128(raw).hexdigest()}

    edit_state(ckpt, edit)


def assert_weights(m, expected) -> None:
    for a, b in zip(weights_of(m), expected, strict=True):
        np.testing.assert_array_equal(a, b)


# -- (3) replacing a checkpoint of the same name --------------------------------------
REPLACE_STEPS = [
    "write model.weights.h5",
    "write arrays.npz",
    "write state.json",
    "fsync files",
    "back up previous",
    "rename into place",
    "fsync parent",
    "remove backup",
    "replace latest",
]
IN_PLACE_AFTER = "fsync parent"  # a failure from this step on: the new checkpoint is in place


def test_a_failure_at_any_step_of_a_replace_leaves_a_loadable_checkpoint(data, tmp_path):
    tg = make_tg(data, tmp_path / "a", **TEMP)
    tg.train()
    ckdir = tg.logdir / "checkpoints"
    pristine = tmp_path / "pristine"
    shutil.copytree(ckdir, pristine)
    old = weights_of(tg.model)
    new = [w + 1 for w in old]
    steps = []
    tg._checkpointer.fault = steps.append
    tg.model.set_weights(new)
    tg.save()
    assert steps == REPLACE_STEPS
    for i, step in enumerate(steps):
        shutil.rmtree(ckdir)
        shutil.copytree(pristine, ckdir)

        def fail(name, step=step):
            if name == step:
                raise OSError(f"injected failure at {name}")

        tg._checkpointer.fault = fail
        with pytest.raises(OSError, match="injected"):
            tg.save()
        names = sorted(p.name for p in ckdir.iterdir())
        assert not [n for n in names if n.startswith(".tmp-")], (step, names)
        in_place = steps.index(step) >= steps.index(IN_PLACE_AFTER)
        assert names == ([f".old-{NAME}"] if step in ("fsync parent", "remove backup") else []) + [
            NAME,
            "latest",
        ], (step, names)
        fresh = make_tg(
            data, tmp_path / f"load{i}", m=model(seed=9), loadpath=tg.logdir, continue_run=False
        )  # a reader: the owner keeps the directory
        assert_weights(fresh.model, new if in_place else old)
        tg._checkpointer.fault = None
        tg.save()  # the owner's next save settles the backup
        assert sorted(p.name for p in ckdir.iterdir()) == [NAME, "latest"], step


def test_a_replace_interrupted_between_its_renames_loads_the_backup_and_is_settled(
    data, base, tmp_path, caplog
):
    logdir = copy_run(base, tmp_path)
    ckdir = logdir / "checkpoints"
    expected = weights_of(make_tg(data, tmp_path / "ref", m=model(seed=9), loadpath=logdir).model)
    os.rename(ckdir / NAME, ckdir / f".old-{NAME}")  # the state a crash there leaves
    with caplog.at_level(logging.WARNING, logger="deeptrain"):
        path, _ = resolve_loadpath(logdir)
    assert path.name == f".old-{NAME}"
    assert "left by a replace of it that was interrupted" in caplog.text
    assert [p.name for _, p in list_checkpoints(ckdir)] == [f".old-{NAME}"]
    owner = make_tg(data, tmp_path / "o", m=model(seed=9), loadpath=logdir, logdir=logdir)
    assert_weights(owner.model, expected)
    owner.save()
    assert sorted(p.name for p in ckdir.iterdir()) == [NAME, "latest"]
    # the final name damaged while the backup is intact: the backup wins
    shutil.copytree(ckdir / NAME, ckdir / f".old-{NAME}")
    (ckdir / NAME / "arrays.npz").write_bytes(b"damaged")
    owner.save()
    assert sorted(p.name for p in ckdir.iterdir()) == [NAME, "latest"]
    assert resolve_loadpath(logdir)[0] == ckdir / NAME


def test_sigkill_between_the_two_renames_of_a_replace(data, tmp_path, caplog):
    job = Path(__file__).with_name("replace_kill_job.py")
    out = tmp_path / "weights.npz"
    proc = jobs.run(job, data, tmp_path / "logs", out)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    (logdir,) = (tmp_path / "logs").glob("M*__*")
    ckdir = logdir / "checkpoints"
    names = sorted(p.name for p in ckdir.iterdir())
    assert NAME not in names and f".old-{NAME}" in names, names  # killed between renames
    assert any(n.startswith(".tmp-") for n in names)
    with np.load(out) as npz:
        old = [npz[f"old{i}"] for i in range(len(npz.files) // 2)]
        new = [npz[f"new{i}"] for i in range(len(npz.files) // 2)]
    with caplog.at_level(logging.WARNING, logger="deeptrain"):
        fresh = make_tg(data, tmp_path / "fresh", m=model(seed=9), loadpath=logdir)
    assert "left by a replace of it that was interrupted" in caplog.text
    loaded = weights_of(fresh.model)
    assert any(
        all(np.array_equal(a, b) for a, b in zip(loaded, w, strict=True)) for w in (old, new)
    )
    assert_weights(fresh.model, old)  # the new one was not in place yet
    owner = make_tg(data, tmp_path / "o", m=model(seed=9), loadpath=logdir, logdir=logdir)
    owner.save()
    assert sorted(p.name for p in ckdir.iterdir()) == [NAME, "latest"]


def test_best_model_lookups_see_backups(data, tmp_path):
    tg = make_tg(data, tmp_path, best_models_dir=tmp_path / "best", **TEMP)
    tg.train()
    best = tmp_path / "best" / tg.model_name
    os.rename(best, best.with_name(f".old-{best.name}"))  # crashed in a replace of it
    assert tg.get_last_log("checkpoint", best=True) == best.with_name(f".old-{best.name}")
    other = tmp_path / "best" / ".old-M7__other"
    other.mkdir()  # another model number's backup: not ours to settle or delete
    tg._checkpointer.save_best(wait=True)
    names = sorted(p.name for p in (tmp_path / "best").iterdir())
    assert names == [".old-M7__other", tg.model_name]
    assert tg.get_last_log("checkpoint", best=True) == best


# -- (4) nothing outside the checkpoints directory ------------------------------------
@pytest.mark.parametrize(
    "pointer", ["../..", "/", "..", ".", "../../../outside/evil", "{abs}", ".tmp-x", "a/b", ""]
)
def test_the_pointer_must_name_a_checkpoint_inside(data, base, tmp_path, caplog, pointer):
    logdir = copy_run(base, tmp_path)
    outside = tmp_path / "outside" / "evil"
    shutil.copytree(logdir / "checkpoints" / NAME, outside)
    text = str(outside) if pointer == "{abs}" else pointer
    (logdir / "checkpoints" / "latest").write_text(text + "\n")
    with caplog.at_level(logging.WARNING, logger="deeptrain"):
        path, _ = resolve_loadpath(logdir)
    assert path == logdir / "checkpoints" / NAME  # the newest intact one inside
    assert "refused" in caplog.text


def test_links_are_refused(data, base, tmp_path, caplog):
    logdir = copy_run(base, tmp_path)
    ckdir = logdir / "checkpoints"
    outside = tmp_path / "outside"
    shutil.copytree(ckdir / NAME, outside / "evil")
    (ckdir / "M0__link").symlink_to(outside / "evil", target_is_directory=True)
    (ckdir / "latest").write_text("M0__link\n")
    with caplog.at_level(logging.WARNING, logger="deeptrain"):
        assert resolve_loadpath(logdir)[0] == ckdir / NAME
    assert "symbolic link" in caplog.text
    (ckdir / "latest").unlink()
    (ckdir / "latest").symlink_to(outside / "pointer")
    (outside / "pointer").write_text(NAME)
    with caplog.at_level(logging.WARNING, logger="deeptrain"):
        assert resolve_loadpath(logdir)[0] == ckdir / NAME
    # a linked file, even one with the recorded content
    weights = ckdir / NAME / "model.weights.h5"
    shutil.copy(weights, outside / "w.h5")
    weights.unlink()
    weights.symlink_to(outside / "w.h5")
    with pytest.raises(NoIntactCheckpointError, match="symbolic link"):
        resolve_loadpath(ckdir / NAME)


def test_only_listed_files_are_loaded(data, tmp_path):
    tg = make_tg(data, tmp_path, saveskip_list=["model", "model:weights"], **TEMP)
    tg.train()
    ckpt = resolve_loadpath(tg.logdir)[0]
    assert "model.weights.h5" not in json.loads((ckpt / "state.json").read_text())["files"]
    tg.model.save_weights(ckpt / "model.weights.h5")  # dropped in: not listed, not hashed
    m = model(seed=9)
    unloaded = weights_of(m)
    fresh = make_tg(data, tmp_path / "fresh", m=m, loadpath=ckpt)
    assert fresh.state.batches_fit == 6
    assert_weights(fresh.model, unloaded)


def _h5_with(path: Path, kind: str) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset("vars/0", data=np.arange(4.0))
        if kind == "external link":
            with h5py.File(path.with_name("other.h5"), "w") as o:
                o["secret"] = np.ones(3)
            f["vars/1"] = h5py.ExternalLink(str(path.with_name("other.h5")), "/secret")
        elif kind == "external file":
            path.with_name("raw.bin").write_bytes(np.ones(4).tobytes())
            f.create_dataset(
                "vars/1", shape=(4,), dtype="f8", external=[(str(path.with_name("raw.bin")), 0, 32)]
            )
        elif kind == "virtual dataset":
            with h5py.File(path.with_name("src.h5"), "w") as o:
                o["x"] = np.ones(4)
            layout = h5py.VirtualLayout(shape=(4,), dtype="f8")
            layout[:] = h5py.VirtualSource(str(path.with_name("src.h5")), "x", shape=(4,))
            f.create_virtual_dataset("vars/1", layout)
        else:
            f["vars/soft"] = h5py.SoftLink("/vars/0")  # inside the file: fine
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("external link", "is an external link"),
        ("external file", "external raw files"),
        ("virtual dataset", "virtual dataset"),
    ],
)
def test_hdf5_references_to_other_files_are_refused(tmp_path, kind, message):
    check_hdf5_self_contained(_h5_with(tmp_path / "fine.h5", "soft link"))
    with pytest.raises(CorruptCheckpointError, match=message):
        check_hdf5_self_contained(_h5_with(tmp_path / "bad.h5", kind))


def test_a_weights_file_with_an_external_link_is_not_loaded(data, base, tmp_path):
    logdir = copy_run(base, tmp_path)
    ckpt = logdir / "checkpoints" / NAME
    (tmp_path / "other.h5").write_bytes(b"")
    with h5py.File(ckpt / "model.weights.h5", "a") as f:
        f["evil"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/x")
    rehash(ckpt, "model.weights.h5")
    m = model(seed=9)
    unloaded = weights_of(m)
    tg = make_tg(data, tmp_path / "fresh", m=m)
    with pytest.raises(CorruptCheckpointError, match="'evil' is an external link"):
        tg.load(ckpt)
    assert_weights(tg.model, unloaded)


# -- (5) state.json verified and validated; all or nothing ----------------------------
class Exploding(TraingenCallback):
    """Counts batches; its load_state_dict raises once when armed."""

    def __init__(self):
        self.batches, self.armed = 0, False

    def on_train_batch_end(self, stage):
        self.batches += 1

    def state_dict(self):
        return {"batches": self.batches}

    def load_state_dict(self, state):
        if self.armed:
            self.armed = False
            raise RuntimeError("callback failed while loading")
        self.batches = state["batches"]


def live_state(tg) -> dict:
    """Everything a load may change, as comparable values."""
    seed_gen = model_state._keras_global_seed_generator(create=False)
    return {
        "variables": [np.array(v.numpy()) for v in model_state.all_variables(tg.model)],
        "train_state": json.dumps(tg.state.to_dict(), sort_keys=True),
        "datagens": [
            json.dumps(whole_datagen_state(dg), sort_keys=True)
            for dg in (tg.datagen, tg.val_datagen)
        ],
        "python_rng": random.getstate(),
        "numpy_rng": np.random.get_state(),
        "keras_rng": None if seed_gen is None else np.array(seed_gen.state.numpy()),
        "callbacks": [json.dumps(cb.state_dict()) for cb in tg.callbacks.objects],
        "settings": repr(
            sorted(
                (k, repr(v))
                for k, v in vars(tg).items()
                if not k.startswith("_") or k == "_passed_args"
            )
        ),
    }


def assert_same_live_state(before: dict, after: dict) -> None:
    assert len(before["variables"]) == len(after["variables"])
    for a, b in zip(before["variables"], after["variables"], strict=True):
        np.testing.assert_array_equal(a, b)
    for key in ("train_state", "datagens", "python_rng", "callbacks", "settings"):
        assert before[key] == after[key], key
    for a, b in zip(before["numpy_rng"], after["numpy_rng"], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(before["keras_rng"], after["keras_rng"])


@pytest.fixture(scope="module")
def live(data, tmp_path_factory):
    """A run with a checkpoint after epoch 1 that has trained on into epoch 2 (so that
    its live state differs from the checkpoint in every part), and that checkpoint."""
    cb = Exploding()
    tg = make_tg(data, tmp_path_factory.mktemp("live"), callbacks=[cb], **TEMP)
    tg.train()
    ckpt = resolve_loadpath(tg.logdir)[0]
    tg.epochs, tg.temp_checkpoint_freq = 2, None
    for _ in range(3):  # three iterations into epoch 2
        tg._train_iteration()
    tg._sync_model()
    return tg, ckpt


CASES = {
    "edited counter": (
        lambda s: s["train_state"].update(batches_fit=3),
        False,
        NoIntactCheckpointError,
        r"does not match its state_sha256",
    ),
    "epoch 'zero'": (
        lambda s: s["train_state"].update(epoch="zero"),
        True,
        NoIntactCheckpointError,
        r"state\.json: train_state\.epoch: 'zero' is not of type 'integer'",
    ),
    "queue not a list": (
        lambda s: s["datagen"].update(set_nums_to_process=5),
        True,
        NoIntactCheckpointError,
        r"datagen\.set_nums_to_process: 5 is not of type 'array'",
    ),
    "float counter": (
        lambda s: s["train_state"].update(fit_iters=6.0),
        True,
        NoIntactCheckpointError,
        r"train_state\.fit_iters: 6\.0 is not of type",
    ),
    "unknown setting": (
        lambda s: s["traingen"].update(no_such_setting=1),
        True,
        NoIntactCheckpointError,
        r"traingen: Additional properties",
    ),
    "set num not in the data": (
        lambda s: s["datagen"].update(set_nums_to_process=["99"]),
        True,
        ValueError,
        r"does not fit this TrainGenerator: datagen",
    ),
    "group past its end": (
        lambda s: s["datagen"].update(
            set_nums_to_process=["2", "3"],
            group={
                "set_nums": ["1"],
                "n_samples": 32,
                "n_batches": 2,
                "sample_order": None,
                "batch_order": None,
                "next_batch": 3,
            },
        ),
        True,
        ValueError,
        r"group\.next_batch",
    ),
    "preprocessor value": (
        lambda s: s["datagen"]["preprocessor"].update(batch_loaded="yes"),
        True,
        ValueError,
        r"preprocessor state 'batch_loaded'",
    ),
    "bad rng": (
        lambda s: s["rng"]["python"].__setitem__(1, [1, 2, 3]),
        True,
        ValueError,
        r"random generator state",
    ),
    "setting refused after it is applied": (  # predict_threshold is written into tg.state
        lambda s: s["traingen"].update(val_freq={"val": 1}, predict_threshold=0.25),
        True,
        ValueError,
        r"val_freq=\{'val': n\}",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_refused_checkpoint_changes_nothing(live, tmp_path, case):
    tg, pristine = live
    edit, redigest, error, message = CASES[case]
    ckpt = tmp_path / "case" / pristine.name
    shutil.copytree(pristine, ckpt)
    edit_state(ckpt, edit, redigest)
    before = live_state(tg)
    with pytest.raises(error, match=message) as info:
        tg.load(ckpt)
    if error is NoIntactCheckpointError:
        assert str(ckpt) in str(info.value)
    assert_same_live_state(before, live_state(tg))


def add_arrays(ckpt: Path, **arrays: np.ndarray) -> None:
    """Put ``arrays`` into the checkpoint's ``arrays.npz`` (and its manifest)."""
    with np.load(ckpt / "arrays.npz", allow_pickle=False) as npz:
        kept = {name: npz[name] for name in npz.files}
    np.savez(ckpt / "arrays.npz", **{**kept, **arrays})
    rehash(ckpt, "arrays.npz")


@pytest.mark.parametrize(
    "state, error",
    [
        (np.zeros(8, np.uint8), r"torch CUDA generator state must be 16 uint8"),
        (np.zeros(16, np.float32), r"16 uint8 \(its Philox seed and offset\), got float32"),
    ],
)
def test_malformed_gpu_generator_states_change_nothing(live, tmp_path, state, error):
    """``rng/torch_cuda`` (torch's GPU generators, saved when CUDA is up) is validated with
    the rest of the state: a malformed one is refused before anything changes."""
    tg, pristine = live
    ckpt = tmp_path / "case" / pristine.name
    shutil.copytree(pristine, ckpt)
    add_arrays(ckpt, **{"rng/torch_cuda": state})
    before = live_state(tg)
    with pytest.raises(ValueError, match=error):
        tg.load(ckpt)
    assert_same_live_state(before, live_state(tg))


@pytest.mark.skipif(
    "torch" in sys.modules and sys.modules["torch"].cuda.is_available(), reason="has a GPU"
)
def test_a_gpu_runs_checkpoint_loads_without_a_gpu(data, base, tmp_path):
    """A checkpoint with a GPU generator state resumes on a machine without a GPU: there,
    that generator does not exist."""
    ckpt = copy_run(base, tmp_path) / "checkpoints" / NAME
    add_arrays(ckpt, **{"rng/torch_cuda": np.zeros(16, np.uint8)})
    tg = make_tg(data, tmp_path / "fresh", m=model(seed=9))
    tg.load(ckpt)
    assert (
        tg.state.batches_fit
        == json.loads((ckpt / "state.json").read_text())["train_state"]["batches_fit"]
    )


def test_a_failure_half_way_through_applying_is_undone(live, caplog):
    tg, ckpt = live
    cb = tg.callbacks.objects[0]
    before = live_state(tg)
    cb.armed = True  # it fails after the weights, the state and the data were applied
    with pytest.raises(RuntimeError, match="callback failed while loading"):
        tg.load(ckpt)
    assert_same_live_state(before, live_state(tg))
    assert "Undoing a failed load" not in caplog.text  # every part was put back
    tg.load(ckpt)  # and the checkpoint itself is fine
    assert tg.state.batches_fit == 6 and cb.batches == 6


def test_version_1_checkpoints_load_with_a_warning(data, base, tmp_path, caplog):
    logdir = copy_run(base, tmp_path)
    ckpt = logdir / "checkpoints" / NAME

    def to_v1(state):
        state["version"] = 1
        del state["state_sha256"]

    edit_state(ckpt, to_v1, redigest=False)
    with caplog.at_level(logging.WARNING, logger="deeptrain"):
        fresh = make_tg(data, tmp_path / "fresh", m=model(seed=9), loadpath=logdir)
    assert fresh.state.batches_fit == 6 and "cannot be checked for edits" in caplog.text


# -- (6) bad siblings -----------------------------------------------------------------
HEADER = '{"format": "deeptrain.checkpoint", "version": 2, "kind": "manual", "seq": %d, "x": '


@contextlib.contextmanager
def no_hang(seconds: int = 120):
    """Turn a hang (a FIFO opened for reading blocks) into a failure instead."""

    def fail(*_):
        raise AssertionError("blocked")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def add_bad_siblings(ckdir: Path) -> list[Path]:
    bad = {
        name: ckdir / name
        for name in ("deep", "fifo", "huge", "digits", "deep_body", "digits_body", "huge_body")
    }
    for path in bad.values():
        path.mkdir()
    (bad["deep"] / "state.json").write_text("[" * 100_000 + "]" * 100_000)
    os.mkfifo(bad["fifo"] / "state.json")
    with open(bad["huge"] / "state.json", "wb") as f:
        f.truncate(400 * 2**20)  # sparse: nothing on disk, 400 MB to a reader
    (bad["digits"] / "state.json").write_text(
        '{"format": "deeptrain.checkpoint", "version": 2, "kind": "temp", "seq": '
        + "1" * 100_000
        + "}"
    )
    # readable headers (newest of all), unreadable bodies: tried as fallbacks, refused
    (bad["deep_body"] / "state.json").write_text(HEADER % 99 + "[" * 100_000 + "]" * 100_000 + "}")
    (bad["digits_body"] / "state.json").write_text(HEADER % 98 + "1" * 100_000 + "}")
    with open(bad["huge_body"] / "state.json", "wb") as f:
        f.write((HEADER % 97).encode())
        f.truncate(400 * 2**20)
    return list(bad.values())


def test_bad_siblings_are_skipped_and_kept(data, base, tmp_path, caplog):
    logdir = copy_run(base, tmp_path)
    ckdir = logdir / "checkpoints"
    bad = add_bad_siblings(ckdir)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    with no_hang(), caplog.at_level(logging.WARNING, logger="deeptrain"):
        assert resolve_loadpath(logdir)[0] == ckdir / NAME  # the pointed one: no sibling read
        (ckdir / "latest").write_text("gone\n")  # falls back: siblings read, bad ones skipped
        assert resolve_loadpath(logdir)[0] == ckdir / NAME
        fresh = make_tg(
            data,
            tmp_path / "fresh",
            m=model(seed=9),
            loadpath=logdir,
            logdir=logdir,
            epochs=2,
            **TEMP,
        )
        fresh.train()  # saves and prunes at the end of epoch 2
        fresh.save()
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 200 * 2**10
    assert "Skipping" in caplog.text and "nested too deeply" in caplog.text
    assert "digit" in caplog.text and "more than the" in caplog.text
    assert all(p.is_dir() for p in bad)  # still there
    assert (ckdir / "latest").read_text().strip() == "_temp_12iters_2vals"


def test_the_state_schema_is_a_valid_json_schema():
    """(Checked here once, not in every process that reads or writes a checkpoint.)"""
    from jsonschema import Draft202012Validator

    from deeptrain.saving.state_schema import state_schema

    Draft202012Validator.check_schema(state_schema())


def test_the_schema_checks_every_changed_field_of_a_state_that_passed_before(live):
    """A top-level field whose JSON text passed is not checked again (most of a state is the
    same checkpoint after checkpoint); a changed one is, even by one character."""
    from deeptrain.saving.state_schema import schema_error

    _, pristine = live
    state = json.loads((pristine / "state.json").read_text())
    assert schema_error(state) is None
    assert schema_error(state) is None  # every field known to pass
    for field, key, value, message in (
        ("train_state", "fit_iters", float(state["train_state"]["fit_iters"]), "not of type"),
        ("train_state", "epoch", "zero", "'zero' is not of type 'integer'"),
        ("datagen", "set_nums_to_process", 5, "5 is not of type 'array'"),
        ("traingen", "no_such_setting", 1, "Additional properties"),
    ):
        changed = json.loads(json.dumps(state))
        changed[field][key] = value
        error = schema_error(changed)
        assert error is not None and error.startswith(field) and message in error, error
        # the writer's path (the fields' texts given, the memo full of passed ones)
        payload = {k: v for k, v in changed.items() if k not in writer_adds}
        with pytest.raises(ValueError, match=rf"state not written: {field}.*{re.escape(message)}"):
            _encode_state(payload, changed["files"], decoded=True)
    assert schema_error(state) is None
    payload = {k: v for k, v in state.items() if k not in writer_adds}
    assert json.loads(_encode_state(payload, state["files"], decoded=True)) == state


writer_adds = ("format", "version", "files", "state_sha256")
