"""Experiment tracking: the run in TensorBoard and MLflow, and the `deeptrain` command line.

Trains a dense classifier on a small synthetic set (as quickstart.py) with two callbacks:
``TensorBoardLogger`` (event files in ``<logdir>/tensorboard``: train metrics per batch,
validation metrics, learning rate, history figure and report, weight histograms, settings)
and ``MLflowLogger`` (the local default store, ``logs/mlflow.db``, artifacts in
``logs/mlartifacts``). Then prints the commands that open them, and those that inspect the
run from the command line. Needs ``pip install -e ".[tensorboard,mlflow]"``.
Run: python examples/tracking.py (DEEPTRAIN_EXAMPLES_DATA / _OUT: where data / logs go)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from deeptrain import DataGenerator  # noqa: E402
from deeptrain.preprocessing import numpy_data_to_numpy_sets  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("DEEPTRAIN_EXAMPLES_DATA") or HERE / "data") / "tracking"
OUT = Path(os.environ.get("DEEPTRAIN_EXAMPLES_OUT") or HERE)  # logs/ go here
FAST = os.environ.get("DEEPTRAIN_EXAMPLES_FAST", "").strip().lower() not in ("", "0", "no")


def make_data() -> None:
    """Two Gaussian blobs in 16 dimensions, one-hot labels; written once."""
    if (DATA / "val" / "labels.h5").exists():
        return
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 512)
    x = rng.normal(size=(512, 16)).astype("float32") + labels[:, None] * 1.5
    for name, sl in (("train", slice(0, 384)), ("val", slice(384, 512))):
        numpy_data_to_numpy_sets(
            x[sl], np.eye(2)[labels[sl]], DATA / name, batch_size=64, seed=0, overwrite=True
        )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import keras

    from deeptrain import TrainGenerator
    from deeptrain.tracking import MLflowLogger, TensorBoardLogger, default_tracking_uri

    make_data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    dg = DataGenerator(
        DATA / "train", batch_size=32, labels_path=DATA / "train/labels.h5", shuffle=True
    )
    vdg = DataGenerator(DATA / "val", batch_size=32, labels_path=DATA / "val/labels.h5")
    logs = OUT / "logs"
    tg = TrainGenerator(
        model,
        dg,
        vdg,
        epochs=2 if FAST else 5,
        logs_dir=logs,
        key_metric="accuracy",
        model_configs={"units": 16, "optimizer": "adam"},
        callbacks=[
            TensorBoardLogger(histogram_freq={"epoch": 1}),  # + weight histograms per epoch
            # logs/mlflow.db; train metrics every 4th batch (default: every 50th, which
            # keeps MLflow's SQL store cheap next to fast steps; this run is short)
            MLflowLogger(experiment="deeptrain-examples", train_freq={"batch": 4}),
        ],
    )
    tg.train()
    print(
        f"\n{tg.state.batches_fit} batches over {tg.epoch} epochs; best val accuracy "
        f"{tg.best_key_metric:.3f}\n"
        f"TensorBoard:  tensorboard --logdir {tg.logdir / 'tensorboard'}\n"
        f"MLflow:       mlflow ui --backend-store-uri {default_tracking_uri(logs)}\n"
        f"runs:         deeptrain runs {logs}\n"
        f"a checkpoint: deeptrain show {tg.logdir}\n"
        f"integrity:    deeptrain verify {tg.logdir}\n"
        f"history:      deeptrain plot {tg.logdir}"
    )


if __name__ == "__main__":
    main()
