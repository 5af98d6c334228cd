"""The checkpoint format: one directory per checkpoint, written atomically.

::

    <checkpoint>/
        model.weights.h5   weights + optimizer variables (Keras 3)
        arrays.npz         non-weight variables, RNN states, RNG states, callbacks' arrays
        model.keras        only when the full model is asked for
        history.png, report.png   figures (unique and best checkpoints)
        state.json         everything else, as versioned JSON; written last, it lists every
                           other file with its size and digest (XXH3-128; SHA-256 before
                           version 3), and holds the SHA-256 of its own content
                           (``state_sha256``), so a checkpoint whose state.json reads back
                           and whose files match is intact

``state.json`` begins with ``format``, ``version``, ``kind`` and ``seq``, in this order: the
checkpoints beside the one loaded are ordered and pruned by these alone, read from the
first :data:`HEADER_BYTES` bytes. ``state_sha256`` is the SHA-256 of the canonical JSON of
the state without it (sorted keys, no spaces); version 1 (no digest) is still read, with a
warning. The whole state is validated against :mod:`.state_schema` when read.

Checkpoints of a run live in ``<logdir>/checkpoints/``; the file ``latest`` there names the
newest one and is replaced atomically after the checkpoint is complete. It must hold a
plain entry name; a checkpoint must be a real directory there, and every file it lists a
regular file in it (symbolic links are refused). Loading never unpickles: JSON,
``np.load(allow_pickle=False)`` and self-contained HDF5 only.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import stat
import zipfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import (
    BACKUP_PREFIX,
    AtomicDir,
    atomic_write_text,
    final_name,
    fsync_path,
    recover_backup,
    remove_stale_temps,
)
from .errors import CorruptCheckpointError, NoIntactCheckpointError
from .naming import model_num_of
from .safe_io import (
    FILE_DIGEST,
    bytes_digest,
    file_digest,
    is_plain_name,
    is_real_dir,
    open_binary,
    read_capped,
    read_prefix,
    record_digest,
)

__all__ = [
    "FORMAT",
    "VERSION",
    "READ_VERSIONS",
    "KINDS",
    "STATE_FILE",
    "ARRAYS_FILE",
    "WEIGHTS_FILE",
    "MODEL_FILE",
    "POINTER_FILE",
    "CHECKPOINTS_DIR",
    "DIGEST_FIELD",
    "MAX_STATE_BYTES",
    "HEADER_BYTES",
    "CorruptCheckpointError",
    "NoIntactCheckpointError",
    "FileSource",
    "write_checkpoint",
    "arrays_bytes",
    "read_checkpoint",
    "read_arrays",
    "verify_checkpoint",
    "is_intact",
    "state_digest",
    "resolve_loadpath",
    "list_checkpoints",
    "update_pointer",
    "read_pointer",
    "prune",
]

log = logging.getLogger("deeptrain")

FORMAT = "deeptrain.checkpoint"
VERSION = 3  # 3: files' digests XXH3-128 (2: SHA-256; 1: no state digest either)
READ_VERSIONS = (1, 2, 3)
KINDS = ("temp", "unique", "best", "manual")
STATE_FILE = "state.json"
ARRAYS_FILE = "arrays.npz"
WEIGHTS_FILE = "model.weights.h5"
MODEL_FILE = "model.keras"
POINTER_FILE = "latest"
CHECKPOINTS_DIR = "checkpoints"
DIGEST_FIELD = "state_sha256"
HEADER_FIELDS = ("format", "version", "kind", "seq")
MAX_STATE_BYTES = 256 * 2**20  # a state.json larger than this is refused unread
HEADER_BYTES = 4096  # what is read of a sibling checkpoint's state.json
POINTER_BYTES = 4096

_HEADER = re.compile(
    rb'\A\{\s*"format":\s*"deeptrain\.checkpoint",\s*"version":\s*(\d{1,6}),\s*'
    rb'"kind":\s*"(temp|unique|best|manual)",\s*"seq":\s*(\d{1,16})\s*[,}]'
)
_warned: set[str] = set()


def _warn_once(key: str, message: str, *args: Any) -> None:
    """A warning per process and ``key`` (pruning scans at every save)."""
    if key not in _warned:
        _warned.add(key)
        log.warning(message, *args)


# -- writing -------------------------------------------------------------------------
def state_digest(state: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``state`` without its digest field."""
    body = {k: v for k, v in state.items() if k != DIGEST_FIELD}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _encode_state(payload: dict[str, Any], files: dict[str, Any], decoded: bool = False) -> str:
    """``state.json``'s text: header fields first, then the digest, then the rest.
    ``decoded``: ``payload`` was read from JSON text (it is what a reader sees already)."""
    from .state_schema import encoded_schema_error

    plain = {"format": FORMAT, "version": VERSION, **payload, "files": files}
    if not decoded:  # as a reader sees it (tuples as lists; not JSON: an error here)
        plain = json.loads(json.dumps(plain, allow_nan=True))
    texts = {k: json.dumps(v, allow_nan=True) for k, v in plain.items()}  # each field once
    error = encoded_schema_error(plain, texts)  # (its memo of passed fields reads the texts)
    if error is not None:
        raise ValueError(f"checkpoint state not written: {error}")
    texts[DIGEST_FIELD] = json.dumps(state_digest(plain))
    first = (*HEADER_FIELDS, DIGEST_FIELD)
    order = [*first, *(k for k in plain if k not in first)]
    lines = (f"{json.dumps(k)}: {texts[k]}" for k in order)
    return "{\n" + ",\n".join(lines) + "\n}\n"  # a top-level field per line


