"""Shared configs and model makers of DeepTrain's examples.

Examples import it the way DeepTrain 0.6's did::

    import deeptrain
    deeptrain.util.misc.append_examples_dir_to_sys_path()
    from utils import init_session, make_autoencoder, AE_CONFIGS as C

    C['traingen']['epochs'] = 1          # edit any config before building the session
    tg = init_session(C, make_autoencoder)
    tg.train()

``AE_CONFIGS`` (convolutional autoencoder), ``CL_CONFIGS`` (digit classifier) and
``TS_CONFIGS`` (stateful-LSTM timeseries classifier) are dicts with keys ``'model'`` (keyword
arguments of the model maker), ``'datagen'``, ``'val_datagen'`` (of ``DataGenerator``) and
``'traingen'`` (of ``TrainGenerator``). Each is made fresh when this module is imported
(``ae_configs()`` etc. make more). ``init_session(CONFIGS, model_fn)`` builds the model, both
DataGenerators and the TrainGenerator, after building the data if it is not there yet.

Data (see ``deeptrain.util.example_data``), built on first use with no network, under
``examples/data/``: ``image`` (scikit-learn's real digits resized to 28x28x1, 128-sample
``.npy`` files + ``labels.h5``), ``image_lz4f`` (the same, lz4-compressed) and
``timeseries`` (ItalyPowerDemand, shipped by sktime). Runs write to ``examples/logs`` and
``examples/models``. Needs ``pip install -e ".[examples]"`` (scikit-learn, sktime).

Environment variables:

- ``DEEPTRAIN_EXAMPLES_FAST=1``: fast runs for tests and CI: small datasets (4 train and 2
  validation files, ``image_small``/``timeseries_small``) and 1 epoch in every config.
- ``DEEPTRAIN_EXAMPLES_MNIST=1``: image examples on real MNIST (``keras.datasets``, downloaded
  once); without network they fall back to the digits, with a warning.
- ``DEEPTRAIN_EXAMPLES_DATA=DIR``: where datasets are built (default ``examples/data``).
- ``DEEPTRAIN_EXAMPLES_OUT=DIR``: where ``logs/`` and ``models/`` go (default ``examples/``).
"""

import functools
import logging
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from keras import layers  # noqa: E402

from deeptrain import DataGenerator, TrainGenerator  # noqa: E402
from deeptrain.backend.stateful import reset_states  # noqa: E402
from deeptrain.callbacks import (
    binary_preds_distribution_cb,  # noqa: E402
    binary_preds_per_iteration_cb,
    infer_train_hist_cb,
)
from deeptrain.util import example_data  # noqa: E402

logging.basicConfig(level=logging.INFO, format="%(message)s")
log = logging.getLogger("deeptrain.examples")


