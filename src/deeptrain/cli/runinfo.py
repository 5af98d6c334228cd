"""What the command line reports about log directories and checkpoints, as plain data.

Runs are the directories of a logs directory that hold ``checkpoints/`` or a metrics log.
States are read with the checks of loading (:mod:`deeptrain.saving.checkpoint`): a run's
state is that of the checkpoint a resume would load; :func:`verify_tree` checks every
checkpoint under a path as loading would (sizes, file digests, digest, schema, self-contained
HDF5, arrays readable without pickle).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..saving.atomic import BACKUP_PREFIX
from ..saving.checkpoint import (
    ARRAYS_FILE,
    CHECKPOINTS_DIR,
    POINTER_FILE,
    STATE_FILE,
    WEIGHTS_FILE,
    list_checkpoints,
    read_arrays,
    read_pointer,
    read_state,
    verify_checkpoint,
)
from ..saving.errors import CorruptCheckpointError
from ..saving.hdf5_check import check_hdf5_self_contained
from ..saving.safe_io import record_digest
from ..training.progress import METRICS_FILES, read_metrics_log

__all__ = [
    "PathError",
    "is_checkpoint",
    "is_run",
    "find_runs",
    "run_summary",
    "checkpoint_of",
    "read_run_state",
    "describe_checkpoint",
    "verify_tree",
    "Verdict",
]


class PathError(ValueError):
    """A path that is not what a command expects (the message says what was)."""


def is_checkpoint(path: Path) -> bool:
    return path.is_dir() and any(
        os.path.lexists(path / f) for f in (STATE_FILE, WEIGHTS_FILE, ARRAYS_FILE)
    )


def is_run(path: Path) -> bool:
    return path.is_dir() and (
        (path / CHECKPOINTS_DIR).is_dir() or any((path / f).is_file() for f in METRICS_FILES)
    )


def find_runs(logs_dir: Path) -> list[Path]:
    """The runs in ``logs_dir`` (or ``logs_dir`` itself if it is one)."""
    logs_dir = Path(logs_dir)
    if is_run(logs_dir):
        return [logs_dir]
    return sorted(p for p in logs_dir.iterdir() if not p.name.startswith(".") and is_run(p))


# -- states ----------------------------------------------------------------------------------
def _candidates(checkpoints: Path) -> list[Path]:
    """The checkpoints of a run in the order a resume tries them: ``latest``, then newest
    first."""
    order = []
    try:
        name = read_pointer(checkpoints)
        if name:
            order.append(checkpoints / name)
    except CorruptCheckpointError:
        pass
    order += [p for _, p in list_checkpoints(checkpoints) if p not in order]
    return order


def read_run_state(path: Path) -> tuple[Path, dict[str, Any]]:
    """``(checkpoint, state)`` for a run directory (its newest checkpoint whose state reads
    back and whose files have their recorded sizes: what a resume would load, short of
    hashing every file, which ``deeptrain verify`` does), a checkpoint directory or a
    ``state.json``. The state is digest- and schema-checked."""
    path = Path(path)
    if path.is_file():
        if path.name != STATE_FILE:
            raise PathError(f"{path} is a file but not a checkpoint's {STATE_FILE}")
        path = path.parent
    if is_checkpoint(path):
        return path, read_state(path)
    checkpoints = path / CHECKPOINTS_DIR if (path / CHECKPOINTS_DIR).is_dir() else path
    errors = []
    for candidate in _candidates(checkpoints):
        try:
            return candidate, verify_checkpoint(candidate, hashes=False)
        except (CorruptCheckpointError, ValueError) as e:
            errors.append(str(e))
    if errors:
        raise CorruptCheckpointError(f"no readable checkpoint state in {path}: {'; '.join(errors)}")
    raise PathError(
        f"{path} is not a log directory with checkpoints, a checkpoint directory or a {STATE_FILE}"
    )


def checkpoint_of(path: Path) -> Path:
    return read_run_state(path)[0]


def _mtime(run: Path, checkpoint: Path | None) -> float:
    paths = [run / f for f in METRICS_FILES] + ([checkpoint / STATE_FILE] if checkpoint else [])
    return max((p.stat().st_mtime for p in paths if p.is_file()), default=run.stat().st_mtime)


def _last_count(rows: list[dict[str, Any]], key: str) -> int:
    """The newest row's ``key`` as an integer (rows without one skipped), else 0."""
    for row in reversed(rows):
        try:
            return int(row[key])
        except (KeyError, TypeError, ValueError, OverflowError):  # (NaN, +-inf: unreadable)
            continue
    return 0


def run_summary(run: Path) -> dict[str, Any]:
    """One row of ``deeptrain runs``."""
    run = Path(run)
    row: dict[str, Any] = {"run": run.name, "path": str(run)}
    checkpoint: Path | None = None
    state: dict[str, Any] | None = None
    try:
        checkpoint, state = read_run_state(run)
    except (PathError, CorruptCheckpointError, ValueError) as e:
        row["error"] = str(e) if (run / CHECKPOINTS_DIR).is_dir() else None
    if checkpoint is not None and state is not None:
        ts, settings = state["train_state"], state.get("traingen", {})
        epochs = settings.get("epochs")
        row.update(
            model_name=settings.get("model_name", run.name),
            epoch=ts["epoch"],
            epochs=epochs,
            batches_fit=ts["batches_fit"],
            validations=ts["times_validated"],
            key_metric=settings.get("key_metric"),
            best=ts.get("best_key_metric"),
            checkpoint=checkpoint.name,
            checkpoint_created=state.get("created"),
            finished=bool(
                epochs is not None and ts["epoch"] >= epochs and not ts["train_loop_done"]
            ),
        )
    else:
        rows = read_metrics_log(run)
        batches = [r for r in rows if r.get("event") == "train_batch"]
        vals = [r for r in rows if r.get("event") == "validation"]
        row.update(
            model_name=run.name,
            epoch=_last_count(batches, "epoch"),
            epochs=None,
            batches_fit=_last_count(batches, "batches_fit"),
            validations=_last_count(vals, "times_validated"),
            key_metric=None,
            best=None,
            checkpoint=None,
            checkpoint_created=None,
            finished=None,
        )
    row["modified"] = _mtime(run, checkpoint)
    return row


