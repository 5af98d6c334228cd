"""A training job for the kill-and-resume tests, run as a real subprocess.

    python tests/resume_job.py DATA LOGS OUT.npz --model dense|lstm --epochs N
        [--loadpath PATH] [--kill-at-iter K | --kill-in-write K STEP]
        [--temp-freq '{"iter": 1}'] [--keras-callbacks]
        [--precision mixed_float16|mixed_bfloat16] [--accumulate STEPS] [--jit-compile]

It builds its own data on first use (in DATA), trains with a fixed seed, shuffled data and
Dropout (dense) or a stateful LSTM fed windows (lstm), and at the end writes the model's
weights, optimizer variables and histories to OUT.npz. Checkpoints are written in the
background (the default). It can SIGKILL itself:

* ``--kill-at-iter K``: right after train iteration K (before that iteration's checkpoint),
  once the checkpoints asked for before are complete (a kill between writes);
* ``--kill-in-write K STEP``: from the writing thread, at the step STEP (a fault-hook step
  name, e.g. ``'rename into place'``) of the checkpoint taken after iteration K, while the
  training thread goes on (a kill in the middle of a background write).

``--keras-callbacks`` validates after every epoch and adds Keras' EarlyStopping (restoring
the best weights) and ReduceLROnPlateau, set to stop and to decay on schedule (no epoch after
the first is an improvement). ``--precision`` sets a ``keras.mixed_precision`` policy for the
dense model (mixed_float16: with a LossScaleOptimizer whose dynamic scale grows, overflows
and shrinks during the run); ``--accumulate`` gives its optimizer
``gradient_accumulation_steps``. ``--jit-compile`` compiles the model with
``jit_compile=True`` (on torch: Keras' train function through ``torch.compile``).
"""

from __future__ import annotations

import argparse
import json
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
from deeptrain.util.preprocessors import TimeseriesPreprocessor  # noqa: E402

LSTM_BATCH, TIMESTEPS, WINDOW = 8, 12, 4


def make_data(root: Path, model: str) -> None:
    if (root / "val" / "labels.h5").exists():
        return
    rng = np.random.default_rng(0)
    if model == "dense":
        n, shape, file_size = 256, (8,), 32
    else:
        n, shape, file_size = 96, (TIMESTEPS, 3), LSTM_BATCH
    labels = rng.integers(0, 2, n)
    x = (rng.normal(size=(n, *shape)) + 0.5 * labels.reshape(-1, *[1] * len(shape))).astype(
        "float32"
    )
    y = (
        np.eye(2, dtype="float32")[labels]
        if model == "dense"
        else labels[:, None].astype("float32")
    )
    n_train = n * 3 // 4
    for name, sl in (("train", slice(0, n_train)), ("val", slice(n_train, n))):
        numpy_data_to_numpy_sets(
            x[sl], y[sl], root / name, batch_size=file_size, shuffle=False, verbose=0
        )


