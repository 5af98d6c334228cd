"""Saves that fail or are cut in the background, and saves to a path that holds something
else (TensorFlow backend): no save is lost to a failed background write, a cut hand-over
never leaves the pipeline waiting forever, the writer keeps no state copy while idle, and
nothing that is not a checkpoint is ever replaced."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import pytest

from deeptrain.saving.checkpoint import list_checkpoints
from test_checkpoint import make_tg
from test_train_generator import classification_data


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return classification_data(tmp_path_factory.mktemp("fdata"), n_train=96, n_val=32)


def test_save_replaces_a_checkpoint_but_nothing_else(data, tmp_path):
    tg = make_tg(data, tmp_path)
    results = tmp_path / "results"
    results.mkdir()
    (results / "important.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not a DeepTrain checkpoint"):
        tg.save(results)
    assert [p.name for p in results.iterdir()] == ["important.txt"]
    old_file = tmp_path / "model.pkl"  # (a DeepTrain 0.6 savepath was a file)
    old_file.write_bytes(b"0.6")
    with pytest.raises(FileExistsError, match="not a DeepTrain checkpoint"):
        tg.save(old_file)
    assert old_file.read_bytes() == b"0.6"
    mine = tmp_path / "mine"
    tg.save(mine)
    tg.save(mine)  # its own checkpoint: replaced
    assert (mine / "state.json").is_file() and not list(tmp_path.glob(".old-*"))


def test_saves_of_a_failed_background_write_are_written_when_train_goes_on(data, tmp_path):
    """The best model and the checkpoint of the last epoch's end, written in the background,
    fail (a full disk); ``train()`` raises the error; once the disk has room, ``train()``
    again writes both, as it writes a save cut on the training thread."""
    tg = make_tg(data, tmp_path, best_models_dir=tmp_path / "best", checkpoint_async=True)
    failed: list[str] = []

    def disk_full_once(step: str) -> None:
        if step.startswith("write") and not failed:
            failed.append(step)
            raise OSError(28, "No space left on device (injected)")

    tg._checkpointer.fault = disk_full_once
    with pytest.raises(OSError, match="injected"):
        tg.train()
    assert failed and not list((tmp_path / "best").glob("*/state.json"))
    assert tg._saves.best_pending and tg.state.checkpoint_due == "unique"
    tg._checkpointer.fault = None
    tg.train()  # (no epochs left: the saves due are written)
    assert len(list((tmp_path / "best").glob("*/state.json"))) == 1
    assert [p.name for _, p in list_checkpoints(tg.logdir / "checkpoints")] == [
        f"{tg.model_name}_1vals_6iters"
    ]


def test_a_hand_over_cut_by_ctrl_c_leaves_the_pipeline_idle(data, tmp_path, monkeypatch):
    """A second Ctrl-C while a save is handed to a writer thread that is not started yet:
    the save raises, the pipeline is not left busy (every later save, and the interpreter's
    exit, would wait for it forever), and the next save writes."""
    tg = make_tg(data, tmp_path, checkpoint_async=True)
    pipeline = tg._checkpointer.pipeline
    start = threading.Thread.start

    def interrupted_start(thread: threading.Thread) -> None:
        monkeypatch.setattr(threading.Thread, "start", start)
        raise KeyboardInterrupt

    monkeypatch.setattr(threading.Thread, "start", interrupted_start)
    with pytest.raises(KeyboardInterrupt):
        tg.save(tmp_path / "cut")
    assert pipeline.idle.is_set() and pipeline._job is None
    assert tg.save(tmp_path / "next") == tmp_path / "next"
    assert (tmp_path / "next" / "state.json").is_file()


def test_the_idle_writer_thread_holds_no_state_copy(data, tmp_path):
    """Between writes the background thread keeps no reference to the last job: its
    snapshot is a host copy of every weight and optimizer variable."""
    tg = make_tg(data, tmp_path, checkpoint_async=True)
    tg.train()
    thread = tg._checkpointer.pipeline._thread
    assert thread is not None and thread.is_alive()
    frame = sys._current_frames()[thread.ident]
    while frame is not None and frame.f_code.co_name != "_serve":
        frame = frame.f_back
    assert frame is not None and frame.f_locals.get("job") is None


EXIT_SCRIPT = """
import os, signal, sys, time
from pathlib import Path
sys.path[:0] = [{tests!r}]
import keras
from test_checkpoint import make_tg
from test_train_generator import classification_data

out = Path({out!r})
data = classification_data(out / "data", n_train=96, n_val=32)
m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(600, activation="relu"),
                      keras.layers.Dense(600, activation="relu"), keras.layers.Dense(2, "softmax")])
m.compile("adam", "categorical_crossentropy")
tg = make_tg(data, out, m=m, checkpoint_async=True, unique_checkpoint_freq=None,
             temp_checkpoint_freq={{"epoch": 1}})

def ctrl_c_twice_in_the_final_wait(step):
    if step == "write model.weights.h5":  # (a file over 1 MiB: fsynced in a helper thread)
        time.sleep(0.5)
        for _ in range(2):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
        time.sleep(1.0)  # the main thread has ended: the interpreter is exiting

