"""Checkpoints on the TensorFlow backend: format, atomicity under injected faults, fallback
from corrupt checkpoints, hostile files, skip rules, pruning, best model, naming, reports.

Real models, real files; the kill-and-resume guarantee itself is in ``test_resume.py``.
"""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import keras
import numpy as np
import pytest
import xxhash
from matplotlib.image import imread

from deeptrain import TrainGenerator
from deeptrain.callbacks import TraingenCallback
from deeptrain.saving.checkpoint import CorruptCheckpointError, resolve_loadpath, state_digest
from deeptrain.saving.naming import encode_best, encode_value, next_model_num
from deeptrain.saving.writer import CheckpointJob, Target
from test_train_generator import classification_data, generators

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return classification_data(tmp_path_factory.mktemp("ckdata"), n_train=96, n_val=32)


def model(units=8, seed=0):
    keras.utils.set_random_seed(seed)
    m = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(units, activation="relu"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(2, "softmax"),
        ]
    )
    m.compile(keras.optimizers.Adam(0.01), "categorical_crossentropy", metrics=["accuracy"])
    return m


def make_tg(data, tmp_path, m=None, **kw):
    keras.utils.set_random_seed(0)
    dg, vdg = generators(data, batch_size=16, shuffle=True)
    kw = dict(
        dict(epochs=1, logs_dir=tmp_path / "logs", iter_verbosity=0, plot_history_freq=None), **kw
    )
    return TrainGenerator(m or model(), dg, vdg, **kw)


def weights_of(m):
    return [np.array(w) for w in m.get_weights()]


def test_checkpoint_directory_layout_and_manifest(data, tmp_path):
    tg = make_tg(data, tmp_path, best_models_dir=tmp_path / "best")
    tg.train()
    ckdir = tg.logdir / "checkpoints"
    latest = (ckdir / "latest").read_text().strip()
    assert latest == f"{tg.model_name}_1vals_6iters"
    files = sorted(p.name for p in (ckdir / latest).iterdir())
    assert files == ["arrays.npz", "history.png", "model.weights.h5", "report.png", "state.json"]
    state = json.loads((ckdir / latest / "state.json").read_text())
    assert list(state)[:5] == ["format", "version", "kind", "seq", "state_sha256"]
    assert state["format"] == "deeptrain.checkpoint" and state["version"] == 3
    assert state["state_sha256"] == state_digest(state)
    for name, record in state["files"].items():  # each file's size and XXH3-128
        raw = (ckdir / latest / name).read_bytes()
        assert record == {"bytes": len(raw), "xxh128": xxhash.xxh3_128(raw).hexdigest()}
    assert state["kind"] == "unique" and state["train_state"]["batches_fit"] == 6
    assert set(state["files"]) == set(files) - {"state.json"}
    assert state["datagen"]["epoch"] == 1 and "rng" in state["datagen"]
    assert "class_weights" in state["traingen"] and "callbacks" not in state["traingen"]
    with np.load(ckdir / latest / "arrays.npz", allow_pickle=False) as npz:
        assert "extra/0" in npz.files and "rng/numpy_key" in npz.files  # Dropout seed state
    best = list((tmp_path / "best").iterdir())
    assert [p.name for p in best] == [tg.model_name]
    assert tg.model_name == f"M0__model__min{encode_best(tg.best_key_metric)}"
    assert (tg.logdir / "misc" / "init_state.json").is_file()
    init = json.loads((tg.logdir / "misc" / "init_state.json").read_text())
    assert init["epochs"] == "1" and "logs_dir" in init["_passed_args"]
    assert (tg.logdir / "misc" / "init_source.txt").stat().st_size > 0