def describe_checkpoint(checkpoint: Path, state: dict[str, Any]) -> dict[str, Any]:
    """What ``deeptrain show`` reports: the train state, both DataGenerators' positions,
    the settings, the callbacks' states, and the files with their recorded and actual
    sizes."""
    files = []
    for name, record in sorted(state["files"].items()):
        file = checkpoint / name
        actual = file.stat().st_size if file.is_file() and not file.is_symlink() else None
        files.append(
            {
                "name": name,
                "bytes": record["bytes"],
                "actual_bytes": actual,
                "digest": "{}:{}".format(*record_digest(record)),
            }
        )
    return {
        "checkpoint": str(checkpoint),
        "kind": state["kind"],
        "seq": state["seq"],
        "created": state.get("created"),
        "deeptrain_version": state.get("deeptrain_version"),
        "keras_version": state.get("keras_version"),
        "backend": state.get("backend"),
        "train_state": state["train_state"],
        "datagen": data_position(state["datagen"]),
        "val_datagen": data_position(state["val_datagen"]),
        "settings": state.get("traingen", {}),
        "callbacks": state.get("callbacks", []),
        "files": files,
    }


def data_position(dg: dict[str, Any]) -> dict[str, Any]:
    """A DataGenerator's position from its saved state."""
    group = dg.get("group") or {}
    queued = dg.get("set_nums_to_process", [])
    return {
        "epoch": dg.get("epoch"),
        "set_name": dg.get("set_name"),
        "set_nums": len(dg.get("set_nums_original", [])),
        "queued": len(queued),
        "next": queued[:5],
        "group": group.get("set_nums"),
        "group_batch": (
            f"{group['next_batch']}/{group['n_batches']}" if "next_batch" in group else None
        ),
        "epoch_done": dg.get("all_data_exhausted"),
        "preprocessor": dg.get("preprocessor", {}),
    }


# -- verification ----------------------------------------------------------------------------
@dataclass
class Verdict:
    """One checkpoint (or pointer) checked by :func:`verify_tree`."""

    path: str
    ok: bool
    error: str | None = None
    kind: str | None = None
    seq: int | None = None
    backup: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify_one(path: Path) -> Verdict:
    """The checks loading makes before applying a checkpoint."""
    backup = path.name.startswith(BACKUP_PREFIX)
    try:
        state = verify_checkpoint(path)
        if WEIGHTS_FILE in state["files"]:
            check_hdf5_self_contained(path / WEIGHTS_FILE)
        read_arrays(path, state)
    except (CorruptCheckpointError, ValueError, OSError) as e:
        return Verdict(str(path), False, str(e), backup=backup)
    return Verdict(str(path), True, None, state["kind"], state["seq"], backup)


def _checkpoint_dirs(root: Path, unreadable: list[OSError]) -> tuple[list[Path], list[Path]]:
    """Checkpoint directories under ``root`` and the ``checkpoints/`` directories seen;
    the errors of directories that could not be listed are added to ``unreadable``."""
    if is_checkpoint(root):
        return [root], []
    found, pointers = [], []
    for directory, subdirs, _ in os.walk(root, onerror=unreadable.append):
        here = Path(directory)
        if here.name == CHECKPOINTS_DIR:
            pointers.append(here)
            found += [
                here / d
                for d in sorted(subdirs)
                if not d.startswith(".") or d.startswith(BACKUP_PREFIX)
            ]
            subdirs[:] = []
            continue
        keep = []
        for d in sorted(subdirs):
            if d.startswith(".") and not d.startswith(BACKUP_PREFIX):
                continue
            if is_checkpoint(here / d):
                found.append(here / d)
            else:
                keep.append(d)
        subdirs[:] = keep
    return found, pointers


def verify_tree(root: Path) -> tuple[list[Verdict], dict[str, str | None]]:
    """Every checkpoint under ``root`` (a checkpoint, a run, a best models directory, a
    logs directory), checked as loading checks it; and per ``checkpoints/`` directory, the
    checkpoint a resume would load (None: none intact). A ``latest`` pointer that is
    unreadable or names a missing checkpoint is a failed verdict too."""
    root = Path(root)
    if root.is_symlink():  # a link given by the caller is followed, as loading does
        root = root.resolve()
    unreadable: list[OSError] = []
    dirs, pointer_dirs = _checkpoint_dirs(root, unreadable)
    verdicts = [verify_one(d) for d in dirs]
    verdicts += [
        Verdict(str(e.filename), False, f"cannot be read ({e.strerror or e})") for e in unreadable
    ]
    by_path = {v.path: v for v in verdicts}
    resumes: dict[str, str | None] = {}
    for checkpoints in pointer_dirs:
        try:
            name = read_pointer(checkpoints)
            if name and not (checkpoints / name).is_dir():
                raise CorruptCheckpointError(
                    f"{checkpoints / POINTER_FILE} names {name!r}, which is missing"
                )
        except CorruptCheckpointError as e:
            verdicts.append(Verdict(str(checkpoints / POINTER_FILE), False, str(e)))
        ok = [c for c in _candidates(checkpoints) if getattr(by_path.get(str(c)), "ok", False)]
        resumes[str(checkpoints.parent)] = ok[0].name if ok else None
    return verdicts, resumes
