"""Reproducible, resumable runs: random seeds and exact resume from a checkpoint.

RandomSeedSetter re-seeds Python, NumPy and the backend (keras.utils.set_random_seed) at a
chosen stage frequency, one seed higher each time, and its seed is saved with every
checkpoint. A checkpoint also holds the state of every random generator (Dropout's, the
DataGenerators' shuffling), so a run resumed from it continues exactly as the original did.

Here a digit classifier trains for one epoch (checkpointing at its end) and then one more.
A new session loads the first checkpoint (`loadpath`) and trains the second epoch again:
its weights come out identical to the uninterrupted run's.
Run: python examples/misc/reproducibility.py
"""

import deeptrain

deeptrain.util.misc.append_examples_dir_to_sys_path()

import numpy as np

from deeptrain.callbacks import RandomSeedSetter, set_seeds
from utils import CL_CONFIGS as C
from utils import init_session, make_classifier

set_seeds(0)  # the model's initial weights, Dropout and shuffling: all from seed 0
C["traingen"].update(
    epochs=1,
    iter_verbosity=0,
    unique_checkpoint_freq={"epoch": 1},  # a checkpoint after every epoch's validation
    callbacks=[RandomSeedSetter(seed=0, freq={"train:epoch": 1})],
)
tg = init_session(C, make_classifier)
tg.train()
checkpoint = tg.get_last_log("checkpoint")  # the checkpoint taken after epoch 1
print(f"checkpoint after epoch 1: {checkpoint.name}")

tg.epochs = 2  # continue the same session for one more epoch
tg.train()
uninterrupted = tg.model.get_weights()
print(f"uninterrupted run: {tg.epoch} epochs, val accuracy {tg.val_history['accuracy'][-1]:.4f}")
tg.destroy(confirm=True)

# A new session, from the checkpoint ########################################
C["traingen"].update(
    epochs=2,
    loadpath=checkpoint,
    continue_run=False,  # a second run beside the first, to compare them (default: continue)
    callbacks=[RandomSeedSetter(seed=0, freq={"train:epoch": 1})],  # its seed is loaded
)
tg = init_session(C, make_classifier)
print(f"resumed at epoch {tg.epoch}, seed setter at seed {tg.callbacks.objects[0].seed}")
tg.train()
resumed = tg.model.get_weights()
print(f"resumed run: {tg.epoch} epochs, val accuracy {tg.val_history['accuracy'][-1]:.4f}")

same = all(np.array_equal(a, b) for a, b in zip(uninterrupted, resumed, strict=True))
print(f"resumed weights identical to the uninterrupted run's: {same}")
