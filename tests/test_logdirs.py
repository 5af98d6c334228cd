"""Where a run writes: resuming continues the run (and repeating the resume command is safe),
saved settings never redirect paths, one writer per log directory, atomic model numbers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from deeptrain import TrainGenerator
from deeptrain.saving.lock import LOCK_FILE, LogdirLockedError
from deeptrain.saving.naming import encode_best, reserve_model_num
from test_train_generator import classification_data, classifier, generators

pytestmark = pytest.mark.slow

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return classification_data(tmp_path_factory.mktemp("cls"))


def make_tg(data, epochs=1, **kw):
    dg, vdg = generators(data, batch_size=16, shuffle=True, seed=3)
    kw = dict(dict(iter_verbosity=0, plot_history_freq=None), **kw)
    return TrainGenerator(classifier(), dg, vdg, epochs=epochs, **kw)


def rows(logdir: Path) -> list[tuple]:
    lines = (logdir / "metrics.jsonl").read_text().splitlines()
    return [
        (r["event"], r["batches_fit"], r.get("times_validated"), r["loss"])
        for r in map(json.loads, lines)
    ]


def test_resuming_continues_the_run_and_repeating_the_command_is_safe(data, tmp_path):
    reference = make_tg(data, epochs=3, logs_dir=tmp_path / "ref")
    reference.train()

    first = make_tg(data, epochs=1, logs_dir=tmp_path / "logs")
    first.train()
    run = first.logdir
    # the same resume command, run again: each continues from the newest checkpoint
    for epochs, starts_at in ((2, 1), (3, 2), (3, 3)):
        tg = make_tg(data, epochs=epochs, loadpath=run)
        assert tg.logdir == run and tg.model_num == 0  # same directory, same number
        assert tg.state.epoch == starts_at
        tg.train()
        assert tg.state.epoch == epochs
    assert sorted(p.name for p in (tmp_path / "logs").iterdir() if not p.name.startswith(".")) == [
        run.name
    ]
    assert rows(run) == rows(reference.logdir)
    assert tg.val_history == reference.val_history


def test_rows_of_rolled_back_batches_leave_the_metrics_log(data, tmp_path):
    reference = make_tg(data, epochs=2, logs_dir=tmp_path / "ref")
    reference.train()

    def ctrl_c(tg):
        if tg.state.batches_fit == 17:
            os.kill(os.getpid(), signal.SIGINT)

    first = make_tg(data, epochs=2, logs_dir=tmp_path / "logs", callbacks={"train:batch": ctrl_c})
    with pytest.raises(KeyboardInterrupt):
        first.train()  # 5 batches of epoch 2 logged after the epoch-1 checkpoint
    assert rows(first.logdir)[-1][:2] == ("train_batch", 17)
    resumed = make_tg(data, epochs=2, loadpath=first.logdir)
    assert resumed.state.batches_fit == 12
    assert rows(resumed.logdir)[-1][:3] == ("validation", 12, 1)
    resumed.train()
    assert rows(resumed.logdir) == rows(reference.logdir)


def test_a_csv_metrics_log_keeps_the_validations_own_metrics(data, tmp_path):
    """metrics_log='csv': a validation metric the train rows lack ('mse' here) gets its
    column when it first comes (the rows before keep their values), and a continued run
    appends under the file's columns."""
    import csv

    kw = dict(metrics_log="csv", eval_fn="predict", val_metrics=["loss", "accuracy", "mse"])
    first = make_tg(data, epochs=1, logs_dir=tmp_path / "logs", **kw)
    first.train()
    resumed = make_tg(data, epochs=2, loadpath=first.logdir, **kw)
    resumed.train()
    with open(first.logdir / "metrics.csv", newline="") as f:
        table = list(csv.DictReader(f))
    vals = [r for r in table if r["event"] == "validation"]
    assert [float(r["mse"]) for r in vals] == pytest.approx(resumed.val_history["mse"])
    assert [float(r["loss"]) for r in vals] == pytest.approx(resumed.val_history["loss"])
    trains = [r for r in table if r["event"] == "train_batch"]
    assert [int(r["batches_fit"]) for r in trains] == list(range(1, len(trains) + 1))
    assert all(r["mse"] == "" for r in trains)


