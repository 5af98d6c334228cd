"""Quickstart: a directory of .npy batches -> DataGenerator -> a Keras model.

Writes a small synthetic classification set (8 files of 64 samples + labels.h5) under
examples/data/quickstart, then trains a dense classifier on it with TrainGenerator for 3 epochs
(batch_size=32: each file is split in two), validating every epoch, and prints where the
outputs went.
Run: python examples/quickstart.py (DEEPTRAIN_EXAMPLES_DATA / _OUT: where data / logs go)
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
DATA = Path(os.environ.get("DEEPTRAIN_EXAMPLES_DATA") or HERE / "data") / "quickstart"
OUT = Path(os.environ.get("DEEPTRAIN_EXAMPLES_OUT") or HERE)  # logs/ go here


def make_data() -> None:
    """Two Gaussian blobs in 16 dimensions, one-hot labels; written once."""
    if DATA.exists():
        return
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 512)
    x = rng.normal(size=(512, 16)).astype("float32") + labels[:, None] * 1.5
    for name, sl in (("train", slice(0, 384)), ("val", slice(384, 512))):
        numpy_data_to_numpy_sets(
            x[sl],
            np.eye(2)[labels[sl]],
            DATA / name,
            batch_size=64,
            data_basename="64batch",
            seed=0,
        )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import keras

    from deeptrain import TrainGenerator

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
    tg = TrainGenerator(model, dg, vdg, epochs=3, logs_dir=OUT / "logs", key_metric="accuracy")
    tg.train()
    print(
        f"\n{tg._fit_iters} iterations over {tg.epoch} epochs; best val accuracy "
        f"{tg.best_key_metric:.3f}"
    )
    print(f"history figure: {tg.logdir / 'history.png'}")
    print(f"metrics log:    {tg.logdir / 'metrics.jsonl'}")
    print(f"data:           {DATA}")


if __name__ == "__main__":
    main()
