"""Checkpoint cost: what a checkpoint blocks, writes and loads, against the train step.

Run from the repository root (any backend; TensorFlow by default)::

    TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH=src python benchmarks/checkpoint.py            # ~10 min
    ... --quick          # without the 100M model, fewer repeats (~3 min)
    ... --threads 1      # one compute thread (steadier on a shared box)

Models, each inside a real TrainGenerator (one epoch trained first: built, with a history
for the figures) on small ``.npy`` datasets in a temporary directory:

* ``seed AE``: the seed example's convolutional autoencoder (``examples/utils.py``
  ``make_autoencoder`` with ``ae_configs()``: batch 128 of 28x28x1, nadam, mse);
* ``dense 10M``: Dense(4000)-Dense(1500)-Dense(10) on 1000 features, batch 32, adam;
* ``dense 100M``: Dense(10000)-Dense(9000)-Dense(10) on 1000 features, batch 32, adam
  (400 MB of weights, 800 MB of Adam slots; left out by ``--quick``);
* ``stateful LSTM``: the timeseries example's two stateful LSTMs (``make_timeseries_classifier``
  with ``ts_configs()``: 24 units, batch 64) fed windows of 8 of 24 timesteps.

Measured per model, medians over ``--repeats``:

* ``step``: one train iteration of the TrainGenerator's step function (``tg.fit_fn``);
* ``block``: the training thread's part of a unique checkpoint (figures included): the
  snapshot of the state to host memory (``checkpoint_async=True``, the default); the files
  are then written in the background. ``block/step`` is its cost in train steps;
* ``steps/write``, ``slow``: the train steps run while that write is in flight, and their
  mean time against ``step`` (the background write competes for the CPUs and the GIL;
  the figures are drawn in a helper process, :mod:`deeptrain.saving.figure_worker`);
* ``write``: the background part of a temp checkpoint (no figures) until it is durable and
  ``latest`` names it: weights file from the snapshot, arrays, state, digests, fsyncs,
  atomic rename, pointer; ``prune``: then the deletion of the temp checkpoint it supersedes
  (the same job, timed apart: unlinking a 120 MB file costs ~20 ms here); against ``plain``,
  writing the same files' bytes with ``open/write/fsync`` (one fsync per file), the two
  back to back in alternating order; ``write/plain``: the median of those pairs' ratios;
  ``floor``: the least a crash-safe checkpoint with a pointer does in plain calls (the
  files fsynced in a new directory, it fsynced and renamed, the pointer file written,
  fsynced and renamed, the parent fsynced: three fsyncs more than ``plain``, which is what
  bounds ``write/plain`` for small states), timed on the other side of the write from
  ``plain`` (the first of two large writes in a row pays for reclaiming page cache), and
  ``write/floor``;
  ``figs``: the background part of a unique checkpoint (history and report PNGs drawn);
* ``load``: ``tg.load(checkpoint)`` (verify the files' digests, load weights, optimizer,
  arrays, state and data position);
* ``mem``: the peak of the host memory a snapshot allocates (``tracemalloc``, which sees
  NumPy's buffers) over the bytes of the state it holds (the least of three snapshots:
  the first also fills one-time caches); ``mem extra``: that peak less the state's bytes.

Side by side (same model, same step): DeepTrain with ``checkpoint_async=False`` (``sync``:
the whole write blocks), Keras' ``ModelCheckpoint(save_weights_only=True)`` (weights and
optimizer only, no fsync; ``on_epoch_end`` timed; load: ``model.load_weights``) and, on JAX
with ``orbax-checkpoint`` installed, ``keras.callbacks.OrbaxCheckpoint(
save_on_background=True)`` (``block``: its ``on_epoch_end``; ``write``: until its
background save is done).

Goals (PASS/FAIL): ``block/step <= 1.0`` for every model (figures included);
``write/plain <= 1.5``; ``mem <= 1.1``. The machine is noisy: compare rows of one run.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")


def _early_threads() -> int | None:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--threads", type=int, default=None)
    return p.parse_known_args()[0].threads


if _early_threads() == 1 and os.environ.get("KERAS_BACKEND") == "jax":
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
        "intra_op_parallelism_threads=1"
    ).strip()

import keras  # noqa: E402
import numpy as np  # noqa: E402

try:  # run from the repo root without installing: PYTHONPATH=src
    import deeptrain  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from deeptrain import DataGenerator, TrainGenerator  # noqa: E402
from deeptrain.preprocessing import numpy_data_to_numpy_sets  # noqa: E402
from deeptrain.saving import checkpointer as _checkpointer  # noqa: E402
from deeptrain.saving.snapshot import take_snapshot  # noqa: E402
from deeptrain.util.files import fsync_path  # noqa: E402
from deeptrain.util.preprocessors import TimeseriesPreprocessor  # noqa: E402

_pruned: list[float] = []  # seconds of each prune: the superseded checkpoints deleted


def _timed_prune(*args: Any, _prune: Callable = _checkpointer.prune) -> None:
    t = time.perf_counter()
    try:
        _prune(*args)
    finally:
        _pruned.append(time.perf_counter() - t)


_checkpointer.prune = _timed_prune  # (the write's commit runs it: timed apart)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

BACKEND = keras.backend.backend()


# -- models -----------------------------------------------------------------------------
def seed_autoencoder() -> tuple:
    from utils import ae_configs, make_autoencoder

    return make_autoencoder(**ae_configs()["model"]), (28, 28, 1), 128, None, None


def dense(hidden: tuple[int, int]) -> Callable[[], tuple]:
    def make() -> tuple:
        m = keras.Sequential(
            [
                keras.Input((1000,)),
                keras.layers.Dense(hidden[0], activation="relu"),
                keras.layers.Dense(hidden[1], activation="relu"),
                keras.layers.Dense(10, activation="softmax"),
            ]
        )
        m.compile("adam", "categorical_crossentropy")
        return m, (1000,), 32, 10, None

    return make


def stateful_lstm() -> tuple:
    from utils import make_timeseries_classifier, ts_configs

    kw = ts_configs()["model"]  # batch_shape (64, 8, 1): one window of 8 of 24 timesteps
    return make_timeseries_classifier(**kw), (24, 1), 64, 1, 8


MODELS: list[tuple[str, Callable[[], tuple], bool]] = [  # name, maker, in --quick
    ("seed AE", seed_autoencoder, True),
    ("dense 10M", dense((4000, 1500)), True),
    ("dense 100M", dense((10000, 9000)), False),
    ("stateful LSTM", stateful_lstm, True),
]


def make_tg(maker: Callable[[], tuple], root: Path, **kw: Any) -> TrainGenerator:
    keras.utils.set_random_seed(0)
    model, shape, batch, n_classes, window = maker()
    rng = np.random.default_rng(0)
    for name in ("train", "val"):
        x = rng.random((batch * 4, *shape), dtype=np.float32)
        if n_classes is None:
            y = x
        elif n_classes == 1:
            y = rng.integers(0, 2, (len(x), 1)).astype("float32")
        else:
            y = np.eye(n_classes, dtype="float32")[rng.integers(0, n_classes, len(x))]
        if not (root / name).exists():
            numpy_data_to_numpy_sets(x, y, root / name, batch_size=batch, shuffle=False, verbose=0)
    pre = (lambda: {"preprocessor": TimeseriesPreprocessor(window)}) if window else dict
    dgs = [
        DataGenerator(
            root / n,
            batch_size=batch,
            shuffle=n == "train",
            labels_path=(root / n / "labels.h5") if n_classes else None,
            **pre(),
        )
        for n in ("train", "val")
    ]
    tg = TrainGenerator(
        model,
        *dgs,
        epochs=1,
        logs_dir=root / "logs",
        iter_verbosity=0,
        input_as_labels=n_classes is None,
        plot_history_freq=None,
        unique_checkpoint_freq=None,
        reset_statefuls=window is not None,
        **kw,
    )
    tg.train()  # builds everything; one epoch of history for the figures
    return tg


# -- measurements ------------------------------------------------------------------------
def ms(samples: list[float]) -> float:
    return 1000 * statistics.median(samples) if samples else float("nan")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


class Stepper:
    """One train iteration on a fixed batch, as the TrainGenerator's loop runs it."""

    def __init__(self, tg: TrainGenerator):
        self.tg = tg
        x, labels = tg.datagen.get()
        self.data = (x, x if tg.input_as_labels else labels, None)

    def __call__(self) -> float:
        t = time.perf_counter()
        self.tg.fit_fn(*self.data)
        return time.perf_counter() - t