def _flag(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


EXAMPLES_DIR = Path(__file__).resolve().parent
FAST = _flag("DEEPTRAIN_EXAMPLES_FAST")
USE_MNIST = _flag("DEEPTRAIN_EXAMPLES_MNIST")
DATA_DIR = Path(os.environ.get("DEEPTRAIN_EXAMPLES_DATA") or EXAMPLES_DIR / "data")
OUT_DIR = Path(os.environ.get("DEEPTRAIN_EXAMPLES_OUT") or EXAMPLES_DIR)
LOGS_DIR = OUT_DIR / "logs"
MODELS_DIR = OUT_DIR / "models"


@functools.cache
def dataset(name):
    """Directory of example dataset ``name`` (``'image'``, ``'image_lz4f'``,
    ``'timeseries'``), with ``train/`` and ``val/``; built on first use.

    In fast mode this is the small variant; ``'image'`` is MNIST when asked for.
    """
    if name == "image" and USE_MNIST:
        try:
            return example_data.build("mnist", DATA_DIR, small=FAST)
        except Exception as e:  # no network: keep going on the shipped digits
            log.warning(
                "MNIST unavailable (%s: %s); using scikit-learn's digits instead",
                type(e).__name__,
                e,
            )
    return example_data.build(name, DATA_DIR, small=FAST)


def _dataset_dir(name):
    """Where ``dataset(name)`` is, without building it (MNIST is fetched here if asked for)."""
    if name == "image" and USE_MNIST:
        return dataset(name)
    return DATA_DIR / (f"{name}_small" if FAST else name)


def init_session(CONFIGS, model_fn):
    """Model, train and validation DataGenerators, and the TrainGenerator, from ``CONFIGS``."""
    for key in ("datagen", "val_datagen"):
        _ensure_data(CONFIGS[key]["data_path"])
    model = model_fn(**CONFIGS["model"])
    dg = DataGenerator(**CONFIGS["datagen"])
    vdg = DataGenerator(**CONFIGS["val_datagen"])
    return TrainGenerator(model, dg, vdg, **CONFIGS["traingen"])


def _ensure_data(path):
    path = Path(path).resolve()
    for name in ("image", "image_lz4f", "timeseries"):
        if _dataset_dir(name).resolve() in path.parents:
            dataset(name)


#### Reusable configs #######################################################
batch_size = 128
width, height, channels = 28, 28, 1


def _epochs(n):
    return 1 if FAST else n


def _image_datagen_configs(labels, name="image"):
    datadir = _dataset_dir(name)
    configs = []
    for split, shuffle in (("train", True), ("val", False)):
        cfg = dict(
            data_path=datadir / split,
            batch_size=batch_size,
            shuffle=shuffle,
            superbatch_set_nums="all",
        )
        if labels:
            cfg["labels_path"] = datadir / split / "labels.h5"
        else:  # read only the .npy batches (not labels.h5 beside them)
            cfg["data_loader"] = "numpy"
        configs.append(cfg)
    return configs


def _traingen_config(**kw):
    return dict(
        epochs=_epochs(6), logs_dir=LOGS_DIR, best_models_dir=MODELS_DIR, eval_fn="predict", **kw
    )


#### Autoencoder ############################################################
def make_autoencoder(
    batch_shape,
    optimizer,
    loss,
    metrics,
    filters,
    kernel_size,
    strides,
    activation,
    up_sampling_2d,
    input_dropout,
    preout_dropout,
    lr=None,
):
    """Convolutional autoencoder: input dropout, then per layer [UpSampling2D] -> Conv2D ->
    BatchNormalization -> activation, then dropout and a 1-channel sigmoid Conv2D."""
    ipt = keras.Input(batch_shape=batch_shape)
    x = layers.Dropout(input_dropout)(ipt)
    layer_args = zip(activation, filters, kernel_size, strides, up_sampling_2d, strict=True)
    for a, f, ks, s, ups in layer_args:
        x = layers.UpSampling2D(ups)(x) if ups else x
        x = layers.Conv2D(f, ks, strides=s, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation(a)(x)
    x = layers.Dropout(preout_dropout)(x)
    out = layers.Conv2D(1, (3, 3), strides=1, padding="same", activation="sigmoid")(x)

    model = keras.Model(ipt, out)
    model.compile(optimizer, loss, metrics=metrics)
    if lr:
        model.optimizer.learning_rate.assign(lr)
    return model


def ae_configs():
    model = dict(
        batch_shape=(batch_size, width, height, channels),
        loss="mse",
        metrics=None,
        optimizer="nadam",
        activation=["relu"] * 5,
        filters=[6, 12, 2, 6, 12],
        kernel_size=[(3, 3)] * 5,
        strides=[(2, 2), (2, 2), 1, 1, 1],
        up_sampling_2d=[None, None, None, (2, 2), (2, 2)],
        input_dropout=0.5,
        preout_dropout=0.4,
    )
    datagen, val_datagen = _image_datagen_configs(labels=False)
    traingen = _traingen_config(model_configs=model, input_as_labels=True, max_is_best=False)
    return {"model": model, "datagen": datagen, "val_datagen": val_datagen, "traingen": traingen}


#### Classifier #############################################################
def make_classifier(
    batch_shape,
    loss,
    metrics,
    optimizer,
    num_classes,
    filters,
    kernel_size,
    dropout,
    dense_units,
    lr=None,
):
    """Conv2D stack -> MaxPooling2D -> Dropout -> Dense -> Dropout -> softmax Dense."""
    ipt = keras.Input(batch_shape=batch_shape)
    x = ipt
    for f, ks in zip(filters, kernel_size, strict=True):
        x = layers.Conv2D(f, ks, activation="relu", padding="same")(x)
    x = layers.MaxPooling2D(pool_size=(2, 2))(x)
    x = layers.Dropout(dropout[0])(x)
    x = layers.Flatten()(x)
    x = layers.Dense(dense_units, activation="relu")(x)
    x = layers.Dropout(dropout[1])(x)
    out = layers.Dense(num_classes, activation="softmax")(x)

    model = keras.Model(ipt, out)
    model.compile(optimizer, loss, metrics=metrics)
    if lr:
        model.optimizer.learning_rate.assign(lr)
    return model


def cl_configs():
    model = dict(
        batch_shape=(batch_size, width, height, channels),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
        optimizer="adam",
        lr=4e-4,
        num_classes=10,
        filters=[8, 16],
        kernel_size=[(3, 3), (3, 3)],
        dropout=[0.25, 0.5],
        dense_units=32,
    )
    datagen, val_datagen = _image_datagen_configs(labels=True)
    traingen = _traingen_config(model_configs=model)
    return {"model": model, "datagen": datagen, "val_datagen": val_datagen, "traingen": traingen}


#### Timeseries classifier ##################################################
ts_batch_size = 64
ts_window_size = 8  # ItalyPowerDemand has 24 timesteps: 3 windows per batch


def make_timeseries_classifier(batch_shape, loss, optimizer, units, activation, lr=None):
    """Two stateful LSTMs -> sigmoid Dense(1). Stateful layers need a fixed batch size,
    hence ``batch_shape`` (batch, window timesteps, channels)."""
    ipt = keras.Input(batch_shape=batch_shape)
    x = layers.LSTM(units, activation=activation, return_sequences=True, stateful=True)(ipt)
    x = layers.LSTM(units, activation=activation, return_sequences=False, stateful=True)(x)
    out = layers.Dense(1, activation="sigmoid")(x)

    model = keras.Model(ipt, out)
    model.compile(optimizer, loss)
    if lr:
        model.optimizer.learning_rate.assign(lr)
    return model


def _reset_states_cb(tg):
    """infer_train_hist_cb runs the model, which moves stateful RNN states: start the next
    batch from zero states as `reset_statefuls=True` promises."""
    reset_states(tg.model)


def ts_configs():
    model = dict(
        batch_shape=(ts_batch_size, ts_window_size, 1),
        units=24,
        optimizer="adam",
        lr=5e-3,
        loss="binary_crossentropy",
        activation="tanh",
    )
    datadir = _dataset_dir("timeseries")
    datagen, val_datagen = [
        dict(
            data_path=datadir / split / "data.h5",
            labels_path=datadir / split / "labels.h5",
            batch_size=ts_batch_size,
            superbatch_set_nums="all",
            shuffle=split == "train",
            preprocessor="timeseries",
            preprocessor_configs=dict(window_size=ts_window_size),
        )
        for split in ("train", "val")
    ]
    traingen = dict(
        epochs=_epochs(8),
        reset_statefuls=True,
        logs_dir=LOGS_DIR,
        best_models_dir=MODELS_DIR,
        model_configs=model,
        val_freq={"epoch": 1},
        plot_history_freq={"epoch": 1},
        unique_checkpoint_freq={"epoch": 2},
        eval_fn="predict",  # the binary-prediction figures need the predictions
        # figures of each validation's predictions, in <logdir>/figures
        callbacks={
            "val_end": [
                infer_train_hist_cb,
                binary_preds_per_iteration_cb,
                binary_preds_distribution_cb,
                _reset_states_cb,
            ]
        },
    )
    return {"model": model, "datagen": datagen, "val_datagen": val_datagen, "traingen": traingen}


AE_CONFIGS = ae_configs()
CL_CONFIGS = cl_configs()
TS_CONFIGS = ts_configs()
