"""Crash-safe writing: a directory is either absent or complete, never half-written.

A checkpoint is written file by file into a hidden temporary directory beside its final
place (same filesystem), each file is fsynced, the directory is renamed into place, and the
parent directory is fsynced so that the rename itself is durable. Readers only ever see
complete directories. Small pointer files (``latest``) are replaced the same way, with
``os.replace`` on a fsynced temporary file.

``AtomicDir`` takes an optional ``fault`` hook called with the name of each step before it
runs; tests use it to fail the writer at every step and prove the previous checkpoint
survives.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

__all__ = ["AtomicDir", "atomic_write_text", "fsync_path", "remove_stale_temps", "TEMP_PREFIX"]

TEMP_PREFIX = ".tmp-"

Fault = Callable[[str], None] | None


def fsync_path(path: Path) -> None:
    """Flush a file's (or a directory's entries') data to disk."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories; the rename still holds
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str, fault: Fault = None) -> None:
    """Replace ``path`` with ``text`` so that readers see the old or the new content."""
    path = Path(path)
    tmp = path.with_name(f"{TEMP_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:  # text exactly as given
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if fault:
            fault(f"replace {path.name}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_path(path.parent)


class AtomicDir:
    """Context manager yielding a temporary directory that becomes ``final`` on success.

    ``final`` must not exist yet (checkpoint names are unique). On an exception inside the
    block, the temporary directory is removed and ``final`` is untouched.
    """

    def __init__(self, final: str | Path, fault: Fault = None):
        self.final = Path(final)
        self.fault = fault
        self.tmp = self.final.with_name(f"{TEMP_PREFIX}{self.final.name}-{uuid.uuid4().hex[:8]}")

    def step(self, name: str) -> None:
        """Mark a step of the write (the fault-injection point)."""
        if self.fault:
            self.fault(name)

    def __enter__(self) -> Path:
        if self.final.exists():
            raise FileExistsError(f"refusing to overwrite existing {self.final}")
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir()
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        try:
            self.step("fsync files")
            for file in self.tmp.rglob("*"):
                if file.is_file():
                    fsync_path(file)
            fsync_path(self.tmp)
            self.step("rename into place")
            os.rename(self.tmp, self.final)
            self.step("fsync parent")
            fsync_path(self.final.parent)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise


def remove_stale_temps(directory: Path) -> None:
    """Delete temporary leftovers of writes that were killed half-way."""
    if directory.is_dir():
        for item in directory.iterdir():
            if item.name.startswith(TEMP_PREFIX):
                if item.is_dir():
                    shutil.rmtree(item, ignore_errors=True)
                else:
                    item.unlink(missing_ok=True)
