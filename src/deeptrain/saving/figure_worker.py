"""A checkpoint's figures drawn in a helper process, so that drawing never takes the GIL
from the training thread.

Drawing the history figure is ~0.4-0.6 s of matplotlib (Python that holds the GIL). In the
background writer thread it is off the training thread's path, but not off its interpreter:
measured on a 2-core CPU, train steps taken while a checkpoint's figures are drawn ran
1.6-2.2x slower with the drawing in a thread, 1.15-1.6x with it in a process; with more
cores than the training uses, a process takes nothing from it.

One worker per training process, started with the first figures a background write draws
(a fresh interpreter running :func:`main`: it imports matplotlib, not Keras nor the user's
script, only modules the figure data names; ~1.3 s, while the first figures are drawn in
the writer thread). The two talk over two anonymous pipes
(:class:`multiprocessing.connection.Connection`, requests and replies pickled: both ends are
DeepTrain's, no other process can reach a pipe that has no address, and nothing read from a
file is unpickled). The worker runs in a session of its own and ignores Ctrl-C: a
terminal's Ctrl-C or a signal to the process group is the training process's to handle. It
exits when its pipe closes, that is when the training process exits, even killed. A process
forked from one with a worker starts its own.

Where it cannot run (Windows, a frozen application, no ``exec``), or when it dies, does not
start within :data:`START_TIMEOUT` or answer within :data:`DRAW_TIMEOUT`, or cannot read
the figure data, the figures are drawn in the thread as before, with one warning. An error
while drawing is raised by drawing again in the thread, so that it reads as it would there.
``DEEPTRAIN_FIGURE_WORKER=0`` in the environment draws every figure in the thread.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

__all__ = ["FigureWorker", "draw", "enabled", "shutdown", "START_TIMEOUT", "DRAW_TIMEOUT"]

log = logging.getLogger("deeptrain")

ENV = "DEEPTRAIN_FIGURE_WORKER"
START_TIMEOUT = 120.0  # seconds for the worker's imports (~1.3 s on a quiet 2-core CPU)
DRAW_TIMEOUT = 300.0  # seconds for one checkpoint's figures (~0.5 s)
_ENV_READ = ("SCALEFIG",)  # environment variables the figures read when drawn


class WorkerUnusable(Exception):
    """The worker cannot draw this process's figures (it failed to read them): the thread
    draws them from then on."""


def enabled() -> bool:
    """Whether figures may be drawn in the helper process: POSIX, a Python interpreter to
    start (not a frozen application), not switched off."""
    if os.name != "posix" or getattr(sys, "frozen", False) or not sys.executable:
        return False
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


# The worker's first lines: Ctrl-C ignored before anything else (also while it imports);
# DeepTrain's own directory found last on its path (this process may have it on sys.path
# only; last, so that it shadows no module)
_BOOT = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "root = sys.argv[1]; root in sys.path or sys.path.append(root); "
    "from deeptrain.saving.figure_worker import main; main(sys.argv[2:])"
)


class FigureWorker:
    """The helper process and its two pipes; :meth:`draw` is one request at a time
    (``drawn``: figure sets it drew; ``errors``: those it failed to draw)."""

    def __init__(self) -> None:
        fds: list[int] = []
        try:
            fds.extend(os.pipe())  # to the worker: read end, write end
            fds.extend(os.pipe())  # from the worker
            to_child_r, to_child_w, from_child_r, from_child_w = fds
            root = str(Path(__file__).resolve().parents[2])  # where ``deeptrain`` is
            self.process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, root, str(to_child_r), str(from_child_w)],
                pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL,
                close_fds=True,
                start_new_session=True,  # no terminal or process-group signal reaches it
            )
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        os.close(to_child_r)
        os.close(from_child_w)
        self._send = Connection(to_child_w, readable=False)
        self._recv = Connection(from_child_r, writable=False)
        self._lock = threading.Lock()
        self.ready = False
        self.drawn = 0
        self.errors = 0

    def draw(self, data: Any) -> dict[str, bytes] | str:
        """The PNGs of ``data`` (a :class:`~.snapshot.FigureData`), or the text of the
        error the worker met drawing them. ``OSError``/``EOFError``: the worker is gone
        (``TimeoutError``: it did not answer); ``TypeError``: ``data`` cannot be sent;
        :class:`WorkerUnusable`: the worker could not read it."""
        payload = _pickled((data, _changed_rc_params(), {k: os.environ.get(k) for k in _ENV_READ}))
        with self._lock:
            if not self.ready:
                self._expect(START_TIMEOUT, "start")
                self.ready = True
            _send_without_sigpipe(self._send, payload)
            kind, value = self._expect(DRAW_TIMEOUT, "draw the figures")
            if kind == "ok":
                self.drawn += 1
            elif kind == "error":
                self.errors += 1
            else:
                raise WorkerUnusable(value)
        return value

    def _expect(self, timeout: float, what: str) -> tuple[str, Any]:
        if not self._recv.poll(timeout):
            raise TimeoutError(f"the figure process did not {what} within {timeout:.0f} s")
        reply = self._recv.recv()
        if not (isinstance(reply, tuple) and len(reply) == 2 and isinstance(reply[0], str)):
            raise EOFError(f"the figure process replied {type(reply).__name__}")
        return reply

    def close(self, timeout: float = 5.0) -> None:
        """Close the pipes (the worker then exits) and reap it (killed after ``timeout``)."""
        with self._lock:
            for conn in (self._send, self._recv):
                conn.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _send_without_sigpipe(conn: Connection, payload: bytes) -> None:
    """``conn.send_bytes(payload)``; a write to a worker that died raises ``OSError``
    (EPIPE), never ``SIGPIPE``: a script may have set SIGPIPE's default action back, which
    kills the process, and the worker dies first when a whole process group is signalled."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})
    try:
        conn.send_bytes(payload)
    finally:
        if signal.SIGPIPE not in blocked:
            signal.sigtimedwait({signal.SIGPIPE}, 0)  # one this write raised: consumed
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _changed_rc_params() -> dict[str, Any]:
    """matplotlib settings this process changed since it imported matplotlib (the worker
    starts from the same ones: same environment, same ``matplotlibrc``), so that figures
    look as they would drawn here."""
    mpl = sys.modules.get("matplotlib")
    if mpl is None:
        return {}
    original = dict.copy(mpl.rcParamsOrig)
    return {  # (dict's own items: reading "backend" through rcParams may import pyplot)
        k: v
        for k, v in dict.items(mpl.rcParams)
        if k != "backend" and (k not in original or original[k] != v)
    }