FileSource = bytes | Path | Callable[[Path], None]
"""A checkpoint file's content: its bytes, a file to copy, or a function that writes it."""


def write_checkpoint(
    path: Path,
    payload: dict[str, Any],
    files: dict[str, FileSource],
    fault: Callable[[str], None] | None = None,
    replace: bool = False,
    sync_parent: bool = True,
    decoded: bool = False,
) -> Path:
    """Write a checkpoint directory atomically.

    Args:
        payload: JSON-safe state with ``kind`` and ``seq`` (``format``, ``version``, the
            digest and ``files`` are added).
        files: ``{filename: content}``, written in this order (see :data:`FileSource`).
        fault: test hook called with each step's name before it runs.
        replace: an existing checkpoint of the same name is replaced (after the new one is
            complete, through a backup: see :mod:`.atomic`); otherwise it is an error.
        sync_parent: False when the caller fsyncs the parent directory next (see
            :class:`.atomic.AtomicDir`).
        decoded: ``payload`` was decoded from JSON text (then it is not encoded and decoded
            again to be checked as a reader sees it: a long run's state is megabytes).

    Each file is fsynced once (a large one in a helper thread while the next one is written
    and this one is hashed: :class:`_FileSyncs`); ``state.json`` last; then the directory,
    once, and its rename into place.
    """
    path = Path(path)
    if replace:
        recover_backup(path, is_intact)  # a crash in an earlier replace of this name
    elif os.path.lexists(path):
        raise FileExistsError(f"checkpoint {path} exists")
    atomic = AtomicDir(path, fault, replace=replace, files_synced=True, sync_parent=sync_parent)
    with atomic as tmp, _FileSyncs() as syncs:
        manifest: dict[str, Any] = {}
        for name, source in files.items():
            atomic.step(f"write {name}")
            manifest[name] = _write_file(tmp / name, source, syncs)
        text = _encode_state(payload, manifest, decoded)  # (checked while the fsyncs run)
        syncs.wait()
        atomic.step(f"write {STATE_FILE}")
        _write_bytes(tmp / STATE_FILE, text.encode("utf-8"), sync=True)
    return path


