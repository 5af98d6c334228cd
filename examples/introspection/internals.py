"""Looking inside a run: the arguments passed, the logged initial state, where things are
saved, interrupts, and the DataGenerator's queue of files.

- `tg._passed_args`: the TrainGenerator arguments given explicitly (these win over a loaded
  checkpoint's values, via '{auto}' in `loadskip_list`).
- `tg.get_last_log('init_state')`: <logdir>/misc/init_state.json, every attribute at the end
  of `__init__` as text; `init_source.txt` beside it holds the source of the script that ran.
- `tg.logdir`, `tg.model_name`, `tg.best_models_dir`: where the run writes.
- `tg.interrupt_status()`: `(train_interrupted, validation_interrupted)`. Ctrl-C is held to
  the end of the current iteration, so a train iteration is never cut in half; a validation
  can be. Here a callback sends the process a SIGINT (as Ctrl-C does) during validation;
  `tg.train()` then simply continues it.
- `tg.info()`: where training stands.
- `dg.set_nums_to_process`: the files still to be served this epoch (refilled and
  reshuffled from `dg.set_nums_original` at each epoch's end); edit it to skip or repeat a
  file. Here one file is skipped in the second epoch.
Run: python examples/introspection/internals.py
"""

import deeptrain

deeptrain.util.misc.append_examples_dir_to_sys_path()

import json
import signal
from pprint import pprint

from utils import AE_CONFIGS as C
from utils import init_session, make_autoencoder

trained_sets = []  # (epoch, set name) of every batch trained on
interrupt = {"pending": False}


def record_set(tg):
    trained_sets.append((tg.epoch, tg.set_name))


def interrupt_validation(tg):
    if interrupt["pending"]:  # once: Ctrl-C during the first validation batch
        interrupt["pending"] = False
        signal.raise_signal(signal.SIGINT)


C["traingen"].update(
    epochs=1,
    iter_verbosity=0,
    callbacks={"train:batch": record_set, "val:batch": interrupt_validation},
)
tg = init_session(C, make_autoencoder)
dg, vdg = tg.datagen, tg.val_datagen

# What was passed, what was logged #####################################################
print("tg._passed_args:")
pprint(tg._passed_args)
with open(tg.get_last_log("init_state")) as f:
    init_state = json.load(f)
print(f"init_state.json ({len(init_state)} attributes), some of them:")
pprint(
    {
        k: init_state[k]
        for k in (
            "epochs",
            "key_metric",
            "val_freq",
            "model_name",
            "batch_size",
            "input_as_labels",
            "loadskip_list",
        )
    }
)
print(f"init_source.txt starts with: {tg.get_last_log('init_source').read_text().splitlines()[0]}")

# Where things go ######################################################################
print(f"Model name:         {tg.model_name}")
print(f"Log directory:      {tg.logdir}")
print(f"Best models dir:    {tg.best_models_dir}")

# An interrupted validation ############################################################
interrupt["pending"] = True
try:
    tg.train()
except KeyboardInterrupt:
    print(f"KeyboardInterrupt during validation; interrupt_status() = {tg.interrupt_status()}")
    print(f"validation batches left: {vdg.set_nums_to_process}")
    tg.info()  # where training stands
tg.train()  # finishes the validation, nothing repeated or skipped
print(
    f"after tg.train(): interrupt_status() = {tg.interrupt_status()}, "
    f"{tg._times_validated} validation(s) of {tg._batches_validated} batches"
)

# Skipping a file ######################################################################
print(f"dg.set_nums_original: {dg.set_nums_original}")
print(f"dg.set_nums_to_process (epoch 2's queue): {dg.set_nums_to_process}")
skipped = dg.set_nums_to_process.pop(0)
print(f"skipping set {skipped!r} in epoch 2")
tg.epochs = 2
tg.train()
epoch2 = [name for epoch, name in trained_sets if epoch == 1]  # tg.epoch was 1 during it
print(
    f"epoch 2 trained on {len(epoch2)} of {len(dg)} files: {epoch2}; "
    f"skipped {skipped!r}: {skipped not in epoch2}"
)
tg.info()  # (logged, and returned as text)
