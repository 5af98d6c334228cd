"""Train-loop overhead: DeepTrain's TrainGenerator against a bare loop and ``model.fit``.

Run from the repository root, once per backend::

    TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=jax PYTHONPATH=src python benchmarks/loop_overhead.py
    ... --quick        # smoke run (well under a minute)
    ... --threads 1    # one compute thread (torch, TensorFlow, JAX): steadier on a shared box
    ... --profile      # also: where TrainGenerator's per-step time goes (cProfile + micro-timings)

Every contender trains the same small model (an MLP Dense(64)-Dense(64)-Dense(10), adam,
categorical_crossentropy, accuracy; each contender has its own copy, built from the same
seed) on the same in-memory data: ``--files`` .npy files of 64 samples x 32 features and
10-class one-hot labels in ``labels.h5``, served by a DataGenerator with
``superbatch_set_nums='all'`` (so no file is read while timing). Batch size 64: one file
per step. On a model this small the per-step plumbing is a large part of a step, which is
what this benchmark is about.

Contenders (ms per train step):

* ``bare``    ``for x, y in batches: model.train_on_batch(x, y)`` over the DataGenerator's
              own superbatch arrays.
* ``fit``     ``model.fit(x_all, y_all, batch_size=64, epochs=E, shuffle=False, verbose=0)``
              (x_all: the same arrays concatenated; fit's per-call set-up is included,
              amortised over E epochs, as ``tg``'s is). ``fit_xN``: N*E epochs per call.
* ``step``    a bare loop of the library's step driver,
              ``deeptrain.training.steppers.make_train_step(model)`` (what
              ``fit_fn='train_on_batch'`` runs), synced at every epoch end (``fit`` writes
              JAX state back to the model per epoch too). ``tg`` minus ``step`` is
              TrainGenerator's own loop overhead; ``step`` vs ``bare`` is the step driver's
              gain over ``train_on_batch``.
* ``tg``      ``TrainGenerator(..., iter_verbosity=0, val_freq=None, logs_dir=None,
              plot_history_freq=None, unique_checkpoint_freq=None).train()``, default
              everything else (``fit_fn='train_on_batch'``, prefetch=2); E more epochs per
              round (``tg.epochs += E``).
* ``tg_bar``  the same with ``iter_verbosity=1`` (the tqdm bar, written to /dev/null).

Tracking (a second table; ``--no-tracking`` skips it, a logger whose package is missing is
left out): one TrainGenerator with a ``TensorBoardLogger`` (``tg_tb``, event files in a temp
folder) and an ``MLflowLogger`` (``tg_mlflow``, a SQLite store in a temp folder), each at
its default frequencies (TensorBoard: train metrics every batch; MLflow: every 50th batch,
sent every 5 s; both: the learning rate every epoch), switched on one at a time between
``train()`` calls, or none (``tg``, and again ``tg_aa``: the run's noise floor). The same
TrainGenerator for every mode because separately built ones differ by a few percent with
nothing else changed. Each mode trains one ``train()`` call of ``--tracking-epochs`` epochs
(default 160: ~10 s, so that MLflow's store works during the timed steps as in a long run)
per round, ``--tracking-rounds`` rounds (default: 7, or as many as train ~150 s in all, up
to 41: the short JAX calls get more rounds, whose paired ratios need them; ``--mlflow-send-s``
changes MLflow's send interval); per step: its steady state, from the end of the
first epoch to the end of the last batch; per call: the rest (the loggers' start, and their
flush at the end: once per run). Also per step: CPU time of this process (all its threads)
and of the MLflow store process; and each logger's own work timed where it runs during
training (its iteration, batch and epoch hooks on the train thread, its worker thread's
CPU, the store process's CPU), as a share of the step.

Warm-up: every contender runs one epoch (fit: two calls) before timing. Timing: ``--rounds``
rounds; in each round every contender trains E epochs, in an order rotated every round, so
slow drifts of this (noisy, shared) machine hit all contenders alike. Reported: the median
ms/step over rounds and the minimum; ratios are the median over rounds of the per-round
ratio (paired, robust to drift), and in brackets the ratio of the minima.

Goals (PASS/FAIL lines): TensorFlow and torch, ``tg`` within 1.03x of ``bare``; JAX, ``tg``
within 1.10x of ``fit`` (on JAX ``train_on_batch`` copies every variable in and out per
call, so ``bare`` is no bar to clear there); every backend, ``tg_tb`` and ``tg_mlflow``
within 1.03x of ``tg`` per step.

Checks printed before the table: the step driver against ``train_on_batch`` from the same
start (per-batch metrics, then weights, optimizer and metrics variables: max |diff|; JAX
with a sync half-way), and a default TrainGenerator's train history against the running
epoch means of a ``train_on_batch`` loop's per-batch metrics over the same batches (plus
the final weights). ``--profile`` adds TrainGenerator's cost per step with a no-op
``fit_fn`` (DeepTrain alone), cProfiles of ``tg`` epochs (cProfile inflates Python-heavy
code 2-3x: compare rows with each other), the wall time of each phase of an iteration with
the real step (timing wrappers, no profiler: DeepTrain's Python runs several times slower
after a real step than in a hot no-op loop), the JAX step without a wait per step, and
micro-timings of the pieces of an iteration.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import math
import os
import pstats
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _early_threads() -> int | None:
    """``--threads`` is needed before JAX starts: XLA reads its flags once."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--threads", type=int, default=None)
    return p.parse_known_args()[0].threads