def test_a_continued_runs_figures_and_name_agree_with_its_state(data, tmp_path):
    first = make_tg(
        data,
        epochs=3,
        logs_dir=tmp_path / "logs",
        unique_checkpoint_freq={"epoch": 2},
        temp_checkpoint_freq={"batch": 9},
        plot_history_freq={"epoch": 1},
    )
    first.train()  # history.png drawn at epoch 3; the unique checkpoint is epoch 2's
    (unique,) = (first.logdir / "checkpoints").glob("M0__*")
    assert (unique / "history.png").read_bytes() != (first.logdir / "history.png").read_bytes()

    resumed = make_tg(data, epochs=3, loadpath=unique)
    assert resumed.state.epoch == 2
    for name in ("history.png", "report.png"):
        assert (resumed.logdir / name).read_bytes() == (unique / name).read_bytes()
    assert resumed.logdir.name == first.logdir.name == "M0__model"
    assert resumed.model_name == f"M0__model__min{encode_best(resumed.best_key_metric)}"

    temp = next((first.logdir / "checkpoints").glob("_temp_*"))  # no figures in it
    assert not (temp / "history.png").exists()
    from_temp = make_tg(data, epochs=3, loadpath=temp, plot_history_freq={"epoch": 1})
    expected = tmp_path / "expected.png"
    from_temp.plot_history(savepath=expected)
    assert (from_temp.logdir / "history.png").read_bytes() == expected.read_bytes()


def test_saved_paths_never_redirect_a_resumed_run(data, tmp_path):
    first = make_tg(
        data,
        logs_dir=str(tmp_path / "logs"),
        best_models_dir=str(tmp_path / "best"),
        final_fig_dir=str(tmp_path / "final"),
    )
    first.train()
    checkpoint = first.get_last_log("checkpoint")
    saved = json.loads((checkpoint / "state.json").read_text())["traingen"]
    assert saved["best_models_dir"] == str(tmp_path / "best")

    resumed = make_tg(data, epochs=2, loadpath=first.logdir)
    assert resumed.best_models_dir is None and resumed.final_fig_dir is None
    assert resumed.logs_dir == first.logdir.parent  # from the run being continued
    resumed.train()
    assert len(list((tmp_path / "final").iterdir())) == 1  # only the first run's figure

    opted_in = make_tg(data, epochs=3, loadpath=checkpoint, restore_saved_paths=True)
    assert opted_in.best_models_dir == str(tmp_path / "best")
    assert opted_in.final_fig_dir == str(tmp_path / "final")


def hold_lock_in_child(logdir: Path) -> subprocess.Popen:
    """A real second process holding the log directory's lock until it is killed."""
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {SRC!r})
        from deeptrain.saving.lock import LogdirLock
        lock = LogdirLock({str(logdir)!r})
        lock.acquire()
        print("locked", flush=True)
        time.sleep(600)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    return child


def test_a_second_writer_is_refused_and_a_dead_owner_is_taken_over(data, tmp_path, caplog):
    logdir = tmp_path / "run"
    child = hold_lock_in_child(logdir)
    try:
        with pytest.raises(LogdirLockedError, match=rf"in use by another run \(PID {child.pid}"):
            make_tg(data, logdir=logdir)
        owner = json.loads((logdir / LOCK_FILE).read_text())
        assert owner["pid"] == child.pid  # the refused writer changed nothing
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with caplog.at_level("WARNING", logger="deeptrain"):
        tg = make_tg(data, logdir=logdir)  # the owner is gone: taken over with a warning
    assert f"PID {child.pid}" in caplog.text and "no longer running" in caplog.text
    tg.train()
    assert json.loads((logdir / LOCK_FILE).read_text())["pid"] == os.getpid()
    tg.destroy(confirm=True)
    assert (logdir / LOCK_FILE).read_text() == ""  # released cleanly


def test_a_newer_traingenerator_of_this_process_takes_the_directory_over(data, tmp_path):
    old = make_tg(data, logs_dir=tmp_path / "logs")
    new = make_tg(data, epochs=2, loadpath=None, logdir=old.logdir)
    with pytest.raises(LogdirLockedError, match="taken over by a newer TrainGenerator"):
        old.train()
    new.train()
    assert new.state.epoch == 2


def test_model_numbers_are_unique_under_concurrent_starts(tmp_path):
    go = tmp_path / "go"
    code = textwrap.dedent(f"""
        import sys, time, pathlib
        sys.path.insert(0, {SRC!r})
        from deeptrain.saving.naming import encode_best, reserve_model_num
        while not pathlib.Path({str(go)!r}).exists():
            time.sleep(0.001)
        print(reserve_model_num(pathlib.Path({str(tmp_path / "logs")!r})))
    """)
    children = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    time.sleep(0.5)  # let them all reach the start line (correctness does not depend on it)
    go.touch()
    nums = sorted(int(c.communicate(timeout=600)[0]) for c in children)
    assert nums == list(range(6))


def test_a_number_claimed_between_scan_and_claim_is_skipped(tmp_path, monkeypatch):
    from deeptrain.saving import naming

    logs = tmp_path / "logs"
    (logs / "M0__a").mkdir(parents=True)
    real = naming.next_model_num
    raced = []

    def scan_then_race(logs_dir, new_model_num=True):
        num = real(logs_dir, new_model_num)
        if not raced:  # another process claims the same number right after our scan
            raced.append(num)
            assert reserve_model_num(logs_dir) == num
        return num

    monkeypatch.setattr(naming, "next_model_num", scan_then_race)
    assert reserve_model_num(logs) == 2 and raced == [1]
