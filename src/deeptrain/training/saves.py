"""When a TrainGenerator's checkpoints and best models are written.

Three ways a save comes due: a checkpoint frequency fires (after an iteration, or at a
validation's end), a validation finds a new best key metric, or the user asks
(``tg.checkpoint()``, ``tg.save()``, ``tg._save_best_model()``). A save asked for from a
callback of an iteration, where the state is half-way updated, is written at the end of that
iteration (of the validation, when one follows), as the loop's own; a save cut by a second
Ctrl-C or an error stays due and is written when ``train()`` goes on. The
:class:`~deeptrain.saving.checkpointer.Checkpointer` does the writing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..saving.writer import Target
    from .generator import TrainGenerator

__all__ = ["Saves"]

log = logging.getLogger(__name__)


class Saves:
    """``tg``'s saves that are due: the checkpoint (``tg.state.checkpoint_due``, saved with
    the state), a best model and saves to a path asked for half-way (not saved: a resumed
    run redoes the iteration, and its callbacks ask again)."""

    def __init__(self, tg: TrainGenerator) -> None:
        self.tg = tg
        self.best_pending = False  # a best model whose save was cut or asked for half-way
        self.best_keep_one: bool | None = None  # its del_previous_best (None: the setting)
        self.paths_pending: list[Path] = []  # save(savepath) asked for half-way

    @property
    def _wait(self) -> bool:
        """Outside ``train()``/``validate()`` a save returns once it is complete; inside,
        once the state is copied (the files written in the background)."""
        return not self.tg._loop_depth

    def if_due(
        self, at_validation_end: bool, best: bool = False, overwrite: bool | None = None
    ) -> Path | None:
        """Write the checkpoint a frequency asks for now (and, with ``best``, the best
        model first); returns its path. One due while a validation is pending is written
        at its end, so that it holds the validation's results."""
        tg = self.tg
        state = tg.state
        due = state.checkpoint_due
        for kind, freq in (
            ("unique", tg.unique_checkpoint_freq),
            ("temp", tg.temp_checkpoint_freq),
        ):
            if not freq or due == "unique" or (("val" in freq) != at_validation_end):
                continue
            if tg._should_do(freq, validation_ended=at_validation_end):
                due = kind
        if state.train_loop_done and (due is not None or self.paths_pending):
            state.checkpoint_due = due
            return None
        return self.now(best, due, overwrite)

    def now(self, best: bool, due: str | None, overwrite: bool | None = None) -> Path | None:
        """The best model (``best``, or one still due), the checkpoint ``due`` and the saves
        asked for from inside an iteration, written now; returns the checkpoint's path. One
        cut (a second Ctrl-C, an error) stays due, written at the next chance
        (:meth:`pending`)."""
        tg = self.tg
        state = tg.state
        best = best or self.best_pending
        state.checkpoint_due = None  # cleared before saving: the saved state has none due
        if best or due is not None:
            tg.model_name = tg.get_unique_model_name()
        one_best = self.best_keep_one if self.best_pending else None
        try:
            path = tg._checkpointer.save_due(
                best, due, wait=self._wait, overwrite=overwrite, one_best=one_best
            )
        except BaseException:  # (with what a failed background write made due again)
            state.checkpoint_due = _first_due(state.checkpoint_due, due)
            self.best_pending = self.best_pending or best
            raise
        self.best_pending, self.best_keep_one = False, None
        while self.paths_pending:  # (one that fails stays, with those after it)
            tg._checkpointer.save(self.paths_pending[0], "manual", wait=self._wait)
            self.paths_pending.pop(0)
        return path

    def due_again(self, failed: list[Target]) -> None:
        """The saves of a write that failed in the background are due again: the
        checkpoint (a unique one before a temp one), the best model, a save to a path."""
        state = self.tg.state
        for target in failed:
            if target.kind == "best":
                self.best_pending = True
            elif target.kind in ("temp", "unique"):
                state.checkpoint_due = _first_due(state.checkpoint_due, target.kind)
            elif target.path not in self.paths_pending:
                self.paths_pending.append(target.path)

    def pending(self) -> None:
        """A checkpoint or best model whose save was cut, or asked for from inside an
        iteration that then stopped: written now, before training goes on."""
        state = self.tg.state
        if not state.train_loop_done and (
            state.checkpoint_due or self.best_pending or self.paths_pending
        ):
            self.now(False, state.checkpoint_due)

    def checkpoint(self, forced: bool, overwrite: bool | None) -> Path | None:
        """``tg.checkpoint()``: the checkpoint a frequency asks for, or (``forced``) a unique
        one now; from a callback of an iteration, due at its end (None returned)."""
        if overwrite not in (None, True, False):
            raise ValueError(f"overwrite must be None, True or False, got {overwrite!r}")
        tg = self.tg
        if tg._consistency.active is not None:  # a callback's: written at the end of it
            if forced:
                tg._require_logdir("checkpoint()")
                tg.state.checkpoint_due = "unique"
            return None
        if not forced:
            return self.if_due(at_validation_end=False, overwrite=overwrite)
        tg._require_logdir("checkpoint()")
        self._whole_validations()
        tg.model_name = tg.get_unique_model_name()
        return tg._checkpointer.checkpoint("unique", wait=self._wait, overwrite=overwrite)

    def best_model(self, del_previous_best: bool | None) -> Path | None:
        """``tg._save_best_model()``: the model saved as the best one now (from a callback
        of an iteration: at its end, with the same ``del_previous_best``)."""
        tg = self.tg
        if tg._consistency.active is not None:  # a callback's: written at the end of it
            self.best_pending, self.best_keep_one = True, del_previous_best
            return None
        self._whole_validations()
        tg.model_name = tg.get_unique_model_name()
        return tg._checkpointer.save_best(wait=self._wait, one_best=del_previous_best)

    def save(self, savepath: str | Path | None) -> Path | None:
        """``tg.save()``: a temp checkpoint in the log directory, or a checkpoint at
        ``savepath``; from a callback of an iteration, due at its end (None returned)."""
        tg = self.tg
        if savepath is None:
            tg._require_logdir("save() without savepath=")
        if tg._consistency.active is not None:  # a callback's: written at the end of it
            if savepath is None:
                tg.state.checkpoint_due = tg.state.checkpoint_due or "temp"
            else:
                self.paths_pending.append(Path(savepath))
            return None
        self._whole_validations()
        if savepath is None:
            path = tg._checkpointer.checkpoint("temp", wait=self._wait)
            assert path is not None  # there is a log directory
            return path
        return tg._checkpointer.save(Path(savepath), "manual", wait=self._wait)

    def _whole_validations(self) -> None:
        """A checkpoint holds whole validations: one stopped half-way (a Ctrl-C) is taken
        back to its start, in the checkpoint and in this run, which then redoes it whole
        (the predictions it cached are not saved: resumed, it would cover its last batches
        alone)."""
        validation = self.tg._validation
        if validation.start is not None:
            log.info("The validation stopped half-way is redone from its start after this save")
            validation.abandon()


def _first_due(a: str | None, b: str | None) -> str | None:
    """Of two due checkpoints, the one to write: unique before temp."""
    return "unique" if "unique" in (a, b) else a or b