class _FileSyncs:
    """The fsyncs of a checkpoint's files. A file of :data:`BACKGROUND_FSYNC_BYTES` or more
    is fsynced in a helper thread (started at the first such file) while the next file is
    written and this one hashed, and so are the files after it (in order: a small file's
    fsync would wait for the large one's anyway); a small file before any large one at
    once: starting and joining a thread costs more than the overlap saves (~3 ms against
    ~0.4 ms an fsync, on a 2-core CPU), and most checkpoints of small models have no large
    file."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []

    def inline(self, size: int) -> bool:
        """Whether a file of ``size`` bytes is fsynced at once (by :meth:`sync`)."""
        return self._pool is None and size < BACKGROUND_FSYNC_BYTES

    def sync(self, file: Path, size: int) -> None:
        if self.inline(size):
            fsync_path(file)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="deeptrain-fsync")
        try:
            self._pending.append(self._pool.submit(fsync_path, file))
        except RuntimeError:  # the interpreter is exiting (a write it waits for): no new
            self.wait()  # threads then; in order, here
            fsync_path(file)

    def wait(self) -> None:
        """Until every queued fsync is done (raises the first one's error)."""
        for done in self._pending:
            done.result()

    def __enter__(self) -> _FileSyncs:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self._pool is not None:  # (after a failure: the files are deleted next)
            self._pool.shutdown(wait=True, cancel_futures=exc_type is not None)


BACKGROUND_FSYNC_BYTES = 1 << 20
"""Files from this size on are fsynced in a helper thread (:class:`_FileSyncs`)."""


def _write_bytes(file: Path, data: bytes | memoryview, sync: bool = False) -> None:
    """Write a new file; ``sync``: fsynced before it is closed."""
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        view = _byte_view(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _byte_view(data: bytes | bytearray | memoryview) -> memoryview:
    """``data`` as a flat view of bytes (a memoryview of other items, or of several
    dimensions, counts and slices items, not bytes)."""
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _write_file(file: Path, source: FileSource, syncs: _FileSyncs) -> dict[str, Any]:
    """Write one file, fsynced (or queued: :class:`_FileSyncs`); returns its manifest record."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = _byte_view(source)
        inline = syncs.inline(view.nbytes)
        _write_bytes(file, view, sync=inline)
        if not inline:
            syncs.sync(file, view.nbytes)
        return {"bytes": view.nbytes, FILE_DIGEST: bytes_digest(view)}
    if isinstance(source, Path):
        shutil.copyfile(source, file)
    else:
        source(file)
    syncs.sync(file, os.stat(file).st_size)
    size, digest = file_digest(file)  # from the page cache (while a large file's fsync runs)
    return {"bytes": size, FILE_DIGEST: digest}


def arrays_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """``arrays.npz``'s content."""
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()


def update_pointer(checkpoints_dir: Path, name: str, fault=None) -> None:
    atomic_write_text(Path(checkpoints_dir) / POINTER_FILE, name + "\n", fault)


# -- reading one checkpoint ----------------------------------------------------------
def _parse_state(raw: bytes, state_file: Path) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise CorruptCheckpointError(
            f"{state_file} is not valid JSON (nested too deeply)"
        ) from None
    except ValueError as e:  # also bad UTF-8 and integers over Python's digit limit
        raise CorruptCheckpointError(f"{state_file} is not valid JSON ({e})") from None


def _check_state(state: Any, state_file: Path) -> dict[str, Any]:
    """``state`` after its format, version, digest and schema are checked."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else None
        raise CorruptCheckpointError(
            f"{state_file} is not a DeepTrain checkpoint state (format {found!r})"
        )
    version = state.get("version")
    if type(version) is not int or version not in READ_VERSIONS:
        raise ValueError(
            f"{state_file} has checkpoint format version {version!r}; this "
            f"DeepTrain reads versions {list(READ_VERSIONS)}"
        )
    if version >= 2:
        if state.get(DIGEST_FIELD) != state_digest(state):
            raise CorruptCheckpointError(
                f"{state_file} does not match its {DIGEST_FIELD}: the state was edited or "
                "damaged after it was written"
            )
    else:
        log.warning(
            "%s is a version-1 checkpoint state: it has no digest, so it cannot be "
            "checked for edits or damage",
            state_file,
        )
    from .state_schema import schema_error

    error = schema_error(state)
    if error is not None:
        raise CorruptCheckpointError(f"{state_file}: {error}")
    return state


def read_state(path: Path) -> dict[str, Any]:
    """The verified and validated ``state.json`` of the checkpoint ``path`` (its other
    files are not checked: see :func:`verify_checkpoint`)."""
    state_file = Path(path) / STATE_FILE
    if not os.path.lexists(state_file):
        raise CorruptCheckpointError(f"{path} has no {STATE_FILE}: not a complete checkpoint")
    raw = read_capped(state_file, MAX_STATE_BYTES)
    try:
        return _check_state(_parse_state(raw, state_file), state_file)
    except RecursionError:
        raise CorruptCheckpointError(f"{state_file} is nested too deeply") from None


def verify_checkpoint(path: Path, hashes: bool = True) -> dict[str, Any]:
    """Return the checkpoint's state after checking it is complete and unaltered: a real
    directory, a valid state, and every file it lists a regular file of the recorded size
    and digest (``hashes=False``: size only, without reading the files)."""
    path = Path(path)
    if not is_real_dir(path):
        what = "a symbolic link" if path.is_symlink() else "not a directory"
        raise CorruptCheckpointError(f"checkpoint {path} is {what} (refused)")
    state = read_state(path)
    for name, record in state["files"].items():
        file = path / name
        if not is_plain_name(name) or name == STATE_FILE:
            raise CorruptCheckpointError(
                f"{path / STATE_FILE} lists the file {name!r}, which "
                "is not a plain file name of the checkpoint"
            )
        if not os.path.lexists(file):
            raise CorruptCheckpointError(f"{path}: file {name!r} is missing")
        if not hashes:
            if not stat.S_ISREG((info := file.lstat()).st_mode) or info.st_size != record["bytes"]:
                raise CorruptCheckpointError(f"{file} is truncated or not a regular file")
            continue
        algorithm, recorded = record_digest(record)
        size, digest = file_digest(file, algorithm)  # refuses links, FIFOs and devices
        if size != record["bytes"] or digest != recorded:
            raise CorruptCheckpointError(
                f"{file} is truncated or altered (size or {algorithm} digest "
                "differs from the checkpoint's record)"
            )
    return state


def is_intact(path: Path) -> bool:
    """Whether :func:`verify_checkpoint` accepts ``path``."""
    try:
        verify_checkpoint(path)
        return True
    except ValueError:  # corrupt, or a format version this DeepTrain does not read
        return False


def read_arrays(path: Path, state: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of a verified checkpoint (none if it lists no ``arrays.npz``)."""
    if ARRAYS_FILE not in state["files"]:
        return {}
    file = Path(path) / ARRAYS_FILE
    try:
        with open_binary(file) as f, np.load(f, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        # object arrays need pickle: refused
        raise CorruptCheckpointError(f"{file}: {e}") from None


def read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Verified state and arrays of a checkpoint."""
    state = verify_checkpoint(path)
    return state, read_arrays(path, state)


# -- a checkpoints directory ---------------------------------------------------------
def read_pointer(checkpoints_dir: Path) -> str | None:
    """The checkpoint name in ``latest`` (None without one). A pointer that is not a
    regular file holding a plain entry name of this directory is refused."""
    pointer = Path(checkpoints_dir) / POINTER_FILE
    if not os.path.lexists(pointer):
        return None
    raw = read_capped(pointer, POINTER_BYTES)
    try:
        name = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        name = repr(raw[:80])
    if not is_plain_name(name):
        raise CorruptCheckpointError(
            f"{pointer} holds {name[:200]!r}, not the name of a "
            f"checkpoint in {checkpoints_dir} (refused)"
        )
    return name


def _header(item: Path) -> tuple[int, str] | None:
    """``(seq, kind)`` from the first bytes of a checkpoint's state; None if unreadable."""
    try:
        head = read_prefix(item / STATE_FILE, HEADER_BYTES)
    except CorruptCheckpointError:
        return None
    match = _HEADER.match(head)
    if match is None or int(match[1]) not in READ_VERSIONS:
        return None
    return int(match[3]), match[2].decode()


def _scan(directory: Path) -> list[tuple[int, str, Path]]:
    """``(seq, kind, path)`` of the checkpoints (and backups) in ``directory``, newest
    first, from their states' headers only. Entries that are not real directories with a
    readable header are skipped with a warning (and never deleted)."""
    found: list[tuple[int, str, float, Path]] = []
    directory = Path(directory)
    if not is_real_dir(directory):
        return []
    for item in directory.iterdir():
        name = item.name
        if name == POINTER_FILE or (name.startswith(".") and not name.startswith(BACKUP_PREFIX)):
            continue  # temporaries and other hidden entries
        if not is_real_dir(item):
            if item.is_symlink():
                _warn_once(
                    str(item),
                    "Skipping %s: a symbolic link (checkpoints must be real directories)",
                    item,
                )
            continue
        header = _header(item)
        try:
            mtime = os.lstat(item).st_mtime
        except OSError:
            continue
        if header is None:
            _warn_once(str(item), "Skipping %s: no readable checkpoint state header", item)
            continue
        found.append((header[0], header[1], mtime, item))
    found.sort(key=lambda t: (t[0], t[2]), reverse=True)
    return [(seq, kind, item) for seq, kind, _, item in found]


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """``(seq, path)`` of the checkpoints in ``directory``, newest first."""
    return [(seq, path) for seq, _, path in _scan(directory)]


def _backup_note(path: Path) -> str:
    if path.name.startswith(BACKUP_PREFIX):
        return (
            f" (the backup of {final_name(path.name)}, left by a replace of it that was "
            "interrupted)"
        )
    return ""


def _same_model(candidate: Path, wanted: Path | None) -> bool:
    """Whether ``candidate`` may stand in for ``wanted``: in a run's own ``checkpoints/``,
    any; a best model (``M<num>__...``, in a directory that several model numbers may
    share) only another of its model number."""
    if wanted is None or wanted.parent.name == CHECKPOINTS_DIR:
        return True
    own = model_num_of(final_name(wanted.name), -1)
    return own == -1 or model_num_of(final_name(candidate.name), -1) == own


def resolve_loadpath(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint to load for ``path`` and its verified state.

    ``path`` may be a checkpoint directory, its ``state.json``, a run's log directory or its
    ``checkpoints`` directory (then the checkpoint ``latest`` names). That checkpoint is
    verified first; the others beside it are read only if it is refused: a corrupt one
    falls back to the newest intact one, with a warning; none intact is an error.
    """
    path = Path(path)
    if not os.path.lexists(path):
        backup = path.with_name(f"{BACKUP_PREFIX}{path.name}")
        if not is_real_dir(backup):
            raise FileNotFoundError(f"loadpath {str(path)!r} does not exist")
        path = backup
    if path.is_symlink():  # a link given by the caller is followed; links inside are not
        path = path.resolve()
    if path.is_file():
        _refuse_legacy_state(path)
        if path.name != STATE_FILE:
            raise ValueError(
                f"loadpath {str(path)!r} is a file; give a checkpoint directory, "
                f"its {STATE_FILE}, or a log directory"
            )
        path = path.parent
    if (path / CHECKPOINTS_DIR).is_dir():
        path = path / CHECKPOINTS_DIR
    errors: list[str] = []
    looks_like_checkpoint = any(
        os.path.lexists(path / f) for f in (STATE_FILE, WEIGHTS_FILE, ARRAYS_FILE)
    )
    if looks_like_checkpoint or os.path.lexists(path.parent / POINTER_FILE):
        wanted, directory = path, path.parent
    else:
        directory, wanted = path, None
        try:
            name = read_pointer(directory)
            wanted = directory / name if name else None
        except CorruptCheckpointError as e:
            errors.append(str(e))
    if wanted is not None:
        try:
            state = verify_checkpoint(wanted)
            if _backup_note(wanted):
                log.warning("Loading %s%s", wanted, _backup_note(wanted))
            return wanted, state
        except CorruptCheckpointError as e:
            errors.append(str(e))
    for _, candidate in list_checkpoints(directory):
        if candidate == wanted or not _same_model(candidate, wanted):
            continue
        try:
            state = verify_checkpoint(candidate)
        except CorruptCheckpointError as e:
            errors.append(str(e))
            continue
        if errors:
            log.warning(
                "Checkpoint(s) unusable (%s); loading the newest intact one: %s%s",
                "; ".join(errors),
                candidate,
                _backup_note(candidate),
            )
        return candidate, state
    detail = f": {'; '.join(errors)}" if errors else ""
    if path.is_dir() and any(path.glob("*state.h5")):
        detail += f". {_LEGACY_HINT.format(path=str(path))}"
    raise NoIntactCheckpointError(f"no intact DeepTrain checkpoint found at {str(path)!r}{detail}")


_LEGACY_HINT = (
    "DeepTrain 0.6's *__state.h5 files (pickles) are not loaded, since unpickling can run "
    "code: convert them once with deeptrain.migrate.migrate({path!r}, <new log directory>) "
    "(or python -m deeptrain.migrate), then load the new directory"
)


def _refuse_legacy_state(path: Path) -> None:
    """A DeepTrain 0.6 state file given as ``loadpath``: an error naming the migration."""
    if path.name.endswith("state.h5"):
        raise ValueError(
            f"loadpath {str(path)!r} is a DeepTrain 0.6 state file. "
            + _LEGACY_HINT.format(path=str(path.parent))
        )


def prune(directory: Path, keep: dict[str, int], protect: set[Path]) -> None:
    """Delete the oldest checkpoints of each kind beyond ``keep[kind]`` (never those in
    ``protect``, backups, or entries whose state is unreadable), and leftovers of writes
    that were killed half-way."""
    remove_stale_temps(directory)
    seen: dict[str, int] = {}
    for _, kind, item in _scan(directory):
        if kind not in keep or item.name.startswith(BACKUP_PREFIX):
            continue
        seen[kind] = seen.get(kind, 0) + 1
        if seen[kind] > max(keep[kind], 0) and item not in protect:
            shutil.rmtree(item, ignore_errors=True)
