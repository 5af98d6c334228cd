"""The helper process that draws a background checkpoint's figures
(``deeptrain.saving.figure_worker``): real processes, real figures, real signals."""

from __future__ import annotations

import dataclasses
import logging
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib
import pytest
from matplotlib.image import imread

from deeptrain.saving import figure_worker
from deeptrain.saving.checkpoint import verify_checkpoint
from deeptrain.saving.snapshot import take_snapshot
from deeptrain.saving.writer import render_figures
from test_checkpoint import make_tg
from test_train_generator import classification_data

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.name != "posix", reason="POSIX pipes")]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return classification_data(tmp_path_factory.mktemp("fwdata"), n_train=64, n_val=32)


@pytest.fixture(autouse=True)
def fresh_worker(monkeypatch):
    """Each test starts with no worker and the worker switched on (whatever the
    environment says), and leaves none behind."""
    monkeypatch.setenv(figure_worker.ENV, "1")
    figure_worker.shutdown()
    yield
    figure_worker.shutdown()


def worker_pid() -> int:
    worker = figure_worker._worker
    assert worker is not None, "no figure process is running"
    return worker.process.pid


def exited(pid: int) -> bool:
    """Gone, or a zombie no one reaped (a container's init may not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def checkpoint_pngs(tg) -> dict[str, bytes]:
    latest = tg._checkpointer.latest()
    verify_checkpoint(latest)
    pngs = {name: (latest / f"{name}.png").read_bytes() for name in ("history", "report")}
    for name in pngs:
        assert imread(latest / f"{name}.png").ndim == 3
    return pngs


def trained(data, tmp_path, **kw):
    """A TrainGenerator trained (its checkpoints' figures started the worker), the
    worker's pid, and the figure data of its state."""
    tg = make_tg(data, tmp_path, **kw)
    tg.train()
    pid = worker_pid()
    figures = take_snapshot(tg, figures=True).figures
    assert figures is not None and figures.history is not None and figures.report is not None
    return tg, pid, figures


def test_background_checkpoints_draw_in_the_worker_the_same_figures(data, tmp_path, monkeypatch):
    tg, pid, figures = trained(data, tmp_path, epochs=3)
    # started with the first figures (drawn in the thread meanwhile), drew the next two
    assert pid != os.getpid() and not exited(pid)
    assert figure_worker._worker.drawn == 2
    checkpoint_pngs(tg)
    drawn = figure_worker.draw(figures, render_figures)
    assert set(drawn) == {"history", "report"}
    assert drawn == render_figures(figures)  # byte for byte as drawn in this process
    # matplotlib settings this process changed are the worker's too
    with matplotlib.rc_context({"axes.facecolor": "#ddeeff", "lines.linewidth": 4.0}):
        styled = figure_worker.draw(figures, render_figures)
        assert styled["history"] == render_figures(figures)["history"]
    assert styled["history"] != drawn["history"]
    # as are the environment variables the figures read (set after the worker started)
    monkeypatch.setenv("SCALEFIG", "0.5")
    scaled = figure_worker.draw(figures, render_figures)
    assert scaled == render_figures(figures) and scaled["history"] != drawn["history"]
    assert worker_pid() == pid  # one worker, kept


def test_no_worker_when_switched_off_or_written_inline(data, tmp_path, monkeypatch):
    monkeypatch.setenv(figure_worker.ENV, "0")
    tg = make_tg(data, tmp_path / "off")
    tg.train()
    checkpoint_pngs(tg)
    assert figure_worker._worker is None
    monkeypatch.setenv(figure_worker.ENV, "1")
    tg = make_tg(data, tmp_path / "sync", checkpoint_async=False)
    tg.train()  # the training thread waits for the write anyway: drawn there
    checkpoint_pngs(tg)
    assert figure_worker._worker is None


def test_a_killed_worker_leaves_the_figures_to_the_thread(data, tmp_path, caplog):
    tg = make_tg(data, tmp_path)
    tg.train()
    before = tg._checkpointer.latest()
    pid = worker_pid()
    os.kill(pid, signal.SIGKILL)
    tg.epochs += 1
    with caplog.at_level(logging.WARNING, logger="deeptrain"):
        tg.train()  # its checkpoint's figures: the worker is found gone, drawn here
    assert "The figure process ended" in caplog.text
    assert figure_worker._worker is None and exited(pid)
    checkpoint_pngs(tg)
    assert tg._checkpointer.latest() != before


def test_a_worker_that_cannot_start_leaves_the_figures_to_the_thread(
    data, tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    tg = make_tg(data, tmp_path)
    with caplog.at_level(logging.WARNING, logger="deeptrain"):
        tg.train()
    assert "no figure process" in caplog.text and "no-such-python" in caplog.text
    assert figure_worker._worker is None
    checkpoint_pngs(tg)


def test_an_error_drawing_is_raised_as_drawn_here(data, tmp_path):
    _, pid, figures = trained(data, tmp_path)
    bad = dataclasses.replace(
        figures, report={**figures.report, "fontpath": str(tmp_path / "missing.ttf")}
    )
    with pytest.raises(OSError) as here:
        render_figures(bad)
    with pytest.raises(type(here.value)) as there:
        figure_worker.draw(bad, render_figures)
    assert str(there.value) == str(here.value)
    assert figure_worker._worker.errors == 1  # the worker met it first, and goes on
    assert worker_pid() == pid and not exited(pid)
    assert figure_worker.draw(figures, render_figures) == render_figures(figures)


def test_figure_data_that_cannot_be_sent_is_drawn_here(data, tmp_path):
    _, pid, figures = trained(data, tmp_path)
    local = {"unsendable": lambda: None}  # a lambda does not pickle
    odd = dataclasses.replace(figures, history={**figures.history, "aliases": local})
    with pytest.raises(TypeError, match="cannot be sent"):
        figure_worker._pickled(odd)
    assert figure_worker.draw(odd, render_figures) == render_figures(odd)
    assert worker_pid() == pid


class Alias(str):
    """A metric alias of a class the worker cannot import (this test module)."""


def test_figure_data_the_worker_cannot_read_is_drawn_here_from_then_on(data, tmp_path, caplog):
    _, pid, figures = trained(data, tmp_path)
    aliases = {k: Alias(v) for k, v in figures.history["aliases"].items()} or {"x": Alias("y")}
    odd = dataclasses.replace(figures, history={**figures.history, "aliases": aliases})
    with caplog.at_level(logging.WARNING, logger="deeptrain"):
        assert figure_worker.draw(odd, render_figures) == render_figures(odd)
    assert "cannot read this run's figure data" in caplog.text
    assert "No module named 'test_figure_worker'" in caplog.text
    assert figure_worker._worker is None and exited(pid)
    assert figure_worker.draw(figures, render_figures) == render_figures(figures)
    assert figure_worker._worker is None  # the thread draws from then on


def test_a_worker_that_does_not_answer_is_given_up(data, tmp_path, monkeypatch, caplog):
    silent = tmp_path / "silent-python"  # a real program that never answers
    silent.write_text("#!/bin/sh\nexec sleep 600\n")
    silent.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(silent))
    monkeypatch.setattr(figure_worker, "START_TIMEOUT", 1.0)
    _, pid, figures = trained(data, tmp_path)  # started; the first figures drawn here
    with caplog.at_level(logging.WARNING, logger="deeptrain"):
        assert figure_worker.draw(figures, render_figures) == render_figures(figures)
    assert "did not start within 1 s" in caplog.text
    assert figure_worker._worker is None and exited(pid)


def test_the_worker_ignores_ctrl_c(data, tmp_path):
    _, pid, figures = trained(data, tmp_path)  # the worker is still importing
    os.kill(pid, signal.SIGINT)  # as a terminal's Ctrl-C, sent to it alone
    time.sleep(0.5)
    assert not exited(pid)
    assert figure_worker.draw(figures, render_figures) == render_figures(figures)
    assert worker_pid() == pid


def test_a_forked_process_starts_its_own_worker(data, tmp_path):
    """A process forked from one with a worker (a search forking trainings) must not talk
    on its parent's pipes: the two would read each other's figures."""
    _, pid, figures = trained(data, tmp_path)
    expected = render_figures(figures)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the forked child reports through the pipe
        code = 1
        try:
            os.close(read_end)
            inherited = figure_worker._worker is not None
            first = figure_worker.draw(figures, render_figures)  # here, as it starts one
            same = first == expected == figure_worker.draw(figures, render_figures)
            own = worker_pid() != pid and figure_worker._worker.drawn == 1
            os.write(write_end, b"%d%d%d" % (inherited, same, own))
            figure_worker.shutdown()
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 60)
        reply = os.read(read_end, 3) if ready else b"timeout"
    finally:
        os.close(read_end)
        _, status = os.waitpid(child, 0)
    assert reply == b"011", reply  # no inherited worker; the same figures; its own worker
    assert os.waitstatus_to_exitcode(status) == 0
    assert worker_pid() == pid  # the parent's worker goes on
    assert figure_worker.draw(figures, render_figures) == expected


