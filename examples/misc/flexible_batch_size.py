"""Flexible batch size: the model's batch_size may be an integer fraction or multiple of the
number of samples per file.

The example files hold 128 samples each. With batch_size=64 every file is split into two
batches, named '<n>-a' and '<n>-b'; with batch_size=256 two files are combined into one
batch, named '<n>+<m>'. The shared autoencoder trains two epochs in each setting, and the
script prints the set names of every epoch and validation: each file (so each sample) is
served exactly once per epoch, and no half of a split file carries over ("leaks") into the
next epoch or into validation.

Why: store larger files on disk than the batches you train on (say 512 vs 32): reading
fewer, larger files makes better use of an SSD's throughput, and the file size can be as
large as RAM permits.
Run: python examples/misc/flexible_batch_size.py
"""

import deeptrain

deeptrain.util.misc.append_examples_dir_to_sys_path()

from utils import AE_CONFIGS as C
from utils import init_session, make_autoencoder

set_names = {"train": [], "val": []}  # filled by the callbacks below
C["traingen"]["callbacks"] = {
    "train:batch": lambda tg: set_names["train"].append(tg.set_name),
    "val:batch": lambda tg: set_names["val"].append(tg.val_set_name),
}


def show_set_names(tg):
    """Print what was trained and validated on, epoch by epoch; check one-pass coverage."""
    dg, vdg = tg.datagen, tg.val_datagen
    bs = dg.batch_size
    per_epoch, per_val = len(dg), len(vdg)
    train, val = set_names["train"], set_names["val"]
    assert len(train) == tg.epoch * per_epoch and len(val) == tg.times_validated * per_val
    for epoch in range(tg.epoch):
        names = train[epoch * per_epoch : (epoch + 1) * per_epoch]
        print(f"batch_size={bs} epoch {epoch + 1} train sets: {' '.join(names)}")
        check_once_per_epoch(names, dg.set_nums_original, bs)
    for i in range(tg.times_validated):
        names = val[i * per_val : (i + 1) * per_val]
        print(f"batch_size={bs} validation {i + 1} sets: {' '.join(names)}")
        check_once_per_epoch(names, vdg.set_nums_original, bs)
    train.clear()
    val.clear()


def check_once_per_epoch(names, set_nums, batch_size, file_size=128):
    if batch_size < file_size:  # every half of every file, once
        halves = sorted(f"{n}-{c}" for n in set_nums for c in "ab")
        assert sorted(names) == halves, (names, halves)
    else:  # every file, once, in pairs
        served = [n for name in names for n in name.split("+")]
        assert sorted(served) == sorted(set_nums), (served, set_nums)
        assert all(len(name.split("+")) == batch_size // file_size for name in names)


# batch_size=64 on 128-sample files: each file is split in two ###################
C["traingen"]["epochs"] = 2
C["traingen"]["iter_verbosity"] = 0
C["datagen"]["batch_size"] = 64
C["val_datagen"]["batch_size"] = 64
C["model"]["batch_shape"] = (64, 28, 28, 1)
tg = init_session(C, make_autoencoder)
tg.train()
show_set_names(tg)

# batch_size=256 on 128-sample files: two files make one batch ####################
# (with an odd number of files the last batch of an epoch would hold one file; a model
# with a fixed batch size then needs DataGenerator(..., drop_remainder=True))
C["datagen"]["batch_size"] = 256
C["val_datagen"]["batch_size"] = 256
C["model"]["batch_shape"] = (256, 28, 28, 1)
tg = init_session(C, make_autoencoder)
tg.train()
show_set_names(tg)
print("Every sample was served exactly once per epoch and per validation.")