tg._checkpointer.fault = ctrl_c_twice_in_the_final_wait
print("logdir", tg.logdir, flush=True)
tg.train()
"""


@pytest.mark.subprocess
def test_a_write_in_flight_at_interpreter_exit_is_completed(data, tmp_path):
    """A second Ctrl-C in ``train()``'s final wait for a background write ends the script;
    the interpreter's exit waits for the write, which completes although new threads can
    no longer be started then (its large file's fsync runs inline)."""
    import subprocess

    from deeptrain.saving.checkpoint import resolve_loadpath

    script = EXIT_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert "KeyboardInterrupt" in proc.stderr, proc.stderr[-3000:]
    assert "cannot schedule new futures" not in proc.stderr, proc.stderr[-3000:]
    logdir = Path(proc.stdout.split("logdir", 1)[1].split()[0])
    path, payload = resolve_loadpath(logdir)
    assert payload["kind"] == "temp" and payload["train_state"]["batches_fit"] == 6


def test_checkpoints_after_loading_an_older_one_are_numbered_after_the_newest(data, tmp_path):
    """``tg.load()`` of an older checkpoint of the run, then training on: the new
    checkpoints sort after the abandoned newer ones (as when a run is continued at
    construction), so that keeping the newest few never prunes the new ones first."""
    tg = make_tg(data, tmp_path, epochs=3, unique_checkpoint_freq={"epoch": 1})
    tg.train()
    ckdir = tg.logdir / "checkpoints"
    _, first = min(list_checkpoints(ckdir))
    tg.load(first)
    tg.epochs = 2
    tg.train()
    seqs = {p.name: seq for seq, p in list_checkpoints(ckdir)}
    assert max(seqs.values()) == seqs[tg.get_last_log("checkpoint").name] == 4


FD_SCRIPT = """
import os, resource, sys
from pathlib import Path
from deeptrain.saving.atomic import recover_backup
from deeptrain.saving.checkpoint import is_intact

final = Path(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
held = []
try:
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
for check in (lambda: is_intact(final), lambda: recover_backup(final, is_intact)):
    try:
        print("returned", check())
    except OSError as e:
        print("errno", e.errno)
for fd in held:
    os.close(fd)
print("intact", is_intact(final))
"""


@pytest.mark.subprocess
def test_a_checkpoint_that_cannot_be_opened_for_want_of_descriptors_is_not_damaged(data, tmp_path):
    """Out of file descriptors (or any failure of the process, not of the file), checking a
    checkpoint raises that error: it is not taken for damage, so a replace's leftover
    backup never wins over the intact checkpoint, which stays."""
    import errno
    import shutil
    import subprocess

    from deeptrain.saving.atomic import backup_path

    tg = make_tg(data, tmp_path)
    final = tg.save(tmp_path / "ck")
    shutil.copytree(final, backup_path(final))  # (what an interrupted replace leaves)
    src = str(Path(__file__).parents[1] / "src")
    proc = subprocess.run(
        [sys.executable, "-c", FD_SCRIPT, str(final)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": src},
    )
    assert proc.stdout.split("\n")[:3] == [
        f"errno {errno.EMFILE}",
        f"errno {errno.EMFILE}",
        "intact True",
    ], proc.stdout + proc.stderr[-2000:]


def test_loading_a_checkpoint_into_the_live_run_rolls_its_metrics_log_back(data, tmp_path):
    """After an error inside an iteration, ``tg.load()`` then ``tg.train()`` (what the
    refusal says to do) trains the batches after the checkpoint again: their rows in
    ``metrics.jsonl`` are rolled back first, as when a run is continued at construction,
    so each batch has one row."""
    failed: list[int] = []

    def fail_once(tg) -> None:
        if tg.state.fit_iters == 9 and not failed:  # in the second epoch, after its checkpoint
            failed.append(1)
            raise ValueError("a callback failed")

    tg = make_tg(data, tmp_path, epochs=2, callbacks=[{"train:iter": fail_once}])
    with pytest.raises(ValueError, match="a callback failed"):
        tg.train()
    tg.load()
    tg.train()
    rows = [json.loads(line) for line in (tg.logdir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["batches_fit"] for r in rows if r["event"] == "train_batch"]
    assert steps == list(range(1, tg.state.batches_fit + 1)) and tg.state.batches_fit == 12
    validations = [r["times_validated"] for r in rows if r["event"] == "validation"]
    assert validations == [1, 2]


@pytest.mark.parametrize("eval_fn", ["evaluate", "predict"])
def test_a_validation_is_over_its_own_batches_after_one_that_kept_its_cache(
    data, tmp_path, eval_fn
):
    """``validate(clear_cache=False)`` keeps the validation's cache for inspection; the next
    validation starts from an empty one (its whole-set metrics were over both sets of
    batches)."""
    tg = make_tg(data, tmp_path, eval_fn=eval_fn)
    tg.validate(record_progress=False, clear_cache=False)
    tg.train()  # (other weights: its validation at the epoch's end)
    recorded = {name: values[-1] for name, values in tg.val_history.items()}
    again = tg.validate(record_progress=False)
    assert recorded == {name: again[name] for name in recorded}
