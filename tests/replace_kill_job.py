"""A job for the crash test of replacing a checkpoint, run as a real subprocess.

    python tests/replace_kill_job.py DATA LOGS OUT.npz

Trains one epoch (a temp checkpoint at its end), writes the weights it holds (``old``) to
OUT.npz, changes them (``new``, also written), and saves again under the same name, which
replaces the checkpoint. ``os.rename`` is patched so that the process SIGKILLs itself at the
second rename of the replace: after the old checkpoint became its backup, before the new
one is in place.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from deeptrain import DataGenerator, TrainGenerator  # noqa: E402
from deeptrain.saving.atomic import BACKUP_PREFIX  # noqa: E402


def kill_at_second_rename() -> None:
    real_rename = os.rename
    backed_up = []

    def rename(src, dst, *args, **kwargs):
        if Path(dst).name.startswith(BACKUP_PREFIX):
            backed_up.append(dst)
        elif backed_up:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real_rename(src, dst, *args, **kwargs)

    os.rename = rename


def main() -> None:
    data, logs, out = map(Path, sys.argv[1:4])
    keras.utils.set_random_seed(0)
    dg = DataGenerator(
        data / "train", batch_size=16, labels_path=data / "train" / "labels.h5", shuffle=True
    )
    vdg = DataGenerator(data / "val", batch_size=16, labels_path=data / "val" / "labels.h5")
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(2, "softmax"),
        ]
    )
    model.compile(keras.optimizers.Adam(0.01), "categorical_crossentropy", metrics=["accuracy"])
    tg = TrainGenerator(
        model,
        dg,
        vdg,
        epochs=1,
        logs_dir=logs,
        iter_verbosity=0,
        plot_history_freq=None,
        unique_checkpoint_freq=None,
        temp_checkpoint_freq={"epoch": 1},
    )
    tg.train()
    old = model.get_weights()
    new = [w + 1 for w in old]
    np.savez(
        out,
        **{f"old{i}": w for i, w in enumerate(old)},
        **{f"new{i}": w for i, w in enumerate(new)},
    )
    model.set_weights(new)
    kill_at_second_rename()
    tg.save()  # same counters: the same name as the checkpoint written at the epoch's end
    raise SystemExit("the save completed: the kill did not happen")


if __name__ == "__main__":
    main()
