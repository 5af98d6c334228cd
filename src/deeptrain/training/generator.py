"""``TrainGenerator``: the train and validation loop around a compiled Keras 3 model.

The loop, top to bottom (``train()``)::

    while True:
        if validation is pending: validate()          # also after an interrupt inside it
        elif epoch < epochs:      one train iteration  # fetch, fit, bookkeeping, callbacks
        else:                     break

An iteration is one call of the fit function: a whole batch, or one window of it when the
preprocessor slices batches. Each iteration runs with Ctrl-C held until it ends
(:mod:`deeptrain.training.interrupts`), so after a ``KeyboardInterrupt`` the state is always
consistent and ``train()`` continues without skipping or repeating anything.

All counters, flags and histories live in ``tg.state`` (a :class:`TrainState`); DeepTrain
0.6's attribute names (``tg._fit_iters``, ``tg.history`` ...) read and write it.

This module is the train loop and the public methods; the rest is in the modules beside it:
a validation (:mod:`~deeptrain.training.validation_loop`), when saves are written
(:mod:`~deeptrain.training.saves`), the arguments' checks (:mod:`~deeptrain.training.checks`)
and the log directory (:mod:`~deeptrain.training.logdirs`).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import callbacks as callbacks_lib
from .. import distribute, introspection
from ..backend.host import read_to_host
from ..backend.stateful import (
    prepare_stateful_model,
    reset_states,
)
from ..data.generator import DataGenerator
from ..distribute.base import batch_rows
from ..saving.checkpointer import Checkpointer
from ..saving.lock import LogdirLock
from ..saving.naming import name_suffix
from ..saving.report import traingen_report_png, write_init_logs
from ..util.console import use_console
from ..util.misc import capture_args, check_kwargs
from ..visuals import scalefig
from . import checks, logdirs
from .aliases import TrainStateAliases
from .configs import TRAINGEN_DEFAULTS, defaults
from .fitting import make_eval_fn, make_fit_fn, model_metric_names, to_metric_dict
from .frequency import should_do
from .interrupts import Consistency, InterruptGuard, Preempted, TrainingPreempted
from .plotting import history_figure, plot_configs_for
from .progress import EpochProgress, MetricsLog, format_metrics
from .saves import Saves
from .state import TrainState, append_slice
from .validation import MetricResolver, PredictCache
from .validation_loop import ValidationLoop, starts_batch
from .weights import sample_weights

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["TrainGenerator"]

log = logging.getLogger("deeptrain")


class TrainGenerator(TrainStateAliases):
    """Train ``model`` on ``datagen`` and validate on ``val_datagen``.

    Args:
        model: a compiled Keras 3 model.
        datagen, val_datagen: :class:`~deeptrain.DataGenerator` for training / validation.
        epochs: train while ``epoch < epochs``.
        fit_fn: ``'train_on_batch'`` (default), ``'fit'`` or ``fn(x, y, sample_weight)``.
        eval_fn: ``'evaluate'`` (metrics from the model, averaged over batches weighted by
            sample count) or ``'predict'`` (predictions cached; metrics computed over the
            whole validation set), or a callable with ``val_mode`` given.
        key_metric: metric that decides the best model; ``max_is_best`` its direction
            (default: minimise losses and errors, maximise anything else).
        val_metrics: predict mode: metrics to compute (``'*'`` inserts the model's).
        val_freq, plot_history_freq, unique_checkpoint_freq, temp_checkpoint_freq:
            ``{'iter' | 'batch' | 'epoch' | 'val': n}`` or None.
        class_weights, val_class_weights: ``{class: weight}`` turned into sample weights.
        reset_statefuls: reset stateful RNN layers after every train and validation batch.
        iter_verbosity: 0 silent, 1 progress bar and validation lines, 2 also per-iteration
            metrics in the bar and per-batch validation lines.
        callbacks: ``{stage: fn(tg)}``, ``TraingenCallback`` objects, ``keras.callbacks``
            callbacks (see :mod:`deeptrain.callbacks.keras_callbacks`), or a list of them.
        **kwargs: the rest of DeepTrain 0.6's settings (``TRAINGEN_DEFAULTS``).

    Every setting is an attribute of the same name, declared below. Its default is the value
    in :data:`~deeptrain.training.configs.TRAINGEN_DEFAULTS` when the TrainGenerator is built
    (edit the dict to change a default); the signature's defaults show the shipped values.
    """

    # -- settings (defaults: TRAINGEN_DEFAULTS; fit_fn and eval_fn are properties) ----------
    epochs: int  #: train while ``epoch < epochs`` (raise it to continue a finished run)
    logs_dir: str | Path | None  #: parent of log directories ``<logs_dir>/<model_name>``
    best_models_dir: str | Path | None  #: where each new best model is saved; None: not saved
    loadpath: str | Path | None  #: checkpoint (or log directory) loaded at construction
    callbacks: callbacks_lib.CallbackList  #: callbacks, dispatched by stage (``'val_end'`` ...)
    key_metric: str  #: the metric that decides the best model
    key_metric_fn: Callable | None  #: predict mode: computes ``key_metric`` (None: by name)
    val_metrics: list[str]  #: metrics reported by validation (predict mode: computed)
    custom_metrics: Mapping[str, Callable] | None  #: predict mode: ``{name: fn(y, pred)}``
    input_as_labels: bool  #: labels are the inputs (autoencoders); no ``labels_path`` needed
    max_is_best: bool  #: a higher key metric is better (None given: by the metric's name)
    val_freq: dict[str, int] | None  #: when to validate: ``{'iter'|'batch'|'epoch': n}``
    plot_history_freq: dict[str, int] | None  #: when (at a validation's end) to draw history
    unique_checkpoint_freq: dict[str, int] | None  #: when to write a kept checkpoint
    temp_checkpoint_freq: dict[str, int] | None  #: when to write a temp (replaced) checkpoint
    class_weights: dict[int, float] | None  #: ``{class: weight}``: train sample weights
    val_class_weights: dict[int, float] | None  #: ``{class: weight}``: validation weights
    reset_statefuls: bool  #: reset stateful RNN layers after every train and val batch
    iter_verbosity: int  #: 0 quiet; 1 progress bar, validation lines; 2 also per iteration
    logdir: Path | None  #: this run's log directory (given: used as is, resumed there)
    optimizer_save_configs: dict[str, list[str]] | None  #: optimizer variables saved
    optimizer_load_configs: dict[str, list[str]] | None  #: optimizer variables loaded
    plot_configs: dict[str, Any] | None  #: the history figure's panes, merged with defaults
    model_configs: dict[str, Any] | None  #: the model's hyperparameters (naming, report)
    batch_size: int | None  #: samples per batch (None: from the model's input shape)
    val_mode: str  #: ``'evaluate'`` (the model's metrics) or ``'predict'`` (computed here)
    #: ``(lo, hi)``: search the binary threshold in this range after each validation
    dynamic_predict_threshold_min_max: tuple[float, float] | None
    checkpoints_overwrite_duplicates: bool  #: a checkpoint name taken: replace (else ``_v2``)
    checkpoint_async: bool  #: write checkpoints in a background thread (False: before going on)
    loss_weighted_slices_range: tuple[float, float] | None  #: ``(a, b)``: window weights
    pred_weighted_slices_range: tuple[float, float] | None  #: ``(a, b)``: window pred weights
    logs_use_full_model_name: bool  #: checkpoint names start with the full model name
    new_model_num: bool  #: model number: one above the highest (False: the lowest free)
    dynamic_predict_threshold: float | None  #: the tuned threshold (None: no tuning)
    plot_first_pane_max_vals: int  #: validation metrics in the history figure's first pane
    _val_max_set_name_chars: int  #: padding of set names in validation lines
    _max_set_name_chars: int  #: padding of set names in train lines
    best_subset_size: int | None  #: find the ``k`` validation batches with the best metric
    check_model_health: bool  #: check for dead, NaN/Inf and large weights after validations
    max_one_best_save: bool  #: keep only the newest best model of this model number
    max_checkpoints: int  #: checkpoints kept in the log directory (oldest removed)
    report_fontpath: str | Path | None  #: font file of the report figure (None: monospace)
    model_base_name: str  #: model name part after ``M<num>__``
    final_fig_dir: str | Path | None  #: also save the history figure as ``<model_name>.png``
    loadskip_list: list[str]  #: saved settings that ``load()`` leaves alone
    saveskip_list: list[str]  #: settings (and parts) left out of checkpoints
    model_save_kw: dict[str, Any] | None  #: keywords of ``model.save`` (best models)
    model_save_weights_kw: dict[str, Any] | None  #: keywords of ``model.save_weights``
    metric_to_alias: dict[str, str]  #: names shown in logs and legends (``'loss'``: ``Loss``)
    alias_to_metric: dict[str, str]  #: accepted metric aliases (``'acc'``: ``'accuracy'``)
    report_configs: dict[str, Any] | None  #: what the report shows (include/exclude)
    model_name_configs: dict[str, Any]  #: ``{attribute: alias}`` encoded in the model name
    name_process_key_fn: Callable | None  #: ``fn(key, alias, attrs)``: a name part
    metric_printskip_configs: dict[str, list[str]]  #: metrics not logged, per stage
    metrics_log: str | None  #: the metrics log's format: ``'jsonl'``, ``'csv'`` or None
    continue_run: bool  #: resuming continues the checkpoint's run in its log directory
    restore_saved_paths: bool  #: take the paths saved in a checkpoint at load

    @capture_args  # -> self._passed_args: what '{auto}' in loadskip_list keeps at load
    def __init__(
        self,
        model: Any,
        datagen: DataGenerator,
        val_datagen: DataGenerator,
        epochs: int = 1,
        logs_dir: str | Path | None = None,
        best_models_dir: str | Path | None = None,
        loadpath: str | Path | None = None,
        callbacks: Any = None,
        fit_fn: str | Callable = "train_on_batch",
        eval_fn: str | Callable = "evaluate",
        key_metric: str = "loss",
        key_metric_fn: Callable | None = None,
        val_metrics: list | None = None,
        custom_metrics: Mapping[str, Callable] | None = None,
        input_as_labels: bool = False,
        max_is_best: bool | None = None,
        val_freq: Mapping[str, int] | None = {"epoch": 1},
        plot_history_freq: Mapping[str, int] | None = {"epoch": 1},
        unique_checkpoint_freq: Mapping[str, int] | None = {"epoch": 1},
        temp_checkpoint_freq: Mapping[str, int] | None = None,
        class_weights: Mapping[int, float] | None = None,
        val_class_weights: Mapping[int, float] | None = None,
        reset_statefuls: bool = False,
        iter_verbosity: int = 1,
        logdir: str | Path | None = None,
        optimizer_save_configs: Any = None,
        optimizer_load_configs: Any = None,
        plot_configs: Any = None,
        model_configs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ):
        arguments = {k: v for k, v in locals().items() if k in TRAINGEN_DEFAULTS}
        check_kwargs(
            kwargs,
            [k for k in TRAINGEN_DEFAULTS if k not in arguments],
            "TrainGenerator",
            signature_of=TrainGenerator.__init__,
        )
        configs = defaults()  # the defaults dict as it is now: editing it changes defaults
        configs.update({k: v for k, v in arguments.items() if k in self.passed_args})
        configs.update(kwargs)
        self._fit_fn_spec = configs.pop("fit_fn")
        self._eval_fn_spec = configs.pop("eval_fn")
        self.state = TrainState()
        for name, value in configs.items():
            setattr(self, name, value)

        self.model = model
        self.datagen = datagen
        self.val_datagen = val_datagen
        self.distribution = distribute.detect(model)  # the engine's own, as set up by the user
        checks.check_inputs(self)
        use_console(self.iter_verbosity)  # messages on the console unless logging is set up
        self._set_up_model()
        self._set_up_metrics()
        checks.check_distribution(self)
        self.callbacks = callbacks_lib.CallbackList(callbacks)
        self._val_cache = PredictCache()
        self._history_fig: Figure | None = None
        self._figure_files: dict[str, tuple] = {}  # name -> (progress key, PNG drawn then)
        self.last_validation: dict[str, Any] = {}
        self.best_subset_nums: list[str | None] | None = None
        self.last_health = None  # HealthReport of the last validation (check_model_health)
        self._consistency = Consistency()  # what a second Ctrl-C (or an error) cut half-way
        self._saves = Saves(self)  # checkpoints and best models due
        self._validation = ValidationLoop(self)  # (where a validation in progress began)
        self.logdir = Path(self.logdir) if self.logdir is not None else None
        self._checkpointer = Checkpointer(self)
        # the saves of a background write that failed are due again (written when train()
        # goes on, as a save cut on the training thread is)
        self._checkpointer.pipeline.on_error = self._saves.due_again
        self._loop_depth = 0  # train() / validate() calls running (checkpoints: see _loop)
        self._lock: LogdirLock | None = None
        self.model_num = 0  # the M<num> of the model name, set with the log directory
        self.callbacks.init_with_traingen(self)
        loaded = self.load(self.loadpath) if self.loadpath is not None else None
        self._hold_first_batches()
        checks.check_data_fits_model(self)  # (the batches held: before a log dir is made)
        run_dir = logdirs.run_dir_of(self, loaded)
        logdirs.set_up_logdir(self, run_dir)
        self._progress = EpochProgress(self.iter_verbosity)
        writes = self.logdir if self.distribution.is_writer else None
        self._metrics_log = MetricsLog(writes, self.metrics_log)
        if run_dir is not None and loaded is not None:  # (what follows it: rolled back)
            self._rewind_logs(loaded)
        if writes is not None:
            write_init_logs(self, writes / "misc")
        checks.warn_if_state_carries_across_batches(self)

    @property
    def passed_args(self) -> list[str]:
        """Names of the arguments passed to the constructor, sorted: ``'{auto}'`` in
        ``loadskip_list`` keeps their values at load. (DeepTrain 0.6: ``_passed_args``.)"""
        return list(self.__dict__["_passed_args"])  # recorded by @capture_args

    # -- construction ------------------------------------------------------------------
    def _hold_first_batches(self) -> None:
        """As in DeepTrain 0.6, both DataGenerators hold the batch they serve next once the
        TrainGenerator is built (scripts and callbacks read ``datagen.batch`` before the
        first step). It is the load their next ``get()`` does, done earlier, so what is
        served, in which order and with which random draws, is unchanged, and a checkpoint
        taken now resumes the same. Not for the train data where the earlier load would
        change a decision: at an epoch's end (``all_data_exhausted`` still marks it) or
        with a validation pending."""
        self.val_datagen.hold_next_batch()
        dg = self.datagen
        if not dg.all_data_exhausted and not self.state.train_loop_done:
            dg.hold_next_batch()

    def _set_up_model(self) -> None:
        checks.refuse_tf_graph_mode()
        for line in prepare_stateful_model(self.model):
            log.info("Stateful RNN workaround applied: %s", line)
        if self.batch_size is None:
            inputs = getattr(self.model, "inputs", None) or []
            self.batch_size = inputs[0].shape[0] if inputs else None
        self._fit_fn, self._fit_fn_name = make_fit_fn(
            self.model, self._fit_fn_spec, self.distribution
        )
        self._eval_fn, self._eval_fn_name, self.val_mode = make_eval_fn(
            self.model, self._eval_fn_spec, self.val_mode, self.distribution
        )

    def _set_up_metrics(self, reloading: bool = False) -> None:
        self.train_metrics = model_metric_names(self.model)
        self.key_metric = checks.canonical_metric(self, self.key_metric, self.train_metrics)
        if self.max_is_best is None:
            self.max_is_best = checks.is_maximized(self.key_metric)
        self._resolver: MetricResolver | None = None
        if self.val_mode == "evaluate":
            if self.val_metrics is not None and not reloading:
                log.warning(
                    "val_metrics is ignored in evaluate mode: validation reports the "
                    "model's compiled metrics %s",
                    self.train_metrics,
                )
            self.val_metrics = list(self.train_metrics)
            if self.key_metric not in self.val_metrics:
                raise ValueError(
                    f"key_metric={self.key_metric!r} is not among the model's "
                    f"metrics {self.val_metrics}; compile the model with it, or "
                    "use eval_fn='predict' to compute it with NumPy"
                )
            if self.key_metric_fn is not None:
                log.info("key_metric_fn is only used in predict mode; ignoring it")
        else:
            names = list(self.val_metrics or self.train_metrics)
            if "*" in names:
                i = names.index("*")
                names[i : i + 1] = [m for m in self.train_metrics if m not in names]
            names = ["loss"] + [n for n in names if n != "loss"]
            if self.key_metric not in names:
                names.append(self.key_metric)
            self.val_metrics = names
            self._resolver = MetricResolver(
                self.model, self.custom_metrics, self.key_metric, self.key_metric_fn
            )
            self._resolver.check(names)

    @property
    def _predict_resolver(self) -> MetricResolver:
        """Predict mode's metric functions (set up with the metrics)."""
        if self._resolver is None:
            raise RuntimeError("metrics are computed here only in predict mode")
        return self._resolver

    def _require_logdir(self, what: str) -> Path:
        if self.logdir is None:
            raise ValueError(f"{what} needs a log directory: set logs_dir or logdir")
        return self.logdir

    def check_logdir_owned(self) -> None:
        """Raise if another TrainGenerator of this process took this log directory over."""
        if self._lock is not None:
            self._lock.check()

    def get_unique_model_name(self, set_model_num: bool = True) -> str:
        """``M<num>__<base>-<encoded model_name_configs>__<max|min><best>`` (0.6 naming).

        The model number is taken once, when the log directory is made (reserved in
        ``<logs_dir>/.model_nums``), so ``set_model_num`` (DeepTrain 0.6's: pick a number
        now) is accepted and changes nothing."""
        suffix = name_suffix(
            self.model_name_configs or {},
            [self.model_configs or {}, self],
            self.max_is_best,
            self.state.best_key_metric,
            self.name_process_key_fn,
        )
        return f"M{self.model_num}__{self.model_base_name}{suffix}"

    # -- the train loop ----------------------------------------------------------------
    def train(self) -> None:
        """Train until ``epoch == epochs``, validating at ``val_freq``. Resumable: after an
        interrupt (or with more ``epochs``), call it again."""
        self.ensure_consistent()
        self.check_logdir_owned()
        checks.check_inputs(self)  # (settings are attributes: set since, they count now)
        use_console(self.iter_verbosity)
        state = self.state
        keras_hooks = self.callbacks.keras
        self._callbacks("train_start")
        try:
            # Ctrl-C and SIGTERM land between iterations; the guard outlives the last
            # checkpoint write, so that a signal held meanwhile is passed on after it
            with InterruptGuard(), self._loop():
                self.build_optimizer()
                self._validation.drop_evaluation()
                self._saves.pending()
                if keras_hooks is not None:
                    keras_hooks.train_begin(self)
                while True:
                    self._at_boundary()
                    state = self.state  # (a callback may have loaded a checkpoint)
                    if state.train_loop_done:  # validation due, or interrupted inside it
                        self.validate()
                    elif state.epoch < self.epochs:
                        if self.iter_verbosity:
                            self._progress.start(
                                state.epoch + 1,
                                self.epochs,
                                len(self.datagen),
                                self._batches_into_epoch(),
                            )
                        self._train_iteration()
                    else:
                        break
                    if keras_hooks is not None and keras_hooks.stop_requested(self):
                        self._progress.close()
                        log.info(
                            "Training stopped by a callback (model.stop_training) after "
                            "%d batches, epoch %d",
                            state.batches_fit,
                            state.epoch,
                        )
                        break
                if keras_hooks is not None and keras_hooks.train_end(self):
                    self._save_restored_weights()
        except Preempted:
            try:
                self._stop_for_preemption()  # one checkpoint, then TrainingPreempted
            finally:
                self._finish_training(failed=True)
        except BaseException:
            self._finish_training(failed=True)
            raise
        self._finish_training(failed=False)

    def _save_restored_weights(self) -> None:
        """A Keras callback set other weights at the end of training than the last
        checkpoint holds (``EarlyStopping(restore_best_weights=True)``): a temp checkpoint of
        them, so that a resumed run goes on from them, as ``train()`` again would."""
        if self.logdir is not None and (self.unique_checkpoint_freq or self.temp_checkpoint_freq):
            log.info("Weights set by a Keras callback at the end of training: checkpointed")
            self._saves.now(False, "temp")

    def _finish_training(self, failed: bool) -> None:
        """The end of ``train()``: the model synced, the final figure, ``'train_end'``
        callbacks. While ``train()`` is raising, a callback's error is logged, not raised
        (the first error is the one to see)."""
        self.sync_model()
        self._progress.close()
        if not failed and self.final_fig_dir is not None and self.distribution.is_writer:
            self._save_final_figure(Path(self.final_fig_dir))
        try:
            self.callbacks("train_end", self)
        except Exception:
            if not failed:
                raise
            log.exception("A 'train_end' callback failed while train() was stopping")
        if not failed:
            log.info("Training has concluded.")

    @contextlib.contextmanager
    def _loop(self) -> Iterator[None]:
        """``train()`` or ``validate()``: checkpoints due inside are written in the
        background (``checkpoint_async``); the outermost returns only once the last one is
        complete (raising its error, unless another error is on its way out: then that
        one is raised and the write's error at the next step)."""
        if self._loop_depth == 0:
            self.distribution.start_loop()
            self._checkpointer.keep_spare = True  # (snapshots reuse host arrays meanwhile)
        self._loop_depth += 1
        ok, error = False, None
        try:
            yield
            ok = True
        except BaseException as e:
            error = e
            raise
        finally:
            self._loop_depth -= 1
            if self._loop_depth == 0:
                # (first: the other processes must not wait for this one's writes)
                self.distribution.end_loop(error)
                try:
                    self._finish_writes(raise_error=ok)
                finally:
                    self._checkpointer.release_spare()

    def _finish_writes(self, raise_error: bool = True) -> None:
        pipeline = self._checkpointer.pipeline
        if raise_error:
            pipeline.wait()
            return
        pipeline.join()
        if pipeline.pending_error() is not None:
            log.error(
                "A checkpoint write failed (%s); the error is raised at the next step",
                pipeline.pending_error(),
            )

    def wait_for_checkpoints(self) -> None:
        """Return once the checkpoint being written in the background is complete (its
        error, if it failed, is raised here)."""
        self._checkpointer.pipeline.wait()

    def _save_final_figure(self, directory: Path) -> Path:
        """``<final_fig_dir>/<model_name>.png``, replacing this model number's older ones."""
        directory.mkdir(parents=True, exist_ok=True)
        self.model_name = self.get_unique_model_name()
        for old in directory.glob(f"M{self.model_num}__*.png"):
            old.unlink()
        path = directory / f"{self.model_name}.png"
        self.plot_history(savepath=path)
        log.info("Final history figure: %s", path)
        return path

    def _at_boundary(self) -> None:
        """A consistent point between iterations: act here on a held Ctrl-C or SIGTERM
        (under a distribution, every process at the same iteration: they agree first)."""
        if self.distribution.distributed:
            InterruptGuard.check(self.distribution.agree_on_interrupt(InterruptGuard.pending()))
        else:
            InterruptGuard.check()

    def _stop_for_preemption(self) -> None:
        """SIGTERM: one consistent checkpoint (every process takes part), then exit. A
        validation in progress is rewound to its start, so that the resumed run redoes it
        whole (exactly). Signals wait meanwhile: a second SIGTERM (a scheduler sending it
        again) or a Ctrl-C cannot cut the checkpoint short."""
        with InterruptGuard(pass_on=False), InterruptGuard.hold():  # (exiting anyway)
            self._preemption_checkpoint()

    def _preemption_checkpoint(self) -> None:
        self.sync_model()
        if self._validation.start is not None and self.state.train_loop_done:
            self._validation.undo()
        failed = self._checkpointer.pipeline.take_error()
        if failed is not None:  # the last good state is saved now instead
            log.error("An earlier checkpoint write failed: %s", failed)
        path = self._checkpointer.preemption_checkpoint()
        saved = f"checkpoint saved at {path}" if path else "no log directory, nothing saved"
        log.warning("Preempted (SIGTERM): %s; exiting. Run the same command to resume.", saved)
        raise TrainingPreempted(0)

    def build_optimizer(self) -> None:
        """Create the optimizer's slots before the first step, with every Ctrl-C held: Keras
        sets ``optimizer.built`` before it creates them, so a cut there breaks the optimizer
        for good (``'Adam' object has no attribute '_momentums'``)."""
        optimizer = self.model.optimizer
        if not optimizer.built and self.model.built:
            with InterruptGuard.hold(), self.distribution.scope():
                optimizer.build(self.model.trainable_variables)

    def _train_iteration(self) -> None:
        dg, state = self.datagen, self.state
        self._checkpointer.pipeline.check()  # a failed background write: raised here
        keras_hooks = self.callbacks.keras
        if keras_hooks is not None:
            keras_hooks.train_iteration_begin(self, starts_batch(dg), self._batches_into_epoch())
        x, y, sw = self.get_data(val=False)  # a failed load changes nothing
        # From the step to the end of the bookkeeping, a cut (a second Ctrl-C, an error)
        # leaves the weights and the counters apart: marked, and train() then refuses.
        with self._consistency.mark("a train iteration"):
            first_slice = dg.slice_idx in (None, 0)
            metrics = to_metric_dict(self._fit_fn(x, y, sw), self.train_metrics)
            if list(metrics) != self.train_metrics:
                self._update_names(metrics)
            append_slice(state.temp_history, metrics, first_slice)
            state.fit_iters += 1
            dg.update_state()
            self._callbacks("train:iter")
            if self.iter_verbosity >= 2:
                self._progress.iteration(
                    str(state.set_name).rjust(self._max_set_name_chars),
                    self._format(metrics, "train"),
                )
            if dg.batch_exhausted:
                self._on_train_batch_end()
            if dg.all_data_exhausted:
                self._on_train_epoch_end()
            if self.val_freq and self._should_do(self.val_freq):
                state.train_loop_done, state.val_loop_done = True, False
            if keras_hooks is not None and dg.all_data_exhausted and not state.train_loop_done:
                keras_hooks.epoch_end(self, state.epoch - 1, self._epoch_logs())
        self._saves.if_due(at_validation_end=False)

    def ensure_consistent(self) -> None:
        """Repair what a cut (a second Ctrl-C, an error) left half-done where that can be
        done exactly (a validation restarts from its start); raise for a cut train
        iteration (load a checkpoint to go on)."""
        broken = self._consistency.broken
        if broken is None:
            return
        if broken == "a validation" and self._validation.start is not None:
            self._validation.restart()
            return
        latest = self._checkpointer.latest() if self.logdir is not None else None
        raise RuntimeError(
            f"This TrainGenerator stopped inside {broken} (a second Ctrl-C, or an error), "
            "after the model may have changed but before its counters did, so its state is "
            "inconsistent and continuing would not be exact. Load the last checkpoint to go "
            f"on: tg.load({str(latest)!r})"
            if latest is not None
            else f"This TrainGenerator stopped inside {broken} (a second Ctrl-C, or an error), "
            "after the model may have changed but before its counters did, so its state is "
            "inconsistent and continuing would not be exact. Load a checkpoint "
            "(tg.load(path)), or build the model and TrainGenerator anew."
        )

    def _callbacks(self, stage: str) -> None:
        """Dispatch ``stage`` (skipped when there are no callbacks: it runs every step); the
        model is synced first unless no callback reads it."""
        if self.callbacks.entries:
            if self.callbacks.reads_model:
                self.sync_model()
            self.callbacks(stage, self)

    def variable_values(self, variables: Sequence[Any], fixed: bool = False) -> list[np.ndarray]:
        """Host copies of the current values of ``variables`` (the model's or its
        optimizer's): on JAX read from the train step's device state, which goes on (a
        learning rate read per epoch; :meth:`sync_model` would end it). ``fixed``: the
        train step does not write them (a learning rate Variable): on JAX read once per
        device state (see ``JaxStepper.read``)."""
        read = getattr(self._fit_fn, "read", None)
        if read is None:
            return read_to_host(self.model, variables)
        return read(variables, fixed)

    def sync_model(self) -> None:
        """Make the model's variables current (the JAX train step keeps them on the
        device between steps); call before anything reads the model."""
        sync = getattr(self._fit_fn, "sync", None)
        if sync is not None:
            sync()

    # DeepTrain 0.6-era private names, kept for code that uses them
    def _sync_model(self) -> None:
        self.sync_model()

    def _refuse_if_inconsistent(self) -> None:
        self.ensure_consistent()

    def _write_figure(self, name: str, path: Path) -> None:
        self.write_figure(name, path)

    @property
    def val_cache(self) -> PredictCache:
        """Predict mode: labels, predictions and sample weights of the validation in
        progress (or the last one, until the cache is cleared), one entry per batch
        (``labels``, ``preds``, ``weights``, ``set_names``). (0.6: ``_val_cache``.)"""
        return self._val_cache

    def _on_train_batch_end(self) -> None:
        state = self.state
        state.batches_fit += 1
        state.train_x_ticks.append(state.batches_fit)
        state.train_val_x_ticks.append(state.times_validated)
        state.set_name_cache.append(state.set_name)
        batch_metrics = {}
        for name, entries in state.temp_history.items():
            last = entries[-1]
            entries[-1] = batch_metrics[name] = last[0] if len(last) == 1 else float(np.mean(last))
            # epoch-running mean from a running sum (saved with the state, so exact on resume)
            total = state.epoch_sums.setdefault(name, [0.0, 0])
            total[0] += entries[-1]
            total[1] += 1
            state.history.setdefault(name, []).append(total[0] / total[1])
        if self.reset_statefuls:
            self.sync_model()
            reset_states(self.model)
        if self._metrics_log.path is not None:
            self._metrics_log.write(
                "train_batch",
                epoch=state.epoch + 1,  # the epoch in progress, numbered as the bar shows it
                batches_fit=state.batches_fit,
                fit_iters=state.fit_iters,
                set_name=state.set_name,
                **batch_metrics,
            )
        keras_hooks = self.callbacks.keras
        if self.iter_verbosity or keras_hooks is not None:
            running = {n: v[-1] for n, v in state.history.items()}  # means over the epoch
            if self.iter_verbosity:
                self._progress.batch(
                    str(state.set_name).rjust(self._max_set_name_chars),
                    self._format(running, "train"),
                )
            if keras_hooks is not None:
                keras_hooks.train_batch_end(self, self._batches_into_epoch() - 1, running)
        self._callbacks("train:batch")

    def _on_train_epoch_end(self) -> None:
        state = self.state
        state.temp_history = {}
        state.epoch_sums = {}
        state.epoch = self.datagen.on_epoch_end()
        state.hist_vlines.append(state.batches_fit)
        state.val_hist_vlines.append(state.times_validated)
        self._progress.close()
        log.info("EPOCH %d -- COMPLETE", state.epoch)
        self._callbacks("train:epoch")

    def get_sample_weight(
        self,
        class_labels: Any,
        val: bool = False,
        slice_idx: int | None = None,
        force_unweighted: bool = False,
    ) -> np.ndarray:
        """Per-sample weights of ``class_labels`` (one label, or one-hot labels, per
        sample): ``class_weights`` (``val_class_weights`` with ``val``) times the slice
        weight of window ``slice_idx`` (``loss_weighted_slices_range``; default: the window
        the datagen's last ``get()`` served, as ``get(skip_validation=True)`` gives it, else
        the one it serves next). ``force_unweighted``: ones."""
        n = len(class_labels)
        if force_unweighted:
            return np.ones(n, dtype="float32")
        dg = self.val_datagen if val else self.datagen
        if slice_idx is None:  # (update_state() has moved slice_idx on to the next window)
            served = dg._served_window
            slice_idx = dg.slice_idx if served is None else served
        return sample_weights(
            class_labels,
            n,
            self.val_class_weights if val else self.class_weights,
            self.loss_weighted_slices_range,
            dg.slices_per_batch,
            slice_idx,
        )

    def _epoch_logs(self) -> dict[str, Any]:
        """The train metrics of the epoch just ended (means over it), as Keras' callbacks
        get them at ``on_epoch_end``."""
        return {name: values[-1] for name, values in self.state.history.items() if values}

    def get_data(self, val: bool = False) -> tuple[Any, Any, Any]:
        """The next ``(x, y, sample_weight)`` to fit (or validate); ``sample_weight`` is None
        when no weighting is configured."""
        dg = self.val_datagen if val else self.datagen
        x, labels = dg.get()
        if val:
            self.state.val_set_name = dg.set_name
        else:
            self.state.set_name = dg.set_name
        y = x if self.input_as_labels else labels
        class_weights = self.val_class_weights if val else self.class_weights
        weighted = class_weights or self.loss_weighted_slices_range is not None
        if not weighted and not (val and self.val_mode == "predict"):
            return x, y, None
        sw = sample_weights(
            None if self.input_as_labels else labels,
            batch_rows(x),  # (a model of several inputs: a list of arrays)
            class_weights,
            self.loss_weighted_slices_range,
            dg.slices_per_batch,
            dg.slice_idx,
        )
        return x, y, sw

    def _update_names(self, metrics: dict[str, float]) -> None:
        """Keras names some metrics only at the first step: adopt its names then."""
        if list(metrics) != self.train_metrics:
            renamed = {
                old: new
                for old, new in zip(self.train_metrics, metrics, strict=False)
                if old != new
            }
            self.train_metrics = list(metrics)
            if self.val_mode == "evaluate":
                self.val_metrics = list(metrics)
                if self.key_metric not in metrics:  # (a name that stayed is the same metric)
                    self.key_metric = renamed.get(self.key_metric, self.key_metric)

    # -- validation --------------------------------------------------------------------
    def validate(
        self,
        record_progress: bool = True,
        clear_cache: bool = True,
        restart: bool = False,
        use_callbacks: bool = True,
    ) -> dict[str, Any]:
        """Run over the whole validation set; returns its metrics.

        ``record_progress=False`` evaluates without touching histories, counters or the
        best model (an ad-hoc evaluation). ``restart``: abandon a validation in progress
        and start anew. ``use_callbacks=False``: no figures or ``'val_end'`` callbacks.
        """
        return self._validation.run(record_progress, clear_cache, restart, use_callbacks)

    def clear_cache(self, reset_val_flags: bool = False) -> None:
        """Drop the validation's cached predictions and per-batch metrics;
        ``reset_val_flags``: also mark no validation as pending or in progress (the val
        datagen is left where it is; :meth:`reset_validation` also resets it)."""
        self._val_cache = PredictCache()
        self.state.val_temp_history = {}
        self.state.val_temp_sizes = []
        self.state.val_temp_weights = []
        if reset_val_flags:
            self.state.val_loop_done = self.state.train_loop_done = False
            self._validation.start = None

    # DeepTrain 0.6's names of the predict-mode cache of the last validation (per batch, a
    # list with an array per window); filled during a validation, read by 'val_end'
    # callbacks, emptied at its end (clear_cache).
    _labels_cache = property(
        lambda self: self._val_cache.labels,
        lambda self, value: setattr(self._val_cache, "labels", _per_batch_windows(value)),
        doc="Labels of the last validation (predict mode): ``[batch][window] -> array``.",
    )
    _preds_cache = property(
        lambda self: self._val_cache.preds,
        lambda self, value: setattr(self._val_cache, "preds", _per_batch_windows(value)),
        doc="Predictions of the last validation (predict mode): ``[batch][window]``.",
    )
    _sw_cache = property(
        lambda self: self._val_cache.weights,
        lambda self, value: setattr(self._val_cache, "weights", _per_batch_windows(value)),
        doc="Sample weights of the last validation (predict mode): ``[batch][window]``.",
    )

    def reset_validation(self) -> None:
        """Abandon a validation in progress: back to where it started (counters, callbacks'
        states, the val datagen's position, the train batch's RNN states); one of the run's
        stays due. With none in progress, only the caches are cleared."""
        self.sync_model()
        if self._validation.start is not None:
            self._validation.abandon()
        else:  # (the val datagen is where the next validation starts: left there)
            self.clear_cache()
        self.state.val_loop_done = False

    # -- checkpoints -------------------------------------------------------------------
    def checkpoint(self, forced: bool = False, overwrite: bool | None = None) -> Path | None:
        """Write a checkpoint if a checkpoint frequency fires now; ``forced``: a unique
        checkpoint regardless. ``overwrite``: replace a checkpoint of the same name (True)
        or add ``_v2``, ``_v3`` (False); None: ``checkpoints_overwrite_duplicates``.
        Returns its path (None if nothing was written).

        Called from a callback of a train iteration or a validation (``'train:*'``,
        ``'val:*'``, ``'val_end'``), where the state is half-way updated, the checkpoint is
        written at the end of that iteration (of the validation, when one follows), as the
        loop's own, and None is returned. Called elsewhere during ``train()``, it returns
        once the state is copied (the files are written in the background with
        ``checkpoint_async``); outside ``train()``, once the checkpoint is complete."""
        return self._saves.checkpoint(forced, overwrite)

    def _save_best_model(self, del_previous_best: bool | None = None) -> Path | None:
        """Save the model as the best one now, to ``best_models_dir`` (DeepTrain 0.6's
        name); ``del_previous_best`` overrides ``max_one_best_save`` for this save."""
        return self._saves.best_model(del_previous_best)

    def save(self, savepath: str | Path | None = None) -> Path | None:
        """Save a checkpoint to the directory ``savepath`` (default: a temp checkpoint in
        the log directory). Everything needed to continue exactly is in it. Returns as
        :meth:`checkpoint` does (None from a callback of an iteration: written at its end)."""
        return self._saves.save(savepath)

    def load(
        self, filepath: str | Path | None = None, passed_args: list[str] | None = None
    ) -> Path:
        """Continue from a checkpoint: ``filepath`` (a checkpoint or a log directory, then
        its newest intact checkpoint), else ``loadpath``, else this run's log directory.

        Restores the model's weights, optimizer and other variables, RNN states, random
        generators, this TrainGenerator's settings and state, both DataGenerators' position
        and the callbacks' state; settings named in ``loadskip_list`` (``'{auto}'``: those
        passed to the constructor, or ``passed_args``) keep their current values. All or
        nothing: a checkpoint that fails a check, or a load that fails half-way, leaves
        this TrainGenerator as it was.
        """
        path = filepath or self.loadpath or (self.logdir / "checkpoints" if self.logdir else None)
        if path is None:
            raise ValueError("load() needs filepath=, loadpath= or a log directory")
        if self._consistency.broken is None:
            self.sync_model()  # device-side train state would otherwise overwrite the load
        else:  # cut half-way: what is on the device is not worth keeping
            getattr(self._fit_fn, "discard", lambda: None)()

        def settle(payload: dict[str, Any]) -> None:  # a failure undoes the load
            checks.check_inputs(self)
            self._set_up_metrics(reloading=True)
            passed = self.passed_args if passed_args is None else passed_args
            self._follow_a_new_key_metric(payload.get("traingen", {}).get("key_metric"), passed)

        with self.distribution.scope():  # variables are created and assigned under it
            loaded = self._checkpointer.load(path, passed_args, settle)
        if self.logdir is not None:  # (an older checkpoint of this run: numbered after)
            logdirs.continue_numbering(self, self.logdir)
            self._rewind_logs(loaded)
        self._consistency.clear()
        self._validation.start = None
        self.callbacks("load", self)
        return loaded

    def _rewind_logs(self, loaded: Path) -> None:
        """A checkpoint of this run loaded (a run continued at construction, or the live
        TrainGenerator going on after a cut): the metrics log's rows and the figures of
        what follows it are rolled back."""
        metrics_log = getattr(self, "_metrics_log", None)  # (not yet while constructing:
        # the constructor calls this once it is made)
        assert self.logdir is not None  # (the caller checks)
        if metrics_log is None or loaded.parent.parent.resolve() != self.logdir.resolve():
            return
        metrics_log.rewind(self.state.batches_fit, self.state.times_validated)
        if self.distribution.is_writer:
            logdirs.rewind_figures(self, loaded)

    def _follow_a_new_key_metric(self, saved: str | None, passed_args: list[str]) -> None:
        """Continuing with another ``key_metric`` than the checkpoint's: its best value (of
        the old metric) is forgotten, and the direction is worked out for the new one
        unless ``max_is_best`` was passed; else no best model would ever be saved."""
        if (
            saved is None
            or checks.canonical_metric(self, saved, self.train_metrics) == self.key_metric
        ):
            return
        if "max_is_best" not in passed_args:
            self.max_is_best = checks.is_maximized(self.key_metric)
        log.warning(
            "key_metric is %r, the checkpoint's was %r: the best so far (%s, of %r) is "
            "forgotten; the best model now follows %r (max_is_best=%s)",
            self.key_metric,
            saved,
            self.state.best_key_metric,
            saved,
            self.key_metric,
            self.max_is_best,
        )
        self.state.best_key_metric = None

    def get_last_log(self, name: str, best: bool = False) -> Path | None:
        """Path of the newest ``'state'``, ``'weights'``, ``'model'``, ``'report'``,
        ``'history'`` or ``'checkpoint'`` (the directory) of this run, or of its best model
        with ``best=True``; ``'init_state'`` / ``'init_source'``: the init logs."""
        files = {
            "state": "state.json",
            "weights": "model.weights.h5",
            "model": "model.keras",
            "report": "report.png",
            "history": "history.png",
            "checkpoint": None,
        }
        if name in ("init_state", "init_source"):
            return (
                self._require_logdir(f"get_last_log({name!r})")
                / "misc"
                / f"{name}.{'json' if name == 'init_state' else 'txt'}"
            )
        if name not in files:
            raise ValueError(
                f"get_last_log: name must be one of "
                f"{[*files, 'init_state', 'init_source']}, got {name!r}"
            )
        checkpoint, filename = self._checkpointer.latest(best=best), files[name]
        if checkpoint is None or filename is None:
            return checkpoint
        path = checkpoint / filename
        return path if path.exists() else None

    def generate_report(self) -> str:
        """The report's text (model configs, TrainGenerator and DataGenerators' state)."""
        return "\n".join(
            line
            for head, body in self._checkpointer.report_text().items()
            for line in (head, *body, "")
        )

    def save_report(self, savepath: str | Path | None = None) -> Path:
        """Draw the one-image report of the train state; default ``<logdir>/report.png``."""
        path = Path(savepath) if savepath else self._require_logdir("save_report()") / "report.png"
        if not self.distribution.is_writer:  # written once, by process 0
            return path
        png = traingen_report_png(self)  # checked (the font) before the file is made
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        self._figure_files["report"] = (self._progress_key(), path)
        return path

    def destroy(self, confirm: bool = False, verbose: int = 1) -> None:
        """Stop the DataGenerators' threads, close the callbacks that have a ``close()``
        (the tracking loggers: their event file, thread and MLflow process), and drop
        references (to free memory). ``verbose=0``: no log line."""
        if not confirm:
            log.warning("destroy() does nothing without confirm=True")
            return
        self._finish_writes(raise_error=False)
        log.log(logging.INFO if verbose else logging.DEBUG, "TrainGenerator destroyed")
        self.datagen.close()
        self.val_datagen.close()
        for callback in self.callbacks.objects:
            close = getattr(callback, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as e:  # freeing the rest goes on
                    log.warning("%s.close() failed: %s", type(callback).__name__, e)
        if self._lock is not None:
            self._lock.release()
        for name in (
            "model",
            "datagen",
            "val_datagen",
            "callbacks",
            "_checkpointer",
            "_saves",
            "_validation",
        ):
            self.__dict__.pop(name, None)

    # -- frequencies, display ----------------------------------------------------------
    def _should_do(self, freq: Mapping[str, int] | None, validation_ended: bool = False) -> bool:
        s = self.state
        return should_do(
            freq,
            iters=s.fit_iters,
            batches=s.batches_fit,
            epochs=s.epoch,
            validations=s.times_validated,
            batch_ended=self.datagen.batch_exhausted,
            epoch_ended=self.datagen.all_data_exhausted,
            validation_ended=validation_ended,
        )

    def _validated_epoch(self) -> int:
        """The epoch a validation belongs to, numbered from 1 as the progress bar shows it:
        the epoch it follows (``tg.epoch``; 0 before any training) or, in the middle of an
        epoch, the epoch in progress."""
        mid_epoch = self._batches_into_epoch() > 0 or self.datagen.slice_idx not in (None, 0)
        return self.state.epoch + int(mid_epoch)

    def _batches_into_epoch(self) -> int:
        return self.state.batches_fit - (
            self.state.hist_vlines[-1] if self.state.hist_vlines else 0
        )

    def _format(self, metrics: Mapping[str, Any], stage: str) -> str:
        skip = (self.metric_printskip_configs or {}).get(stage, [])
        return format_metrics(metrics, self.metric_to_alias, skip)

    def plot_history(
        self,
        update_fig: bool = True,
        w: float = 1,
        h: float = 1,
        savepath: str | Path | None = None,
    ):
        """Draw the history figure per ``plot_configs`` (see
        :mod:`deeptrain.training.plotting`); saved as ``<logdir>/history.png`` (or
        ``savepath``) and kept as the run's history figure (``tg._history_fig``, which
        checkpoints reuse). ``update_fig=False``: only drawn and returned (saved only to a
        ``savepath`` given). Returns the matplotlib ``Figure``."""
        fig = self.get_history_fig(w=w, h=h)
        if update_fig:
            self._history_fig = fig
        path = savepath or (
            self.logdir / "history.png" if self.logdir is not None and update_fig else None
        )
        if path is not None and self.distribution.is_writer:  # written once, by process 0
            scalefig(fig).savefig(path, dpi=80)
            if update_fig:
                self._figure_files["history"] = (self._progress_key(), Path(path))
        return fig

    def get_history_fig(
        self, plot_configs: Mapping[str, Any] | None = None, w: float = 1, h: float = 1
    ):
        """The history figure for ``plot_configs`` (default: this run's), drawn and
        returned; nothing is saved or kept."""
        configs = self._plot_configs() if plot_configs is None else plot_configs
        return history_figure(
            configs,
            self.state.history,
            self.state.val_history,
            lambda name: getattr(self, name),
            self.metric_to_alias,
            w=w,
            h=h,
        )

    def drawn_figure(self, name: str) -> Path | None:
        """The PNG of the ``'history'`` or ``'report'`` figure if one was drawn at this point
        of training (since the last iteration or validation step), else None."""
        key, path = self._figure_files.get(name, (None, None))
        if key != self._progress_key() or path is None or not path.is_file():
            return None
        return path

    def _progress_key(self) -> tuple:
        s = self.state
        return (s.fit_iters, s.times_validated, s.val_iters)

    def write_figure(self, name: str, path: Path) -> None:
        """Write the ``'history'`` or ``'report'`` PNG to ``path``, copying the one already
        drawn at this point of training if there is one (checkpoints and best models at the
        end of a validation would otherwise draw the same figure up to three times)."""
        key, drawn = self._figure_files.get(name, (None, None))
        if key != self._progress_key() or drawn is None or not drawn.is_file():
            drawn = self.logdir / f"{name}.png" if self.logdir is not None else path
            self.plot_history(savepath=drawn) if name == "history" else self.save_report(drawn)
        if drawn != path:
            shutil.copyfile(drawn, path)

    def _plot_configs(self) -> dict[str, Any]:
        val_names = [
            n for n in self.val_metrics if n in self.state.val_history or not self.state.val_history
        ]
        return plot_configs_for(
            self.plot_configs,
            self.train_metrics,
            val_names,
            self.key_metric,
            self.max_is_best,
            self.plot_first_pane_max_vals,
        )

    # -- introspection (see deeptrain.introspection) -------------------------------------
    def compute_gradient_norm(
        self, input_data: Any, labels: Any, sample_weight: Any = None, **kwargs: Any
    ) -> np.ndarray:
        """Norm of the loss gradient on one batch (per tensor, or ``scope='global'``)."""
        self.sync_model()
        return introspection.compute_gradient_norm(
            self, input_data, labels, sample_weight, **kwargs
        )

    def gradient_norm_over_dataset(self, val: bool = False, **kwargs: Any):
        """Gradient norms at every iteration over the train (or validation) data; the
        DataGenerator is left where it was. Returns ``GradientNorms``."""
        self.sync_model()
        return introspection.gradient_norm_over_dataset(self, val, **kwargs)

    def gradient_sum_over_dataset(self, val: bool = False, **kwargs: Any):
        """Sum of the loss gradients over the train (or validation) data."""
        self.sync_model()
        return introspection.gradient_sum_over_dataset(self, val, **kwargs)

    def check_health(self, **kwargs: Any):
        """Dead, NaN/Inf and large weights, logged as warnings (run after every validation
        when ``check_model_health``). Returns a ``HealthReport``."""
        self.sync_model()
        return introspection.check_health(self, **kwargs)

    # -- inspection --------------------------------------------------------------------
    def interrupt_status(self) -> tuple[bool, bool]:
        """``(train_interrupted, validation_interrupted)``. Train iterations are atomic, so
        only a validation can be caught half-way."""
        val = self.state.train_loop_done
        log.info("Interrupted: train[no], validation[%s].", "yes" if val else "no")
        return False, val

    def info(self) -> str:
        """A summary of where training stands."""
        s, dg, vdg = self.state, self.datagen, self.val_datagen
        lines = [
            f"Epochs: {s.epoch}/{self.epochs}",
            f"Train batches fit: {s.batches_fit} ({self._batches_into_epoch()}/{len(dg)} "
            f"this epoch; {len(dg.set_nums_to_process)} set nums queued)",
            f"Validations: {s.times_validated}; in progress: {s.train_loop_done} "
            f"({s.batches_validated} val batches in all; {len(vdg.set_nums_to_process)} queued)",
            f"Best {self.key_metric}: {s.best_key_metric}",
            f"Model name: {self.model_name}; logdir: {self.logdir}; "
            f"best_models_dir: {self.best_models_dir}",
        ]
        text = "\n".join(lines)
        log.info("%s", text)
        return text

    # -- settable properties of DeepTrain 0.6 ------------------------------------------
    @property
    def epoch(self) -> int:
        return self.state.epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self.state.epoch = self.datagen.epoch = int(value)

    @property
    def val_epoch(self) -> int:
        return self.state.val_epoch

    @val_epoch.setter
    def val_epoch(self, value: int) -> None:
        self.state.val_epoch = self.val_datagen.epoch = int(value)

    @property
    def fit_fn(self) -> Callable:
        """The train step: ``'train_on_batch'``, ``'fit'``, or ``fn(x, y, sample_weight)``
        (set a name or a function; reading gives the function in use)."""
        return self._fit_fn

    @fit_fn.setter
    def fit_fn(self, spec: str | Callable) -> None:
        self.sync_model()
        self._fit_fn, self._fit_fn_name = make_fit_fn(self.model, spec, self.distribution)

    @property
    def eval_fn(self) -> Callable:
        """The validation step: ``'evaluate'``, ``'predict'``, or ``fn(x, y, sample_weight)``
        with ``val_mode`` given (set a name or a function; reading gives the function)."""
        return self._eval_fn

    @eval_fn.setter
    def eval_fn(self, spec: str | Callable) -> None:
        self._eval_fn, self._eval_fn_name, mode = make_eval_fn(
            self.model, spec, self.val_mode, self.distribution
        )
        if mode != self.val_mode:
            raise ValueError(
                f"eval_fn {spec!r} implies val_mode {mode!r}, but this "
                f"TrainGenerator validates in {self.val_mode!r} mode"
            )


def _per_batch_windows(value: Any) -> list[list[np.ndarray]]:
    """A predict cache assigned in DeepTrain 0.6's layout (an array ``(batches, slices,
    samples, ...)`` with 4 or more axes, else ``(batches, samples, ...)``; or nested lists)
    as ``[batch][window] -> array``."""
    if isinstance(value, np.ndarray):
        return [list(b) if value.ndim >= 4 else [b] for b in value]
    return [list(b) if isinstance(b, (list, tuple)) else [np.asarray(b)] for b in value]
