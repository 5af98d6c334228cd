"""Data-parallel training on several devices, on each engine's own distribution.

Out of the box this runs on simulated devices of this machine's CPU, with whichever Keras
backend ``KERAS_BACKEND`` selects (TensorFlow by default):

    python examples/distributed.py                       # TF MirroredStrategy, 4 logical CPUs
    KERAS_BACKEND=jax python examples/distributed.py     # JAX DataParallel, 4 CPU devices
    KERAS_BACKEND=torch python examples/distributed.py   # 2 gloo processes (started here)

The script is an ordinary DeepTrain script: only the engine's own set-up lines differ from a
single-device one (``set_up_engine`` below), and DeepTrain finds the distribution by itself.
``batch_size`` is the *global* batch: every process builds the same DataGenerators and
feeds its own rows; metrics, the history and checkpoints are global and written once.

On a real cluster, the same script, launched the engine's way:

* JAX, one process per host (4 hosts; GPUs/TPUs are found by JAX)::

      # in set_up_engine: keras.distribution.initialize() reads the cluster from the
      # environment (or pass "host0:1234", num_processes=4, process_id=<rank>)
      python examples/distributed.py          # on each host

* TensorFlow, one machine with 8 GPUs: ``tf.distribute.MirroredStrategy()`` (all GPUs).
* torch, 2 nodes x 8 GPUs (``torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))``, then
  ``init_process_group("nccl")``: one GPU per process)::

      torchrun --nnodes 2 --nproc-per-node 8 --rdzv-endpoint host0:29500 examples/distributed.py

Kill it (SIGTERM, as schedulers do, or Ctrl-C) and run the same command again: it saves a
checkpoint, exits, and resumes exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
BACKEND = os.environ.setdefault("KERAS_BACKEND", "tensorflow")
DEVICES = 4  # simulated devices (JAX, TensorFlow) or processes (torch: 2)
if BACKEND == "jax":  # before JAX is imported: a CPU split into simulated devices
    os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={DEVICES}")

import numpy as np  # noqa: E402

from deeptrain import DataGenerator, TrainGenerator  # noqa: E402
from deeptrain.preprocessing import numpy_data_to_numpy_sets  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("DEEPTRAIN_EXAMPLES_DATA") or HERE / "data") / "distributed"
OUT = Path(os.environ.get("DEEPTRAIN_EXAMPLES_OUT") or HERE)
EPOCHS = 2 if os.environ.get("DEEPTRAIN_EXAMPLES_FAST") else 6


def set_up_engine():
    """The engine's own set-up lines; returns the scope to build the model in."""
    if BACKEND == "jax":
        import keras

        keras.distribution.set_distribution(keras.distribution.DataParallel())
    elif BACKEND == "torch":
        import torch.distributed as dist

        dist.init_process_group("gloo")  # GPUs: set_device(LOCAL_RANK), then "nccl"
    else:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * DEVICES
        )
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(cpus).scope  # on GPUs: MirroredStrategy()
    return contextlib.nullcontext


def make_data() -> None:
    """Two Gaussian blobs in 16 dimensions; written once (before any worker starts)."""
    if DATA.exists():
        return
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 1024)
    x = (rng.normal(size=(1024, 16)) + labels[:, None] * 1.5).astype("float32")
    for name, part in (("train", slice(0, 768)), ("val", slice(768, 1024))):
        numpy_data_to_numpy_sets(
            x[part], np.eye(2, dtype="float32")[labels[part]], DATA / name, batch_size=64, seed=0
        )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    scope = set_up_engine()
    import keras

    keras.utils.set_random_seed(0)  # the same on every process: same model, same schedule
    with scope():
        model = keras.Sequential(
            [
                keras.Input((16,)),
                keras.layers.Dense(32, activation="relu"),
                keras.layers.Dropout(0.2),
                keras.layers.Dense(2, activation="softmax"),
            ]
        )
        model.compile(keras.optimizers.Adam(0.01), "categorical_crossentropy", metrics=["accuracy"])
    dg = DataGenerator(
        DATA / "train", batch_size=64, labels_path=DATA / "train" / "labels.h5", shuffle=True
    )  # 64 = the global batch, split over the replicas
    vdg = DataGenerator(DATA / "val", batch_size=64, labels_path=DATA / "val" / "labels.h5")
    logs = OUT / "logs"
    run = sorted(logs.glob("M*__distributed*")) if logs.is_dir() else []
    tg = TrainGenerator(
        model,
        dg,
        vdg,
        epochs=EPOCHS,
        logs_dir=logs,
        key_metric="accuracy",
        model_base_name="distributed",
        loadpath=run[-1] if run else None,
    )  # the same command resumes
    tg.train()
    if tg.distribution.is_writer:
        print(
            f"trained on {tg.distribution.describe()}: epoch {tg.epoch}, "
            f"val accuracy {tg.val_history['accuracy'][-1]:.3f}"
        )
        print(f"log directory: {tg.logdir}  (checkpoints/, metrics.jsonl, history.png)")


def launch_torch_workers(n: int = 2) -> int:
    """What ``torchrun --nproc-per-node n`` does, for a run out of the box."""
    make_data()
    env = dict(os.environ, WORLD_SIZE=str(n), MASTER_ADDR="127.0.0.1", MASTER_PORT="29531")
    workers = [
        subprocess.Popen([sys.executable, __file__], env=dict(env, RANK=str(rank)))
        for rank in range(n)
    ]
    return max(w.wait() for w in workers)


if __name__ == "__main__":
    if BACKEND == "torch" and "RANK" not in os.environ:
        sys.exit(launch_torch_workers())
    make_data()
    main()
