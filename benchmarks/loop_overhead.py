"""Train-loop overhead: DeepTrain's TrainGenerator against a bare loop and ``model.fit``.

Run from the repository root, once per backend::

    TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=jax PYTHONPATH=src python benchmarks/loop_overhead.py
    ... --quick        # smoke run (well under a minute)
    ... --profile      # also: where DeepTrain's per-step time goes (cProfile + micro-timings)

Every contender trains the same small model (an MLP Dense(64)-Dense(64)-Dense(10), adam,
categorical_crossentropy, accuracy; each contender has its own copy, built from the same
seed) on the same in-memory data: ``--files`` .npy files of 64 samples x 32 features and
10-class one-hot labels in ``labels.h5``, served by a DataGenerator with
``superbatch_set_nums='all'`` (so no file is read while timing). Batch size 64: one file
per step.

Contenders (ms per train step):

* ``bare``     ``for x, y in batches: model.train_on_batch(x, y)`` over the DataGenerator's
               own superbatch arrays.
* ``fit``      ``model.fit(x_all, y_all, batch_size=64, epochs=E, shuffle=False, verbose=0)``
               (x_all: the same arrays concatenated; fit's per-call set-up is included,
               amortised over E epochs). ``fit_xN``: the same with N*E epochs per call.
* ``tg``       ``TrainGenerator(..., iter_verbosity=0, val_freq=None, logs_dir=None,
               plot_history_freq=None, unique_checkpoint_freq=None).train()``, E more epochs
               per round (``tg.epochs += E``).
* ``tg_bar``   the same with ``iter_verbosity=1`` (the tqdm bar, written to /dev/null).
* ``tg_lean``  :class:`LeanTrainGenerator`, a prototype of the recommended per-iteration
               savings (one interrupt guard per ``train()``, running-sum history, no
               metric strings or callback dispatch when nobody reads them);
               ``tg_lean_dg``: the same with :class:`LeanDataGenerator` (no prefetch
               bookkeeping when every set num is in the superbatch).
* JAX only, a prototype step driver (:class:`JaxStateStepper`) that keeps the JAX state on
  the device between steps and writes it back to the model only at sync points (here: the
  end of every epoch), as ``fit`` does:
  ``jstep``          a bare loop of it, metrics left on the device until the epoch ends;
  ``jstep_float``    the same loop converting every step's metrics to floats (waits for
                     every step);
  ``jstep_lag``      converting step i-1's metrics right after dispatching step i;
  ``tg_jstep``       TrainGenerator with ``fit_fn=JaxStateStepper(model)`` and a
                     ``'train:epoch'`` callback that syncs the model;
  ``tg_lean_jstep``  the same with LeanTrainGenerator.
* TensorFlow / torch only: ``tfstep`` / ``torchstep``, a bare loop of :class:`TFStepper`
  (metrics reset inside one ``tf.function`` call with ``model.train_step``) or
  :class:`TorchStepper` (``train_on_batch`` minus its per-call build checks);
  ``tg_<x>step`` and ``tg_lean_<x>step``: TrainGenerator / LeanTrainGenerator (the latter
  with :class:`LeanDataGenerator`) with that stepper as ``fit_fn``.

Warm-up: every contender runs one epoch (fit: two calls) before timing. Timing: ``--rounds``
rounds; in each round every contender trains E epochs, in an order rotated every round, so
slow drifts of this (noisy, shared) machine hit all contenders alike. Reported: the median
ms/step over rounds and the minimum; ratios are the median over rounds of the per-round
ratio (paired, robust to drift), and in brackets the ratio of the minima. ``--profile``
adds a cProfile of TrainGenerator epochs (with the model, and with a no-op ``fit_fn`` to
see DeepTrain's own cost alone) and micro-timings of the pieces of one iteration, in
microseconds per step.

Checks printed with the table: each stepper against ``train_on_batch`` from the same start
(per-batch metrics, weights, optimizer and metrics variables: max |diff|), and every
TrainGenerator variant's train history against plain ``tg``'s (same steps, same data).
``--threads 1`` (torch / TensorFlow) makes the numbers far less sensitive to other load on
a small shared machine; it applies to every contender alike.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import logging
import os
import pstats
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import h5py
import numpy as np

try:  # run from the repo root without installing: PYTHONPATH=src
    import deeptrain  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import keras

from deeptrain import DataGenerator, TrainGenerator
from deeptrain.backend.stateful import reset_states
from deeptrain.training import interrupts
from deeptrain.training.fitting import to_metric_dict

BACKEND = keras.backend.backend()
BATCH = 64
FEATURES = 32
CLASSES = 10


# -- data and model ---------------------------------------------------------------------
def make_data(root: Path, n_files: int, seed: int = 0) -> Path:
    """``n_files`` files ``batch<i>.npy`` of (64, 32) float32, one-hot labels in labels.h5.
    Labels come from a random linear teacher so that the model has something to learn."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    teacher = rng.standard_normal((FEATURES, CLASSES)).astype(np.float32)
    with h5py.File(root / "labels.h5", "w") as f:
        for i in range(n_files):
            x = rng.standard_normal((BATCH, FEATURES)).astype(np.float32)
            np.save(root / f"batch{i}.npy", x)
            f[str(i)] = np.eye(CLASSES, dtype=np.float32)[np.argmax(x @ teacher, axis=1)]
    return root


