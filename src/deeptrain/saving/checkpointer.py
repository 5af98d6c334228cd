"""``Checkpointer``: when and where a TrainGenerator's checkpoints are written and read.

Three kinds of checkpoint, all in the format of :mod:`.checkpoint`:

* ``temp``: at ``temp_checkpoint_freq``; only the newest is kept;
* ``unique``: at ``unique_checkpoint_freq``, named ``<model_name>_<n>vals_<k>iters``; at most
  ``max_checkpoints`` are kept;
* ``best``: in ``best_models_dir`` when the key metric improves (one per model number with
  ``max_one_best_save``).

Order of a save: ``'save'`` callbacks, collect the state, write the directory atomically,
point ``checkpoints/latest`` at it, and only then prune older ones. A crash at any moment
leaves the previous checkpoint loadable (a checkpoint replaced under the same name: its
backup, see :mod:`.atomic`).

A load is all or nothing: the checkpoint is verified (files, digest, schema) and checked
against the live TrainGenerator (model, data, random generators, callbacks) before anything
is applied, and a failure while applying puts back what was there (:mod:`.rollback`).
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..training.contract import Traingen
from . import model_state
from .atomic import TEMP_PREFIX, final_name, recover_backups
from .checkpoint import (
    CHECKPOINTS_DIR,
    MODEL_FILE,
    WEIGHTS_FILE,
    CorruptCheckpointError,
    is_intact,
    list_checkpoints,
    prune,
    read_arrays,
    resolve_loadpath,
    update_pointer,
    write_checkpoint,
)
from .hdf5_check import check_hdf5_self_contained
from .naming import encode_best
from .report import report_figure, report_sections
from .rollback import LiveState
from .safe_io import is_real_dir
from .traingen_state import check, collect, effective_loadskip, restore

__all__ = ["Checkpointer", "MODEL_SAVE_KW", "MODEL_SAVE_WEIGHTS_KW"]

log = logging.getLogger("deeptrain")

# Keyword arguments of model.save / model.save_weights when model_save_kw /
# model_save_weights_kw are None (DeepTrain 0.6's ``configs.MODEL_SAVE_KW`` ...): edits
# here apply to every TrainGenerator.
MODEL_SAVE_KW: dict[str, Any] = {}
MODEL_SAVE_WEIGHTS_KW: dict[str, Any] = {}


class Checkpointer:
    """Writes and reads checkpoints of ``tg``. ``fault`` is a test hook (see ``AtomicDir``)."""

    def __init__(self, tg: Traingen):
        self.tg = tg
        self.fault: Callable[[str], None] | None = None

    @property
    def directory(self) -> Path | None:
        return self.tg.logdir / CHECKPOINTS_DIR if self.tg.logdir is not None else None

    # -- saving ------------------------------------------------------------------------
    def save(self, path: Path, kind: str, figures: bool = False, replace: bool = False) -> Path:
        """Write a checkpoint of ``kind`` to ``path``; returns the path."""
        tg = self.tg
        tg.ensure_consistent()  # never save a state cut half-way
        tg.sync_model()
        tg.callbacks("save", tg)
        tg.state.save_seq += 1
        if not tg.distribution.is_writer:  # one writer (process 0); the state stays alike
            return path
        with tg.distribution.scope():  # (the optimizer is built before its variables are read)
            payload, arrays = collect(tg, kind, tg.state.save_seq)
        skip = set(tg.saveskip_list)
        if "optimizer_state" in skip:
            payload["model"]["optimizer"] = []
        payload["model"]["optimizer_unsaved"] = sorted(
            model_state.optimizer_selection(
                tg.model, tg.optimizer_save_configs, "optimizer_save_configs"
            )
        )
        writers: dict[str, Callable[[Path], None]] = {}
        if "model:weights" not in skip:
            weights_kw = dict(_or_default(tg.model_save_weights_kw, MODEL_SAVE_WEIGHTS_KW))
            writers[WEIGHTS_FILE] = lambda p: model_state.save_weights(tg.model, p, **weights_kw)
        if "model" not in skip:
            kw = dict(_or_default(tg.model_save_kw, MODEL_SAVE_KW))
            writers[MODEL_FILE] = lambda p: tg.model.save(p, **kw)
        if figures:
            writers["history.png"] = lambda p: tg.write_figure("history", p)
            writers["report.png"] = lambda p: tg.write_figure("report", p)
        try:
            with tg.distribution.writing(), tg.distribution.scope():
                return write_checkpoint(path, payload, arrays, writers, self.fault, replace)
        except BaseException:
            tg.state.save_seq -= 1
            raise

    def checkpoint(self, kind: str, overwrite: bool | None = None) -> Path | None:
        """A ``temp`` or ``unique`` checkpoint in the log directory (None without one).
        One of the same name is replaced (``overwrite``), or the new one named ``_v2``,
        ``_v3`` ...; None: ``checkpoints_overwrite_duplicates``."""
        tg = self.tg
        if self.directory is None:
            return None
        tg.check_logdir_owned()
        s = tg.state
        if kind == "unique":
            best = f"__{'max' if tg.max_is_best else 'min'}{encode_best(s.best_key_metric)}"
            base = tg.model_name if tg.logs_use_full_model_name else best.lstrip("_")
            name = f"{base}_{s.times_validated}vals_{s.fit_iters}iters"
        else:
            name = f"_temp_{s.fit_iters}iters_{s.times_validated}vals"
        writer = tg.distribution.is_writer
        if writer:  # before the name is chosen: a backup may stand for it
            _settle_backups(self.directory)
        path = self.directory / name
        if overwrite is None:
            overwrite = tg.checkpoints_overwrite_duplicates
        if path.exists() and not overwrite:
            path = next(
                p
                for v in range(2, 10**6)  # 0.6: name_v2, name_v3, ...
                if not (p := self.directory / f"{name}_v{v}").exists()
            )
        path = self.save(path, kind, figures=kind == "unique", replace=True)
        tg.distribution.barrier("checkpoint written")  # every process did its part
        if not writer:
            return path
        update_pointer(self.directory, path.name, self.fault)
        prune(self.directory, {"temp": 1, "unique": max(1, tg.max_checkpoints)}, {path})
        log.debug("Checkpoint saved: %s", path)
        return path

    def save_best(self) -> Path | None:
        """Save the best model to ``best_models_dir/<model_name>``."""
        tg = self.tg
        if tg.best_models_dir is None:
            return None
        directory = Path(tg.best_models_dir)
        if not tg.distribution.is_writer:
            self.save(directory / tg.model_name, "best")  # the others' part: callbacks, state
            tg.distribution.barrier("best model written")
            return directory / tg.model_name
        directory.mkdir(parents=True, exist_ok=True)
        _settle_backups(directory, owned=self._is_ours)
        path = self.save(directory / tg.model_name, "best", figures=True, replace=True)
        tg.distribution.barrier("best model written")
        if tg.max_one_best_save:
            for item in directory.iterdir():
                if (
                    item != path
                    and not item.name.startswith(TEMP_PREFIX)
                    and is_real_dir(item)
                    and self._is_ours(item.name)
                ):
                    shutil.rmtree(item, ignore_errors=True)
        log.info("Best model saved to %s", path)
        return path

    def _is_ours(self, name: str) -> bool:
        """Whether a best model (or its backup) is of this model number: the directory
        may be shared by several."""
        return re.match(rf"M{self.tg.model_num}__", final_name(name)) is not None

    # -- loading -----------------------------------------------------------------------
    def load(
        self,
        path: str | Path,
        passed_args: list[str] | None = None,
        settle: Callable[[], None] | None = None,
    ) -> Path:
        """Restore ``tg`` (settings, state, data position, model, RNGs, callbacks), all or
        nothing: everything is read and checked before anything is applied; if applying,
        or ``settle`` (the caller's checks of the loaded settings), still fails, what was
        there is put back and the error raised."""
        tg = self.tg
        path, payload = resolve_loadpath(path)
        arrays = read_arrays(path, payload)
        skip = effective_loadskip(
            tg.loadskip_list, tg.passed_args if passed_args is None else passed_args
        )
        weights = "model:weights" not in skip and WEIGHTS_FILE in payload["files"]
        keep = self._check(path, payload, arrays, skip, weights)
        before = LiveState.capture(tg)
        try:
            if weights:
                no_opt = "optimizer_state" in skip or not payload["model"].get("optimizer")
                model_state.load_weights(
                    tg.model, path / WEIGHTS_FILE, skip_optimizer=no_opt, keep_optimizer=keep
                )
                model_state.restore_arrays(tg.model, arrays)
            restore(tg, payload, arrays, skip)
            if settle is not None:
                settle()
        except BaseException:
            before.restore(tg)
            raise
        log.info(
            "Loaded checkpoint %s (epoch %d, %d batches fit, %d validations)",
            path,
            tg.state.epoch,
            tg.state.batches_fit,
            tg.state.times_validated,
        )
        _compare_layouts(payload.get("distribution"), tg.distribution)
        return path

    def _check(
        self,
        path: Path,
        payload: dict[str, Any],
        arrays: dict[str, Any],
        skip: set[str],
        weights: bool,
    ) -> set[str]:
        """Raise if the checkpoint cannot be applied to ``tg``; returns the optimizer
        variables whose live values are kept."""
        tg = self.tg
        keep: set[str] = set()
        if weights:
            model_state.check_compatible(payload["model"], tg.model, path)
            check_hdf5_self_contained(path / WEIGHTS_FILE)
            keep = set(
                payload["model"].get("optimizer_unsaved", [])
            ) | model_state.optimizer_selection(
                tg.model, tg.optimizer_load_configs, "optimizer_load_configs"
            )
        try:
            if weights:
                model_state.check_arrays(tg.model, arrays)
            check(tg, payload, arrays, skip)
        except RecursionError:
            raise CorruptCheckpointError(
                f"checkpoint {path}: its state is nested too deeply"
            ) from None
        except (ValueError, TypeError) as e:
            raise ValueError(f"checkpoint {path} does not fit this TrainGenerator: {e}") from None
        return keep

    def latest(self, best: bool = False) -> Path | None:
        """The newest checkpoint of this run (or best model of this model number)."""
        tg = self.tg
        if best:
            if tg.best_models_dir is None:
                return None
            found = [
                p for _, p in list_checkpoints(Path(tg.best_models_dir)) if self._is_ours(p.name)
            ]
            return found[0] if found else None
        if self.directory is None:
            return None
        try:
            return resolve_loadpath(self.directory)[0]
        except FileNotFoundError:
            return None

    def report_text(self) -> dict[str, list[str]]:
        return report_sections(self.tg)

    def report(self) -> Any:
        return report_figure(
            report_sections(self.tg), title=self.tg.model_name, fontpath=self.tg.report_fontpath
        )


def _compare_layouts(saved: dict[str, Any] | None, now: Any) -> None:
    """Say when a run resumes on another device layout: the data position is exact there
    too (it does not depend on the layout), but the arithmetic (how a batch is split and
    reduced) differs, so the continuation is close to the uninterrupted run, not bitwise."""
    if saved is None:
        return
    if (saved["processes"], saved["replicas"]) != (now.process_count, now.replicas):
        log.warning(
            "This checkpoint was written on %s; resuming on %s: the data position is "
            "exact, but the results are close to, not bitwise equal to, an uninterrupted run",
            saved["describe"],
            now.describe(),
        )


def _or_default(value: Any, default: dict[str, Any]) -> Any:
    return default if value is None else value


def _settle_backups(directory: Path, owned: Callable[[str], bool] = lambda name: True) -> None:
    """Settle what a crash in a replace left in ``directory`` (backups whose name is
    ``owned``); a failure is a warning, never a failed save."""
    try:
        recover_backups(directory, is_intact, owned)
    except OSError as e:
        log.warning("Could not settle a checkpoint backup in %s: %s", directory, e)