if _early_threads() and os.environ.get("KERAS_BACKEND") == "jax":
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen="
        "false intra_op_parallelism_threads=1"
    ).strip()

import h5py  # noqa: E402
import numpy as np  # noqa: E402

try:  # run from the repo root without installing: PYTHONPATH=src
    import deeptrain  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import keras  # noqa: E402

from deeptrain import DataGenerator, TrainGenerator  # noqa: E402
from deeptrain.callbacks import TraingenCallback  # noqa: E402
from deeptrain.training.fitting import to_metric_dict  # noqa: E402
from deeptrain.training.interrupts import InterruptGuard  # noqa: E402
from deeptrain.training.steppers import make_train_step  # noqa: E402

BACKEND = keras.backend.backend()
BATCH = 64
FEATURES = 32
CLASSES = 10
GOALS = {"tensorflow": ("bare", 1.03), "torch": ("bare", 1.03), "jax": ("fit", 1.10)}
TRACKING_GOAL = 1.03  # a logger at its default frequencies vs the same loop without it
# the tracking table's train() calls span several of MLflow's sends (every 5 s by default):
# its store's work (~20 ms a call plus ~0.1 ms a row) then falls inside the timed steps as
# in a long run; shorter calls would leave it all to the flush at a call's end
TRACKING_EPOCHS = 160  # ~10 s a call at ~2 ms a step, 32 steps an epoch
TRACKING_ROUNDS = 7  # at least; more where calls are short (JAX: ~1.4 s a call), so that
TRACKING_BUDGET_S = 150.0  # the modes train about this long in all: the ratios' noise
TRACKING_MAX_ROUNDS = 41  # shrinks with the rounds' count, and a JAX step is 0.3 ms


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


def make_datagen(root: Path) -> DataGenerator:
    """Everything in the superbatch; prefetch left at its default, as a user would."""
    return DataGenerator(
        root,
        batch_size=BATCH,
        labels_path=root / "labels.h5",
        superbatch_set_nums="all",
        shuffle=False,
        seed=0,
    )


