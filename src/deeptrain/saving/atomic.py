"""Crash-safe writing: a directory is either absent or complete, never half-written.

A checkpoint is written file by file into a hidden temporary directory beside its final
place (same filesystem), each file is fsynced, the directory is renamed into place, and the
parent directory is fsynced so that the rename itself is durable. Readers only ever see
complete directories. Small pointer files (``latest``) are replaced the same way, with
``os.replace`` on a fsynced temporary file.

Replacing a directory of the same name takes two renames: the old one to its *backup* name
(``.old-<name>``), then the new one into place; the backup is deleted last. A crash between
the two leaves the backup, a complete directory that readers take as a fallback, and the
owner's next write settles it (:func:`recover_backup`). So at every moment the name, or its
backup, is a complete directory.

``AtomicDir`` takes an optional ``fault`` hook called with the name of each step before it
runs; tests use it to fail the writer at every step and prove the previous checkpoint
survives.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from ..util.files import atomic_file, fsync_path
from .safe_io import is_real_dir

__all__ = [
    "AtomicDir",
    "atomic_write_text",
    "fsync_path",
    "remove_stale_temps",
    "TEMP_PREFIX",
    "BACKUP_PREFIX",
    "backup_path",
    "final_name",
    "recover_backup",
    "recover_backups",
]

log = logging.getLogger("deeptrain")

TEMP_PREFIX = ".tmp-"
BACKUP_PREFIX = ".old-"

Fault = Callable[[str], None] | None


def atomic_write_text(path: Path, text: str, fault: Fault = None) -> None:
    """Replace ``path`` with ``text`` so that readers see the old or the new content."""
    path = Path(path)
    with atomic_file(path, prefix=TEMP_PREFIX) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:  # text exactly as given
            f.write(text)
        if fault:
            fault(f"replace {path.name}")


def backup_path(final: Path) -> Path:
    """Where the previous directory of ``final`` is kept while it is replaced."""
    return Path(final).with_name(f"{BACKUP_PREFIX}{Path(final).name}")


def final_name(name: str) -> str:
    """The name a backup stands for (other names unchanged)."""
    return name[len(BACKUP_PREFIX) :] if name.startswith(BACKUP_PREFIX) else name


def _remove(path: Path) -> None:
    if is_real_dir(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


class AtomicDir:
    """Context manager yielding a temporary directory that becomes ``final`` on success.

    ``final`` must not exist yet unless ``replace``; then it is replaced through its
    backup (see the module's docstring). On an exception inside the block, or in the
    renames, the temporary directory is removed and ``final`` keeps its previous content.
    ``files_synced``: the block fsyncs every file it writes itself (then only the
    directory is fsynced here). ``sync_parent=False``: the parent directory is not fsynced
    after the rename (unless a backup was made): the caller fsyncs it next (writing the
    ``latest`` pointer does), so that it is fsynced once for both.
    """

    def __init__(
        self,
        final: str | Path,
        fault: Fault = None,
        replace: bool = False,
        files_synced: bool = False,
        sync_parent: bool = True,
    ):
        self.final = Path(final)
        self.fault = fault
        self.replace = replace
        self.files_synced = files_synced
        self.sync_parent = sync_parent
        self.tmp = self.final.with_name(f"{TEMP_PREFIX}{self.final.name}-{uuid.uuid4().hex[:8]}")

    def step(self, name: str) -> None:
        """Mark a step of the write (the fault-injection point)."""
        if self.fault:
            self.fault(name)

    def __enter__(self) -> Path:
        if os.path.lexists(self.final) and not self.replace:
            raise FileExistsError(f"refusing to overwrite existing {self.final}")
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir()
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        backup = None
        try:
            self.step("fsync files")
            if not self.files_synced:
                for file in self.tmp.rglob("*"):
                    if file.is_file():
                        fsync_path(file)
            fsync_path(self.tmp)
            if os.path.lexists(self.final):
                self.step("back up previous")
                backup = backup_path(self.final)
                _remove(backup)  # damaged leftovers that recovery kept (see recover_backup)
                os.rename(self.final, backup)
                fsync_path(self.final.parent)
            self.step("rename into place")
            os.rename(self.tmp, self.final)
            self.step("fsync parent")
            if self.sync_parent or backup is not None:  # durable before the backup goes
                fsync_path(self.final.parent)
            if backup is not None:
                self.step("remove backup")
                _remove(backup)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if backup is not None and not os.path.lexists(self.final) and os.path.lexists(backup):
                os.rename(backup, self.final)  # undo the first rename
            raise


def recover_backup(final: Path, intact: Callable[[Path], bool]) -> None:
    """Settle what a replace of ``final`` interrupted by a crash left: the backup becomes
    ``final`` again if ``final`` is missing (or damaged while the backup is ``intact``),
    and is deleted if ``final`` is intact. Two damaged copies are left as they are."""
    final = Path(final)
    backup = backup_path(final)
    if not is_real_dir(backup):
        return
    if not os.path.lexists(final):
        log.warning("Restoring %s from its backup (a replace of it was interrupted)", final)
    elif is_real_dir(final) and intact(final):
        shutil.rmtree(backup, ignore_errors=True)
        return
    elif intact(backup):
        log.warning("%s is damaged; restoring it from its backup %s", final, backup.name)
        _remove(final)
    else:
        log.warning("%s and its backup %s are both damaged; left as they are", final, backup.name)
        return
    os.rename(backup, final)
    fsync_path(final.parent)


def recover_backups(
    directory: Path,
    intact: Callable[[Path], bool],
    owned: Callable[[str], bool] = lambda name: True,
) -> None:
    """:func:`recover_backup` for every backup in ``directory`` whose name is ``owned``."""
    if not is_real_dir(directory):
        return
    for item in list(Path(directory).iterdir()):
        if item.name.startswith(BACKUP_PREFIX) and owned(final_name(item.name)):
            recover_backup(item.with_name(final_name(item.name)), intact)


def remove_stale_temps(directory: Path) -> None:
    """Delete temporary leftovers of writes that were killed half-way (never backups)."""
    if is_real_dir(directory):
        for item in directory.iterdir():
            if item.name.startswith(TEMP_PREFIX):
                _remove(item)