def make_datagen(root: Path, prefetch: int = 2, cls: type | None = None) -> DataGenerator:
    """Everything in the superbatch; ``prefetch`` left at its default (2), as a user would
    (with every set num in RAM the prefetcher never loads anything)."""
    return (cls or DataGenerator)(root, batch_size=BATCH, labels_path=root / "labels.h5",
                         superbatch_set_nums="all", shuffle=False, prefetch=prefetch, seed=0)


def make_model(seed: int = 0) -> Any:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((FEATURES,)),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(CLASSES, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def make_traingen(model: Any, dg: DataGenerator, vdg: DataGenerator, epochs: int,
                  iter_verbosity: int = 0, cls: type | None = None, **kw: Any) -> TrainGenerator:
    return (cls or TrainGenerator)(model, dg, vdg, epochs=epochs,
                                   iter_verbosity=iter_verbosity, val_freq=None, logs_dir=None,
                                   plot_history_freq=None, unique_checkpoint_freq=None, **kw)


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """tqdm writes to sys.stderr as it is when the bar is made: send it to /dev/null."""
    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        yield


# -- the JAX prototype ------------------------------------------------------------------
class JaxStateStepper:
    """``fn(x, y, sample_weight) -> logs``: Keras-JAX train steps with the state kept on the
    device, written back to the model only by :meth:`sync` (as ``fit`` does per epoch).

    ``model.train_on_batch`` on JAX gathers every variable, runs the jitted step and
    assigns every variable back, every call. Here the state ``(trainable, non_trainable,
    optimizer)`` returned by one step is fed (donated) to the next, and the model's
    variables are assigned only in :meth:`sync`; until then they hold donated (deleted)
    buffers, so reading them fails loudly ("Array has been deleted") instead of giving
    stale weights.

    Metrics: ``train_on_batch`` calls ``model.reset_metrics()`` before every step, so its
    metrics are the batch's own. Here the metrics variables are not carried from step to
    step: every step is given the values the metrics variables hold right after
    ``reset_metrics()`` (captured once, copied, passed as a non-donated argument), and the
    step's updated metrics variables are kept only to be written back at :meth:`sync` (so
    ``model.metrics`` then show the last batch, as after ``train_on_batch``). The logs are
    therefore per-batch values, exactly like ``train_on_batch``'s, but as device arrays:
    converting one (``float``) waits for that step to finish.

    The model, its optimizer and compiled metrics must be built: the first call does that
    with a plain ``train_on_batch`` when the optimizer is not built yet.
    """

    def __init__(self, model: Any):
        import jax
        import jax.numpy as jnp
        self.model = model
        self.state: tuple | None = None
        self._metrics_vars: list | None = None
        self._metrics_reset: list | None = None
        self._jnp = jnp

        def step(state, metrics_reset, data):
            trainable, non_trainable, optimizer_vars = state
            logs, (trainable, non_trainable, optimizer_vars, metrics_vars) = model.train_step(
                (trainable, non_trainable, optimizer_vars, metrics_reset), data)
            return logs, (trainable, non_trainable, optimizer_vars), metrics_vars

        self._step = jax.jit(step, donate_argnums=0)

    def _start(self) -> None:
        m = self.model
        m.reset_metrics()
        if self._metrics_reset is None:  # copies: train_on_batch would donate the originals
            self._metrics_reset = [self._jnp.array(v.value, copy=True)
                                   for v in m.metrics_variables]
        self.state = ([v.value for v in m.trainable_variables],
                      [v.value for v in m.non_trainable_variables],
                      [v.value for v in m.optimizer.variables])

    def __call__(self, x: Any, y: Any, sample_weight: Any = None) -> dict[str, Any]:
        if self.state is None:
            if not self.model.optimizer.built:  # build model, optimizer and metrics
                return self.model.train_on_batch(x, y, sample_weight=sample_weight,
                                                  return_dict=True)
            self._start()
        logs, self.state, self._metrics_vars = self._step(
            self.state, self._metrics_reset, (x, y, sample_weight))
        return logs

    def sync(self) -> None:
        """Write the device state back into the model's variables (a checkpoint, a
        validation or any code reading the weights needs this first). The next call reads
        the state from the model again, so weights changed in between are picked up."""
        if self.state is None:
            return
        m = self.model
        trainable, non_trainable, optimizer_vars = self.state
        for ref, v in zip(m.trainable_variables, trainable):
            ref.assign(v)
        for ref, v in zip(m.non_trainable_variables, non_trainable):
            ref.assign(v)
        for ref, v in zip(m.optimizer.variables, optimizer_vars):
            ref.assign(v)
        if self._metrics_vars is not None:
            for ref, v in zip(m.metrics_variables, self._metrics_vars):
                ref.assign(v)
        self.state = None


def check_jax_stepper(batches: list, steps: int = 40) -> float:
    """Same per-batch metrics and same final weights, optimizer and metrics variables as a
    ``train_on_batch`` loop from the same start? Returns the largest absolute difference."""
    ref, proto = make_model(), make_model()
    stepper = JaxStateStepper(proto)
    worst = 0.0
    for i in range(steps):
        x, y = batches[i % len(batches)]
        a = ref.train_on_batch(x, y, return_dict=True)
        b = _floats(stepper(x, y))
        assert sorted(a) == sorted(b), (a, b)
        worst = max(worst, *(abs(a[k] - b[k]) for k in a))
        if i == steps // 2:  # a sync in the middle, then carry on from the model
            stepper.sync()
    stepper.sync()
    for va, vb in zip(ref.variables + ref.optimizer.variables + ref.metrics_variables,
                      proto.variables + proto.optimizer.variables + proto.metrics_variables):
        worst = max(worst, float(np.max(np.abs(np.asarray(va) - np.asarray(vb)))))
    return worst


def _floats(logs: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in logs.items()}


class TFStepper:
    """``fn(x, y, sample_weight) -> {metric: float}`` for the TensorFlow backend: one
    ``tf.function`` call per step that resets the metrics *inside* the graph and runs
    ``model.train_step``. ``train_on_batch`` does the same work but resets the metrics with
    eager ``assign`` calls (one per metric variable) and goes through Keras' generic
    iterator plumbing, which costs more than the step itself on a small model. The state
    stays in the model's ``tf.Variable``s, so there is nothing to sync.

    Like Keras' ``_make_function``: runs under ``model.distribute_strategy`` and honours
    ``run_eagerly`` / ``jit_compile``. The first call (optimizer not built) goes through
    ``train_on_batch`` to build everything, and so does every call under a multi-replica
    strategy (Keras reduces per-replica outputs there; not prototyped).
    """

    def __init__(self, model: Any):
        import tensorflow as tf
        self.model = model

        def one_step(data):
            model.reset_metrics()  # per-batch metrics, as train_on_batch gives
            return model.train_step(data)

        def step(data):
            return model.distribute_strategy.run(one_step, args=(data,))

        if model.distribute_strategy.num_replicas_in_sync > 1:
            self._step = None  # per-replica outputs: leave that to train_on_batch
        else:
            self._step = step if model.run_eagerly else tf.function(
                step, reduce_retracing=True, jit_compile=model.jit_compile)

    def __call__(self, x: Any, y: Any, sample_weight: Any = None) -> dict[str, float]:
        if self._step is None or not self.model.optimizer.built:
            return self.model.train_on_batch(x, y, sample_weight=sample_weight,
                                              return_dict=True)
        return {k: float(v) for k, v in sorted(self._step((x, y, sample_weight)).items())}


class TorchStepper:
    """``fn(x, y, sample_weight) -> {metric: float}`` for the torch backend: what
    ``train_on_batch`` does minus its per-call checks (``_symbolic_build`` walks every
    layer to see whether the model is built, ``make_train_function``): reset the metrics,
    run ``model.train_function`` on the batch, convert the logs. The first call goes
    through ``train_on_batch``, which builds everything and the train function."""

    def __init__(self, model: Any):
        self.model = model

    def __call__(self, x: Any, y: Any, sample_weight: Any = None) -> dict[str, float]:
        m = self.model
        if m.train_function is None or not m.optimizer.built:
            return m.train_on_batch(x, y, sample_weight=sample_weight, return_dict=True)
        m.reset_metrics()
        logs = m.train_function([(x, y, sample_weight)])
        return {k: float(v) for k, v in sorted(logs.items())}


def check_stepper(batches: list, steps: int = 40, cls: type | None = None) -> float:
    """As :func:`check_jax_stepper`, for :class:`TFStepper` (or ``cls``)."""
    ref, proto = make_model(), make_model()
    stepper = (cls or TFStepper)(proto)
    worst = 0.0
    for i in range(steps):
        x, y = batches[i % len(batches)]
        a = ref.train_on_batch(x, y, return_dict=True)
        b = stepper(x, y)
        assert list(a) == list(b), (a, b)
        worst = max(worst, *(abs(a[k] - b[k]) for k in a))
    for va, vb in zip(ref.variables + ref.optimizer.variables + ref.metrics_variables,
                      proto.variables + proto.optimizer.variables + proto.metrics_variables):
        worst = max(worst, float(np.max(np.abs(np.asarray(va) - np.asarray(vb)))))
    return worst


# -- a lean TrainGenerator (prototype of the recommended changes) -------------------------
class _InterruptGuard:
    """One SIGINT handler for a whole ``train()`` call instead of two ``signal.signal``
    calls per iteration: a Ctrl-C sets a flag that :meth:`check` (called between
    iterations) turns into ``KeyboardInterrupt``; a second Ctrl-C raises at once, as
    before. Nested ``deferred_interrupts()`` sections see ``_depth > 0`` and cost a
    counter increment."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.previous: Any = None
        self.active = False

    def _handler(self, signum: int, frame: Any) -> None:
        if self.received:  # second Ctrl-C: the user means it
            raise KeyboardInterrupt
        self.received.append(signum)
        logging.getLogger("deeptrain").warning(
            "Interrupt received: stopping after the current iteration (Ctrl-C again to stop "
            "now)")

    def __enter__(self) -> "_InterruptGuard":
        if threading.current_thread() is threading.main_thread() and not interrupts._depth:
            self.previous = signal.signal(signal.SIGINT, self._handler)
            interrupts._depth = 1
            self.active = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.active:
            interrupts._depth = 0
            signal.signal(signal.SIGINT, self.previous)
            self.active = False

    def check(self) -> None:
        if self.received:
            self.received.clear()
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """Validation keeps its own per-iteration sections (it is rare)."""
        active = self.active
        self.__exit__()
        try:
            yield
        finally:
            if active:
                self.__enter__()


def _fast_metric_dict(result: Any, names: list[str]) -> dict[str, float]:
    """``to_metric_dict`` with a fast path for what ``train_on_batch(return_dict=True)``
    gives: a dict of Python floats. Anything else goes the general way."""
    if type(result) is dict and all(type(v) is float for v in result.values()):
        if list(result) == names:
            return result
        ordered = {n: result[n] for n in names if n in result}
        if len(ordered) != len(result):
            ordered.update({k: v for k, v in result.items() if k not in ordered})
        return ordered
    return to_metric_dict(result, names)


class LeanTrainGenerator(TrainGenerator):
    """``TrainGenerator`` with the per-iteration savings recommended in the report; same
    train state, histories and stages (validation, checkpoints, plots are the parent's):

    * ``train()``: one interrupt guard per call, checked between iterations (not two
      ``signal.signal`` per iteration);
    * ``_train_iteration``: ``_fast_metric_dict``; the bar's ``start``/``iteration`` and
      metric strings only when ``iter_verbosity`` asks for them; callbacks dispatched only
      when there are any; ``_should_do(val_freq)`` only when val_freq is set;
    * ``_on_train_batch_end``: a batch of one slice takes its value as it is, and the
      epoch-running mean is a running sum (O(1) per batch instead of ``np.mean`` over
      every batch of the epoch so far); metric strings only for the bar; the metrics log
      only when there is one.
    """

    _running: dict[str, list] | None = None

    def train(self) -> None:
        state, guard = self.state, _InterruptGuard()
        try:
            with guard:
                while True:
                    guard.check()
                    if state.train_loop_done:
                        with guard.suspended():
                            self.validate()
                    elif state.epoch < self.epochs:
                        if self.iter_verbosity:
                            self._progress.start(state.epoch, len(self.datagen),
                                                 self._batches_into_epoch())
                        self._train_iteration()
                    else:
                        break
        finally:
            self._progress.close()
        logging.getLogger("deeptrain").info("Training has concluded.")

    def _train_iteration(self) -> None:
        dg, state = self.datagen, self.state
        x, y, sw = self.get_data(val=False)
        first_slice = dg.slice_idx in (None, 0)
        metrics = _fast_metric_dict(self._fit_fn(x, y, sw), self.train_metrics)
        if list(metrics) != self.train_metrics:
            self._update_names(metrics)
        temp = state.temp_history
        for name, value in metrics.items():
            entries = temp.get(name)
            if entries is None:
                entries = temp[name] = []
            if first_slice or not entries or type(entries[-1]) is not list:
                entries.append([value])
            else:
                entries[-1].append(value)
        state.fit_iters += 1
        dg.update_state()
        if self.callbacks.entries:
            self.callbacks("train:iter", self)
        if self.iter_verbosity >= 2:
            self._progress.iteration(state.set_name, self._format(metrics, "train"))
        if dg.batch_exhausted:
            self._on_train_batch_end()
        if dg.all_data_exhausted:
            self._on_train_epoch_end()
        if self.val_freq and self._should_do(self.val_freq):
            state.train_loop_done, state.val_loop_done = True, False

    def _on_train_batch_end(self) -> None:
        state = self.state
        state.batches_fit += 1
        state.train_x_ticks.append(state.batches_fit)
        state.train_val_x_ticks.append(state.times_validated)
        state.set_name_cache.append(state.set_name)
        if self._running is None:
            self._running = {}
        running, batch_metrics = self._running, {}
        for name, entries in state.temp_history.items():
            last = entries[-1]
            value = last[0] if len(last) == 1 else float(np.mean(last))
            entries[-1] = batch_metrics[name] = value
            total = running.get(name)
            if total is None or total[1] != len(entries) - 1:  # resumed or edited: recount
                total = running[name] = [float(np.sum(entries[:-1])), len(entries) - 1]
            total[0] += value
            total[1] += 1
            state.history.setdefault(name, []).append(total[0] / total[1])
        if self.reset_statefuls:
            reset_states(self.model)
        if self._metrics_log.path is not None:
            self._metrics_log.write("train_batch", epoch=state.epoch,
                                    batches_fit=state.batches_fit, fit_iters=state.fit_iters,
                                    set_name=state.set_name, **batch_metrics)
        if self.iter_verbosity:
            current = {n: v[-1] for n, v in state.history.items()}
            self._progress.batch(state.set_name, self._format(current, "train"))
        if self.callbacks.entries:
            self.callbacks("train:batch", self)

    def _on_train_epoch_end(self) -> None:
        self._running = {}
        super()._on_train_epoch_end()


class LeanDataGenerator(DataGenerator):
    """DataGenerator without prefetch bookkeeping when every set num is in the superbatch:
    ``advance_batch`` schedules the prefetcher twice per batch, and each time scans the
    whole remaining queue for set nums not in RAM (``_upcoming``; ``_load_group`` also
    builds ``[*group.set_nums, *set_nums_to_process]``): O(files) per batch, for nothing."""

    def _all_in_ram(self) -> bool:
        return len(self.superbatch) == len(self.set_nums_original)

    def _upcoming(self) -> Iterator[str]:
        return iter(()) if self._all_in_ram() else super()._upcoming()

    def _load_group(self, group: Any) -> tuple[Any, Any]:
        if len(group.set_nums) == 1 and self._all_in_ram():
            data = self.superbatch[group.set_nums[0]]
            return data, self._labels_of(group.set_nums[0], len(data))
        return super()._load_group(group)


# -- contenders -------------------------------------------------------------------------
class Contender:
    """``run(epochs)`` trains that many epochs, of ``steps_per_epoch`` steps each."""

    def __init__(self, name: str, run: Callable[[int], None], steps_per_epoch: int):
        self.name = name
        self.run = run
        self.steps_per_epoch = steps_per_epoch
        self.times: list[float] = []  # seconds per step, one per round


def build_contenders(root: Path, with_bar: bool = True,
                     fit_long: int = 4) -> tuple[list[Contender], dict[str, Any]]:
    probe = make_datagen(root)
    batches = [(probe.superbatch[s], probe.all_labels[s]) for s in probe.set_nums_original]
    x_all = np.concatenate([b[0] for b in batches])
    y_all = np.concatenate([b[1] for b in batches])
    n = len(batches)
    assert len(probe) == n, (len(probe), n)
    out: list[Contender] = []
    keep: dict[str, Any] = {"batches": batches}

    m_bare = make_model()

    def bare(epochs: int) -> None:
        for _ in range(epochs):
            for x, y in batches:
                m_bare.train_on_batch(x, y)
    out.append(Contender("bare", bare, n))

    m_fit = make_model()

    def fit(epochs: int) -> None:
        m_fit.fit(x_all, y_all, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0)
    out.append(Contender("fit", fit, n))
    if fit_long > 1:  # fit's per-call set-up amortised over more epochs
        out.append(Contender(f"fit_x{fit_long}", lambda e: fit(e * fit_long), n * fit_long))

    def tg_runner(tg: TrainGenerator, bar: bool = False) -> Callable[[int], None]:
        def run(epochs: int) -> None:
            tg.epochs += epochs
            if bar:
                with quiet_stderr():
                    tg.train()
            else:
                tg.train()
        return run

    def traingen(cls: type = TrainGenerator, model: Any = None, dg_cls: type | None = None,
                 **kw: Any) -> TrainGenerator:
        return make_traingen(model or make_model(), make_datagen(root, cls=dg_cls),
                             make_datagen(root, cls=dg_cls), epochs=0, cls=cls, **kw)

    keep["tg"] = tg = traingen()
    out.append(Contender("tg", tg_runner(tg), n))
    if with_bar:
        out.append(Contender("tg_bar", tg_runner(traingen(iter_verbosity=1), True), n))
    keep["tg_lean"] = tg_lean = traingen(LeanTrainGenerator)
    out.append(Contender("tg_lean", tg_runner(tg_lean), n))
    keep["tg_lean_dg"] = tg_lean_dg = traingen(LeanTrainGenerator, dg_cls=LeanDataGenerator)
    out.append(Contender("tg_lean_dg", tg_runner(tg_lean_dg), n))

    if BACKEND in ("tensorflow", "torch"):
        short = "tf" if BACKEND == "tensorflow" else "torch"
        stepper_cls = TFStepper if BACKEND == "tensorflow" else TorchStepper
        step_bare = stepper_cls(make_model())

        def stepper_loop(epochs: int) -> None:
            for _ in range(epochs):
                for x, y in batches:
                    step_bare(x, y)
        out.append(Contender(f"{short}step", stepper_loop, n))
        for name, cls in ((f"tg_{short}step", TrainGenerator),
                          (f"tg_lean_{short}step", LeanTrainGenerator)):
            model = make_model()
            keep[name] = tg_t = traingen(cls, model, fit_fn=stepper_cls(model),
                                         dg_cls=LeanDataGenerator if "lean" in name else None)
            out.append(Contender(name, tg_runner(tg_t), n))

    if BACKEND == "jax":
        for variant in ("jstep", "jstep_float", "jstep_lag"):
            out.append(Contender(variant, _jstep_loop(variant, batches), n))
        for name, cls in (("tg_jstep", TrainGenerator), ("tg_lean_jstep", LeanTrainGenerator)):
            model = make_model()
            stepper = JaxStateStepper(model)
            keep[name] = tg_j = traingen(cls, model, fit_fn=stepper, callbacks={
                "train:epoch": lambda tg, st=stepper: st.sync()})
            out.append(Contender(name, tg_runner(tg_j), n))
    return out, keep


def _jstep_loop(variant: str, batches: list) -> Callable[[int], None]:
    stepper = JaxStateStepper(make_model())

    def run(epochs: int) -> None:
        for _ in range(epochs):
            logs = prev = None
            for x, y in batches:
                logs = stepper(x, y)
                if variant == "jstep_float":
                    _floats(logs)
                elif variant == "jstep_lag":
                    if prev is not None:
                        _floats(prev)
                    prev = logs
            _floats(logs)  # the epoch's last metrics, then the model is synced (like fit)
            stepper.sync()
    return run


def measure(contenders: list[Contender], rounds: int, epochs: int) -> None:
    for c in contenders:  # warm-up: compile, build, trace (fit: twice, its set-up caches)
        c.run(1)
        if c.name.startswith("fit"):
            c.run(1)
    gc.collect()
    for r in range(rounds):
        k = r % len(contenders)
        for c in contenders[k:] + contenders[:k]:
            gc.collect()
            t0 = time.perf_counter()
            c.run(epochs)
            c.times.append((time.perf_counter() - t0) / (epochs * c.steps_per_epoch))


def paired_ratio(a: Contender, b: Contender) -> float:
    """Median over rounds of a's time / b's time in the same round."""
    return statistics.median(x / y for x, y in zip(a.times, b.times))


def report(contenders: list[Contender], rounds: int, epochs: int) -> dict[str, tuple]:
    by = {c.name: c for c in contenders}
    bare, fit = by["bare"], by["fit"]
    threads = ""
    if BACKEND == "torch":
        import torch
        threads = f" torch threads={torch.get_num_threads()}"
    print(f"\nbackend={BACKEND} keras={keras.__version__}{threads}  {rounds} rounds x {epochs} "
          f"epochs x {bare.steps_per_epoch} steps, batch {BATCH}")
    print("ms/step: median over rounds (min); vs bare/fit: median of per-round ratios "
          "(ratio of the minima)")
    print(f"{'contender':<18}{'ms/step':>8}{'(min)':>8}{'vs bare':>9}{'(min)':>8}"
          f"{'vs fit':>8}{'(min)':>8}")
    ratios = {}
    for c in contenders:
        rb, rf = paired_ratio(c, bare), paired_ratio(c, fit)
        mb, mf = min(c.times) / min(bare.times), min(c.times) / min(fit.times)
        ratios[c.name] = (rb, rf)
        print(f"{c.name:<18}{statistics.median(c.times) * 1e3:>8.3f}{min(c.times) * 1e3:>8.3f}"
              f"{rb:>8.3f}x{mb:>7.3f}x{rf:>7.3f}x{mf:>7.3f}x")
    for name in ("tg", "tg_lean", "tg_lean_dg", "tg_tfstep", "tg_lean_tfstep", "tg_torchstep",
                 "tg_lean_torchstep", "tg_jstep", "tg_lean_jstep"):
        if name not in ratios:
            continue
        rb, rf = ratios[name]
        if BACKEND == "jax":
            print(f"goal {name}/fit = {rf:.3f} (<= 1.10): {'PASS' if rf <= 1.10 else 'FAIL'}")
        else:
            print(f"goal {name}/bare = {rb:.3f} (<= 1.03): {'PASS' if rb <= 1.03 else 'FAIL'}")
    return ratios


def check_same_history(a: TrainGenerator, b: TrainGenerator) -> float:
    """Largest relative difference between two runs' train histories (the lean generator
    keeps running sums instead of np.mean: equal up to rounding)."""
    assert list(a.state.history) == list(b.state.history), (a.state.history, b.state.history)
    worst = 0.0
    for name in a.state.history:
        x, y = np.asarray(a.state.history[name]), np.asarray(b.state.history[name])
        assert x.shape == y.shape, (name, x.shape, y.shape)
        worst = max(worst, float(np.max(np.abs(x - y) / np.maximum(np.abs(x), 1e-30))))
    return worst


# -- profile ----------------------------------------------------------------------------
def null_fit_fn(x: Any, y: Any, sw: Any) -> dict[str, float]:
    """A train step that costs nothing: what is left is DeepTrain's own loop."""
    return {"accuracy": 0.5, "loss": 1.0}


def profile(root: Path, big_root: Path | None, epochs: int) -> None:
    print("\n== profile: where a TrainGenerator step goes ==")
    # 1. the whole loop with a no-op fit_fn (no model cost), and with the model
    for label, fit_fn, n_ep in (("no-op fit_fn", null_fit_fn, max(10, epochs * 10)),
                                ("train_on_batch", "train_on_batch", max(4, epochs * 2))):
        for cls in (TrainGenerator, LeanTrainGenerator):
            tg = make_traingen(make_model(), make_datagen(root), make_datagen(root), epochs=1,
                               fit_fn=fit_fn, cls=cls)
            tg.train()  # warm-up
            steps = n_ep * len(tg.datagen)
            tg.epochs += n_ep
            t0 = time.perf_counter()
            tg.train()
            plain = (time.perf_counter() - t0) / steps * 1e6
            if cls is LeanTrainGenerator:
                print(f"\n-- LeanTrainGenerator, {label}: {plain:.1f} us/step (one run, not "
                      "interleaved: the timing table above is the comparison to trust)")
                continue
            tg.epochs += n_ep
            prof = cProfile.Profile()
            prof.enable()
            tg.train()
            prof.disable()
            print(f"\n-- TrainGenerator, {label}: {plain:.1f} us/step without the profiler "
                  "(cProfile inflates Python-heavy code 2-3x: compare rows with each other)")
            _print_profile(prof, steps)

    # 2. micro-timings of the pieces of an iteration (us per call; one call per step)
    print("\n-- micro-timings, us per step (median of 7 x 2000 calls, in isolation)")
    dg = make_datagen(root)
    tg = make_traingen(make_model(), dg, make_datagen(root), epochs=1, fit_fn=null_fit_fn)
    names = list(tg.train_metrics)
    floats = {"accuracy": 0.5, "loss": 1.0}  # train_on_batch's dicts are sorted by name
    rows: list[tuple[str, Callable[[], Any]]] = [
        ("deferred_interrupts() enter+exit (2x signal.signal)", _in_deferred_interrupts),
        ("to_metric_dict(python floats)", lambda: to_metric_dict(floats, names)),
        ("_fast_metric_dict(python floats)", lambda: _fast_metric_dict(floats, names)),
        ("to_metric_dict(numpy 0-d arrays)",
         lambda: to_metric_dict({k: np.float32(v) for k, v in floats.items()}, names)),
        ("callbacks('train:iter') + ('train:batch'), none set",
         lambda: (tg.callbacks("train:iter", tg), tg.callbacks("train:batch", tg))),
        ("_should_do(val_freq=None)", lambda: tg._should_do(tg.val_freq)),
        ("_progress.start(...) per iteration (bar off)",
         lambda: tg._progress.start(0, len(dg), tg._batches_into_epoch())),
        ("_format(metrics) x2 (computed even with iter_verbosity=0)",
         lambda: (tg._format(floats, "train"), tg._format(floats, "train"))),
        ("float(np.mean([v])) per metric (batch value), 2 metrics",
         lambda: [float(np.mean([v])) for v in floats.values()]),
    ]
    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp
        dev = {k: jnp.asarray(v) for k, v in floats.items()}
        rows.append(("to_metric_dict(jax arrays, computed)", lambda: to_metric_dict(dev, names)))
        rows.append(("jax.device_get(dict of jax arrays)", lambda: jax.device_get(dev)))
    if BACKEND == "torch":
        import torch
        dev = {k: torch.tensor(v) for k, v in floats.items()}
        rows.append(("to_metric_dict(torch tensors)", lambda: to_metric_dict(dev, names)))
    if BACKEND == "tensorflow":
        import tensorflow as tf
        dev = {k: tf.constant(v) for k, v in floats.items()}
        rows.append(("to_metric_dict(tf tensors)", lambda: to_metric_dict(dev, names)))
    for label, fn in rows:
        print(f"{_micro(fn):>8.2f}  {label}")

    from deeptrain.training.progress import EpochProgress
    with quiet_stderr():
        bar = EpochProgress(1)
        bar.start(0, 10**9)
        us = _micro(lambda: bar.batch("7", "loss=1.000000, accuracy=0.500000"))
        bar.close()
    print(f"{us:>8.2f}  EpochProgress.batch (tqdm set_postfix_str + update, to /dev/null)")

    # data: whole epochs of get() + update_state() (+ on_epoch_end), per batch
    for r in (root, big_root):
        if r is None:
            continue
        for prefetch, cls in ((2, DataGenerator), (0, DataGenerator), (2, LeanDataGenerator)):
            us = _per_batch(make_datagen(r, prefetch=prefetch, cls=cls))
            print(f"{us:>8.2f}  {cls.__name__} get()+update_state() per batch, superbatch "
                  f"'all', {_count(r)} files, prefetch={prefetch}")
    # the running history mean: np.mean over the epoch's batches so far, per metric
    for k in (32, 1024):
        entries = [0.5] * k
        print(f"{_micro(lambda: float(np.mean(entries))) * 2:>8.2f}  history running mean: "
              f"np.mean(entries) x 2 metrics at batch {k} of an epoch")
    if big_root is not None:
        for cls, dg_cls in ((TrainGenerator, DataGenerator), (LeanTrainGenerator, DataGenerator),
                            (LeanTrainGenerator, LeanDataGenerator)):
            tg = make_traingen(make_model(), make_datagen(big_root, cls=dg_cls),
                               make_datagen(big_root, cls=dg_cls), epochs=1,
                               fit_fn=null_fit_fn, cls=cls)
            t0 = time.perf_counter()
            tg.train()
            us = (time.perf_counter() - t0) / len(tg.datagen) * 1e6
            print(f"{us:>8.2f}  {cls.__name__} + {dg_cls.__name__}, no-op fit_fn, one "
                  f"{_count(big_root)}-batch epoch, per step")


def _in_deferred_interrupts() -> None:
    with interrupts.deferred_interrupts():
        pass


def _micro(fn: Callable[[], Any], n: int = 2000, reps: int = 7) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(times)


def _per_batch(dg: DataGenerator, epochs: int = 5) -> float:
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        n = 0
        for _ in dg:  # get() + update_state(), on_epoch_end() after the last batch
            n += 1
        times.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(times)


def _count(root: Path) -> int:
    return len(list(root.glob("*.npy")))


def _print_profile(prof: cProfile.Profile, steps: int, top: int = 20) -> None:
    stats = pstats.Stats(prof)
    rows = []
    for (file, line, fn), (cc, nc, tt, ct, callers) in stats.stats.items():
        short = f"{Path(file).parent.name}/{Path(file).name}:{line}({fn})" if line else fn
        rows.append((tt, ct, nc, short))
    head = f"{'tottime':>9}{'cumtime':>9}{'calls':>7}  (us per step)"
    print(head)
    for tt, ct, nc, short in sorted(rows, reverse=True)[:top]:
        print(f"{tt / steps * 1e6:>9.2f}{ct / steps * 1e6:>9.2f}{nc / steps:>7.2f}  {short}")
    print("  cumulative, DeepTrain's own functions (and signal.signal, np.mean):")
    for tt, ct, nc, short in sorted(rows, key=lambda r: -r[1]):
        if ("deeptrain/" in short or "training/" in short or "data/" in short
                or "util/" in short or short.endswith(("(signal)", "(mean)"))):
            if ct / steps * 1e6 >= 0.5:
                print(f"{tt / steps * 1e6:>9.2f}{ct / steps * 1e6:>9.2f}{nc / steps:>7.2f}  "
                      f"{short}")


# -- main -------------------------------------------------------------------------------
def set_threads(n: int) -> None:
    if BACKEND == "torch":
        import torch
        torch.set_num_threads(n)
    elif BACKEND == "tensorflow":
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    else:
        print(f"--threads is not applied on {BACKEND}: set XLA_FLAGS before starting Python")

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="few rounds, one epoch (smoke run)")
    p.add_argument("--rounds", type=int, default=None, help="timing rounds (default 15; quick 3)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per contender per round (default 2; quick 1)")
    p.add_argument("--fit-long", type=int, default=4,
                   help="the fit_xN row runs N times the epochs per fit call (1: no such row)")
    p.add_argument("--files", type=int, default=32, help="files of 64 samples (steps/epoch)")
    p.add_argument("--no-bar", action="store_true", help="skip the iter_verbosity=1 row")
    p.add_argument("--threads", type=int, default=None,
                   help="torch / tensorflow intra-op threads (default: the library's). On a "
                        "small shared machine 1 thread is far less sensitive to other load; "
                        "it applies to every contender alike")
    p.add_argument("--profile", action="store_true",
                   help="also profile DeepTrain's per-step overhead")
    p.add_argument("--big-files", type=int, default=1024,
                   help="--profile: files of the large dataset for the scaling rows (0: skip)")
    args = p.parse_args()
    if args.threads:
        set_threads(args.threads)
    rounds = args.rounds or (3 if args.quick else 15)
    epochs = args.epochs or (1 if args.quick else 2)

    with tempfile.TemporaryDirectory(prefix="dt_loop_") as tmp:
        root = make_data(Path(tmp) / "data", args.files)
        contenders, keep = build_contenders(root, with_bar=not args.no_bar,
                                            fit_long=args.fit_long)
        if BACKEND in ("tensorflow", "torch"):
            cls = TFStepper if BACKEND == "tensorflow" else TorchStepper
            diff = check_stepper(keep["batches"], cls=cls)
            print(f"{cls.__name__} vs train_on_batch (40 steps; per-batch metrics, weights, "
                  f"optimizer and metrics variables): max |diff| = {diff:.3g}")
        if BACKEND == "jax":
            diff = check_jax_stepper(keep["batches"])
            print(f"JaxStateStepper vs train_on_batch (40 steps; per-batch metrics, weights, "
                  f"optimizer and metrics variables): max |diff| = {diff:.3g}")
        measure(contenders, rounds, epochs)
        report(contenders, rounds, epochs)
        for name in ("tg_lean", "tg_lean_dg", "tg_tfstep", "tg_lean_tfstep", "tg_torchstep",
                     "tg_lean_torchstep", "tg_jstep", "tg_lean_jstep"):
            if name in keep:
                print(f"{name} vs tg train history (same model, data and steps): max rel diff "
                      f"= {check_same_history(keep['tg'], keep[name]):.3g}")
        if args.profile:
            big = (make_data(Path(tmp) / "big", args.big_files, seed=1)
                   if args.big_files and not args.quick else None)
            profile(root, big, epochs)


if __name__ == "__main__":
    main()
