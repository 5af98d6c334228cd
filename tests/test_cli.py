"""The ``deeptrain`` command line, every command through a real subprocess
(``python -m deeptrain``) on real runs: tables and JSON checked against the TrainGenerators
that made them, ``verify`` against damaged copies, figures decoded, exported event files
read back with TensorBoard's reader, and clear errors on wrong paths."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from matplotlib.image import imread

from deeptrain import DataGenerator, TrainGenerator
from deeptrain.cli.app import COMMANDS
from deeptrain.preprocessing import numpy_data_to_numpy_sets
from deeptrain.saving.checkpoint import CorruptCheckpointError, verify_checkpoint

pytestmark = pytest.mark.subprocess

REPO = Path(__file__).resolve().parents[1]
BATCH = 8


def deeptrain(*args: str | Path, cwd: Path | None = None, **kw: Any) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "deeptrain", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=900,
        **kw,
    )


class Stop(Exception):
    pass


def make_run(root: Path, data: Path, epochs: int, stop_at_batch: int | None = None, **kw):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(2, activation="softmax")], name="clf"
    )
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    dgs = [
        DataGenerator(data / n, batch_size=BATCH, labels_path=data / n / "labels.h5", seed=0)
        for n in ("train", "val")
    ]

    def stop(tg):
        if tg.state.batches_fit == stop_at_batch:
            raise Stop

    tg = TrainGenerator(
        model,
        *dgs,
        epochs=epochs,
        logs_dir=root / "logs",
        iter_verbosity=0,
        callbacks=[{"train:batch": stop}],
        model_configs={"units": 2},
        **kw,
    )
    try:
        tg.train()
    except Stop:
        pass
    state = json.loads(json.dumps(tg.state.to_dict()))
    logdir, best = tg.logdir, tg.best_key_metric
    tg.destroy(confirm=True)
    return {"logdir": logdir, "state": state, "best": best}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three runs in one logs directory: 'done' (2 epochs, a best model, temp checkpoints),
    'short' (1 epoch), 'stopped' (stopped at batch 3 of 8, last checkpoint at batch 2)."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 48)
    x = (rng.normal(size=(48, 4)) + labels[:, None]).astype("float32")
    y = np.eye(2, dtype="float32")[labels]
    data = root / "data"
    for name, sl in (("train", slice(0, 32)), ("val", slice(32, 48))):
        numpy_data_to_numpy_sets(x[sl], y[sl], data / name, batch_size=BATCH, verbose=0)
    out = {
        "done": make_run(
            root, data, 2, best_models_dir=root / "best", temp_checkpoint_freq={"batch": 3}
        ),
        "short": make_run(root, data, 1),
        "stopped": make_run(root, data, 2, stop_at_batch=3, temp_checkpoint_freq={"batch": 2}),
    }
    out.update(root=root, logs=root / "logs", best_dir=root / "best", data=data)
    return out


def newest_checkpoint(logdir: Path) -> Path:
    return logdir / "checkpoints" / (logdir / "checkpoints" / "latest").read_text().strip()


# -- help, the console script --------------------------------------------------------------
def test_help_of_the_group_and_of_every_command():
    proc = deeptrain("--help")
    assert proc.returncode == 0, proc.stderr
    for name in COMMANDS:
        assert name in proc.stdout
    assert set(COMMANDS) == {
        "runs",
        "show",
        "verify",
        "plot",
        "report",
        "export-tensorboard",
        "migrate",
    }
    for name in COMMANDS:
        proc = deeptrain(name, "--help")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"Usage: deeptrain {name} [OPTIONS]")


def test_the_console_script():
    """``deeptrain`` is the script pyproject installs; run through the same entry point."""
    with open(REPO / "pyproject.toml", "rb") as f:
        assert tomllib.load(f)["project"]["scripts"] == {"deeptrain": "deeptrain.cli:main"}
    script = Path(sys.executable).with_name("deeptrain")
    if script.is_file():  # installed (pip install -e .): the script itself
        command = [str(script)]
    else:  # this interpreter's install predates the script: what the script runs
        command = [sys.executable, "-c", "import sys; from deeptrain.cli import main; main()"]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run([*command, "--version"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "deeptrain, version 0.7.0.dev0"


# -- runs, show ------------------------------------------------------------------------------
def test_runs_table_and_json(runs):
    proc = deeptrain("runs", runs["logs"], "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {row["run"]: row for row in json.loads(proc.stdout)}
    names = {key: runs[key]["logdir"].name for key in ("done", "short", "stopped")}
    assert list(rows) == [names["stopped"], names["short"], names["done"]]  # newest first
    done = rows[names["done"]]
    assert (done["epoch"], done["epochs"], done["batches_fit"], done["validations"]) == (2, 2, 8, 2)
    assert done["best"] == runs["done"]["best"] and done["key_metric"] == "loss"
    assert done["checkpoint"] == newest_checkpoint(runs["done"]["logdir"]).name
    assert done["finished"] is True
    stopped = rows[names["stopped"]]
    assert (stopped["epoch"], stopped["batches_fit"], stopped["finished"]) == (0, 2, False)

    proc = deeptrain("runs", runs["logs"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:4] == ["RUN", "EPOCHS", "BATCHES", "VALS"]
    assert lines[3].split()[:4] == [names["done"], "2/2", "8", "2"]
    assert lines[3].split()[-1] == "yes" and lines[1].split()[-1] == "no"


def test_show_a_run_a_checkpoint_and_a_state_file(runs):
    logdir = runs["done"]["logdir"]
    checkpoint = newest_checkpoint(logdir)
    shown = []
    for path in (logdir, checkpoint, checkpoint / "state.json"):
        proc = deeptrain("show", path, "--json")
        assert proc.returncode == 0, proc.stderr
        shown.append(json.loads(proc.stdout))
    assert shown[0] == shown[1] == shown[2]
    info = shown[0]
    assert info["checkpoint"] == str(checkpoint)
    assert info["train_state"] == runs["done"]["state"]
    assert info["settings"]["epochs"] == 2 and info["settings"]["model_configs"] == {"units": 2}
    assert info["datagen"]["epoch"] == 2 and info["datagen"]["set_nums"] == 4
    assert {f["name"]: f["bytes"] for f in info["files"]} == {
        p.name: p.stat().st_size for p in checkpoint.iterdir() if p.name != "state.json"
    }
    assert info["callbacks"] == [] and info["backend"] == keras.backend.backend()

    proc = deeptrain("show", logdir)
    assert proc.returncode == 0, proc.stderr
    for heading in ("train state", "train data (datagen)", "settings", "callbacks", "files"):
        assert f"\n{heading}\n" in proc.stdout
    assert "model.weights.h5" in proc.stdout and "batches_fit" in proc.stdout


# -- verify ----------------------------------------------------------------------------------
def test_verify_intact_runs_and_best_models(runs):
    for path in (runs["logs"], runs["done"]["logdir"], runs["best_dir"]):
        proc = deeptrain("verify", path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert " 0 damaged" in proc.stdout
    proc = deeptrain("verify", runs["logs"], "--json")
    report = json.loads(proc.stdout)
    assert report["ok"] is True
    checkpoints = [
        str(p)
        for key in ("done", "short", "stopped")
        for p in (runs[key]["logdir"] / "checkpoints").iterdir()
        if p.is_dir()
    ]
    assert sorted(c["path"] for c in report["checkpoints"]) == sorted(checkpoints)
    assert (
        report["resume"][str(runs["done"]["logdir"])]
        == newest_checkpoint(runs["done"]["logdir"]).name
    )


def test_verify_lists_damaged_checkpoints_and_fails(runs, tmp_path):
    """A truncated weights file: exit code 1, the checkpoint listed with the error loading
    gives, the resume falling back to the intact one; none intact: said so."""
    logdir = tmp_path / runs["done"]["logdir"].name
    shutil.copytree(runs["done"]["logdir"], logdir)
    newest = newest_checkpoint(logdir)
    older = sorted(p for p in (logdir / "checkpoints").iterdir() if p.is_dir() and p != newest)
    weights = newest / "model.weights.h5"
    os.truncate(weights, weights.stat().st_size // 2)
    with pytest.raises(CorruptCheckpointError) as loading:
        verify_checkpoint(newest)

    proc = deeptrain("verify", logdir)
    assert proc.returncode == 1
    assert f"BAD  {newest}\n     {loading.value}" in proc.stdout
    assert f"OK   {older[-1]}" in proc.stdout
    assert f"{len(older)} intact, 1 damaged" in proc.stdout
    report = json.loads(deeptrain("verify", logdir, "--json").stdout)
    assert report["ok"] is False
    assert [c["path"] for c in report["checkpoints"] if not c["ok"]] == [str(newest)]
    assert report["resume"][str(logdir)] in {p.name for p in older}

    for checkpoint in older:
        (checkpoint / "arrays.npz").write_bytes(b"not the arrays")
    proc = deeptrain("verify", logdir)
    assert proc.returncode == 1
    assert f"resume of {logdir}: NOTHING INTACT" in proc.stdout
    assert deeptrain("verify", newest).returncode == 1  # one checkpoint


# -- figures ---------------------------------------------------------------------------------
def test_plot_draws_the_runs_history_figure_from_its_state(runs, tmp_path):
    logdir = runs["done"]["logdir"]
    proc = deeptrain("plot", logdir, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / f"{logdir.name}__history.png"
    assert proc.stdout.strip() == path.name
    drawn_by_the_run = imread(newest_checkpoint(logdir) / "history.png")
    np.testing.assert_array_equal(imread(path), drawn_by_the_run)


def test_plot_compares_runs_and_names_a_missing_metric(runs, tmp_path):
    out = tmp_path / "compare.png"
    proc = deeptrain("plot", runs["done"]["logdir"], runs["short"]["logdir"], "-o", out)
    assert proc.returncode == 0, proc.stderr
    image = imread(out)
    assert image.shape[0] > 100 and image[..., :3].std() > 0.01
    proc = deeptrain("plot", runs["done"]["logdir"], runs["short"]["logdir"], "--metric", "f1")
    assert proc.returncode == 1
    assert "no run has validation metric 'f1'" in proc.stderr


def test_report_from_the_saved_state(runs, tmp_path):
    out = tmp_path / "report.png"
    proc = deeptrain("report", runs["short"]["logdir"], "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    image = imread(out)
    assert image.shape[1] > 400 and image[..., :3].std() > 0.01


# -- export-tensorboard ----------------------------------------------------------------------
def test_export_tensorboard_from_the_metrics_log(runs, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir = tmp_path / "run"
    shutil.copytree(runs["done"]["logdir"], logdir)
    proc = deeptrain("export-tensorboard", logdir)
    assert proc.returncode == 0, proc.stderr
    assert f"tensorboard --logdir {logdir / 'tensorboard'}" in proc.stdout
    events = EventAccumulator(str(logdir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    rows = [json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines()]
    for event, prefix in (("train_batch", "train"), ("validation", "val")):
        expected = [
            (r["batches_fit"], float(np.float32(r["loss"]))) for r in rows if r["event"] == event
        ]
        assert [(e.step, e.value) for e in events.Scalars(f"{prefix}/loss")] == expected
    assert [e.step for e in events.Images("figures/history")] == [8]
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")

    proc = deeptrain("export-tensorboard", logdir)
    assert proc.returncode == 1
    assert "already holds TensorBoard event files" in proc.stderr
    assert deeptrain("export-tensorboard", logdir, "--out", tmp_path / "tb").returncode == 0


def read_scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` of the event files in ``directory``, read with
    TensorBoard's reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def test_export_tensorboard_skips_damaged_rows_and_says_where(tmp_path):
    """Steps that are not integers 0 <= step < 2**53 (NaN, negative, 2.5, beyond float64):
    the row is left out; a value that is not a number is left out, one beyond float32's
    range (1e400, an integer of 400 digits) is +-inf as the logger stores it; the count and
    the first bad line are reported, the good rows exported."""
    run = tmp_path / "run"
    run.mkdir()
    lines = [
        '{"event": "train_batch", "epoch": 1, "batches_fit": 1, "loss": 0.5}',
        '{"event": "train_batch", "epoch": 1, "batches_fit": NaN, "loss": 9.0}',  # 2
        '{"event": "train_batch", "epoch": 1, "batches_fit": -1, "loss": 9.0}',
        '{"event": "train_batch", "epoch": 1, "batches_fit": 2.5, "loss": 9.0}',
        '{"event": "train_batch", "epoch": 1, "batches_fit": 1e400, "loss": 9.0}',
        '{"event": "train_batch", "epoch": 1, "batches_fit": 3, "loss": 1e400}',
        f'{{"event": "train_batch", "epoch": 1, "batches_fit": 4, "loss": -{10**400}}}',
        '{"event": "train_batch", "epoch": 1, "batches_fit": 5.0, "loss": "oops", "acc": 1}',
        '{"event": "validation", "epoch": 1, "batches_fit": 5, "loss": 0.25}',
    ]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    proc = deeptrain("export-tensorboard", run)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert (
        f"warning: {run / 'metrics.jsonl'}: skipped 4 rows (a step that is not an integer "
        "0 <= step < 2**53) and 1 values (not numbers); the first at line 2"
    ) in proc.stderr
    assert "wrote 5 scalars and 0 images" in proc.stdout
    inf = float("inf")
    assert read_scalars(run / "tensorboard") == {
        "train/loss": [(1, 0.5), (3, inf), (4, -inf)],
        "train/acc": [(5, 1.0)],
        "val/loss": [(5, 0.25)],
    }
    assert [p.name.startswith("events.out.tfevents.") for p in (run / "tensorboard").iterdir()] == [
        True
    ]


def test_a_failed_export_leaves_nothing_and_can_be_run_again(tmp_path):
    """A metrics log with no usable rows is an error (nothing written); a write that fails
    midway (the file size limit: a full disk's error) leaves no event file either; the
    export then runs again without being refused."""
    import resource
    import signal

    run, out = tmp_path / "run", tmp_path / "tb"
    run.mkdir()
    out.mkdir()
    log_file = run / "metrics.jsonl"
    log_file.write_text('{"event": "train_batch", "batches_fit": NaN, "loss": 1.0}\n')
    for where in ((), ("--out", out)):
        proc = deeptrain("export-tensorboard", run, *where)
        assert proc.returncode == 1
        assert proc.stderr.startswith(f"Error: {log_file} has no usable rows (1 rows with a step")
        assert "the first at line 1" in proc.stderr and "Traceback" not in proc.stderr
    assert not (run / "tensorboard").exists() and list(out.iterdir()) == []

    rows = [{"event": "train_batch", "batches_fit": n, "loss": 1.0 / n} for n in range(1, 3001)]
    log_file.write_text("".join(json.dumps(row) + "\n" for row in rows))

    def small_files():  # (in the child: writes past 16 KiB fail with EFBIG)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16384, resource.RLIM_INFINITY))

    proc = deeptrain("export-tensorboard", run, "--out", out, preexec_fn=small_files)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("Error: ") and "File too large" in proc.stderr
    assert list(out.iterdir()) == []

    proc = deeptrain("export-tensorboard", run, "--out", out)
    assert proc.returncode == 0, proc.stderr
    expected = [(n, float(np.float32(1.0 / n))) for n in range(1, 3001)]
    assert read_scalars(out) == {"train/loss": expected}


def test_runs_skips_counts_beyond_floats_range_in_the_metrics_log(tmp_path):
    """A run without checkpoints: its counts from the newest rows that hold readable ones
    (an epoch of 1e400 is not)."""
    run = tmp_path / "logs" / "run"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text(
        '{"event": "train_batch", "epoch": 2, "batches_fit": 7, "loss": 0.5}\n'
        '{"event": "train_batch", "epoch": 1e400, "batches_fit": 8, "loss": 0.5}\n'
    )
    proc = deeptrain("runs", tmp_path / "logs", "--json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert (row["epoch"], row["batches_fit"]) == (2, 8)


# -- wrong paths -----------------------------------------------------------------------------
def test_wrong_paths_get_clear_errors(runs, tmp_path):
    missing = tmp_path / "nope"
    for command in ("runs", "show", "verify", "plot", "report", "export-tensorboard"):
        proc = deeptrain(command, missing)
        assert proc.returncode == 2, command
        assert f"'{missing}' does not exist" in proc.stderr, command

    data = runs["data"] / "train"
    proc = deeptrain("show", data)
    assert proc.returncode == 1
    assert f"Error: {data} is not a log directory with checkpoints" in proc.stderr
    proc = deeptrain("plot", data / "labels.h5")
    assert proc.returncode == 1
    assert "is a file but not a checkpoint's state.json" in proc.stderr
    proc = deeptrain("verify", data)
    assert proc.returncode == 1
    assert f"no checkpoints under {data}" in proc.stderr
    proc = deeptrain("runs", data / "labels.h5")
    assert proc.returncode == 2 and "is a file" in proc.stderr
    proc = deeptrain("export-tensorboard", data)
    assert proc.returncode == 1 and "has no metrics log" in proc.stderr


# -- damaged or unusual inputs ---------------------------------------------------------------
def test_a_metrics_log_with_a_cut_short_or_damaged_line_still_reads(runs, tmp_path):
    """A crash while a row was appended leaves a line without its end, damage leaves any:
    ``runs`` and ``export-tensorboard`` skip them (with a warning); a resume's rewind drops
    the cut-short last line, keeps the others as they were, and rows appended next start on
    their own line."""
    from deeptrain.training.progress import MetricsLog, read_metrics_log

    logs = tmp_path / "logs"
    run = logs / runs["done"]["logdir"].name
    shutil.copytree(runs["done"]["logdir"], run)
    shutil.rmtree(run / "checkpoints")  # (the rows then come from the log alone)
    log_file = run / "metrics.jsonl"
    lines = log_file.read_bytes().splitlines(keepends=True)
    damaged = [*lines[:3], b"\xff\xfe not json\n", *lines[3:], b'{"event": "train_ba']
    log_file.write_bytes(b"".join(damaged))
    assert len(read_metrics_log(run)) == len(lines)

    proc = deeptrain("runs", logs, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["batches_fit"] == 8
    proc = deeptrain("export-tensorboard", run)
    assert proc.returncode == 0, proc.stderr

    metrics_log = MetricsLog(run, "jsonl")
    metrics_log.rewind(batches_fit=100, times_validated=100)  # keeps every whole row
    assert log_file.read_bytes() == b"".join(damaged[:-1])
    metrics_log.write("train_batch", batches_fit=9, epoch=3)
    assert json.loads(log_file.read_bytes().splitlines()[-1])["batches_fit"] == 9


def test_runs_shows_the_checkpoint_a_resume_would_load(runs, tmp_path):
    """The newest checkpoint's weights cut short: ``runs`` reports the one ``verify`` says a
    resume loads, not the damaged one."""
    logs = tmp_path / "logs"
    run = logs / runs["done"]["logdir"].name
    shutil.copytree(runs["done"]["logdir"], run)
    weights = newest_checkpoint(run) / "model.weights.h5"
    os.truncate(weights, weights.stat().st_size // 2)
    (row,) = json.loads(deeptrain("runs", logs, "--json").stdout)
    resume = json.loads(deeptrain("verify", run, "--json").stdout)["resume"][str(run)]
    assert row["checkpoint"] == resume != newest_checkpoint(run).name


def test_verify_follows_a_link_given_and_reports_what_it_cannot_read(runs, tmp_path, monkeypatch):
    from deeptrain.cli.runinfo import verify_tree

    link = tmp_path / "link"
    link.symlink_to(newest_checkpoint(runs["done"]["logdir"]))
    proc = deeptrain("verify", link)
    assert proc.returncode == 0 and "1 intact, 0 damaged" in proc.stdout, proc.stdout

    # a directory that cannot be listed (permissions, which root does not have, or I/O
    # errors): a failed verdict, not a run left out
    logs = tmp_path / "logs"
    shutil.copytree(runs["done"]["logdir"], logs / "A")
    shutil.copytree(runs["short"]["logdir"], logs / "B")
    scandir = os.scandir

    def denied(path):
        if Path(path) == logs / "B" / "checkpoints":
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", denied)
    verdicts, _ = verify_tree(logs)
    bad = [v for v in verdicts if not v.ok]
    assert [(v.path, v.error) for v in bad] == [
        (str(logs / "B" / "checkpoints"), "cannot be read (Permission denied)")
    ]


def test_json_output_is_standard_json():
    """Diverged runs hold NaN and infinities; ``--json`` writes them as strings."""
    from deeptrain.cli.formatting import to_json_text

    def refuse(token):
        raise ValueError(token)

    text = to_json_text({"best": float("nan"), "history": [1.0, float("inf"), -float("inf")]})
    assert json.loads(text, parse_constant=refuse) == {
        "best": "nan",
        "history": [1.0, "inf", "-inf"],
    }


def test_migrate_refusing_a_pickle_that_runs_code_is_a_clear_error(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    import pickle

    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "M0__state.h5").write_bytes(pickle.dumps(Evil()))
    proc = deeptrain("migrate", tmp_path / "old", tmp_path / "new")
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: ") and "Traceback" not in proc.stderr, proc.stderr
    assert "system" in proc.stderr and not (tmp_path / "pwned").exists()


def test_plot_of_the_current_directory_names_the_figure_after_the_run(runs, tmp_path):
    run = tmp_path / runs["done"]["logdir"].name
    shutil.copytree(runs["done"]["logdir"], run)
    proc = deeptrain("plot", ".", cwd=run)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{run.name}__history.png"


def test_a_damaged_best_model_never_falls_back_to_another_models(runs, tmp_path):
    """A best models directory that several model numbers share: loading M0's damaged
    best model is an error, not M1's; another intact M0 checkpoint is taken."""
    from deeptrain.saving.checkpoint import NoIntactCheckpointError, resolve_loadpath

    (best,) = [p for p in runs["best_dir"].iterdir() if p.name.startswith("M")]
    shared = tmp_path / "best"
    mine, theirs = shared / best.name, shared / best.name.replace("M0__", "M1__", 1)
    shutil.copytree(best, mine)
    shutil.copytree(best, theirs)
    os.truncate(mine / "model.weights.h5", 100)
    with pytest.raises(NoIntactCheckpointError):
        resolve_loadpath(mine)
    assert resolve_loadpath(theirs)[0] == theirs

    also_mine = shared / f"{best.name}_2"
    shutil.copytree(best, also_mine)
    assert resolve_loadpath(mine)[0] == also_mine


def test_model_names_never_end_in_a_dot():
    from deeptrain.saving.naming import encode_value

    assert [encode_value(v) for v in (0.9996, -0.9997, 0.5, 1.25)] == ["1", "-1", ".5", "1.25"]
