"""Checkpoint cost: write time, load time and size, against the train step time.

Run from the repository root (any backend; TensorFlow by default)::

    TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH=src python benchmarks/checkpoint.py [--repeats 15]

Two models, each inside a real TrainGenerator on small .npy datasets written to a temporary
directory:

* ``seed AE``: the seed example's convolutional autoencoder (``examples/utils.py``
  ``make_autoencoder`` with ``AE_CONFIGS``: batch 128 of 28x28x1, nadam, mse);
* ``dense 10M``: Dense(4000)-Dense(1500)-Dense(10) on 1000 features (about 10M parameters),
  batch 32, adam.

Measured, median over ``--repeats`` (interleaved: step, checkpoint, step, load, ...):

* ``step``: one ``model.train_on_batch`` on a batch of the data;
* ``write``: ``tg.save()``, a temp checkpoint with everything exact resume needs (weights +
  optimizer, other variables, RNG and data positions, JSON state, SHA-256 manifest, fsyncs,
  atomic rename and pointer update; no figures);
* ``write+figs``: a unique checkpoint, which also draws the history and report PNGs;
* ``load``: ``tg.load(checkpoint)`` (verify hashes, load weights and optimizer, restore
  state and data position).

Goal: a checkpoint of the seed autoencoder costs less than three train steps
(``write / step < 3``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from deeptrain import DataGenerator, TrainGenerator  # noqa: E402
from deeptrain.preprocessing import numpy_data_to_numpy_sets  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))


def seed_autoencoder():
    from utils import ae_configs, make_autoencoder

    return make_autoencoder(**ae_configs()["model"]), (28, 28, 1), 128, None


def dense_10m():
    m = keras.Sequential(
        [
            keras.Input((1000,)),
            keras.layers.Dense(4000, activation="relu"),
            keras.layers.Dense(1500, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    m.compile("adam", "categorical_crossentropy")
    return m, (1000,), 32, 10


def make_tg(model, shape, batch, n_classes, root: Path) -> TrainGenerator:
    rng = np.random.default_rng(0)
    for name in ("train", "val"):
        x = rng.random((batch * 4, *shape), dtype=np.float32)
        y = (
            x
            if n_classes is None
            else np.eye(n_classes, dtype="float32")[rng.integers(0, n_classes, len(x))]
        )
        numpy_data_to_numpy_sets(x, y, root / name, batch_size=batch, shuffle=False, verbose=0)
    dgs = [
        DataGenerator(
            root / n,
            batch_size=batch,
            shuffle=True,
            labels_path=(root / n / "labels.h5") if n_classes else None,
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
    )
    tg.train()  # builds everything; one epoch of history for the figures
    return tg


def median_ms(samples: list[float]) -> float:
    return 1000 * statistics.median(samples)


def bench(name: str, maker, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        keras.utils.set_random_seed(0)
        model, shape, batch, n_classes = maker()
        tg = make_tg(model, shape, batch, n_classes, Path(tmp))
        x, labels = tg.datagen.get()
        y = x if n_classes is None else labels
        for _ in range(3):
            model.train_on_batch(x, y)
        step, write, figs, load = [], [], [], []
        path = None
        for i in range(repeats):
            t = time.perf_counter()
            model.train_on_batch(x, y)
            step.append(time.perf_counter() - t)
            tg.state.fit_iters += 1  # a new checkpoint name each time
            t = time.perf_counter()
            path = tg.save()
            write.append(time.perf_counter() - t)
            t = time.perf_counter()
            tg.load(path)
            load.append(time.perf_counter() - t)
            if i < max(3, repeats // 3):
                tg.state.fit_iters += 1
                t = time.perf_counter()
                tg.checkpoint(forced=True)
                figs.append(time.perf_counter() - t)
        size = sum(f.stat().st_size for f in path.iterdir())
        params = model.count_params()
    return dict(
        name=name,
        params=params,
        step=median_ms(step),
        write=median_ms(write),
        figs=median_ms(figs),
        load=median_ms(load),
        size=size,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args()
    rows = [
        bench("seed AE", seed_autoencoder, args.repeats),
        bench("dense 10M", dense_10m, max(5, args.repeats // 2)),
    ]
    print(
        f"\nbackend: {keras.backend.backend()}, keras {keras.__version__}; median ms over repeats\n"
    )
    head = (
        "model",
        "params",
        "step ms",
        "write ms",
        "write/step",
        "write+figs ms",
        "load ms",
        "load/step",
        "size MB",
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print(
            f"| {r['name']} | {r['params']:,} | {r['step']:.1f} | {r['write']:.1f} | "
            f"{r['write'] / r['step']:.2f}x | {r['figs']:.1f} | {r['load']:.1f} | "
            f"{r['load'] / r['step']:.2f}x | {r['size'] / 1e6:.2f} |"
        )
    ae = rows[0]
    ok = ae["write"] / ae["step"] < 3
    print(
        f"\ngoal: seed AE checkpoint < 3 train steps: {ae['write'] / ae['step']:.2f} steps "
        f"-> {'PASS' if ok else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
