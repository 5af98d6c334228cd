"""The checkpoint format: one directory per checkpoint, written atomically.

::

    <checkpoint>/
        model.weights.h5   weights + optimizer variables (Keras 3)
        arrays.npz         non-weight variables, RNN states, RNG states, callbacks' arrays
        model.keras        only when the full model is asked for
        history.png, report.png   figures (unique and best checkpoints)
        state.json         everything else, as versioned JSON; written last, it lists every
                           other file with its size and SHA-256, so a checkpoint whose
                           state.json reads back and whose files match is intact

Checkpoints of a run live in ``<logdir>/checkpoints/``; the file ``latest`` there names the
newest one and is replaced atomically after the checkpoint is complete. Loading never
unpickles: JSON, ``np.load(allow_pickle=False)`` and HDF5 only.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .atomic import TEMP_PREFIX, AtomicDir, atomic_write_text, remove_stale_temps

__all__ = ["FORMAT", "VERSION", "STATE_FILE", "ARRAYS_FILE", "WEIGHTS_FILE", "MODEL_FILE",
           "POINTER_FILE", "CHECKPOINTS_DIR", "CorruptCheckpointError", "write_checkpoint",
           "read_checkpoint", "verify_checkpoint", "resolve_loadpath", "list_checkpoints",
           "update_pointer", "read_pointer"]

log = logging.getLogger("deeptrain")

FORMAT = "deeptrain.checkpoint"
VERSION = 1
STATE_FILE = "state.json"
ARRAYS_FILE = "arrays.npz"
WEIGHTS_FILE = "model.weights.h5"
MODEL_FILE = "model.keras"
POINTER_FILE = "latest"
CHECKPOINTS_DIR = "checkpoints"


class CorruptCheckpointError(ValueError):
    """A checkpoint directory that is incomplete, truncated or altered."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_checkpoint(path: Path, payload: dict[str, Any], arrays: dict[str, np.ndarray],
                     writers: dict[str, Callable[[Path], None]],
                     fault: Callable[[str], None] | None = None, replace: bool = False) -> Path:
    """Write a checkpoint directory atomically.

    Args:
        payload: JSON-serialisable state (``format``, ``version`` and ``files`` are added).
        arrays: saved to ``arrays.npz``.
        writers: ``{filename: fn(filepath)}`` for the model files and figures.
        fault: test hook called with each step's name before it runs.
        replace: an existing checkpoint of the same name is replaced (after the new one is
            complete); otherwise it is an error.
    """
    path = Path(path)
    final = path
    if path.exists():
        if not replace:
            raise FileExistsError(f"checkpoint {path} exists")
        final = path.with_name(f"{TEMP_PREFIX}new-{path.name}")
        shutil.rmtree(final, ignore_errors=True)
    writer = AtomicDir(final, fault)
    try:
        _write_files(writer, payload, arrays, writers)
    except BaseException:
        if final != path:
            shutil.rmtree(final, ignore_errors=True)
        raise
    if final != path:  # swap the complete new checkpoint in for the old one
        trash = path.with_name(f"{TEMP_PREFIX}old-{path.name}")
        path.rename(trash)
        final.rename(path)
        shutil.rmtree(trash, ignore_errors=True)
    return path


def _write_files(writer: AtomicDir, payload: dict[str, Any], arrays: dict[str, np.ndarray],
                 writers: dict[str, Callable[[Path], None]]) -> None:
    with writer as tmp:
        for name, write in writers.items():
            writer.step(f"write {name}")
            write(tmp / name)
        writer.step(f"write {ARRAYS_FILE}")
        with open(tmp / ARRAYS_FILE, "wb") as f:
            np.savez(f, **arrays)
        files = {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)}
                 for p in sorted(tmp.iterdir()) if p.is_file()}
        writer.step(f"write {STATE_FILE}")
        state = {"format": FORMAT, "version": VERSION, **payload, "files": files}
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1), encoding="utf-8")


def verify_checkpoint(path: Path) -> dict[str, Any]:
    """Return the checkpoint's state after checking it is complete and unaltered."""
    path = Path(path)
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise CorruptCheckpointError(f"{path} has no {STATE_FILE}: not a complete checkpoint")
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptCheckpointError(f"{state_file} is not valid JSON ({e})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CorruptCheckpointError(f"{state_file} is not a DeepTrain checkpoint state "
                                     f"(format {state.get('format') if isinstance(state, dict) else None!r})")
    if state.get("version") != VERSION:
        raise ValueError(f"{state_file} has checkpoint format version {state.get('version')!r}; "
                         f"this DeepTrain reads version {VERSION}")
    files = state.get("files")
    if not isinstance(files, dict):
        raise CorruptCheckpointError(f"{state_file} lists no files")
    for name, info in files.items():
        file = path / name
        if Path(name).name != name or not file.is_file():
            raise CorruptCheckpointError(f"{path}: file {name!r} is missing")
        if file.stat().st_size != info.get("bytes") or _sha256(file) != info.get("sha256"):
            raise CorruptCheckpointError(f"{file} is truncated or altered (size or SHA-256 "
                                         "differs from the checkpoint's record)")
    return state


