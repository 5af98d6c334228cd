"""Test jobs as real processes, forked from an interpreter that has Keras imported.

The job scripts the tests run (``resume_job.py``, ``tracking_job.py``, ...) begin by
importing Keras and DeepTrain: 5-11 s of a fresh interpreter on a 2-core machine (TensorFlow
7, torch 11, JAX 6), most of what each job costs. :func:`start` forks each job instead from
a ``multiprocessing`` forkserver that imported them once per test process (the standard
library's own warm-start mechanism), so a job pays only for its own work.

A job is still its own process: it is killed by real signals (SIGKILL, SIGTERM), exits with
its own status (``-9`` when killed, as :mod:`subprocess` reports it), runs its ``atexit``
handlers on a normal exit, and writes its output to files. What differs from
``python script.py`` is only what the interpreter had done before the script's first line:
Keras (on the backend the test process runs), DeepTrain, NumPy and h5py are imported, the
hash seed is 0 (``PYTHONHASHSEED=0``, as the jobs were run before) and the environment
variables read at import (``KERAS_BACKEND``, ``XLA_FLAGS``) are the test process's. A job
that needs others, and tests of what happens at import or at interpreter start (logging
set-up, console output), run as fresh interpreters.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["Job", "run", "start"]

PRELOAD = ["numpy", "h5py", "keras", "deeptrain"]
IMPORT_TIME_VARS = ("KERAS_BACKEND", "XLA_FLAGS", "PYTHONHASHSEED")
# JAX: jobs share compiled steps through JAX's persistent compilation cache (a job would
# otherwise compile what the one before it compiled; the executables are the same)
JAX_CACHE = {
    "JAX_COMPILATION_CACHE_DIR": os.path.join(
        tempfile.gettempdir(), f"deeptrain-jax-cache-{os.getuid()}"
    ),
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
}
_context: Any = None


def _forkserver() -> Any:
    """The forkserver context, started on first use with PRELOAD imported and hash seed 0."""
    global _context
    if _context is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        server_env = {"PYTHONHASHSEED": "0", **JAX_CACHE}
        saved = {name: os.environ.get(name) for name in server_env}
        os.environ.update(server_env)
        try:
            from multiprocessing import forkserver

            forkserver.ensure_running()
        finally:
            for name, value in saved.items():
                if value is None:
                    del os.environ[name]
                else:
                    os.environ[name] = value
        _context = context
    return _context


def _cuda_breaks_forks() -> bool:
    """torch with a CUDA GPU: the warm interpreter has initialised CUDA by the time it forks
    (importing Keras' torch backend and DeepTrain does), and a forked child cannot use it
    ("Cannot re-initialize CUDA in forked subprocess"): jobs then start fresh."""
    if os.environ.get("KERAS_BACKEND") != "torch":
        return False
    import torch

    return torch.cuda.is_available()


def _warm_env(env: Mapping[str, str]) -> dict[str, str]:
    """What a forked job sees: ``env``, with the values fixed at import (checked)."""
    env = dict(env)
    for name in IMPORT_TIME_VARS:
        fixed = "0" if name == "PYTHONHASHSEED" else os.environ.get(name)
        if env.get(name, fixed) != fixed:
            raise ValueError(
                f"{name}={env[name]!r}: a forked job has {fixed!r} (read at import); "
                "run this job with fresh=True"
            )
        if fixed is not None:
            env[name] = fixed
    return env


def _main(script: str, argv: list[str], env: dict, cwd: str, out: str, err: str) -> None:
    """(In the forked job) Run ``script`` as ``__main__``, as ``python script argv`` would."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    files: dict[str, int] = {}
    for fd, path in ((1, out), (2, err)):  # out == err: one file for both
        if path not in files:
            files[path] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(files[path], fd)
    for file in files.values():
        os.close(file)
    if env.get("PYTHONUNBUFFERED"):  # read at interpreter start: applied here
        for stream in (sys.stdout, sys.stderr):
            stream.reconfigure(write_through=True)  # type: ignore[union-attr]
    sys.argv = [script, *argv]
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int | None):
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        atexit._run_exitfuncs()  # as the interpreter does at exit
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


class Job:
    """A running job: ``pid``, :meth:`poll`, :meth:`wait`, :meth:`send_signal`, and once
    ended ``returncode`` (negative: the signal that ended it), ``stdout`` and ``stderr``."""

    def __init__(
        self,
        script: Path,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path,
        fresh: bool,
        output: Path | None = None,
        python: str = sys.executable,
    ):
        self.args = [str(script), *map(str, argv)]
        self._dir = tempfile.TemporaryDirectory(prefix="job-")
        self._out = output or Path(self._dir.name) / "stdout"
        self._err = output or Path(self._dir.name) / "stderr"
        self.returncode: int | None = None
        self.stdout = self.stderr = ""
        if not fresh and _cuda_breaks_forks():
            fresh, env = True, {**env, "PYTHONHASHSEED": "0"}  # as a forked job has it
        self._fresh = fresh
        if fresh:
            with open(self._out, "w") as out, open(self._err, "a") as err:
                self._proc: Any = subprocess.Popen(
                    [python, *self.args], env=dict(env), cwd=cwd, stdout=out, stderr=err
                )
        else:
            context = _forkserver()
            args = (
                self.args[0],
                self.args[1:],
                _warm_env(env),
                str(cwd),
                str(self._out),
                str(self._err),
            )
            self._proc = context.Process(target=_main, args=args)
            self._proc.start()
        self.pid: int = self._proc.pid

    def poll(self) -> int | None:
        if self.returncode is None:
            code = self._proc.poll() if self._fresh else self._proc.exitcode
            if code is not None:
                self._ended(code)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """The exit status; :class:`subprocess.TimeoutExpired` (the job killed) on a timeout."""
        self._join(timeout)
        code = self.poll()
        if code is None:
            self.kill()
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return code

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
        self._join(None)
        self.poll()

    def _join(self, timeout: float | None) -> None:
        """Wait for the process to end, at most ``timeout`` seconds."""
        if not self._fresh:
            self._proc.join(timeout)
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout)

    def _ended(self, code: int) -> None:
        self.returncode = code
        self.stdout = self._out.read_text(errors="replace")
        self.stderr = "" if self._err == self._out else self._err.read_text(errors="replace")
        self._dir.cleanup()


def start(
    script: str | Path,
    *argv: str | Path,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    fresh: bool = False,
    output: str | Path | None = None,
    python: str = sys.executable,
) -> Job:
    """Start ``script`` with ``argv``: forked from the warm interpreter, or a new one
    (``fresh=True``, of ``python``). ``env``: the whole environment (default: this
    process's). ``output``: a file for stdout and stderr together (``Job.stdout`` has both)."""
    return Job(
        Path(script),
        [str(a) for a in argv],
        env or os.environ,
        Path(cwd or os.getcwd()),
        fresh,
        Path(output) if output is not None else None,
        python,
    )


def run(
    script: str | Path,
    *argv: str | Path,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 600,
    fresh: bool = False,
) -> subprocess.CompletedProcess:
    """Run a job to its end (:func:`start`); its status and output, as ``subprocess.run``
    with ``capture_output=True, text=True`` gives them."""
    job = start(script, *argv, env=env, cwd=cwd, fresh=fresh)
    job.wait(timeout)
    return subprocess.CompletedProcess(job.args, job.returncode, job.stdout, job.stderr)