def make_model(seed: int = 0) -> Any:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(CLASSES, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def make_traingen(
    root: Path, epochs: int = 0, iter_verbosity: int = 0, model: Any = None, **kw: Any
) -> TrainGenerator:
    return TrainGenerator(
        model or make_model(),
        make_datagen(root),
        make_datagen(root),
        epochs=epochs,
        iter_verbosity=iter_verbosity,
        val_freq=None,
        logs_dir=None,
        plot_history_freq=None,
        unique_checkpoint_freq=None,
        **kw,
    )


def load_batches(root: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (x, y) a DataGenerator over ``root`` serves, in order, from its superbatch."""
    dg = make_datagen(root)
    batches = [(dg.superbatch[s], dg.all_labels[s]) for s in dg.set_nums_original]
    assert len(dg) == len(batches), (len(dg), len(batches))
    return batches


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """tqdm writes to sys.stderr as it is when the bar is made: send it to /dev/null."""
    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        yield


def all_variables(model: Any) -> list:
    return model.variables + model.optimizer.variables + model.metrics_variables


def max_var_diff(a: Any, b: Any) -> float:
    return max(
        float(np.max(np.abs(np.asarray(va) - np.asarray(vb))))
        for va, vb in zip(all_variables(a), all_variables(b), strict=True)
    )


# -- correctness checks -----------------------------------------------------------------
def check_stepper(batches: list, steps: int = 40) -> float:
    """make_train_step vs train_on_batch from the same start: per-batch metrics, then every
    variable (weights, optimizer, metrics). JAX: a sync half-way, then on from the model.
    Returns the largest absolute difference."""
    ref, model = make_model(), make_model()
    stepper = make_train_step(model)
    worst = 0.0
    for i in range(steps):
        x, y = batches[i % len(batches)]
        a = ref.train_on_batch(x, y, return_dict=True)
        b = stepper(x, y)
        assert sorted(a) == sorted(b), (a, b)
        worst = max(worst, *(abs(float(a[k]) - float(b[k])) for k in a))
        if i == steps // 2:
            stepper.sync()
    stepper.sync()
    return max(worst, max_var_diff(ref, model))


def check_tg_history(root: Path, batches: list, epochs: int = 2) -> tuple[float, float]:
    """A default TrainGenerator's train history vs the running epoch means of a
    train_on_batch loop's per-batch metrics over the same batches, and the final weights.
    Returns (max |history diff|, max |variable diff|)."""
    tg = make_traingen(root, epochs=epochs)
    tg.train()
    ref = make_model()
    expected: dict[str, list[float]] = {}
    for _ in range(epochs):
        sums: dict[str, list] = {}
        for x, y in batches:
            for name, value in ref.train_on_batch(x, y, return_dict=True).items():
                total = sums.setdefault(name, [0.0, 0])  # as TrainGenerator sums them
                total[0] += float(value)
                total[1] += 1
                expected.setdefault(name, []).append(total[0] / total[1])
    history = tg.state.history
    assert sorted(history) == sorted(expected), (list(history), list(expected))
    worst = 0.0
    for name, values in expected.items():
        assert len(history[name]) == len(values), (name, len(history[name]), len(values))
        worst = max(worst, float(np.max(np.abs(np.subtract(history[name], values)))))
    return worst, max_var_diff(ref, tg.model)


# -- contenders -------------------------------------------------------------------------
class Contender:
    """``run(epochs)`` trains that many epochs, of ``steps_per_epoch`` steps each."""

    def __init__(self, name: str, run: Callable[[int], None], steps_per_epoch: int):
        self.name = name
        self.run = run
        self.steps_per_epoch = steps_per_epoch
        self.times: list[float] = []  # seconds per step, one per round


def tg_runner(tg: TrainGenerator, bar: bool = False) -> Callable[[int], None]:
    def run(epochs: int) -> None:
        tg.epochs += epochs
        with quiet_stderr() if bar else contextlib.nullcontext():
            tg.train()

    return run


def step_loop(batches: list) -> Callable[[int], None]:
    """A bare loop of the library's step driver, synced at every epoch end (as fit does)."""
    step = make_train_step(make_model())

    def run(epochs: int) -> None:
        for _ in range(epochs):
            for x, y in batches:
                step(x, y, None)
            step.sync()

    return run


def build_contenders(
    root: Path, batches: list, with_bar: bool = True, fit_long: int = 1
) -> list[Contender]:
    x_all = np.concatenate([b[0] for b in batches])
    y_all = np.concatenate([b[1] for b in batches])
    n = len(batches)
    out: list[Contender] = []

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
    if fit_long > 1:
        out.append(Contender(f"fit_x{fit_long}", lambda e: fit(e * fit_long), n * fit_long))

    out.append(Contender("step", step_loop(batches), n))
    out.append(Contender("tg", tg_runner(make_traingen(root)), n))
    if with_bar:
        out.append(Contender("tg_bar", tg_runner(make_traingen(root, iter_verbosity=1), True), n))
    return out


def measure(contenders: list[Contender], rounds: int, epochs: int) -> None:
    for c in contenders:  # warm-up: compile, build, trace (fit: twice, its set-up caches)
        c.run(1)
        if c.name.startswith("fit"):
            c.run(1)
    for r in range(rounds):
        k = r % len(contenders)
        for c in contenders[k:] + contenders[:k]:
            gc.collect()
            t0 = time.perf_counter()
            c.run(epochs)
            c.times.append((time.perf_counter() - t0) / (epochs * c.steps_per_epoch))


def paired_ratio(a: Contender, b: Contender) -> float:
    """Median over rounds of a's time / b's time in the same round."""
    return statistics.median(x / y for x, y in zip(a.times, b.times, strict=True))


def report(contenders: list[Contender], rounds: int, epochs: int) -> bool:
    by = {c.name: c for c in contenders}
    refs = [by["bare"], by["fit"], by["step"]]
    print(
        f"\nbackend={BACKEND} keras={keras.__version__} threads={threads_info()}  {rounds} "
        f"rounds x {epochs} epochs x {refs[0].steps_per_epoch} steps, batch {BATCH}"
    )
    print(
        "ms/step: median over rounds (min); vs X: median of per-round ratios (ratio of the minima)"
    )
    print(
        f"{'contender':<10}{'ms/step':>8}{'(min)':>8}"
        + "".join(f"{'vs ' + r.name:>9}{'(min)':>8}" for r in refs)
    )
    for c in contenders:
        cells = "".join(
            f"{paired_ratio(c, r):>8.3f}x{min(c.times) / min(r.times):>7.3f}x" for r in refs
        )
        print(
            f"{c.name:<10}{statistics.median(c.times) * 1e3:>8.3f}{min(c.times) * 1e3:>8.3f}{cells}"
        )
    tg, step = by["tg"], by["step"]
    over = statistics.median((a - b) * 1e6 for a, b in zip(tg.times, step.times, strict=True))
    print(f"tg - step (TrainGenerator's own loop, paired median): {over:.1f} us/step")
    ref_name, limit = GOALS[BACKEND]
    ratio = paired_ratio(tg, by[ref_name])
    ok = ratio <= limit
    print(f"goal tg/{ref_name} = {ratio:.3f} (<= {limit:.2f}): {'PASS' if ok else 'FAIL'}")
    return ok


# -- tracking ---------------------------------------------------------------------------
def tracking_loggers(tmp: Path, send_s: float | None) -> dict[str, Any]:
    """Each logger whose package is installed, at its default frequencies (MLflow sending
    every ``send_s`` seconds if given)."""
    import importlib.util

    from deeptrain.tracking import MLflowLogger, TensorBoardLogger

    makers = {
        "tg_tb": ("tensorboardX", lambda: TensorBoardLogger(logdir=tmp / "tensorboard")),
        "tg_mlflow": (
            "mlflow",
            lambda: MLflowLogger(
                f"sqlite:///{tmp / 'mlflow.db'}",
                artifact_location=str(tmp / "mlartifacts"),  # (MLflow's default: ./mlruns)
                **({} if send_s is None else {"send_every_s": send_s}),
            ),
        ),
    }
    out = {}
    for name, (package, make) in makers.items():
        if importlib.util.find_spec(package) is None:
            print(f"({name} left out: {package} is not installed)")
        else:
            out[name] = make()
    return out


class StepClock(TraingenCallback):
    """When the first epoch of a ``train()`` call ended and when its last batch did: the
    steps between them are the steady state (the loggers' start and their flush at the end
    of the call, once-per-run costs, are outside)."""

    reads_model = False

    def __init__(self) -> None:
        self.first_epoch_end = self.last_batch_end = 0.0
        self._epochs = 0

    def on_train_start(self, stage: Any) -> None:
        self._epochs = 0

    def on_train_batch_end(self, stage: Any) -> None:
        self.last_batch_end = time.perf_counter()

    def on_train_epoch_end(self, stage: Any) -> None:
        self._epochs += 1
        if self._epochs == 1:
            self.first_epoch_end = time.perf_counter()


def set_loggers(tg: TrainGenerator, clock: StepClock, loggers: list[Any]) -> None:
    """Which loggers this TrainGenerator dispatches to from now on (the clock always)."""
    tg.callbacks.entries = [clock, *loggers]


def tracking(root: Path, tmp: Path, rounds: int | None, epochs: int, send_s: float | None) -> bool:
    """One TrainGenerator, its loggers switched on and off between ``train()`` calls (so
    every mode trains the same model, data and arrays: separately built TrainGenerators
    differ by a few percent from each other with nothing else changed), in a random order
    each round. ``tg_aa`` is a second 'no logger' mode: its ratio to ``tg`` is this run's
    noise floor. Per step: the steady state of a call of ``epochs`` epochs (from the end of
    its first epoch to the end of its last batch); per call: the rest (the loggers' start,
    and their flush at the end). Wall time, and CPU time of this process (all its threads)
    and of the MLflow store process over the whole call, per step."""
    loggers = tracking_loggers(tmp, send_s)
    clock = StepClock()
    tg = make_traingen(root, callbacks=[clock, *loggers.values()])
    modes: dict[str, list[Any]] = {"tg": [], "tg_aa": []}
    modes.update({name: [logger] for name, logger in loggers.items()})
    n = len(tg.datagen)
    epochs = max(epochs, 2)
    steady = (epochs - 1) * n
    warm_up = {}
    for name, loggers_on in modes.items():  # warm-up (and the loggers' start: stores, files)
        set_loggers(tg, clock, loggers_on)
        tg.epochs += 1
        t0 = time.perf_counter()
        tg.train()
        warm_up[name] = time.perf_counter() - t0
    if rounds is None:  # (the no-logger warm-up epoch: an estimate of a call's length)
        round_s = len(modes) * epochs * min(warm_up["tg"], warm_up["tg_aa"])
        wanted = math.ceil(TRACKING_BUDGET_S / round_s)
        rounds = min(TRACKING_MAX_ROUNDS, max(TRACKING_ROUNDS, wanted))
    wall: dict[str, list[float]] = {k: [] for k in modes}
    cpu: dict[str, list[float]] = {k: [] for k in modes}
    per_call: dict[str, list[float]] = {k: [] for k in modes}
    names = list(modes)
    order = random.Random(0)
    for _ in range(rounds):
        for name in order.sample(names, len(names)):
            set_loggers(tg, clock, modes[name])
            gc.collect()
            tg.epochs += epochs
            w0, c0 = time.perf_counter(), _cpu_seconds(modes[name])
            tg.train()
            w1, c1 = time.perf_counter(), _cpu_seconds(modes[name])
            step = (clock.last_batch_end - clock.first_epoch_end) / steady
            wall[name].append(step)
            cpu[name].append((c1 - c0) / (epochs * n))
            per_call[name].append((w1 - w0 - step * epochs * n) * 1e3)
    print(
        f"\ntracking: {rounds} rounds of one train() call of {epochs} epochs per mode, the "
        f"same TrainGenerator; ms/step: the {steady} steps after the first epoch; ms/call: "
        "the rest of a call (start, end); ratios to tg: paired medians (ratio of the minima); "
        "cpu: this process and the MLflow store process (sending every "
        f"{getattr(loggers.get('tg_mlflow'), 'send_every_s', '-')} s)"
    )
    print(
        f"{'contender':<10}{'ms/step':>8}{'(min)':>8}{'vs tg':>9}{'(min)':>8}{'cpu us':>9}"
        f"{'vs tg':>9}{'ms/call':>9}"
    )
    ratios = {}
    for name in names:
        ratios[name] = statistics.median(a / b for a, b in zip(wall[name], wall["tg"], strict=True))
        cpu_ratio = statistics.median(a / b for a, b in zip(cpu[name], cpu["tg"], strict=True))
        print(
            f"{name:<10}{statistics.median(wall[name]) * 1e3:>8.3f}{min(wall[name]) * 1e3:>8.3f}"
            f"{ratios[name]:>8.3f}x{min(wall[name]) / min(wall['tg']):>7.3f}x"
            f"{statistics.median(cpu[name]) * 1e6:>9.1f}{cpu_ratio:>8.3f}x"
            f"{statistics.median(per_call[name]):>9.1f}"
        )
    print(f"noise floor of this run: tg_aa/tg = {ratios['tg_aa']:.3f} (the same loop twice)")
    if abs(ratios["tg_aa"] - 1) > TRACKING_GOAL - 1:
        print(
            "  (the floor is off 1.000 by more than the goal's margin: this run cannot tell "
            "PASS from FAIL; rerun it, with more --rounds, on a quieter machine)"
        )
    ok = True
    for name in loggers:
        passed = ratios[name] <= TRACKING_GOAL
        ok = ok and passed
        print(
            f"goal {name}/tg per step = {ratios[name]:.3f} (<= {TRACKING_GOAL:.2f}): "
            f"{'PASS' if passed else 'FAIL'}"
        )
    step_us = statistics.median(wall["tg"]) * 1e6
    print(
        "a logger's own work per train step, timed where it runs during training "
        f"({epochs} epochs, flushed at the end), as a share of tg's {step_us:.0f} us step:"
    )
    for name, logger in loggers.items():
        set_loggers(tg, clock, [logger])
        hook, worker, store = logger_work_us(tg, logger, epochs)
        total = hook + worker + store
        print(
            f"  {name:<10} train thread {hook:5.1f} + worker thread {worker:5.1f} + store "
            f"process {store:5.1f} = {total:5.1f} us ({total / step_us:.1%})"
        )
    for logger in loggers.values():
        logger.close()
    return ok


def _store_pid(logger: Any) -> int | None:
    store = getattr(logger, "_store", None)
    return getattr(getattr(store, "proc", None), "pid", None)


def _process_cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) of another process, from /proc (0 where unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds(loggers: list[Any]) -> float:
    """This process's CPU time plus that of the loggers' store processes."""
    return time.process_time() + sum(_process_cpu_s(_store_pid(lg)) for lg in loggers)


def _thread_cpu_s(thread: Any) -> float:
    if thread is None:
        return 0.0
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


STEADY_HOOKS = ("on_train_iter_end", "on_train_batch_end", "on_train_epoch_end")


def logger_work_us(tg: TrainGenerator, logger: Any, epochs: int) -> tuple[float, float, float]:
    """Per train step of a real run: the logger's work on the train thread (its iteration,
    batch and epoch hooks, timed in place: the epoch's includes its learning-rate read),
    its worker thread's CPU and its store process's CPU (MLflow)."""
    spent = [0.0]

    def timed(hook: Callable[[Any, Any], None]) -> Callable[[Any], None]:
        def run(stage: Any) -> None:
            t0 = time.perf_counter()
            hook(logger, stage)
            spent[0] += time.perf_counter() - t0

        return run

    hooks = [
        name
        for name in STEADY_HOOKS
        if getattr(type(logger), name) is not getattr(TraingenCallback, name)
    ]
    for name in hooks:
        setattr(logger, name, timed(getattr(type(logger), name)))
    worker = logger._worker
    w0, s0 = _thread_cpu_s(worker._thread), _process_cpu_s(_store_pid(logger))
    tg.epochs += epochs
    tg.train()  # ends with the logger flushed: its work for these steps is done
    w1, s1 = _thread_cpu_s(worker._thread), _process_cpu_s(_store_pid(logger))
    for name in hooks:
        delattr(logger, name)
    steps = epochs * len(tg.datagen)
    return spent[0] / steps * 1e6, (w1 - w0) / steps * 1e6, (s1 - s0) / steps * 1e6


# -- profile ----------------------------------------------------------------------------
def null_fit_fn(x: Any, y: Any, sw: Any) -> dict[str, float]:
    """A train step that costs nothing: what is left is DeepTrain's own loop."""
    return {"loss": 1.0, "accuracy": 0.5}


def profile(root: Path, batches: list, epochs: int) -> None:
    print("\n== profile: where a TrainGenerator step goes ==")
    n = len(batches)
    # 1. the whole loop, with a no-op fit_fn (DeepTrain alone) and with the model
    for label, kw, n_ep in (
        ("no-op fit_fn", {"fit_fn": null_fit_fn}, max(20, epochs * 10)),
        ("default fit_fn (the step driver)", {}, max(6, epochs * 3)),
    ):
        tg = make_traingen(root, **kw)
        run = tg_runner(tg)
        run(1)  # warm-up
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            run(n_ep)
            times.append((time.perf_counter() - t0) / (n_ep * n) * 1e6)
        prof = cProfile.Profile()
        prof.enable()
        run(n_ep)
        prof.disable()
        print(
            f"\n-- TrainGenerator, {label}: {min(times):.1f} us/step (min of 3 runs, no profiler)"
        )
        _print_profile(prof, n_ep * n)

    # 2. the same, phase by phase, with the real step and no profiler
    phase_times(root, n, epochs)

    # 3. the step driver alone, same batches
    run = step_loop(batches)
    run(1)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        run(max(6, epochs * 3))
        times.append((time.perf_counter() - t0) / (max(6, epochs * 3) * n) * 1e6)
    print(f"\n-- bare loop of make_train_step: {min(times):.1f} us/step (min of 3 runs)")
    if BACKEND == "jax":
        print(
            f"{_jax_async_step(batches):>8.1f}  us/step: the same jitted JAX step without "
            "float(logs) (no wait per step; the metrics read once per epoch)"
        )

    # 4. micro-timings of the pieces of an iteration (us per call; one call per step)
    print("\n-- micro-timings, us per call (median of 7 x 2000 calls, in isolation)")
    tg = make_traingen(root, fit_fn=null_fit_fn)
    tg_runner(tg)(1)
    dg, names = tg.datagen, list(tg.train_metrics)
    floats = {"loss": 1.0, "accuracy": 0.5}
    rows: list[tuple[str, Callable[[], Any]]] = [
        ("InterruptGuard.check() (no guard active)", InterruptGuard.check),
        ("to_metric_dict(dict of python floats)", lambda: to_metric_dict(floats, names)),
        ("tg._callbacks('train:iter'), none set", lambda: tg._callbacks("train:iter")),
        ("tg._saves.if_due(False), no logdir", lambda: tg._saves.if_due(False)),
        ("tg._sync_model() (no-op fit_fn)", tg._sync_model),
        ("tg._format(metrics, 'train') (tg_bar only)", lambda: tg._format(floats, "train")),
    ]
    for label, fn in rows:
        print(f"{_micro(fn):>8.2f}  {label}")
    print(
        f"{_per_batch(dg):>8.2f}  DataGenerator get()+update_state() per batch "
        f"(+ on_epoch_end per epoch), superbatch 'all', {n} files"
    )
    from deeptrain.training.progress import EpochProgress

    with quiet_stderr():
        bar = EpochProgress(1)
        bar.start(1, 1, 10**9)
        us = _micro(lambda: bar.batch("7", "loss=1.000000, accuracy=0.500000"))
        bar.close()
    print(f"{us:>8.2f}  EpochProgress.batch (tqdm set_postfix_str + update, to /dev/null)")


def phase_times(root: Path, n: int, epochs: int, rounds: int = 9) -> None:
    """Wall time of each phase of ``tg.train()`` with the real step, from timing wrappers
    (~0.2 us each) instead of a profiler: the phases run with the caches as a step leaves
    them, which a no-op fit_fn or a micro-benchmark does not show."""
    import deeptrain.training.generator as tg_module

    tg = make_traingen(root)
    spent: dict[str, float] = {}

    def timed(fn: Callable, label: str) -> Callable:
        def wrapper(*args: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t0

        if hasattr(fn, "sync"):  # the JAX stepper: TrainGenerator syncs through fit_fn.sync
            wrapper.sync = fn.sync  # type: ignore[attr-defined]
        return wrapper

    for obj, name, label in (
        (tg, "_fit_fn", "the step (fit_fn)"),
        (tg, "get_data", "tg.get_data (DataGenerator.get)"),
        (tg.datagen, "update_state", "DataGenerator.update_state"),
        (tg, "_on_train_batch_end", "tg._on_train_batch_end"),
        (tg, "_on_train_epoch_end", "tg._on_train_epoch_end"),
        (tg._saves, "if_due", "tg._saves.if_due"),
    ):
        setattr(obj, name, timed(getattr(obj, name), label))
    saved = tg_module.to_metric_dict, tg_module.append_slice
    tg_module.to_metric_dict = timed(saved[0], "to_metric_dict")
    tg_module.append_slice = timed(saved[1], "append_slice")
    try:
        run = tg_runner(tg)
        run(1)
        per_round: dict[str, list[float]] = {}
        for _ in range(rounds):
            gc.collect()
            spent.clear()
            t0 = time.perf_counter()
            run(epochs)
            total = time.perf_counter() - t0
            spent["rest: train() loop, _train_iteration's own lines"] = total - sum(spent.values())
            spent["TOTAL"] = total
            for label, t in spent.items():
                per_round.setdefault(label, []).append(t / (epochs * n) * 1e6)
    finally:
        tg_module.to_metric_dict, tg_module.append_slice = saved
    print(
        f"\n-- TrainGenerator phases with the real step, us/step (median of {rounds} runs "
        "of tg.train(); timing wrappers, no profiler)"
    )
    for label, values in per_round.items():
        print(f"{statistics.median(values):>8.1f}  {label}")


def _jax_async_step(batches: list, epochs: int = 6) -> float:
    """us/step of the JAX step JaxStepper runs (state donated from step to step, metrics
    from their reset values), driven without converting the logs to floats every step:
    the metrics are read once per epoch, as ``fit`` does. The gap to the stepper is the
    cost of waiting for every step."""
    import jax
    import jax.numpy as jnp

    model = make_model()
    model.train_on_batch(*batches[0])  # builds the model, optimizer and metrics

    def step(state, metrics_reset, data):
        trainable, non_trainable, optimizer_vars = state
        logs, (trainable, non_trainable, optimizer_vars, _) = model.train_step(
            (trainable, non_trainable, optimizer_vars, metrics_reset), data
        )
        return logs, (trainable, non_trainable, optimizer_vars)

    jstep = jax.jit(step, donate_argnums=0)
    model.reset_metrics()
    reset = [jnp.array(v.value, copy=True) for v in model.metrics_variables]
    state = (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in model.optimizer.variables],
    )
    times = []
    for _ in range(4):  # the first is a warm-up (compilation)
        t0 = time.perf_counter()
        for _ in range(epochs):
            for x, y in batches:
                logs, state = jstep(state, reset, (x, y, None))
            _ = {k: float(v) for k, v in logs.items()}
        times.append((time.perf_counter() - t0) / (epochs * len(batches)) * 1e6)
    return min(times[1:])


def _micro(fn: Callable[[], Any], n: int = 2000, reps: int = 7) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(times)


def _per_batch(dg: DataGenerator, epochs: int = 20) -> float:
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        n = sum(1 for _ in dg)  # get() + update_state(), on_epoch_end() after the last batch
        times.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(times)


def _print_profile(prof: cProfile.Profile, steps: int, top: int = 18) -> None:
    stats = pstats.Stats(prof)
    rows = []
    for (file, line, fn), (_cc, nc, tt, ct, _callers) in stats.stats.items():
        short = f"{Path(file).parent.name}/{Path(file).name}:{line}({fn})" if line else fn
        rows.append((tt, ct, nc, short))
    print(f"{'tottime':>9}{'cumtime':>9}{'calls':>7}  (us per step, under cProfile)")
    for tt, ct, nc, short in sorted(rows, reverse=True)[:top]:
        print(f"{tt / steps * 1e6:>9.2f}{ct / steps * 1e6:>9.2f}{nc / steps:>7.2f}  {short}")
    print("  cumulative, DeepTrain's own functions:")
    for tt, ct, nc, short in sorted(rows, key=lambda r: -r[1]):
        if (
            short.startswith(("deeptrain/", "training/", "data/", "util/", "backend/"))
            and ct / steps * 1e6 >= 0.5
        ):
            print(f"{tt / steps * 1e6:>9.2f}{ct / steps * 1e6:>9.2f}{nc / steps:>7.2f}  {short}")


# -- main -------------------------------------------------------------------------------
def set_threads(n: int) -> None:
    if BACKEND == "torch":
        import torch

        torch.set_num_threads(n)
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    elif BACKEND == "jax" and n != 1:
        print("--threads on JAX: only 1 is supported (XLA_FLAGS set before JAX starts)")


def threads_info() -> str:
    if BACKEND == "torch":
        import torch

        return str(torch.get_num_threads())
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return str(tf.config.threading.get_intra_op_parallelism_threads() or "default")
    return "1" if "intra_op_parallelism_threads=1" in os.environ.get("XLA_FLAGS", "") else "default"


def main_table(root: Path, batches: list, args: Any, rounds: int, epochs: int) -> bool:
    """The checks, then bare / fit / step / tg (/ tg_bar)."""
    diff = check_stepper(batches)
    print(
        f"check: {type(make_train_step(make_model())).__name__} vs train_on_batch, 40 "
        f"steps (per-batch metrics; weights, optimizer and metrics variables): max |diff| "
        f"= {diff:.3g} ({'identical' if diff == 0 else 'DIFFERENT'})"
    )
    hist, weights = check_tg_history(root, batches)
    print(
        f"check: TrainGenerator history vs train_on_batch loop's running epoch means, 2 "
        f"epochs: max |diff| = {hist:.3g}; final variables: max |diff| = {weights:.3g} "
        f"({'identical' if hist == weights == 0 else 'DIFFERENT'})"
    )
    contenders = build_contenders(root, batches, with_bar=not args.no_bar, fit_long=args.fit_long)
    measure(contenders, rounds, epochs)
    return report(contenders, rounds, epochs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="few rounds, one epoch (smoke run)")
    p.add_argument("--rounds", type=int, default=None, help="timing rounds (default 21; quick 3)")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs per contender per round (default 2; quick 1)",
    )
    p.add_argument(
        "--fit-long",
        type=int,
        default=4,
        help="also a fit_xN row: N times the epochs per fit call (1: no such row)",
    )
    p.add_argument("--files", type=int, default=32, help="files of 64 samples (steps/epoch)")
    p.add_argument("--no-bar", action="store_true", help="skip the tg_bar row")
    p.add_argument("--no-tracking", action="store_true", help="skip the tracking table")
    p.add_argument("--tracking-only", action="store_true", help="only the tracking table")
    p.add_argument(
        "--tracking-epochs",
        type=int,
        default=None,
        help=f"epochs per train() call in the tracking table (default {TRACKING_EPOCHS}; quick 4)",
    )
    p.add_argument(
        "--tracking-rounds",
        type=int,
        default=None,
        help=f"rounds of the tracking table (default: {TRACKING_ROUNDS} or more, up to "
        f"{TRACKING_MAX_ROUNDS}, to train ~{TRACKING_BUDGET_S:.0f} s in all; quick 3)",
    )
    p.add_argument(
        "--mlflow-send-s",
        type=float,
        default=None,
        help="the MLflowLogger's send_every_s (default: its own, 5 s)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="compute threads (torch / TensorFlow intra-op; JAX: 1 only). On a "
        "small shared machine 1 thread is far less sensitive to other load; "
        "it applies to every contender alike",
    )
    p.add_argument(
        "--profile", action="store_true", help="also profile TrainGenerator's per-step overhead"
    )
    args = p.parse_args()
    if args.threads:
        set_threads(args.threads)
    rounds = args.rounds or (3 if args.quick else 21)
    epochs = args.epochs or (1 if args.quick else 2)

    with tempfile.TemporaryDirectory(prefix="dt_loop_") as tmp:
        root = make_data(Path(tmp) / "data", args.files)
        batches = load_batches(root)
        if not args.tracking_only:
            main_table(root, batches, args, rounds, epochs)
        if not args.no_tracking:
            call = args.tracking_epochs or (4 if args.quick else TRACKING_EPOCHS)
            t_rounds = args.tracking_rounds or (3 if args.quick else None)
            tracking(root, Path(tmp) / "tracking", t_rounds, call, args.mlflow_send_s)
        if args.profile:
            profile(root, batches, epochs)


if __name__ == "__main__":
    main()