def read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Verified state and arrays of a checkpoint."""
    state = verify_checkpoint(path)
    arrays = {}
    if ARRAYS_FILE in state["files"]:
        try:
            with np.load(Path(path) / ARRAYS_FILE, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except ValueError as e:  # object arrays need pickle: refused
            raise CorruptCheckpointError(f"{Path(path) / ARRAYS_FILE}: {e}") from None
    return state, arrays


def update_pointer(checkpoints_dir: Path, name: str, fault=None) -> None:
    atomic_write_text(Path(checkpoints_dir) / POINTER_FILE, name + "\n", fault)


def read_pointer(checkpoints_dir: Path) -> str | None:
    pointer = Path(checkpoints_dir) / POINTER_FILE
    try:
        return pointer.read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _scan(directory: Path) -> list[tuple[int, str | None, Path]]:
    """``(seq, kind, path)`` of the checkpoints in ``directory``, newest first; only
    ``state.json`` is read (cheap): :func:`verify_checkpoint` checks the files."""
    found = []
    directory = Path(directory)
    if not directory.is_dir():
        return found
    for item in directory.iterdir():
        if not item.is_dir() or item.name.startswith(TEMP_PREFIX):
            continue
        try:
            state = json.loads((item / STATE_FILE).read_text(encoding="utf-8"))
            seq, kind = state.get("seq", -1), state.get("kind")
        except (OSError, ValueError, AttributeError):
            seq, kind = -1, None
        found.append((seq if isinstance(seq, int) else -1, kind, item))
    return sorted(found, key=lambda t: (t[0], t[2].stat().st_mtime), reverse=True)


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """``(seq, path)`` of the checkpoints in ``directory``, newest first."""
    return [(seq, path) for seq, _, path in _scan(directory)]


def resolve_loadpath(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint to load for ``path`` and its verified state.

    ``path`` may be a checkpoint directory, its ``state.json``, a run's log directory or its
    ``checkpoints`` directory (then the checkpoint ``latest`` names). A corrupt checkpoint
    falls back to the newest intact one beside it, with a warning; none intact is an error.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"loadpath {str(path)!r} does not exist")
    if path.is_file():
        if path.name != STATE_FILE:
            raise ValueError(f"loadpath {str(path)!r} is a file; give a checkpoint directory, "
                             f"its {STATE_FILE}, or a log directory")
        path = path.parent
    if (path / CHECKPOINTS_DIR).is_dir():
        path = path / CHECKPOINTS_DIR
    looks_like_checkpoint = any((path / f).exists() for f in (STATE_FILE, WEIGHTS_FILE,
                                                               ARRAYS_FILE))
    if looks_like_checkpoint or (path.parent / POINTER_FILE).is_file():
        wanted, directory = path, path.parent
    else:
        directory = path
        name = read_pointer(directory)
        wanted = directory / name if name else None
    candidates = [wanted] if wanted is not None else []
    candidates += [p for _, p in list_checkpoints(directory) if p != wanted]
    errors = []
    for candidate in candidates:
        try:
            state = verify_checkpoint(candidate)
        except CorruptCheckpointError as e:
            errors.append(str(e))
            continue
        if errors:
            log.warning("Checkpoint(s) unusable (%s); loading the newest intact one: %s",
                        "; ".join(errors), candidate)
        return candidate, state
    detail = f": {'; '.join(errors)}" if errors else ""
    raise FileNotFoundError(f"no intact DeepTrain checkpoint found at {str(path)!r}{detail}")


def prune(directory: Path, keep: dict[str, int], protect: set[Path]) -> None:
    """Delete the oldest checkpoints of each kind beyond ``keep[kind]`` (never those in
    ``protect``), and leftovers of writes that were killed half-way."""
    remove_stale_temps(directory)
    seen: dict[str, int] = {}
    for _, kind, item in _scan(directory):
        if kind not in keep:
            continue
        seen[kind] = seen.get(kind, 0) + 1
        if seen[kind] > max(keep[kind], 0) and item not in protect:
            shutil.rmtree(item, ignore_errors=True)
