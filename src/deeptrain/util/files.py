"""Crash-safe file writes: a file is replaced whole or not at all.

:func:`atomic_file` is the one way DeepTrain writes a file that others may read meanwhile
(dataset builders, the ``latest`` pointer, the metrics log when it is rewound): the content
goes to a hidden temporary file beside the target, is fsynced, and replaces the target with
``os.replace``; the directory is fsynced so that the rename itself is durable.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["fsync_path", "atomic_file"]


def fsync_path(path: str | Path) -> None:
    """Flush a file's data (or a directory's entries) to disk; best effort for directories,
    which some filesystems (and Windows) do not let one fsync."""
    path = Path(path)
    directory = path.is_dir()
    if directory and os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | Path, prefix: str = ".") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (hidden: ``<prefix><name>.<hex>.tmp``); when
    the block succeeds it is fsynced and renamed onto ``path``, on any error deleted."""
    path = Path(path)
    while True:
        tmp = path.parent / f"{prefix}{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:  # pragma: no cover - astronomically unlikely
            continue
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_path(path.parent)