def build(
    model: str, precision: str = "float32", accumulate: int | None = None, jit: bool = False
) -> keras.Model:
    jit_compile = True if jit else "auto"  # (False would turn off JAX's and TF's default)
    if model == "dense":
        keras.mixed_precision.set_global_policy(precision)
        m = keras.Sequential(
            [
                keras.Input((8,)),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dropout(0.3),
                keras.layers.Dense(2, "softmax", dtype="float32"),  # outputs in float32
            ]
        )
        optimizer = keras.optimizers.Adam(0.01, gradient_accumulation_steps=accumulate)
        if precision == "mixed_float16":  # a scale that grows every 2 steps and overflows
            optimizer = keras.optimizers.LossScaleOptimizer(  # at 2**19: steps 3, 6, 11 skipped
                optimizer, initial_scale=2.0**18, dynamic_growth_steps=2
            )
        m.compile(
            optimizer, "categorical_crossentropy", metrics=["accuracy"], jit_compile=jit_compile
        )
    else:
        inp = keras.Input(batch_shape=(LSTM_BATCH, WINDOW, 3))
        x = keras.layers.LSTM(8, stateful=True, return_sequences=True)(inp)
        x = keras.layers.LSTM(8, stateful=True)(x)
        x = keras.layers.Dropout(0.2)(x)
        m = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(x))
        m.compile(keras.optimizers.Adam(0.01), "binary_crossentropy", jit_compile=jit_compile)
    return m


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("data", type=Path)
    p.add_argument("logs", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--model", default="dense", choices=("dense", "lstm"))
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--loadpath")
    p.add_argument("--kill-at-iter", type=int)
    p.add_argument("--kill-in-write", nargs=2, metavar=("K", "STEP"))
    p.add_argument("--temp-freq", type=json.loads, default=None)
    p.add_argument("--keras-callbacks", action="store_true")
    p.add_argument("--precision", default="float32")  # a keras.mixed_precision policy
    p.add_argument("--accumulate", type=int)  # gradient_accumulation_steps
    p.add_argument("--jit-compile", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO)

    make_data(args.data, args.model)
    keras.utils.set_random_seed(0)
    dense = args.model == "dense"
    pre = {} if dense else dict(preprocessor=TimeseriesPreprocessor(window_size=WINDOW))
    dg = DataGenerator(
        args.data / "train",
        batch_size=16 if dense else LSTM_BATCH,
        labels_path=args.data / "train" / "labels.h5",
        shuffle=True,
        shuffle_group_samples=dense,
        **pre,
    )
    vdg = DataGenerator(
        args.data / "val",
        batch_size=16 if dense else LSTM_BATCH,
        labels_path=args.data / "val" / "labels.h5",
        **({} if dense else dict(preprocessor=TimeseriesPreprocessor(WINDOW))),
    )
    callbacks = []
    if args.kill_at_iter is not None:

        def kill(tg):
            if tg.state.fit_iters == args.kill_at_iter:
                tg.wait_for_checkpoints()
                sys.stdout.flush()
                os.kill(os.getpid(), signal.SIGKILL)

        callbacks.append({"train:iter": kill})
    armed = []
    if args.kill_in_write is not None:
        kill_iter, kill_step = int(args.kill_in_write[0]), args.kill_in_write[1]

        def arm(tg):  # at the snapshot, on the training thread; one write at a time
            armed[:] = [tg.state.fit_iters == kill_iter]

        def fault(step):  # in the writing thread
            if armed == [True] and step == kill_step:
                os.kill(os.getpid(), signal.SIGKILL)

        callbacks.append({"save": arm})
    if args.keras_callbacks:
        never_better = 1e9  # min_delta
        callbacks += [
            keras.callbacks.EarlyStopping(
                patience=2, min_delta=never_better, restore_best_weights=True
            ),
            keras.callbacks.ReduceLROnPlateau(
                monitor="loss", factor=0.5, patience=1, min_delta=never_better
            ),
        ]
    tg = TrainGenerator(
        build(args.model, args.precision, args.accumulate, args.jit_compile),
        dg,
        vdg,
        epochs=args.epochs,
        logs_dir=args.logs,
        loadpath=args.loadpath,
        callbacks=callbacks,
        iter_verbosity=0,
        plot_history_freq=None,
        temp_checkpoint_freq=args.temp_freq,
        unique_checkpoint_freq={"epoch": 1},
        reset_statefuls=not dense,
        val_freq={"epoch": 1} if args.keras_callbacks else {"batch": 5},
    )
    if args.kill_in_write is not None:
        tg._checkpointer.fault = fault
    tg.train()
    model = tg.model
    arrays = {f"w{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}
    arrays.update(
        {f"opt{i}": np.asarray(v.numpy()) for i, v in enumerate(model.optimizer.variables)}
    )
    arrays.update({f"hist_{k}": np.asarray(v, dtype=float) for k, v in tg.history.items()})
    arrays.update({f"val_{k}": np.asarray(v, dtype=float) for k, v in tg.val_history.items()})
    arrays["fit_iters"] = np.asarray(tg.state.fit_iters)
    arrays["jit_compile"] = np.asarray(model.jit_compile is True)
    for cb in tg.callbacks.objects:
        counters = cb.state_dict().get("counters", {})
        for name, value in counters.items():
            if name != "best_weights":
                arrays[f"{type(cb.callback).__name__}_{name}"] = np.asarray(value, dtype=float)
    np.savez(args.out, **arrays)
    print("logdir:", tg.logdir)


if __name__ == "__main__":
    main()
