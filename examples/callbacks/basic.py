"""Writing callbacks: a function keyed by stage, and a TraingenCallback object.

Callbacks run at stages of the train loop: 'train:iter', 'train:batch', 'train:epoch',
'val:iter', 'val:batch', 'val:epoch', 'val_end' (and the compound stage
('val_end', 'train:epoch') for the validation that directly follows an epoch's end), plus
'save' and 'load' around checkpoints. Here a function prints how many batches were fit after
every epoch's validation, and an object saves a histogram of the first layer's kernel after
every validation (weights_v<n>.png in the run's logdir), while a digit classifier trains.
Run: python examples/callbacks/basic.py
"""

import deeptrain

deeptrain.util.misc.append_examples_dir_to_sys_path()

from matplotlib.figure import Figure

from deeptrain.callbacks import TraingenCallback
from utils import CL_CONFIGS as C
from utils import init_session, make_classifier


# A function callback takes the TrainGenerator as its only argument.
def print_batches_fit(tg):
    print(f"BATCHES FIT: {tg._batches_fit}")


# The dict key says *when* it runs. A string key fires on every stage that contains it
# ('train:epoch' at the epoch's end, and again at ('val_end', 'train:epoch')); a tuple key
# only on that exact compound stage: here, once per epoch, after its validation.
pbf = {("val_end", "train:epoch"): print_batches_fit}


# A callback object overrides the methods of the stages it wants (on_train_epoch_end,
# on_val_end, on_save, ...); `self.tg` is the TrainGenerator it belongs to.
class VizWeights(TraingenCallback):
    def on_val_end(self, stage=None):
        kernel = self.tg.model.layers[1].get_weights()[0]
        fig = Figure(figsize=(6, 3))
        ax = fig.subplots()
        ax.hist(kernel.ravel(), bins=50)
        ax.set_title(
            f"{self.tg.model.layers[1].name} kernel after validation {self.tg._times_validated}"
        )
        fig.savefig(self.tg.logdir / f"weights_v{self.tg._times_validated}.png", dpi=60)


C["traingen"]["epochs"] = 2
C["traingen"]["iter_verbosity"] = 0
C["traingen"]["callbacks"] = [pbf, VizWeights()]
tg = init_session(C, make_classifier)
tg.train()
