"""A checkpoint's figures drawn in a helper process, so that drawing never takes the GIL
from the training thread.

Drawing the history figure is ~0.4-0.6 s of matplotlib (Python that holds the GIL). In the
background writer thread it is off the training thread's path, but not off its interpreter:
measured on a 2-core CPU, train steps taken while a checkpoint's figures are drawn ran
1.6-2.2x slower with the drawing in a thread, 1.15-1.6x with it in a process; with more
cores than the training uses, a process takes nothing from it.

One worker per training process, started with the first figures a background write draws
(a fresh interpreter running :func:`main`: it imports matplotlib, not Keras nor the user's
script; ~1.3 s, while the first figures are drawn in the writer thread). The two talk
over two anonymous pipes (:class:`multiprocessing.connection.Connection`, requests and
replies pickled: both ends are DeepTrain's, and no other process can reach a pipe that has
no address; nothing read from a file is unpickled). A process forked from one with a worker
starts its own. The worker ignores Ctrl-C (the training process decides
what an interrupt does) and exits when its pipe closes: when the training process exits,
even killed. Where it cannot run (no ``fork``/``exec``, Windows, a crash), the figures are
drawn in the thread as before, with one warning; an error while drawing is raised by
drawing again in the thread, so it reads as it would have there.

``DEEPTRAIN_FIGURE_WORKER=0`` in the environment draws every figure in the thread (no
process).
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

__all__ = ["FigureWorker", "draw", "enabled", "shutdown"]

log = logging.getLogger("deeptrain")

ENV = "DEEPTRAIN_FIGURE_WORKER"


def enabled() -> bool:
    """Whether figures may be drawn in the helper process (POSIX, not switched off)."""
    return os.name == "posix" and os.environ.get(ENV, "1").strip().lower() not in (
        "0",
        "false",
        "no",
        "off",
    )


# The worker's first lines: Ctrl-C ignored before anything else (it reaches the whole
# process group, also while the worker imports); DeepTrain's own directory found last on its
# path (this process may have it on sys.path only; last, so that it shadows no module)
_BOOT = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "root = sys.argv[1]; root in sys.path or sys.path.append(root); "
    "from deeptrain.saving.figure_worker import main; main(sys.argv[2:])"
)


def _package_root() -> str:
    """The directory the ``deeptrain`` package is imported from."""
    return str(Path(__file__).resolve().parents[2])


class FigureWorker:
    """The helper process and its two pipes; :meth:`draw` is one request at a time
    (``drawn``: how many it drew)."""

    def __init__(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, _package_root(), str(to_child_r), str(from_child_w)],
                pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL,
                close_fds=True,
            )
        except BaseException:
            for fd in (to_child_r, to_child_w, from_child_r, from_child_w):
                os.close(fd)
            raise
        os.close(to_child_r)
        os.close(from_child_w)
        self._send = Connection(to_child_w, readable=False)
        self._recv = Connection(from_child_r, writable=False)
        self._lock = threading.Lock()
        self.drawn = 0  # figure sets drawn

    def draw(self, data: Any) -> dict[str, bytes] | str:
        """The PNGs of ``data`` (a :class:`~.snapshot.FigureData`), or the text of the
        error the worker met drawing them. ``OSError``/``EOFError``: the worker is gone;
        an object that cannot be sent is raised as ``TypeError``."""
        payload = _pickled((data, _changed_rc_params()))
        with self._lock:
            self._send.send_bytes(payload)
            reply = self._recv.recv()
        if not (isinstance(reply, tuple) and len(reply) == 2 and reply[0] in ("ok", "error")):
            raise EOFError(f"the figure worker replied {type(reply).__name__}")
        if reply[0] == "ok":
            self.drawn += 1
        return reply[1]

    def close(self, timeout: float = 5.0) -> None:
        """Close the pipes (the worker then exits) and reap it."""
        for conn in (self._send, self._recv):
            conn.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


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
_failed = False  # the worker could not start or died: the thread draws from then on
_start_lock = threading.Lock()


def _forget_in_child() -> None:
    """(In a child forked from this process) the parent's worker is not this process's:
    close the inherited pipe ends (so that the worker still sees its parent's exit) and
    start another if this process draws."""
    global _worker, _failed, _start_lock
    _start_lock = threading.Lock()  # (a lock held at the fork stays held in the child)
    worker, _worker, _failed = _worker, None, False
    if worker is not None:
        for conn in (worker._send, worker._recv):
            conn.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def _get_worker() -> tuple[FigureWorker | None, bool]:
    """The worker (None: none can run), and whether this call started it."""
    global _worker, _failed
    with _start_lock:
        if _worker is not None or _failed:
            return _worker, False
        try:
            _worker = FigureWorker()
        except OSError as e:
            _failed = True
            log.warning("Figures are drawn in the writer thread (no figure process: %s)", e)
            return None, False
        return _worker, True


def draw(data: Any, local: Callable[[Any], dict[str, bytes]]) -> dict[str, bytes]:
    """The figures of ``data``, drawn by the helper process where it runs, else by
    ``local`` (in this thread); ``local`` also draws again after the worker failed to, so
    that its error is raised here as it would be in the thread. The first figures are
    drawn by ``local`` while the worker starts (~1.3 s of imports, not waited for)."""
    global _worker, _failed
    worker, started = _get_worker() if enabled() else (None, False)
    if worker is None or started:
        return local(data)
    try:
        reply = worker.draw(data)
    except TypeError:  # these settings cannot be sent: drawn here (the worker stays)
        return local(data)
    except (OSError, EOFError) as e:
        with _start_lock:
            if _worker is worker:
                _worker, _failed = None, True
                log.warning("The figure process ended (%s); figures are drawn in the thread", e)
        worker.close(timeout=1.0)
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

    while True:
        try:
            raw = receive.recv_bytes()
        except (EOFError, OSError):
            return
        try:  # (a class the data names may not import here: an error, drawn by the parent)
            data, rc = ForkingPickler.loads(raw)
            with matplotlib.rc_context(rc):
                reply: tuple[str, Any] = ("ok", render_figures(data))
        except Exception as e:  # noqa: BLE001 - reported; the parent draws again to raise it
            reply = ("error", f"{type(e).__name__}: {e}")
        try:
            send.send(reply)
        except OSError:
            return


def main(argv: list[str]) -> None:
    """The worker process (``argv``: the file descriptors of its two pipe ends)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the training process's
    os.environ.setdefault("MPLBACKEND", "Agg")
    receive = Connection(int(argv[0]), writable=False)
    send = Connection(int(argv[1]), readable=False)
    _serve(receive, send)