def run_script(script: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, figure_worker.ENV: "1"},
        **kw,
    )


@pytest.mark.subprocess
def test_signals_to_the_process_group_do_not_reach_the_worker():
    """A terminal's Ctrl-C, or a scheduler's SIGTERM to the job's process group, is the
    training process's to handle: the worker lives on, also when it has only just started
    (before its first line ran)."""
    script = (
        "import os, signal\n"
        "from deeptrain.saving import figure_worker\n"
        "for s in (signal.SIGINT, signal.SIGTERM):\n"  # handled here (an ignored signal
        "    signal.signal(s, lambda *args: None)\n"  # would stay ignored in the worker)
        "worker = figure_worker.FigureWorker()\n"
        "os.killpg(0, signal.SIGINT); os.killpg(0, signal.SIGTERM)\n"
        "reply = worker.draw('not figure data')\n"  # an error reply: alive and serving
        "print('alive' if isinstance(reply, str) else reply, worker.errors, flush=True)\n"
        "worker.close()\n"
    )
    done = run_script(script, start_new_session=True)  # (its own group: not pytest's)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["alive", "1"]


@pytest.mark.subprocess
def test_a_dead_worker_never_kills_its_process_through_sigpipe():
    """A script may set SIGPIPE's default action back (which kills); writing to a worker
    that died is then an OSError, not a silent death of the training process."""
    script = (
        "import os, signal\n"
        "signal.signal(signal.SIGPIPE, signal.SIG_DFL)\n"
        "from deeptrain.saving import figure_worker\n"
        "worker = figure_worker.FigureWorker()\n"
        "worker.draw('ping')\n"  # ready and serving
        "os.kill(worker.process.pid, signal.SIGKILL); worker.process.wait()\n"
        "try:\n"
        "    worker.draw('ping')\n"
        "except OSError as e:\n"
        "    print('survived', type(e).__name__, flush=True)\n"
    )
    done = run_script(script)
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert done.stdout.split() == ["survived", "BrokenPipeError"]


@pytest.mark.subprocess
def test_the_worker_exits_when_its_training_process_is_killed(tmp_path):
    script = (
        "import sys\n"
        "from deeptrain.saving import figure_worker\n"
        "worker, _ = figure_worker._get_worker()\n"
        "print(worker.process.pid, flush=True)\n"
        "sys.stdin.read()\n"  # until killed
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, figure_worker.ENV: "1"},
    )
    try:
        pid = int(parent.stdout.readline())
        assert not exited(pid)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 30
    while not exited(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert exited(pid), "the figure process outlived the process it drew for"