def plain_write(files: list[Path], scratch: Path) -> float:
    """open/write/fsync of the same bytes, one file each (the content read first)."""
    contents = [(f.name, f.read_bytes()) for f in files]
    scratch.mkdir(exist_ok=True)
    os.sync()
    t = time.perf_counter()
    write_fsynced(contents, scratch)
    elapsed = time.perf_counter() - t
    for name, _ in contents:
        (scratch / name).unlink()
    return elapsed


def write_fsynced(contents: list[tuple[str, bytes]], directory: Path) -> None:
    """Each ``(name, bytes)`` written to a file of ``directory`` and fsynced."""
    for name, data in contents:
        with open(directory / name, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def floor_write(files: list[Path], scratch: Path) -> float:
    """The least a crash-safe checkpoint with a ``latest`` pointer does, in plain calls:
    each file written and fsynced in a new directory, the directory fsynced and renamed
    into place, the pointer written to a temporary file, fsynced and renamed, the parent
    fsynced (three fsyncs more than ``plain``)."""
    contents = [(f.name, f.read_bytes()) for f in files]
    scratch.mkdir(exist_ok=True)
    tmp, final, pointer = scratch / ".tmp-ckpt", scratch / "ckpt", scratch / "latest"
    for leftover in (tmp, final):  # (of a run that was stopped)
        shutil.rmtree(leftover, ignore_errors=True)
    os.sync()
    t = time.perf_counter()
    tmp.mkdir()
    write_fsynced(contents, tmp)
    fsync_path(tmp)
    os.rename(tmp, final)
    write_fsynced([(".latest.tmp", b"ckpt\n")], scratch)
    os.replace(scratch / ".latest.tmp", pointer)
    fsync_path(scratch)
    elapsed = time.perf_counter() - t
    for name, _ in contents:
        (final / name).unlink()
    final.rmdir()
    pointer.unlink()
    return elapsed


def checkpoint_files(path: Path | None) -> list[Path]:
    assert path is not None
    return sorted(p for p in path.iterdir() if p.is_file())


def snapshot_memory(tg: TrainGenerator) -> tuple[float, int]:
    """Peak bytes a snapshot allocates (tracemalloc) and the state's bytes."""
    gc.collect()
    tg._sync_model()
    tracemalloc.start()
    snap = take_snapshot(tg, figures=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    nbytes = snap.nbytes
    snap.discard()
    return peak, nbytes


def bench_deeptrain(name: str, maker: Callable, root: Path, repeats: int) -> dict:
    tg = make_tg(maker, root)
    step = Stepper(tg)
    for _ in range(3):
        step()
    ck, pipe = tg._checkpointer, tg._checkpointer.pipeline
    ck.keep_spare = True  # as inside train(): a snapshot reuses the last one's host arrays
    steps, block, during, figs, write, plain, load, sizes = [], [], [], [], [], [], [], []
    prune: list[float] = []
    floor: list[float] = []
    tg.state.fit_iters += 1
    ck.checkpoint("temp")  # plain writes of a temp checkpoint's files may come first
    pipe.wait()
    temp = ck.latest()
    for r in range(repeats):
        steps.append(step())
        tg.state.fit_iters += 1  # a new checkpoint name each time
        # a unique checkpoint (figures): the blocking part, then steps while it is written
        t, _ = timed(lambda: ck.checkpoint("unique", wait=False))
        block.append(t)
        t0, n_during, spent = time.perf_counter(), 0, 0.0
        while pipe.busy:
            spent += step()
            n_during += 1
        pipe.wait()
        figs.append(time.perf_counter() - t0)
        during.append((n_during, spent))
        # a temp checkpoint: the background write against plain writes of the same bytes,
        # back to back in alternating order (this disk's speed drifts: paired ratios)
        plain_first = r % 2 == 1
        # (and the floor on the other side of it: the first of two large writes in a row
        # pays for reclaiming the page cache, the second finds free pages)
        if plain_first:  # the previous temp checkpoint's files: the same sizes
            plain.append(plain_write(checkpoint_files(temp), root / "plain"))
        else:
            floor.append(floor_write(checkpoint_files(temp), root / "floor"))
        tg.state.fit_iters += 1
        os.sync()  # no dirty pages of earlier writes: both writes start alike
        ck.checkpoint("temp", wait=False)
        _pruned.clear()
        t, _ = timed(pipe.wait)  # the background part, from the end of the snapshot
        write.append(t - sum(_pruned))  # until durable and pointed at; the prune apart
        prune.append(sum(_pruned))
        path = temp = ck.latest()
        files = checkpoint_files(path)
        sizes.append(sum(f.stat().st_size for f in files))
        if plain_first:
            floor.append(floor_write(files, root / "floor"))
        else:
            plain.append(plain_write(files, root / "plain"))
        t, _ = timed(lambda p=path: tg.load(p))
        load.append(t)
    n_during = sum(n for n, _ in during)
    slow = (sum(s for _, s in during) / n_during) / statistics.median(steps) if n_during else 1.0
    peak, nbytes = min(snapshot_memory(tg) for _ in range(3))  # (the first fills caches)
    sync_block = []
    tg.checkpoint_async = False
    for _ in range(max(2, repeats // 2)):
        tg.state.fit_iters += 1
        t, _ = timed(lambda: ck.checkpoint("unique", wait=False))
        sync_block.append(t)
    tg.checkpoint_async = True
    row = dict(
        name=name,
        params=tg.model.count_params(),
        state=nbytes,
        step=ms(steps),
        block=ms(block),
        during=n_during / len(during),
        slow=slow,
        figs=ms(figs),
        write=ms(write),
        prune=ms(prune),
        plain=ms(plain),
        write_plain=statistics.median(w / p for w, p in zip(write, plain, strict=True)),
        floor=ms(floor),
        write_floor=statistics.median(w / f for w, f in zip(write, floor, strict=True)),
        size=statistics.median(sizes),
        load=ms(load),
        mem=peak / nbytes,
        mem_extra=peak - nbytes,
        sync=ms(sync_block),
    )
    row.update(bench_keras(tg, root, max(3, repeats // 2)))
    row.update(bench_orbax(tg, root, max(2, repeats // 3)))
    tg.destroy(confirm=True)
    return row


def bench_keras(tg: TrainGenerator, root: Path, repeats: int) -> dict:
    """Keras' ModelCheckpoint(save_weights_only=True): blocking write; load_weights."""
    model = tg.model
    path = root / "keras" / "ckpt.weights.h5"
    path.parent.mkdir(exist_ok=True)
    cb = keras.callbacks.ModelCheckpoint(str(path), save_weights_only=True)
    cb.set_model(model)
    block, load = [], []
    for epoch in range(repeats):
        t, _ = timed(lambda e=epoch: cb.on_epoch_end(e, logs={"loss": 1.0}))
        block.append(t)
        t, _ = timed(lambda: model.load_weights(path))
        load.append(t)
    return dict(keras_block=ms(block), keras_load=ms(load))


def bench_orbax(tg: TrainGenerator, root: Path, repeats: int) -> dict:
    """keras.callbacks.OrbaxCheckpoint(save_on_background=True), JAX only."""
    if BACKEND != "jax":
        return {}
    try:
        import orbax.checkpoint  # noqa: F401
    except ImportError:
        return {}
    cb = keras.callbacks.OrbaxCheckpoint(
        str(root / "orbax"), save_on_background=True, save_weights_only=True, max_to_keep=1
    )
    cb.set_model(tg.model)
    block, write = [], []
    for epoch in range(repeats):
        t0 = time.perf_counter()
        try:
            cb.on_epoch_end(epoch, logs={"loss": 1.0})
        except ValueError as e:  # Keras' state tree of a stateful LSTM: both states 'rnn_state'
            cb.checkpointer.close()
            return dict(orbax_error=str(e).split(".")[0])
        block.append(time.perf_counter() - t0)
        cb.checkpointer.wait()
        write.append(time.perf_counter() - t0)
    cb.checkpointer.close()
    return dict(orbax_block=ms(block), orbax_write=ms(write))


# -- report -------------------------------------------------------------------------------
def orbax_cell(row: dict, key: str) -> str:
    return f"{row[key] / row['step']:.2f}" if key in row else "fails"


def table(head: tuple[str, ...], rows: list[tuple]) -> None:
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")


def report(rows: list[dict]) -> bool:
    print(f"\nbackend: {BACKEND}, keras {keras.__version__}; median ms over repeats\n")
    table(
        (
            "model",
            "params",
            "state MB",
            "step ms",
            "block ms",
            "block/step",
            "steps/write",
            "slow",
            "figs ms",
            "write ms",
            "prune ms",
            "plain ms",
            "write/plain",
            "floor ms",
            "write/floor",
            "load ms",
            "load/step",
            "mem",
            "mem extra MB",
        ),
        [
            (
                r["name"],
                f"{r['params']:,}",
                f"{r['state'] / 1e6:.1f}",
                f"{r['step']:.1f}",
                f"{r['block']:.1f}",
                f"{r['block'] / r['step']:.2f}",
                f"{r['during']:.1f}",
                f"{r['slow']:.2f}x",
                f"{r['figs']:.0f}",
                f"{r['write']:.1f}",
                f"{r['prune']:.1f}",
                f"{r['plain']:.1f}",
                f"{r['write_plain']:.2f}x",
                f"{r['floor']:.1f}",
                f"{r['write_floor']:.2f}x",
                f"{r['load']:.1f}",
                f"{r['load'] / r['step']:.2f}",
                f"{r['mem']:.2f}x",
                f"{r['mem_extra'] / 1e6:.2f}",
            )
            for r in rows
        ],
    )
    print("\nBlocking time per checkpoint and load time, in train steps (side by side)\n")
    orbax = any("orbax_block" in r or "orbax_error" in r for r in rows)
    table(
        (
            "model",
            "DeepTrain async block",
            "DeepTrain sync block",
            "Keras ModelCheckpoint block",
            *(("Orbax block", "Orbax write") if orbax else ()),
            "DeepTrain load",
            "Keras load_weights",
        ),
        [
            (
                r["name"],
                f"{r['block'] / r['step']:.2f}",
                f"{r['sync'] / r['step']:.2f}",
                f"{r['keras_block'] / r['step']:.2f}",
                *(
                    (
                        orbax_cell(r, "orbax_block"),
                        orbax_cell(r, "orbax_write"),
                    )
                    if orbax
                    else ()
                ),
                f"{r['load'] / r['step']:.2f}",
                f"{r['keras_load'] / r['step']:.2f}",
            )
            for r in rows
        ],
    )
    if BACKEND == "jax" and not orbax:
        print("\n(Orbax: not installed; `pip install orbax-checkpoint` in the JAX environment)")
    for r in rows:
        if "orbax_error" in r:
            print(f"\n(Orbax, {r['name']}: fails in Keras: {r['orbax_error']})")
    print("\nGoals\n")
    ok = True
    for r in rows:
        for what, value, goal in (
            ("blocking per checkpoint (figures included), steps", r["block"] / r["step"], 1.0),
            ("write / plain open-write-fsync", r["write_plain"], 1.5),
            ("snapshot peak memory / state bytes", r["mem"], 1.1),
        ):
            passed = value <= goal
            ok &= passed
            print(
                f"{r['name']:>14}: {what} {value:.2f} <= {goal} -> {'PASS' if passed else 'FAIL'}"
            )
    return ok


def set_threads(n: int) -> None:
    if BACKEND == "torch":
        import torch

        torch.set_num_threads(n)
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="no 100M model, fewer repeats")
    p.add_argument("--repeats", type=int, default=None, help="default 9 (quick: 6)")
    p.add_argument("--threads", type=int, default=None, help="compute threads (default: all)")
    args = p.parse_args()
    if args.threads:
        set_threads(args.threads)
    repeats = args.repeats or (6 if args.quick else 9)
    rows = []
    for name, maker, quick in MODELS:
        if args.quick and not quick:
            continue
        big = name == "dense 100M"
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(
                bench_deeptrain(name, maker, Path(tmp), max(3, repeats // 3) if big else repeats)
            )
        gc.collect()
        print(f"  done: {name}", file=sys.stderr)
    ok = report(rows)
    print(f"\nall goals: {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