def test_init_logs_survive_a_callback_whose_source_does_not_parse(data, tmp_path, monkeypatch):
    """``init_source.txt`` is best effort: a callback whose file no longer parses (edited
    since it was imported; or CPython 3.11's parser failing under threads) is noted there,
    and the TrainGenerator is made."""
    import importlib
    import linecache

    module = tmp_path / "edited_callback.py"
    module.write_text(
        "from deeptrain.callbacks.base import TraingenCallback\n\n\n"
        "class Edited(TraingenCallback):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    edited = importlib.import_module("edited_callback")
    module.write_text("class Edited(:\n")
    linecache.checkcache(str(module))
    tg = make_tg(data, tmp_path, callbacks=[edited.Edited()])
    text = (tg.logdir / "misc" / "init_source.txt").read_text()
    assert "## Edited: source not read (SyntaxError" in text


def test_in_process_resume_is_exact_and_skip_rules_apply(data, tmp_path):
    ref = make_tg(data, tmp_path / "ref", epochs=2)
    ref.train()
    first = make_tg(
        data,
        tmp_path,
        epochs=1,
        max_checkpoints=2,
        predict_threshold=0.3,
        saveskip_list=["model", "callbacks", "val_class_weights"],
    )
    first.train()
    saved = json.loads(first.get_last_log("state").read_text())["traingen"]
    assert "val_class_weights" not in saved and saved["max_checkpoints"] == 2
    # epochs passed explicitly wins ('{auto}'); max_checkpoints, not passed, is loaded
    resumed = make_tg(data, tmp_path, m=model(seed=5), epochs=2, loadpath=first.logdir)
    assert resumed.epochs == 2 and resumed.max_checkpoints == 2
    assert resumed.state.batches_fit == 6 and resumed.model_num == 0
    assert resumed.logdir == first.logdir  # the run continues where it was
    resumed.train()
    for a, b in zip(weights_of(ref.model), weights_of(resumed.model), strict=True):
        np.testing.assert_array_equal(a, b)
    assert ref.history == resumed.history and ref.val_history == resumed.val_history
    # 'none': nothing skipped, so the saved epochs replaces the passed value; the newest
    # checkpoint of the run is the continued run's (epochs=2)
    again = make_tg(
        data, tmp_path, epochs=7, loadpath=first.logdir, loadskip_list=["none"], continue_run=False
    )
    assert again.epochs == 2 and again.state.epoch == 2
    assert again.model_num == 1 and again.logdir.name.startswith("M1__")  # a new run


def fault_steps(data, tmp_path) -> list[str]:
    tg = make_tg(data, tmp_path / "probe")
    tg.train()
    steps = []
    tg._checkpointer.fault = steps.append
    tg.checkpoint(forced=True)  # same name as the end-of-epoch checkpoint: replaces it
    return steps


REPLACE_STEPS = ("back up previous", "remove backup")  # only when a name is replaced


def test_a_failure_at_any_step_of_a_save_leaves_the_previous_checkpoint(data, tmp_path):
    steps = fault_steps(data, tmp_path)
    assert steps == [
        "write model.weights.h5",
        "write history.png",
        "write report.png",
        "write arrays.npz",
        "write state.json",
        "fsync files",
        "back up previous",
        "rename into place",
        "fsync parent",
        "remove backup",
        "replace latest",
    ]
    steps = [s for s in steps if s not in REPLACE_STEPS]  # (replacing: test_checkpoint_hardening)
    trained, loaded = model(), model(seed=9)  # one of each for every run: traced once
    for i, step in enumerate(steps):
        background = i % 2 == 1  # the same write, in the background or on the training thread
        tg = make_tg(
            data,
            tmp_path / f"run{i}",
            m=trained,
            unique_checkpoint_freq={"batch": 3},
            checkpoint_async=background,
        )
        tg.train()
        before = resolve_loadpath(tg.logdir)[0]
        saved_weights = weights_of(tg.model)

        def fail(name, step=step):
            if name == step:
                raise OSError(f"injected failure at {name}")

        tg._checkpointer.fault = fail
        tg.epochs = 2  # the checkpoint after batch 9 fails, weights have moved on
        with pytest.raises(OSError, match="injected"):
            tg.train()  # background: raised at a later iteration, at the latest at the end
        assert 9 <= tg.state.batches_fit <= 12 if background else tg.state.batches_fit == 9
        leftovers = [
            p.name for p in (tg.logdir / "checkpoints").iterdir() if p.name.startswith(".tmp-")
        ]
        assert leftovers == [], step
        assert resolve_loadpath(tg.logdir)[0] == before, step  # pointer moves last
        fresh = make_tg(data, tmp_path / f"load{i}", m=loaded, loadpath=tg.logdir)
        assert fresh.state.batches_fit == 6
        for a, b in zip(saved_weights, weights_of(fresh.model), strict=True):
            np.testing.assert_array_equal(a, b)


def test_corrupt_newest_checkpoint_falls_back_with_a_warning(data, tmp_path, caplog):
    tg = make_tg(data, tmp_path, epochs=2, unique_checkpoint_freq={"epoch": 1})
    tg.train()
    newest = resolve_loadpath(tg.logdir)[0]
    weights = newest / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated
    with caplog.at_level(logging.WARNING, logger="deeptrain"):
        chosen, state = resolve_loadpath(tg.logdir)
    assert chosen != newest and state["train_state"]["epoch"] == 1
    assert "truncated or altered" in caplog.text
    for item in (tg.logdir / "checkpoints").iterdir():
        if item.is_dir():
            (item / "state.json").write_text("{not json")
    with pytest.raises(FileNotFoundError, match="no intact DeepTrain checkpoint"):
        resolve_loadpath(tg.logdir)
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        make_tg(data, tmp_path, loadpath=tmp_path / "does-not-exist")


class _Boom:
    def __reduce__(self):
        import os

        return (os.mkdir, (str(MARKER),))


MARKER = Path("/nonexistent")


def test_hostile_files_never_execute_code(data, tmp_path):
    global MARKER
    MARKER = tmp_path / "pwned"
    tg = make_tg(data, tmp_path)
    tg.train()
    ckpt = resolve_loadpath(tg.logdir)[0]
    # an object array in the .npz (loading it would unpickle and run os.mkdir)
    arrays = dict(np.load(ckpt / "arrays.npz", allow_pickle=False))
    arrays["extra/0"] = np.array([_Boom()], dtype=object)
    np.savez(ckpt / "arrays.npz", **arrays)
    _rehash(ckpt)
    with pytest.raises(CorruptCheckpointError, match="arrays.npz"):
        make_tg(data, tmp_path, loadpath=ckpt)
    # a pickle disguised as state.json
    (ckpt / "state.json").write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(FileNotFoundError, match="not valid JSON"):
        make_tg(data, tmp_path, loadpath=ckpt)
    assert not MARKER.exists()


def _rehash(ckpt: Path) -> None:
    """Record the files' new sizes and hashes, and the state's new digest (as someone who
    edits a checkpoint on purpose can)."""
    import xxhash

    state = json.loads((ckpt / "state.json").read_text())
    for name in state["files"]:
        raw = (ckpt / name).read_bytes()
        state["files"][name] = {"bytes": len(raw), "xxh128": xxhash.xxh3_128(raw).hexdigest()}
    state["state_sha256"] = state_digest(state)
    (ckpt / "state.json").write_text(json.dumps(state))


def test_unknown_format_version_is_a_clear_error(data, tmp_path):
    tg = make_tg(data, tmp_path)
    tg.train()
    ckpt = resolve_loadpath(tg.logdir)[0]
    state = json.loads((ckpt / "state.json").read_text())
    state["version"] = 99
    (ckpt / "state.json").write_text(json.dumps(state))
    with pytest.raises(ValueError, match="format version 99"):
        make_tg(data, tmp_path, loadpath=ckpt)


def test_a_version_2_checkpoint_with_sha256_records_is_read_and_verified(data, tmp_path):
    """Checkpoints written before version 3 record SHA-256 for their files: they load, and
    a damaged file is still found, by its SHA-256. A record with an unknown or a malformed
    digest is refused by the schema."""
    import hashlib

    tg = make_tg(data, tmp_path)
    tg.train()
    ckpt = resolve_loadpath(tg.logdir)[0]
    state = json.loads((ckpt / "state.json").read_text())
    state["version"] = 2
    for name in state["files"]:
        raw = (ckpt / name).read_bytes()
        state["files"][name] = {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    state["state_sha256"] = state_digest(state)
    (ckpt / "state.json").write_text(json.dumps(state))
    resumed = make_tg(data, tmp_path, loadpath=ckpt)
    assert resumed.state.batches_fit == tg.state.batches_fit
    arrays = ckpt / "arrays.npz"
    raw = bytearray(arrays.read_bytes())
    raw[-40] ^= 1  # one bit, same size
    arrays.write_bytes(bytes(raw))
    with pytest.raises(CorruptCheckpointError, match="sha256 digest differs"):
        make_tg(data, tmp_path, loadpath=ckpt)
    for record in (
        {"bytes": len(raw), "md5": "0" * 32},
        {"bytes": len(raw), "xxh128": "0" * 64},
        {"bytes": len(raw), "xxh128": "0" * 32, "sha256": "0" * 64},
    ):
        state["files"]["arrays.npz"] = record
        state["state_sha256"] = state_digest(state)
        (ckpt / "state.json").write_text(json.dumps(state))
        with pytest.raises(CorruptCheckpointError, match=r"state\.json: files\.arrays\.npz"):
            make_tg(data, tmp_path, loadpath=ckpt)


def test_loading_into_another_architecture_names_the_variable_and_shapes(data, tmp_path):
    tg = make_tg(data, tmp_path)
    tg.train()
    with pytest.raises(ValueError, match=r"kernel' with shape \(8, 12\).*shape \(8, 8\)"):
        make_tg(data, tmp_path, m=model(units=12), loadpath=tg.logdir)


def test_max_checkpoints_and_temp_checkpoints(data, tmp_path):
    tg = make_tg(
        data,
        tmp_path,
        epochs=2,
        unique_checkpoint_freq={"batch": 2},
        temp_checkpoint_freq={"iter": 1},
        max_checkpoints=3,
    )
    tg.train()
    ckdir = tg.logdir / "checkpoints"
    dirs = sorted(p.name for p in ckdir.iterdir() if p.is_dir())
    uniques = [d for d in dirs if not d.startswith("_temp")]
    temps = [d for d in dirs if d.startswith("_temp")]
    assert len(uniques) == 3 and len(temps) <= 1, dirs
    assert (ckdir / "latest").read_text().strip() == f"{tg.model_name}_2vals_12iters"
    assert tg.state.save_seq == 12  # one per iteration: unique every 2 batches, else temp
    # a temp checkpoint is loadable like any other (0.6 named them so load never found them)
    temp_only = make_tg(
        data, tmp_path / "t", unique_checkpoint_freq=None, temp_checkpoint_freq={"iter": 4}
    )
    temp_only.train()
    path, state = resolve_loadpath(temp_only.logdir)
    assert path.name.startswith("_temp_4iters") and state["kind"] == "temp"


def test_a_run_continued_from_an_older_checkpoint_numbers_new_ones_after_the_newer(data, tmp_path):
    """Continuing a run from an older checkpoint of its own (``_continue_numbering``): the
    newer ones stay until pruned, and the new checkpoints are numbered after them, so that
    pruning and ``latest``'s fallback (newest by number first) take the new branch's as the
    newest, even when the first run saved more often (temp checkpoints) than this one."""
    from deeptrain.saving.checkpoint import list_checkpoints

    kw = dict(epochs=2, unique_checkpoint_freq={"batch": 2}, max_checkpoints=3)
    tg = make_tg(data, tmp_path, temp_checkpoint_freq={"iter": 1}, **kw)
    tg.train()
    ckdir = tg.logdir / "checkpoints"
    (oldest,) = [p for _, p in list_checkpoints(ckdir) if p.name.endswith("_8iters")]

    resumed = make_tg(
        data,
        tmp_path,
        loadpath=oldest,
        temp_checkpoint_freq=None,
        checkpoints_overwrite_duplicates=False,
        **kw,
    )
    assert resumed.logdir == tg.logdir and resumed.state.batches_fit == 8
    assert resumed.state.save_seq == tg.state.save_seq == 12  # numbered after the newest
    resumed.train()
    newest_first = [p.name for _, p in list_checkpoints(ckdir) if not p.name.startswith("_temp")]
    assert newest_first[0] == (ckdir / "latest").read_text().strip()
    assert [n.rsplit("_", 2)[-2:] for n in newest_first] == [
        ["12iters", "v2"],
        ["10iters", "v2"],
        ["2vals", "12iters"],
    ]


def test_continuing_with_another_key_metric_follows_it(data, tmp_path, caplog):
    """A run on 'loss' continued with key_metric='accuracy': the loss's best is forgotten
    and accuracy is maximized (the checkpoint's max_is_best=False would keep every
    accuracy from being a new best); a max_is_best passed stands."""
    first = make_tg(data, tmp_path, epochs=1)
    first.train()
    assert first.max_is_best is False and first.state.best_key_metric is not None
    with caplog.at_level(logging.WARNING, logger="deeptrain"):
        resumed = make_tg(data, tmp_path, epochs=2, loadpath=first.logdir, key_metric="accuracy")
    assert "the best so far" in caplog.text
    assert resumed.max_is_best is True and resumed.state.best_key_metric is None
    resumed.train()
    assert resumed.state.best_key_metric == max(resumed.val_history["accuracy"][1:])

    kept = make_tg(
        data, tmp_path, epochs=2, loadpath=first.logdir, key_metric="accuracy", max_is_best=False
    )
    assert kept.max_is_best is False


class CountingCallback(TraingenCallback):
    def __init__(self):
        self.batches, self.saves, self.loads, self.trace = 0, 0, 0, np.zeros(3)

    def on_train_batch_end(self, stage):
        self.batches += 1
        self.trace = self.trace + 1

    def on_save(self, stage):
        self.saves += 1

    def on_load(self, stage):
        self.loads += 1

    def state_dict(self):
        return {"batches": self.batches, "trace": self.trace}

    def load_state_dict(self, state):
        self.batches, self.trace = state["batches"], state["trace"]


def test_callbacks_state_goes_through_the_checkpoint(data, tmp_path):
    cb = CountingCallback()
    tg = make_tg(data, tmp_path, callbacks=[cb])
    tg.train()
    assert cb.batches == 6 and cb.saves == 1
    fresh = CountingCallback()
    make_tg(data, tmp_path, callbacks=[fresh], loadpath=tg.logdir)
    assert fresh.batches == 6 and fresh.loads == 1
    np.testing.assert_array_equal(fresh.trace, np.full(3, 6.0))


def test_a_new_best_is_saved_when_no_checkpoint_is_due(data, tmp_path):
    """Validations mid-epoch, checkpoints only at the epoch's end: each new best model is
    saved at its own validation (from a snapshot of its own, in the background)."""
    tg = make_tg(
        data,
        tmp_path,
        best_models_dir=tmp_path / "best",
        val_freq={"batch": 2},
        unique_checkpoint_freq={"epoch": 1},
        max_one_best_save=False,
    )
    tg.train()
    assert tg.state.times_validated == 3 and tg.state.batches_fit == 6
    saved = sorted(p.name for p in (tmp_path / "best").iterdir())
    assert len(saved) >= 2 and tg.model_name in saved, saved  # the first best and the last
    for name in saved:
        assert (tmp_path / "best" / name / "model.weights.h5").is_file()


def test_best_models_without_a_log_directory(data, tmp_path):
    tg = make_tg(data, tmp_path, logs_dir=None, best_models_dir=tmp_path / "best")
    tg.train()
    (saved,) = (tmp_path / "best").iterdir()
    assert saved.name == tg.model_name and (saved / "state.json").is_file()


def test_report_and_history_are_real_images(data, tmp_path):
    tg = make_tg(
        data,
        tmp_path,
        epochs=2,
        best_models_dir=tmp_path / "best",
        model_configs={"units": 8, "optimizer": "Adam"},
    )
    tg.train()
    for path in (
        tg.get_last_log("report"),
        tg.get_last_log("history"),
        tg.get_last_log("report", best=True),
    ):
        img = imread(path)
        assert img.shape[0] > 100 and img.shape[1] > 300, path
        assert img[..., :3].std() > 0.02, f"{path} looks blank"
    best_dirs = list((tmp_path / "best").iterdir())  # max_one_best_save: one per model num
    assert [p.name for p in best_dirs] == [tg.model_name]
    text = tg.generate_report()
    for section in (
        ">>HYPERPARAMETERS",
        ">>TRAINGEN STATE",
        ">>TRAIN DATAGEN STATE",
        ">>VAL DATAGEN STATE",
    ):
        assert section in text
    assert "'units' = 8" in text and "'batches_fit' = 12" in text
    tg.report_configs = {"traingen": {"include": ["epochs"]}}
    assert "'batches_fit'" not in tg.generate_report()
    with pytest.raises(ValueError, match="name must be one of"):
        tg.get_last_log("best")


def test_model_auto_naming(data, tmp_path):
    tg = make_tg(
        data,
        tmp_path,
        model_base_name="AE",
        model_configs={"filters": [6, 12, 2, 6, 12], "optimizer": "Adam", "lr": 1e-4},
        model_name_configs={
            "datagen.batch_size": "BS",
            "filters": "filt",
            "optimizer": "",
            "lr": "",
            "best_key_metric": "__max",
        },
    )
    assert tg.model_name == "M0__AE-BS16-filt6_12_2_6_12-Adam-1e-4"
    tg.train()
    assert (
        tg.model_name
        == f"M0__AE-BS16-filt6_12_2_6_12-Adam-1e-4__max{encode_best(tg.best_key_metric)}"
    )
    assert encode_best(10.5) == "10.500" and encode_best(0.0812) == ".081"
    assert encode_best(-0.25) == "-.250"
    assert encode_value([2e-4, 2e-4, 2e-4, 1e-4]) == "2e-4x3_1e-4"
    assert encode_value(keras.optimizers.Adam()) == "Adam" and encode_value(0.5) == ".5"
    logs = tmp_path / "numbering"
    for name in ("M0__a", "M10__b", "M2__c"):
        (logs / name).mkdir(parents=True)
    assert next_model_num(logs) == 11 and next_model_num(logs, new_model_num=False) == 1


def test_optimizer_load_configs_keep_the_live_learning_rate(data, tmp_path):
    tg = make_tg(data, tmp_path)
    tg.train()
    iterations = int(tg.model.optimizer.iterations.numpy())
    m = model(seed=3)
    m.optimizer.learning_rate.assign(0.123)
    fresh = make_tg(
        data,
        tmp_path,
        m=m,
        loadpath=tg.logdir,
        optimizer_load_configs={"exclude": ["learning_rate"]},
    )
    assert float(fresh.model.optimizer.learning_rate.numpy()) == pytest.approx(0.123)
    assert int(fresh.model.optimizer.iterations.numpy()) == iterations  # the rest loaded
    with pytest.raises(ValueError, match="optimizer_load_configs must be"):
        make_tg(data, tmp_path, loadpath=tg.logdir, optimizer_load_configs={"drop": []})


def test_full_model_file_when_asked_for(data, tmp_path):
    tg = make_tg(data, tmp_path, saveskip_list=["callbacks"])  # 'model' not skipped
    tg.train()
    restored = keras.models.load_model(tg.get_last_log("model"))
    x = np.ones((4, 8), "float32")
    np.testing.assert_array_equal(restored.predict_on_batch(x), tg.model.predict_on_batch(x))


def test_explicit_arguments_equal_to_the_default_still_win_over_saved_ones(data, tmp_path):
    first = make_tg(data, tmp_path, epochs=2)
    first.train()
    resumed = make_tg(data, tmp_path, epochs=1, iter_verbosity=0, loadpath=first.logdir)
    assert "epochs" in resumed._passed_args and resumed.epochs == 1
    assert make_tg(data, tmp_path, loadpath=first.logdir).epochs == 1  # make_tg passes it
    assert sorted(resumed._passed_args) == resumed._passed_args
    assert not {"model", "datagen", "val_datagen"} & set(resumed._passed_args)


def test_a_best_model_checkpoint_has_no_checkpoint_pending(data, tmp_path):
    tg = make_tg(data, tmp_path, best_models_dir=tmp_path / "best")
    tg.train()
    best = tg.get_last_log("state", best=True)
    state = json.loads(best.read_text())["train_state"]
    assert state["checkpoint_due"] is None and state["times_validated"] == 1
    resumed = make_tg(data, tmp_path, epochs=2, loadpath=best.parent)
    resumed.train()
    names = sorted(p.name for p in (resumed.logdir / "checkpoints").iterdir() if p.is_dir())
    assert names == [f"{resumed.model_name}_2vals_12iters"]  # no extra one after iteration 1


def test_report_fontpath_is_used_and_checked(data, tmp_path):
    import matplotlib

    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSerif.ttf"
    tg = make_tg(data, tmp_path, report_fontpath=str(font))
    path = tg.save_report(tmp_path / "r.png")
    assert imread(path)[..., :3].std() > 0.02
    fig = tg._checkpointer.report()
    assert Path(fig.texts[-1].get_fontproperties().get_file()).name == "DejaVuSerif.ttf"
    tg.report_fontpath = None  # the default (monospace) draws other pixels
    assert imread(tg.save_report(tmp_path / "default.png")).shape == imread(path).shape
    assert not np.array_equal(imread(tmp_path / "default.png"), imread(path))
    tg.report_fontpath = str(tmp_path / "missing.ttf")
    with pytest.raises(FileNotFoundError, match="report_fontpath"):
        tg.save_report(tmp_path / "r2.png")


def test_duplicate_names_final_figure_and_save_kwargs(data, tmp_path):
    tg = make_tg(
        data, tmp_path, checkpoints_overwrite_duplicates=False, final_fig_dir=tmp_path / "final"
    )
    tg.train()
    first = tg.checkpoint(forced=True)  # same counters as the end-of-epoch checkpoint
    second = tg.checkpoint(forced=True)
    assert first.name.endswith("_v2") and second.name.endswith("_v3")
    (tmp_path / "final" / "M0__stale.png").write_bytes(b"old")
    tg.epochs = 2
    tg.train()
    assert [p.name for p in (tmp_path / "final").iterdir()] == [f"{tg.model_name}.png"]
    tg.model_save_weights_kw = {"no_such_option": 1}  # passed through to save_weights
    with pytest.raises(TypeError, match="no_such_option"):
        tg.save()


def test_a_checkpoint_without_keras_global_seed_generator_loads_as_none(data, tmp_path):
    """Saved when Keras had no process-wide SeedGenerator (as ``set_random_seed`` leaves
    it): loading it clears the one made since, so that unseeded ``keras.random`` draws go
    on as after the save, not from where the live generator had got to."""
    from deeptrain.saving.model_state import has_keras_global_seed_generator

    tg = make_tg(data, tmp_path)
    keras.utils.set_random_seed(1)
    assert not has_keras_global_seed_generator()
    path = tg.save(tmp_path / "saved")
    after_save = keras.ops.convert_to_numpy(keras.random.uniform((3,)))
    keras.random.uniform((3,))  # the live generator moves on
    tg.load(path)
    again = keras.ops.convert_to_numpy(keras.random.uniform((3,)))
    np.testing.assert_array_equal(again, after_save)


def test_snapshots_write_into_the_last_ones_arrays_and_each_checkpoint_keeps_its_own(
    data, tmp_path
):
    """While ``train()`` runs, a snapshot copies the large arrays (1 MiB and more) into
    those of the last snapshot written, not into fresh memory (whose page faults cost more
    than the copy); they are freed when it returns. A checkpoint every iteration, written
    in the background: each holds the weights of its own moment (none was overwritten by a
    later snapshot), and every file is intact."""
    import re

    from deeptrain.saving.checkpoint import verify_checkpoint

    at_save: dict[int, list] = {}
    kept: list[tuple] = []

    def on_save(tg):  # (after the last write ended, before the snapshot)
        at_save[tg.state.fit_iters] = weights_of(tg.model)
        spare = tg._checkpointer._spare
        if spare:
            kept.append(tuple(id(a) for a in spare if a is not None))

    units = 40_000  # a 1.3 MB kernel, and its Adam moments
    tg = make_tg(
        data,
        tmp_path,
        model(units),
        unique_checkpoint_freq={"iter": 1},
        max_checkpoints=100,
        callbacks={"save": on_save},
    )
    tg.train()
    assert tg._checkpointer._spare is None  # freed with the loop
    assert len(kept) >= 3 and len(set(kept)) == 1 and len(kept[0]) == 3  # the same arrays
    checkpoints = [p for p in (tg.logdir / "checkpoints").iterdir() if p.is_dir()]
    assert len(checkpoints) >= 6
    for ckpt in checkpoints:
        verify_checkpoint(ckpt)
        fresh = model(units)
        fresh.optimizer.build(fresh.trainable_variables)  # (the file holds its variables)
        fresh.load_weights(ckpt / "model.weights.h5")
        iters = int(re.search(r"_(\d+)iters", ckpt.name).group(1))
        for got, want in zip(weights_of(fresh), at_save[iters], strict=True):
            np.testing.assert_array_equal(got, want)


def test_a_snapshot_holds_the_train_state_of_its_moment_not_a_later_one(data, tmp_path):
    """The snapshot encodes the live state's lists at once (no deep copy of a long run's
    histories first): what training appends or changes after it never reaches its
    checkpoint; ``to_dict`` is still a copy."""
    from deeptrain.saving.snapshot import take_snapshot

    tg = make_tg(data, tmp_path)
    tg.train()
    s = tg.state
    before = json.loads(take_snapshot(tg, figures=False).state_json)["train_state"]
    copied = s.to_dict()
    snap = take_snapshot(tg, figures=False)
    s.history["loss"].append(123.0)
    s.history["loss"][0] = -1.0
    s.train_x_ticks.append(10**6)
    s.batches_fit += 100
    s.key_metric_history.append(9.0)
    saved = json.loads(snap.state_json)["train_state"]
    assert saved == before and copied == before
    assert saved["history"]["loss"][-1] != 123.0 and saved["history"]["loss"][0] != -1.0
    assert saved["batches_fit"] == s.batches_fit - 100
    # a checkpoint written from it, through the background writer, verifies and holds it
    tg._checkpointer.pipeline.submit(
        CheckpointJob(snap, [Target(tmp_path / "ck", "manual", 0, replace=False)])
    )
    tg._checkpointer.pipeline.wait()
    state = json.loads((tmp_path / "ck" / "state.json").read_text())
    assert state["train_state"] == before and state["state_sha256"] == state_digest(state)
    resolve_loadpath(tmp_path / "ck")  # verified: digest, schema, files


def test_file_sources_are_written_fsynced_and_recorded_by_their_bytes(tmp_path):
    """A memoryview of other items than bytes (a float32 matrix) is written and recorded by
    its bytes; a file from 1 MiB on, and every file after it, is fsynced in the helper
    thread, the ones before at once."""
    from deeptrain.saving.checkpoint import BACKGROUND_FSYNC_BYTES, _FileSyncs, _write_file
    from deeptrain.saving.safe_io import FILE_DIGEST, bytes_digest

    matrix = np.arange(12, dtype="float32").reshape(3, 4)
    big = np.ones(BACKGROUND_FSYNC_BYTES // 4 + 1, "float32").tobytes()
    sources = {"matrix": memoryview(matrix), "big": big, "after": b"small"}
    with _FileSyncs() as syncs:
        records, inline = {}, {}
        for name, source in sources.items():
            inline[name] = syncs.inline(1)
            records[name] = _write_file(tmp_path / name, source, syncs)
        syncs.wait()
    assert inline == {"matrix": True, "big": True, "after": False}
    for name, expected in (("matrix", matrix.tobytes()), ("big", big), ("after", b"small")):
        assert (tmp_path / name).read_bytes() == expected
        assert records[name] == {"bytes": len(expected), FILE_DIGEST: bytes_digest(expected)}
