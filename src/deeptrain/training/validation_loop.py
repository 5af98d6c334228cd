"""One validation of a TrainGenerator (``tg.validate()``), batch by batch, and what a
validation in progress needs: where it started, to restart or rewind it exactly.

A validation is cut into iterations like training; after each the state is consistent, so a
Ctrl-C lands between two of them and ``train()`` or ``validate()`` continues it. One cut
half-way by a second Ctrl-C or an error restarts from its start (:meth:`ValidationLoop.restart`);
SIGTERM rewinds it (:meth:`ValidationLoop.rewind`), so the resumed run redoes it whole.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..backend.stateful import get_states, reset_states, set_states
from ..data.generator import DataGenerator
from ..distribute.base import batch_rows
from ..saving.rollback import load_whole_datagen_state, whole_datagen_state
from .fitting import to_metric_dict
from .interrupts import InterruptGuard, Preempted
from .state import Bookmark, append_slice
from .validation import (
    PredictCache,
    add_window_weight,
    batch_weight,
    end_batch,
    evaluate_mode_summary,
    predict_mode_summary,
    weighted_metric_names,
)

if TYPE_CHECKING:
    from .generator import TrainGenerator

__all__ = ["ValidationLoop", "ValidationStart", "starts_batch"]

log = logging.getLogger("deeptrain")

# what a validation changes on the TrainGenerator besides its state (the searched threshold,
# the summary and best subset of the last validation)
CHANGED_SETTINGS = ("dynamic_predict_threshold", "last_validation", "best_subset_nums")


@dataclass
class ValidationStart:
    """Everything a validation changes, as it was when it started (or resumed): a validation
    cut half-way by a second Ctrl-C or an error restarts from here, exactly."""

    state: Bookmark
    val_datagen: dict[str, Any]
    callbacks: list[dict[str, Any]]
    rnn_states: dict[str, list]
    cache: PredictCache
    metrics_log_bytes: int | None
    settings: dict[str, Any]  # the TrainGenerator's settings a validation changes
    due: bool  # due in training (val_freq), not asked for: may follow the epoch's end


class ValidationLoop:
    """Runs ``tg``'s validations: iterations over ``val_datagen`` with the eval function,
    the summary (evaluate or predict mode), the best key metric, figures, callbacks and the
    checkpoint due at the end. ``start`` is set while one is in progress."""

    def __init__(self, tg: TrainGenerator) -> None:
        self.tg = tg
        self.start: ValidationStart | None = None  # the validation in progress began here
        self.recording = True  # False: an ad-hoc evaluation (no histories, no best model)

    def run(
        self, record_progress: bool, clear_cache: bool, restart: bool, use_callbacks: bool
    ) -> dict[str, Any]:
        """``tg.validate()``: over the whole validation set (continuing one in progress);
        returns its metrics."""
        tg = self.tg
        tg.ensure_consistent()
        tg.sync_model()
        if restart:
            tg.reset_validation()
        if self.start is not None and self.recording != record_progress:
            if self.recording:  # the run's own validation (cut by a Ctrl-C) is not replaced
                raise RuntimeError(
                    "A validation of the run is in progress (stopped half-way): train(), or "
                    "validate() with record_progress=True, finishes it; an evaluation of "
                    "its own (record_progress=False) would take its place unrecorded. "
                    "validate(restart=True) drops it."
                )
            self.drop_evaluation()
        if self.start is None:  # a new validation: over its own batches alone (what an
            tg.clear_cache()  # earlier one kept, clear_cache=False, or a load left, goes)
            self.start = self._start_point()
            self._reset_rnn_states()
            if tg.callbacks.keras is not None:
                tg.callbacks.keras.test_begin(tg)
        state = tg.state
        self.recording = record_progress
        state.train_loop_done = True
        log.debug("Validating...")
        outermost = tg._loop_depth == 0  # (inside train(), train() handles SIGTERM)
        try:
            with InterruptGuard(), tg._loop():
                while not state.val_loop_done:
                    tg._at_boundary()
                    with tg._consistency.mark("a validation"):
                        self._iteration()
                tg._at_boundary()
                with tg._consistency.mark("a validation"):
                    new_best = self._on_end(record_progress, use_callbacks, clear_cache)
                    self._restore_train_rnn_states()
                self.start = None
                # Saved last, so that a resumed run continues right after this validation
                # (atomic: a cut here leaves the previous checkpoint and a consistent state).
                if record_progress:
                    tg._saves.if_due(at_validation_end=True, best=new_best)
        except Preempted:
            if not outermost:
                raise
            tg._stop_for_preemption()  # one checkpoint, then TrainingPreempted
        return tg.last_validation

    def abandon(self) -> None:
        """The validation in progress (if any) is undone (:meth:`undo`) and forgotten."""
        if self.start is not None:
            self.undo()
            self.start = None

    def undo(self) -> None:
        """Back to where the validation in progress started: its counters, callbacks'
        states, validation data and the train batch's RNN states. One of the run's
        (recorded, whether due or asked for) stays due: ``train()`` redoes it whole."""
        recording = self.recording
        self.rewind()
        if recording:
            self.tg.state.train_loop_done = True

    def drop_evaluation(self) -> None:
        """An evaluation of one's own (``record_progress=False``) cut half-way is undone,
        not continued as the run's recorded validation (its first batches uncounted)."""
        if not self.recording:
            self.abandon()

    def _start_point(self) -> ValidationStart:
        """Where a validation starts: what it may change, copied."""
        tg = self.tg
        log_bytes = None
        if tg._metrics_log.path is not None and tg._metrics_log.path.exists():
            log_bytes = tg._metrics_log.path.stat().st_size
        return ValidationStart(
            state=tg.state.bookmark(),
            val_datagen=whole_datagen_state(tg.val_datagen),
            callbacks=[copy.deepcopy(cb.state_dict()) for cb in tg.callbacks.objects],
            rnn_states=get_states(tg.model),
            cache=tg._val_cache.copy(),
            metrics_log_bytes=log_bytes,
            settings=copy.deepcopy({name: getattr(tg, name) for name in CHANGED_SETTINGS}),
            due=tg.state.train_loop_done,
        )

    def restart(self) -> None:
        """Undo a validation cut half-way: back to where it started, exactly."""
        log.warning(
            "The last validation was stopped half-way (a second Ctrl-C, or an "
            "error): restarting it from where it started"
        )
        self.rewind()
        self._reset_rnn_states()

    def _reset_rnn_states(self) -> None:
        """A validation starts its sequences from zero, wherever training is (a batch
        boundary or between two windows), not from the train state, which
        :meth:`_restore_train_rnn_states` puts back at its end."""
        reset_states(self.tg.model)

    def _restore_train_rnn_states(self) -> None:
        """After a validation: the RNN states training had when it started, so that training
        continues from them, as without the validation."""
        start = self.start
        if start is not None and start.rnn_states:
            set_states(self.tg.model, start.rnn_states)

    def rewind(self) -> None:
        """Back to where the validation in progress started, exactly."""
        tg = self.tg
        start = self.start
        if start is None:
            raise RuntimeError("no validation in progress to rewind")
        tg.state.rewind(start.state)
        load_whole_datagen_state(tg.val_datagen, start.val_datagen)
        for name, value in start.settings.items():
            setattr(tg, name, copy.deepcopy(value))
        for cb, cb_state in zip(tg.callbacks.objects, start.callbacks, strict=True):
            cb.load_state_dict(copy.deepcopy(cb_state))
        if start.rnn_states:
            set_states(tg.model, start.rnn_states)
        tg._val_cache = start.cache.copy()
        if tg.callbacks.keras is not None:
            tg.callbacks.keras.restart_test()
        path = tg._metrics_log.path
        if path is not None and path.exists():
            os.truncate(path, start.metrics_log_bytes or 0)  # rows of the cut validation
        tg._consistency.clear()

    def _iteration(self) -> None:
        """One call of the eval function (a batch, or a window of one) and its bookkeeping."""
        tg = self.tg
        vdg, state = tg.val_datagen, tg.state
        tg._checkpointer.pipeline.check()  # a failed background write: raised here
        if tg.callbacks.keras is not None and starts_batch(vdg):
            tg.callbacks.keras.test_batch_begin(len(state.val_temp_sizes))
        x, y, sw = tg.get_data(val=True)
        first_slice = vdg.slice_idx in (None, 0)
        eval_sw = sw if (tg.val_class_weights or tg.loss_weighted_slices_range) else None
        out = tg._eval_fn(x, y, eval_sw)
        add_window_weight(
            state.val_temp_weights,
            len(state.val_temp_sizes),
            batch_weight(eval_sw, batch_rows(x)),
            first_slice,
        )
        if tg.val_mode == "evaluate":
            append_slice(state.val_temp_history, to_metric_dict(out, tg.val_metrics), first_slice)
        else:
            tg._val_cache.add(y, out, sw, first_slice, state.val_set_name)
        if self.recording:
            state.val_iters += 1
        vdg.update_state()
        tg.callbacks("val:iter", tg)
        if vdg.batch_exhausted:
            self._on_batch_end(batch_rows(x))
        if vdg.all_data_exhausted:
            self._on_epoch_end()

    def _on_batch_end(self, n_samples: int) -> None:
        tg = self.tg
        state = tg.state
        if self.recording:
            state.batches_validated += 1
        state.val_set_name_cache.append(state.val_set_name)
        state.val_temp_sizes.append(n_samples)
        weighted = weighted_metric_names(tg.model) if state.val_temp_history else set()
        end_batch(state.val_temp_history, state.val_temp_weights, weighted)
        if tg.reset_statefuls:
            reset_states(tg.model)
        if tg.callbacks.keras is not None:
            metrics = {n: v[-1] for n, v in state.val_temp_history.items()}  # evaluate mode
            tg.callbacks.keras.test_batch_end(len(state.val_temp_sizes) - 1, metrics, n_samples)
        if tg.iter_verbosity >= 2:  # this batch's metrics, in both modes
            if tg.val_mode == "evaluate":
                batch = {n: v[-1] for n, v in state.val_temp_history.items()}
            else:
                labels, preds, weights = tg._val_cache.per_batch(tg.pred_weighted_slices_range)[-1]
                batch = tg._predict_resolver.compute(  # (NaN: AUC on a batch of one class)
                    tg.val_metrics, labels, preds, weights, state.predict_threshold, True
                )
            log.info(
                "Validated set %s: %s",
                str(state.val_set_name).rjust(tg._val_max_set_name_chars),
                tg._format(batch, "val"),
            )
        tg.callbacks("val:batch", tg)

    def _on_epoch_end(self) -> None:
        tg = self.tg
        state = tg.state
        if tg.val_mode == "evaluate":
            summary, subset = evaluate_mode_summary(
                state.val_temp_history,
                state.val_temp_sizes,
                tg.val_metrics,
                tg.key_metric,
                tg.best_subset_size,
                tg.max_is_best,
                state.val_set_name_cache[-len(state.val_temp_sizes) :],
                state.val_temp_weights,
                weighted_metric_names(tg.model),
            )  # this validation's
        else:
            search = (
                tg.dynamic_predict_threshold_min_max
                if tg.dynamic_predict_threshold is not None
                else None
            )
            summary, threshold, subset = predict_mode_summary(
                tg._val_cache,
                tg._predict_resolver,
                tg.val_metrics,
                threshold=state.predict_threshold,
                search_range=search,
                max_is_best=tg.max_is_best,
                weighted_slices=tg.pred_weighted_slices_range,
                best_subset_size=tg.best_subset_size,
            )
            if search is not None and self.recording:  # (not an evaluation of one's own)
                state.predict_threshold = tg.dynamic_predict_threshold = threshold
        tg.best_subset_nums = subset
        tg.last_validation = summary
        if self.recording:
            for name, value in summary.items():
                state.val_history.setdefault(name, []).append(value)
            state.key_metric_history.append(summary[tg.key_metric])
        state.val_epoch = tg.val_datagen.on_epoch_end()  # once per validation (0.6: twice)
        tg.callbacks("val:epoch", tg)
        state.val_loop_done = True

    def _on_end(self, record_progress: bool, use_callbacks: bool, clear_cache: bool) -> bool:
        """The validation's bookkeeping, figures and callbacks; returns whether its key metric
        is a new best."""
        tg = self.tg
        state = tg.state
        new_best = False
        if record_progress:
            state.times_validated += 1
            state.val_x_ticks.append(state.times_validated)
            state.val_train_x_ticks.append(state.batches_fit)
            latest = state.key_metric_history[-1]
            new_best = self._is_new_best(latest)
            if new_best:
                state.best_key_metric = float(latest)
                log.info("New best %s: %s", tg.key_metric, f"{latest:.6f}")
            tg._metrics_log.write(
                "validation",
                epoch=tg._validated_epoch(),
                val_epoch=state.val_epoch,
                batches_fit=state.batches_fit,
                times_validated=state.times_validated,
                best_subset=tg.best_subset_nums,
                **tg.last_validation,
            )
        if tg.iter_verbosity:
            log.info(
                "Validation %d: %s",
                state.times_validated,
                tg._format(tg.last_validation, "val"),
            )
            if tg.best_subset_nums:
                log.info("Best %d-subset: %s", len(tg.best_subset_nums), tg.best_subset_nums)
        if record_progress and tg.check_model_health:
            tg.last_health = tg.check_health()
        if use_callbacks and tg._should_do(tg.plot_history_freq, validation_ended=True):
            tg.plot_history()
        # the epoch's end waited for this validation (not one asked for after it ended)
        due = self.start is not None and self.start.due
        after_epoch = record_progress and due and tg.datagen.all_data_exhausted
        if use_callbacks:
            tg.callbacks(("val_end", "train:epoch") if after_epoch else "val_end", tg)
        if tg.callbacks.keras is not None:
            tg.callbacks.keras.test_end(tg, dict(tg.last_validation))
            if after_epoch:  # the epoch's end, deferred until its validation was done
                logs = tg._epoch_logs()
                logs.update({f"val_{k}": v for k, v in tg.last_validation.items()})
                tg.callbacks.keras.epoch_end(tg, state.epoch - 1, logs)
        if clear_cache:
            tg.clear_cache()
        if not record_progress and self.start is not None:
            # an evaluation of one's own leaves the run's validation data where it was: the
            # next recorded validation sees the same batches, in the same order, as without it
            mark = self.start.state
            load_whole_datagen_state(tg.val_datagen, self.start.val_datagen)
            state.val_epoch = mark.values["val_epoch"]
            state.val_set_name = mark.values["val_set_name"]
            del state.val_set_name_cache[mark.lengths["val_set_name_cache"] :]
        state.val_loop_done = state.train_loop_done = False
        if not record_progress and self.start is not None:  # a validation the run had due
            state.train_loop_done = self.start.state.values["train_loop_done"]  # stays due
        self.recording = True
        return new_best

    def _is_new_best(self, value: Any) -> bool:
        """Whether ``value`` of the key metric beats the best so far (NaN never does)."""
        tg = self.tg
        if np.ndim(value) != 0 or not np.isfinite(value):
            return False
        best = tg.state.best_key_metric
        return best is None or (value > best if tg.max_is_best else value < best)


def starts_batch(dg: DataGenerator) -> bool:
    """Whether the next ``get()`` serves the first window of a batch: a batch is loaded
    then, or one is held that nothing was served from yet (windows: at slice 0)."""
    return dg.batch_exhausted or dg.slice_idx in (None, 0)
