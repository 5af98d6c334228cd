"""Quickstart: a directory of .npy batches -> DataGenerator -> a Keras model.

Writes a small synthetic classification set (8 files of 64 samples + labels.h5) under
examples/data/quickstart, then trains a dense classifier on it for a few epochs with
batch_size=32 (each file is split in two), and prints what it saw.
Run: python examples/quickstart.py
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
DATA = HERE / "data" / "quickstart"


def make_data() -> None:
    """Two Gaussian blobs in 16 dimensions, one-hot labels; written once."""
    if DATA.exists():
        return
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 512)
    x = rng.normal(size=(512, 16)).astype("float32") + labels[:, None] * 1.5
    for name, sl in (("train", slice(0, 384)), ("val", slice(384, 512))):
        numpy_data_to_numpy_sets(x[sl], np.eye(2)[labels[sl]], DATA / name, batch_size=64,
                                 data_basename="64batch", seed=0)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import keras
    make_data()
    train = DataGenerator(DATA / "train", batch_size=32, labels_path=DATA / "train/labels.h5",
                          shuffle=True, seed=0)
    val = DataGenerator(DATA / "val", batch_size=32, labels_path=DATA / "val/labels.h5")

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    for epoch in range(3):
        losses = [model.train_on_batch(x, y)[0] for x, y in train]
        accs = [model.test_on_batch(x, y, return_dict=True)["accuracy"] for x, y in val]
        print(f"epoch {epoch + 1}: {len(losses)} batches ({train.set_name} last), "
              f"train loss {np.mean(losses):.3f}, val accuracy {np.mean(accs):.3f}")
    print(f"data written to {DATA}")


if __name__ == "__main__":
    main()