def _pickled(data: Any) -> bytes:
    """``data`` as :meth:`Connection.send` would send it (an error here: not sendable)."""
    from multiprocessing.reduction import ForkingPickler

    try:
        return bytes(ForkingPickler.dumps(data))
    except Exception as e:  # e.g. a plot setting holding a function defined in a script
        raise TypeError(f"figure data cannot be sent to the figure process: {e}") from e


_worker: FigureWorker | None = None
_failed = False  # the worker could not start, died or cannot read: the thread draws
_start_lock = threading.Lock()


def _forget_in_child() -> None:
    """(In a child forked from this process) the parent's worker is not this process's:
    close the inherited pipe ends (so that the worker still sees its parent's exit) and
    start another if this process draws. (The fork waited for a worker being started: its
    pipes are all in ``_worker``.)"""
    global _worker, _failed, _start_lock
    _start_lock = threading.Lock()
    worker, _worker, _failed = _worker, None, False
    if worker is not None:
        for conn in (worker._send, worker._recv):
            conn.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=lambda: _start_lock.acquire(),
        after_in_parent=lambda: _start_lock.release(),
        after_in_child=_forget_in_child,
    )


def _get_worker() -> tuple[FigureWorker | None, bool]:
    """The worker (None: none can run), and whether this call started it."""
    global _worker, _failed
    with _start_lock:
        if _worker is not None or _failed:
            return _worker, False
        try:
            _worker = FigureWorker()
        except Exception as e:  # no such interpreter, no fork/exec, no file descriptors
            _failed = True
            log.warning("Figures are drawn in the writer thread (no figure process: %s)", e)
            return None, False
        return _worker, True


def _give_up(worker: FigureWorker, why: str) -> None:
    """Stop using ``worker``: the thread draws from now on."""
    global _worker, _failed
    with _start_lock:
        if _worker is worker:
            _worker, _failed = None, True
            log.warning("%s; figures are drawn in the writer thread from now on", why)
    worker.close(timeout=1.0)


def draw(data: Any, local: Callable[[Any], dict[str, bytes]]) -> dict[str, bytes]:
    """The figures of ``data``, drawn by the helper process where it runs, else by
    ``local`` (in this thread); ``local`` also draws again after the worker failed to, so
    that its error is raised here as it would be in the thread. The first figures are
    drawn by ``local`` while the worker starts."""
    worker, started = _get_worker() if enabled() else (None, False)
    if worker is None or started:
        return local(data)
    try:
        reply = worker.draw(data)
    except TypeError:  # these settings cannot be sent: drawn here (the worker stays)
        return local(data)
    except WorkerUnusable as e:
        _give_up(worker, f"The figure process cannot read this run's figure data ({e})")
        return local(data)
    except (OSError, EOFError) as e:
        _give_up(worker, f"The figure process ended ({e})")
        return local(data)
    if isinstance(reply, str):  # drawing failed there: the error, raised from here
        return local(data)
    return reply


def shutdown() -> None:
    """Stop the helper process (a later :func:`draw` starts another)."""
    global _worker, _failed
    with _start_lock:
        worker, _worker, _failed = _worker, None, False
    if worker is not None:
        worker.close()


def _serve(receive: Connection, send: Connection) -> None:
    """The worker's loop: a :class:`~.snapshot.FigureData` in, its PNGs out, until the
    pipe closes."""
    from multiprocessing.reduction import ForkingPickler

    import matplotlib

    from .writer import render_figures

    send.send(("ready", None))
    while True:
        try:
            raw = receive.recv_bytes()
        except (EOFError, OSError):
            return
        try:  # (a class the data names may not import here)
            data, rc, env = ForkingPickler.loads(raw)
        except Exception as e:  # noqa: BLE001 - reported: the parent stops asking
            reply: tuple[str, Any] = ("unreadable", f"{type(e).__name__}: {e}")
        else:
            try:
                _set_env(env)
                with matplotlib.rc_context(rc):
                    reply = ("ok", render_figures(data))
            except Exception as e:  # noqa: BLE001 - reported; the parent draws again to raise it
                reply = ("error", f"{type(e).__name__}: {e}")
        try:
            send.send(reply)
        except OSError:
            return


def _set_env(env: dict[str, str | None]) -> None:
    """The training process's values of the variables the figures read."""
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def main(argv: list[str]) -> None:
    """The worker process (``argv``: the file descriptors of its two pipe ends; Ctrl-C
    is ignored already, by the first line of ``_BOOT``)."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    receive = Connection(int(argv[0]), writable=False)
    send = Connection(int(argv[1]), readable=False)
    try:
        _serve(receive, send)
    except (BrokenPipeError, EOFError):  # the training process is gone
        pass
