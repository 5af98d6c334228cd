"""A training job with the TensorBoard and MLflow loggers, run as a real subprocess by the
tracking resume tests.

    python tests/tracking_job.py DATA LOGS [--loadpath PATH] [--kill-at-iter K]

A dense classifier on 12 train batches per epoch, 2 epochs; a temp checkpoint every 4
batches, a validation every 3; MLflow in the logs directory's default store. With
``--kill-at-iter K`` it SIGKILLs itself right after train iteration K (before that
iteration's bookkeeping and checkpoint), once its loggers' threads have written what they
were handed (so the event file holds batches past the last checkpoint). At the end it
prints the log directory.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from deeptrain import DataGenerator, TrainGenerator  # noqa: E402
from deeptrain.preprocessing import numpy_data_to_numpy_sets  # noqa: E402
from deeptrain.tracking import MLflowLogger, TensorBoardLogger  # noqa: E402

BATCH = 16


def make_data(root: Path) -> None:
    if (root / "val" / "labels.h5").exists():
        return
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 256)
    x = (rng.normal(size=(256, 8)) + 0.5 * labels[:, None]).astype("float32")
    y = np.eye(2, dtype="float32")[labels]
    for name, sl in (("train", slice(0, 192)), ("val", slice(192, 256))):
        numpy_data_to_numpy_sets(x[sl], y[sl], root / name, batch_size=BATCH, verbose=0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("data", type=Path)
    p.add_argument("logs", type=Path)
    p.add_argument("--loadpath")
    p.add_argument("--kill-at-iter", type=int)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO)

    make_data(args.data)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.Adam(0.01), "categorical_crossentropy", metrics=["accuracy"])
    dgs = [
        DataGenerator(
            args.data / n, batch_size=BATCH, labels_path=args.data / n / "labels.h5", seed=0
        )
        for n in ("train", "val")
    ]
    images = {"val": 4}  # the figures at every 4th validation
    callbacks: list = [
        TensorBoardLogger(images_freq=images),
        MLflowLogger(images_freq=images, train_freq={"batch": 1}),
    ]
    if args.kill_at_iter is not None:

        def kill(tg):
            if tg.state.fit_iters == args.kill_at_iter:
                tg.wait_for_checkpoints()  # a kill between checkpoint writes
                tensorboard, mlflow = callbacks[1:]  # what they handed to their threads
                tensorboard.flush()  # is written (TensorBoard's rows are handed over first;
                mlflow._worker.flush()  # MLflow's flush() would send its buffer, unsent)
                os.kill(os.getpid(), signal.SIGKILL)

        callbacks.insert(0, {"train:iter": kill})
    tg = TrainGenerator(
        model,
        *dgs,
        epochs=2,
        logs_dir=args.logs,
        loadpath=args.loadpath,
        callbacks=callbacks,
        iter_verbosity=0,
        val_freq={"batch": 3},
        temp_checkpoint_freq={"batch": 4},
        unique_checkpoint_freq={"epoch": 1},
    )
    tg.train()
    print("logdir:", tg.logdir)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
