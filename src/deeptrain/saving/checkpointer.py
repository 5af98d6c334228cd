"""``Checkpointer``: when and where a TrainGenerator's checkpoints are written and read.

Three kinds of checkpoint, all in the format of :mod:`.checkpoint`:

* ``temp``: at ``temp_checkpoint_freq``; only the newest is kept;
* ``unique``: at ``unique_checkpoint_freq``, named ``<model_name>_<n>vals_<k>iters``; at most
  ``max_checkpoints`` are kept;
* ``best``: in ``best_models_dir`` when the key metric improves (one per model number with
  ``max_one_best_save``).

A save has three phases (:mod:`.writer`): on the training thread, the ``'save'`` callbacks
run and the state is copied to host memory (:mod:`.snapshot`); then, in a background thread
with ``checkpoint_async`` (else inline), the directory is written atomically, and committed:
``checkpoints/latest`` points at it, and only then are older ones pruned. A best model and a
checkpoint due at the same validation's end are written from one snapshot. A crash at any
moment leaves the previous checkpoint loadable (a checkpoint replaced under the same name:
its backup, see :mod:`.atomic`).

In a run over several processes, every process runs the ``'save'`` callbacks and counts
the save; only the writer (process 0) snapshots and writes, inline (not in the background),
and all of them meet at a barrier once the checkpoint is complete.

A load is all or nothing: the checkpoint is verified (files, digest, schema) and checked
against the live TrainGenerator (model, data, random generators, callbacks) before anything
is applied, and a failure while applying puts back what was there (:mod:`.rollback`). It
first waits for a checkpoint being written.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..backend.host import REUSED_BYTES
from ..training.contract import Traingen
from . import model_state
from .atomic import TEMP_PREFIX, final_name, recover_backups
from .checkpoint import (
    CHECKPOINTS_DIR,
    STATE_FILE,
    WEIGHTS_FILE,
    CorruptCheckpointError,
    is_intact,
    list_checkpoints,
    prune,
    read_arrays,
    resolve_loadpath,
    update_pointer,
)
from .hdf5_check import check_hdf5_self_contained
from .naming import encode_best
from .report import report_figure, report_sections
from .rollback import LiveState
from .safe_io import is_real_dir
from .snapshot import MODEL_SAVE_KW, MODEL_SAVE_WEIGHTS_KW, take_snapshot
from .traingen_state import check, effective_loadskip, restore
from .writer import CheckpointJob, CheckpointPipeline, Target

__all__ = ["Checkpointer", "MODEL_SAVE_KW", "MODEL_SAVE_WEIGHTS_KW"]

log = logging.getLogger("deeptrain")


class Checkpointer:
    """Writes and reads checkpoints of ``tg``. ``fault`` is a test hook (see ``AtomicDir``),
    called in the thread that writes."""

    def __init__(self, tg: Traingen):
        self.tg = tg
        self.fault: Callable[[str], None] | None = None
        self.pipeline = CheckpointPipeline(asynchronous=bool(tg.checkpoint_async))
        # the large host arrays of the last snapshot written, copied into by the next one
        # (fresh memory's page faults cost more than the copy), kept only while a train()
        # or validate() runs: one state's worth of host memory, as a snapshot in flight
        self.keep_spare = False
        self._spare: list[np.ndarray | None] | None = None

    @property
    def directory(self) -> Path | None:
        return self.tg.logdir / CHECKPOINTS_DIR if self.tg.logdir is not None else None

    # -- saving ------------------------------------------------------------------------
    def save(self, path: Path, kind: str, wait: bool = True) -> Path:
        """A checkpoint of ``kind`` in the directory ``path`` (no figures, nothing else
        moved or pruned); returns the path. What is at ``path`` already is replaced only if
        it is a checkpoint (a directory with a ``state.json``): anything else is refused,
        never deleted."""
        path = Path(path)
        if os.path.lexists(path) and not (is_real_dir(path) and (path / STATE_FILE).is_file()):
            raise FileExistsError(
                f"save: {path} exists and is not a DeepTrain checkpoint (a directory with "
                f"{STATE_FILE}); not replaced. Give a new path, or remove it first."
            )
        return self._save(lambda: [Target(path, kind, 0)], wait)[0]

    def checkpoint(
        self, kind: str, wait: bool = False, overwrite: bool | None = None
    ) -> Path | None:
        """A ``temp`` or ``unique`` checkpoint in the log directory (None without one).
        One of the same name is replaced (``overwrite``), or the new one named ``_v2``,
        ``_v3`` ...; None: ``checkpoints_overwrite_duplicates``."""
        if self.directory is None:
            return None
        return self._save(lambda: [self._checkpoint_target(kind, overwrite)], wait)[0]

    def preemption_checkpoint(self) -> Path | None:
        """The temp checkpoint SIGTERM asks for, complete when this returns. The run it
        interrupts would not have taken it, so its ``'save'`` callbacks run after the state
        is copied: what they change (a seed reseeded every n saves, a counter) is not in
        it, and the resumed run goes on exactly as the uninterrupted one."""
        if self.directory is None:
            return None
        return self._save(
            lambda: [self._checkpoint_target("temp", None)], wait=True, callbacks_first=False
        )[0]

    def save_best(self, wait: bool = False, one_best: bool | None = None) -> Path | None:
        """Save the best model to ``best_models_dir/<model_name>``; ``one_best``: delete
        this model number's older best models (None: ``max_one_best_save``)."""
        if self.tg.best_models_dir is None:
            return None
        return self._save(lambda: [self._best_target(one_best)], wait)[0]

    def save_due(
        self,
        best: bool,
        kind: str | None,
        wait: bool = False,
        overwrite: bool | None = None,
        one_best: bool | None = None,
    ) -> Path | None:
        """The best model (``best``; ``one_best`` as in :meth:`save_best`) and the checkpoint
        ``kind`` (if not None), from one snapshot; returns the checkpoint's path."""
        best = best and self.tg.best_models_dir is not None
        kind = kind if self.directory is not None else None
        if not best and kind is None:
            return None

        def targets() -> list[Target]:
            found = [self._best_target(one_best)] if best else []
            return found + ([self._checkpoint_target(kind, overwrite)] if kind is not None else [])

        paths = self._save(targets, wait)
        return paths[-1] if kind is not None else None

    def _save(
        self, make_targets: Callable[[], list[Target]], wait: bool, callbacks_first: bool = True
    ) -> list[Path]:
        """Phase 1 here (after the write in flight has ended), phases 2 and 3 queued. With
        several processes, they all agree at the end whether it worked (a collective, which
        is also the barrier before going on): one that fails never leaves the others
        waiting, and every process raises."""
        tg = self.tg
        tg.ensure_consistent()  # never save a state cut half-way
        first_seq = tg.state.save_seq
        error: BaseException | None = None
        paths: list[Path] = []
        try:
            paths = self._save_here(make_targets, wait, callbacks_first)
        except BaseException as e:
            error = e
        dist = tg.distribution
        if dist.process_count > 1 and dist.max_over_processes(int(error is not None)):
            error = error or RuntimeError(
                "a checkpoint failed on another process (its log says why); none was written"
            )
        if error is not None:
            if not self.pipeline.busy:  # nothing written, nothing being written
                tg.state.save_seq = first_seq
            raise error
        return paths

    def _save_here(
        self, make_targets: Callable[[], list[Target]], wait: bool, callbacks_first: bool
    ) -> list[Path]:
        """The ``'save'`` callbacks, the snapshot, the write submitted; the callbacks run
        before the snapshot (so that their state is in it), or with ``callbacks_first=False``
        after it, while the files are written."""
        tg = self.tg
        dist = tg.distribution
        pipeline = self.pipeline
        pipeline.wait()  # one write at a time; names depend on what it wrote
        # several processes: written inline, so that their agreement means "complete"
        pipeline.asynchronous = bool(tg.checkpoint_async) and dist.process_count == 1
        tg.sync_model()
        if callbacks_first:
            tg.callbacks("save", tg)
        targets = make_targets()
        for target in targets:
            tg.state.save_seq += 1
            target.seq = tg.state.save_seq
        # the optimizer's variables exist before they are read, created by every process:
        # under a distribution their creation is a collective (JAX: laid out like the
        # weights), which process 0 alone would wait in forever, or abort
        tg.build_optimizer()
        if dist.is_writer:  # one writer (process 0); the others' state stays alike
            # (Keras' own writers run without the distribution's collectives)
            spare, self._spare = self._spare, None  # (the write that used it has ended)
            with dist.writing(), dist.scope():
                snapshot = take_snapshot(tg, any(t.figures for t in targets), spare)
            job = CheckpointJob(snapshot, targets, self.fault, recycle=self._keep_spare)
            pipeline.submit(job, wait=callbacks_first and wait)
        if not callbacks_first:
            tg.callbacks("save", tg)  # (while the files are written)
            if wait:
                pipeline.wait()
        return [t.path for t in targets]

    def _keep_spare(self, values: list[np.ndarray]) -> None:
        """(The writing thread, once a snapshot is written) its large arrays, for the next."""
        if self.keep_spare:
            kept = [v if v.nbytes >= REUSED_BYTES else None for v in values]
            self._spare = kept if any(v is not None for v in kept) else None

    def release_spare(self) -> None:
        """Free the kept arrays (a loop ended; the pipeline is idle)."""
        self.keep_spare, self._spare = False, None

    def _checkpoint_target(self, kind: str, overwrite: bool | None) -> Target:
        tg = self.tg
        writer = tg.distribution.is_writer
        tg.check_logdir_owned()
        s = tg.state
        if kind == "unique":
            best = f"__{'max' if tg.max_is_best else 'min'}{encode_best(s.best_key_metric)}"
            base = tg.model_name if tg.logs_use_full_model_name else best.lstrip("_")
            name = f"{base}_{s.times_validated}vals_{s.fit_iters}iters"
        else:
            name = f"_temp_{s.fit_iters}iters_{s.times_validated}vals"
        directory = self.directory
        assert directory is not None  # the callers check
        if writer:  # before the name is chosen: a backup may stand for it
            _settle_backups(directory)
        path = directory / name
        if overwrite is None:
            overwrite = tg.checkpoints_overwrite_duplicates
        if writer and path.exists() and not overwrite:  # (others: the name the writer meant)
            path = next(
                p
                for v in range(2, 10**6)  # 0.6: name_v2, name_v3, ...
                if not (p := directory / f"{name}_v{v}").exists()
            )
        keep = {"temp": 1, "unique": max(1, tg.max_checkpoints)}
        fault = self.fault

        def commit(path: Path) -> None:
            update_pointer(directory, path.name, fault)
            prune(directory, keep, {path})
            log.debug("Checkpoint saved: %s", path)

        return Target(
            path, kind, 0, figures=kind == "unique", commit=commit, commit_syncs=True
        )  # the pointer's write fsyncs the directory: once for both renames

    def _best_target(self, one_best: bool | None) -> Target:
        tg = self.tg
        assert tg.best_models_dir is not None  # the callers check
        directory = Path(tg.best_models_dir)
        if tg.distribution.is_writer:
            directory.mkdir(parents=True, exist_ok=True)
            _settle_backups(directory, owned=self._is_ours)
        one_best = tg.max_one_best_save if one_best is None else one_best
        model_num = tg.model_num

        def commit(path: Path) -> None:
            if one_best:
                for item in directory.iterdir():
                    if (
                        item != path
                        and not item.name.startswith(TEMP_PREFIX)
                        and is_real_dir(item)
                        and _of_model(item.name, model_num)
                    ):
                        shutil.rmtree(item, ignore_errors=True)
            log.info("Best model saved to %s", path)

        return Target(directory / tg.model_name, "best", 0, figures=True, commit=commit)

    def _is_ours(self, name: str) -> bool:
        """Whether a best model (or its backup) is of this model number: the directory
        may be shared by several."""
        return _of_model(name, self.tg.model_num)

    # -- loading -----------------------------------------------------------------------
    def load(
        self,
        path: str | Path,
        passed_args: list[str] | None = None,
        settle: Callable[[dict[str, Any]], None] | None = None,
    ) -> Path:
        """Restore ``tg`` (settings, state, data position, model, RNGs, callbacks), all or
        nothing: everything is read and checked before anything is applied; if applying,
        or ``settle(payload)`` (the caller's checks of the loaded settings), still fails, what was
        there is put back and the error raised."""
        tg = self.tg
        failed = self.pipeline.take_error()  # the checkpoint being written may be the one to load
        if failed is not None:  # loading is the recovery: say what failed, then go on
            log.warning("A checkpoint write had failed (%s); loading %s", failed, path)
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
                settle(payload)
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
        """The report as a matplotlib figure."""
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


def _of_model(name: str, model_num: int) -> bool:
    return re.match(rf"M{model_num}__", final_name(name)) is not None


def _settle_backups(directory: Path, owned: Callable[[str], bool] = lambda name: True) -> None:
    """Settle what a crash in a replace left in ``directory`` (backups whose name is
    ``owned``); a failure is a warning, never a failed save."""
    try:
        recover_backups(directory, is_intact, owned)
    except OSError as e:
        log.warning("Could not settle a checkpoint backup in %s: %s", directory, e)
