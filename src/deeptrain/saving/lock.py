"""One writer per log directory.

A TrainGenerator that writes a log directory holds ``<logdir>/.deeptrain.lock`` for as long
as it lives: an exclusive ``flock`` on the file (released by the operating system when the
process dies, so a lock can never outlive its owner on a local filesystem), and in the file
the owner's PID, host and start time, for the error message a second writer gets.

* A second process that wants the directory gets :class:`LogdirLockedError` naming the
  owner, instead of both crashing each other mid-save.
* A lock file left by a process that is gone (killed) is taken over with a warning.
* Within one process, a newer TrainGenerator on the same directory takes it over (re-running
  a notebook cell); the older one then refuses to write there.

Where ``flock`` is unavailable (some network filesystems, Windows), the PID in the file
decides: a live owner on this host refuses, anything else is taken over with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import weakref
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_FILE", "LogdirLock", "LogdirLockedError"]

log = logging.getLogger("deeptrain")

LOCK_FILE = ".deeptrain.lock"

_holders: dict[str, weakref.ref[LogdirLock]] = {}  # this process's locks, by real path


class LogdirLockedError(RuntimeError):
    """The log directory is being written by another run."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _read_owner(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        owner = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (UnicodeDecodeError, ValueError):
        owner = {"unreadable": raw[:80].decode("utf-8", "replace")}
    return owner if isinstance(owner, dict) else {}


def _describe(owner: dict[str, Any]) -> str:
    return (
        f"PID {owner.get('pid', '?')} on host {owner.get('host', '?')}, "
        f"since {owner.get('started', '?')}"
    )


def _close(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)  # released cleanly: an empty file is a free lock
    except OSError:
        pass
    os.close(fd)  # also releases the flock


class LogdirLock:
    """The lock of one log directory; :meth:`acquire` it, :meth:`release` when done (also
    done when the object is collected or the process exits)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self._fd: int | None = None
        self._finalizer: weakref.finalize | None = None
        self.taken_over = False

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`LogdirLockedError` naming its owner."""
        if self.held:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(self.path)
        previous = _holders.get(key)
        holder = previous() if previous is not None else None
        if holder is not None and holder is not self and holder.held:
            log.warning(
                "Log directory %s was in use by another TrainGenerator of this process; "
                "it is taken over (the older one can no longer write there)",
                self.directory,
            )
            holder.taken_over = True
            holder.release()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            owner = self._lock(fd)
        except BaseException:
            os.close(fd)
            raise
        if owner.get("pid") is not None:  # a lock file that was not released cleanly
            log.warning(
                "Taking over the lock of %s left by %s, which is no longer running",
                self.directory,
                _describe(owner),
            )
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(me).encode("utf-8"))
        os.fsync(fd)
        self._fd = fd
        self._finalizer = weakref.finalize(self, _close, fd)
        _holders[key] = weakref.ref(self)

    def _lock(self, fd: int) -> dict[str, Any]:
        """Lock ``fd`` exclusively; returns the previous owner's record."""
        owner = _read_owner(fd)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return owner
            except BlockingIOError:
                raise self._locked_error(_read_owner(fd)) from None
            except OSError as e:  # no flock on this filesystem: fall back to the PID
                log.debug("flock unavailable for %s (%s); using the owner's PID", self.path, e)
        pid = owner.get("pid")
        if (
            isinstance(pid, int)
            and pid != os.getpid()
            and owner.get("host") == socket.gethostname()
            and _pid_alive(pid)
        ):
            raise self._locked_error(owner)
        return owner

    def _locked_error(self, owner: dict[str, Any]) -> LogdirLockedError:
        return LogdirLockedError(
            f"log directory {self.directory} is in use by another run ({_describe(owner)}): "
            "two runs writing one log directory would overwrite each other's checkpoints. "
            "Wait for it to finish, or give this run another logs_dir or logdir. (If that "
            f"process is gone and the directory is on a network filesystem, delete {self.path}.)"
        )

    def check(self) -> None:
        """Raise if this lock was taken over by a newer TrainGenerator of this process."""
        if self.taken_over:
            raise LogdirLockedError(
                f"log directory {self.directory} was taken over by a newer TrainGenerator in "
                "this process; this one no longer writes there (make a new TrainGenerator, or "
                "give this one another logdir)"
            )

    def release(self) -> None:
        """Give the directory up (the lock file is left, empty)."""
        if self._finalizer is not None:
            self._finalizer()
        self._fd = self._finalizer = None
        key = os.path.realpath(self.path)
        ref = _holders.get(key)
        if ref is not None and ref() is self:
            del _holders[key]
