"""Crash-safe file writes: a file is replaced whole or not at all.

:func:`atomic_file` is the one way DeepTrain writes a file that others may read meanwhile
(dataset builders, the ``latest`` pointer, the metrics log when it is rewound): the content
goes to a hidden temporary file beside the target, is fsynced, and replaces the target with
``os.replace``; the directory is fsynced so that the rename itself is durable.

:func:`atomic_files` does the same for files that belong together (a dataset's batch files
and its labels): every file is written and fsynced first, then all are moved into place;
if any step fails (or Ctrl-C), every target is put back as it was.

:func:`file_version` identifies a file's content for caches keyed by path.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["fsync_path", "atomic_file", "atomic_files", "file_version"]


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


def file_version(path: str | Path) -> tuple[Path, tuple[int, int, int, int]]:
    """``(resolved path, (mtime_ns, ctime_ns, size, inode))``: a cache key that changes when
    the file is rewritten or replaced, also by a copy that keeps the mtime (``cp -p``)."""
    resolved = Path(path).resolve()
    st = resolved.stat()
    return resolved, (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


def _hidden_sibling(path: Path, prefix: str, suffix: str) -> Path:
    """Create and return a new empty hidden file ``<prefix><name>.<hex><suffix>`` beside
    ``path``."""
    while True:
        new = path.parent / f"{prefix}{path.name}.{secrets.token_hex(6)}{suffix}"
        try:
            os.close(os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return new
        except FileExistsError:  # pragma: no cover - astronomically unlikely
            continue


def _unlink_quietly(paths: Sequence[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


@contextlib.contextmanager
def atomic_file(path: str | Path, prefix: str = ".") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (hidden: ``<prefix><name>.<hex>.tmp``); when
    the block succeeds it is fsynced and renamed onto ``path``, on any error deleted."""
    path = Path(path)
    tmp = _hidden_sibling(path, prefix, ".tmp")
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly([tmp])
        raise
    fsync_path(path.parent)


@contextlib.contextmanager
def atomic_files(
    paths: Sequence[str | Path], prefix: str = ".", remove: Sequence[str | Path] = ()
) -> Iterator[list[Path]]:
    """Yield one temporary path per target in ``paths``; when the block succeeds, all are
    fsynced and then moved into place in order (put the file that marks the set complete
    last), and the files in ``remove`` (an older set's leftovers) are removed. On any
    error, Ctrl-C included, every target is as it was and no temp is left."""
    targets = [Path(p) for p in paths]
    temps: list[Path] = []
    try:
        for path in targets:
            temps.append(_hidden_sibling(path, prefix, ".tmp"))
        yield temps
        for tmp in temps:
            fsync_path(tmp)
        _commit(targets, temps, prefix, [Path(p) for p in remove])
    except BaseException:
        _unlink_quietly(temps)
        raise
    _fsync_parents(targets)


def _fsync_parents(paths: Sequence[Path]) -> None:
    for directory in dict.fromkeys(p.parent for p in paths):
        fsync_path(directory)


def _commit(targets: list[Path], temps: list[Path], prefix: str, remove: list[Path]) -> None:
    """Move ``temps`` onto ``targets`` and remove ``remove``, keeping each existing target
    (and removed file) as a hidden backup until all is done; on failure restore every
    backup and remove the new files."""
    backups: list[tuple[Path, Path]] = []  # (backup, target)
    created: list[Path] = []  # targets that did not exist before
    try:
        for tmp, path in zip(temps, targets, strict=True):
            if os.path.lexists(path):
                backups.append((_backup(path, prefix), path))
            else:
                created.append(path)
            os.replace(tmp, path)
        for path in remove:
            backups.append((_backup(path, prefix), path))
            path.unlink(missing_ok=True)  # (gone already if _backup had to rename it)
        _fsync_parents([*targets, *remove])
    except BaseException as e:
        _roll_back(backups, created, e)
        raise
    _unlink_quietly([backup for backup, _ in backups])


def _backup(path: Path, prefix: str) -> Path:
    """Keep the existing ``path`` as a hidden hard link beside it (renamed instead where the
    filesystem has no hard links: the target is then briefly absent)."""
    while True:
        backup = path.parent / f"{prefix}{path.name}.{secrets.token_hex(6)}.bak"
        try:
            os.link(path, backup, follow_symlinks=False)
            return backup
        except FileExistsError:  # pragma: no cover - astronomically unlikely
            continue
        except OSError:
            break
    os.replace(path, backup)
    return backup


def _roll_back(backups: list[tuple[Path, Path]], created: list[Path], error: BaseException) -> None:
    """Put every backup back and remove the targets that are new; a backup that cannot be
    put back is kept, and named in a note on ``error``."""
    _unlink_quietly(created)
    for backup, path in backups:
        try:
            os.replace(backup, path)
        except OSError as e:  # pragma: no cover - the directory became unwritable
            error.add_note(f"could not restore {path} from its backup {backup}: {e}")
        else:  # a rename onto another link of the same file does nothing: drop the link
            _unlink_quietly([backup])
