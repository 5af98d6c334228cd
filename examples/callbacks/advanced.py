"""Advanced callbacks: recording weights, outputs and gradients; figures drawn from them;
layer histograms; random seeds. (DeepTrain 0.6's examples/callbacks/mnist.py, on Keras 3.)

On the shared digit classifier (examples/utils.py), trained for a few epochs:

- TraingenLogger records the first Conv2D's kernel, its outputs and the loss gradients
  w.r.t. them on a fixed validation batch at the end of every epoch (`freq`), and saves each
  record to its own HDF5 file, <logdir>/logger/datalog_<n>.h5 (read back with `read_log`).
- OutputsHeatmap, a TraingenCallback written here, draws the recorded conv outputs of the
  first image as one heatmap per channel, after the validation of every second epoch.
- ConvWeightsHeatmap draws the second Conv2D's kernel, one box per output channel, with
  the colour scale of the first drawing kept, so that the figures compare.
- make_layer_hists_cb makes function callbacks drawing histograms of every layer's
  gradients (w.r.t. outputs and w.r.t. weights) and weights after each epoch's validation,
  and of the layers' outputs after every validation.
- RandomSeedSetter re-seeds Python, NumPy and the backend every second epoch.

Figures go to <logdir>/figures/ as <name>__e<epoch>_b<batches fit>_v<validations>.png.
Run: python examples/callbacks/advanced.py
"""

import deeptrain

deeptrain.util.misc.append_examples_dir_to_sys_path()

import numpy as np
from matplotlib.figure import Figure

from deeptrain.callbacks import (
    RandomSeedSetter,
    TraingenCallback,
    TraingenLogger,
    figure_path,
    make_layer_hists_cb,
    read_log,
)
from deeptrain.visuals import save_figure
from utils import CL_CONFIGS as C
from utils import FAST, init_session, make_classifier

# Recording ############################################################################
# Layer ids: a name, or the start of one ('conv2d' is the first Conv2D); '<key>-kw' are
# keyword arguments of the gathering (learning_phase=0: inference mode, Dropout off).
log_configs = {
    "weights": ["conv2d"],
    "outputs": "conv2d",
    "gradients": ("conv2d",),
    "outputs-kw": dict(learning_phase=0),
    "gradients-kw": dict(learning_phase=0, mode="outputs"),
}
# freq: log() then save(clear=True) at every epoch's end; savedir is set once the log
# directory is known (below)
tglogger = TraingenLogger(savedir="logger", configs=log_configs, freq={"train:epoch": 1})


def newest_log_file(logger):
    """The logger's newest file: ids count up from 0."""
    files = logger.savedir.glob(f"{logger.logname}*.{logger.fmt}")
    return max(files, key=lambda p: int(p.stem[len(logger.logname) :]))


# Figures from the records #############################################################
class OutputsHeatmap(TraingenCallback):
    """The first image's conv outputs, a heatmap per channel, every second epoch."""

    def on_val_end(self, stage=None):
        # ('val_end', 'train:epoch'): the validation that follows an epoch's end
        if stage == ("val_end", "train:epoch") and self.tg.epoch % 2 == 0:
            self.viz()

    def viz(self):
        logger = next(cb for cb in self.tg.callbacks.objects if isinstance(cb, TraingenLogger))
        path = newest_log_file(logger)
        outputs = read_log(path)["outputs"]  # {log id: {layer name: array}}
        ((layer, outs),) = outputs[max(outputs)].items()
        channels = outs[0].transpose(2, 0, 1)  # first image: (channels, width, height)
        fig = Figure(figsize=(8, 2.2 * -(-len(channels) // 4)))
        axes = fig.subplots(-(-len(channels) // 4), 4, squeeze=False)
        for ax, channel in zip(axes.flat, channels, strict=True):
            ax.imshow(channel, cmap="hot")
        for ax in axes.flat:
            ax.set_axis_off()
        fig.suptitle(f"{layer} outputs, epoch {self.tg.epoch} (from {path.name})")
        save_figure(fig, figure_path(self.tg, "outputs_heatmap"))


class ConvWeightsHeatmap(TraingenCallback):
    """The second Conv2D's kernel: a box per output channel, rows the 3x3 positions,
    columns the input channels; one colour scale for all epochs."""

    def __init__(self):
        self.norm = None

    def on_val_end(self, stage=None):
        if stage == ("val_end", "train:epoch"):
            self.viz()

    def viz(self):
        conv = [layer for layer in self.tg.model.layers if "conv" in layer.name][1]
        w = conv.get_weights()[0]  # (3, 3, in, out)
        w = w.reshape(-1, *w.shape[2:]).transpose(2, 0, 1)  # (out, 9, in)
        if self.norm is None:
            self.norm = float(np.abs(w).max())
        fig = Figure(figsize=(8, 2.2 * -(-len(w) // 8)))
        axes = fig.subplots(-(-len(w) // 8), 8, squeeze=False)
        for ax, box in zip(axes.flat, w, strict=True):
            ax.imshow(box, cmap="bwr", vmin=-self.norm, vmax=self.norm)
        for ax in axes.flat:
            ax.set_axis_off()
        fig.suptitle(f"{conv.name} kernel, epoch {self.tg.epoch}")
        save_figure(fig, figure_path(self.tg, "conv_weights_heatmap"))

    def state_dict(self):  # kept in checkpoints, so a resumed run keeps the scale
        return {"norm": self.norm}

    def load_state_dict(self, state):
        self.norm = state.get("norm")


# Histograms ###########################################################################
# A string key fires on every stage containing it ('val_end' also at ('val_end',
# 'train:epoch')); a tuple key on that exact compound stage: once per epoch, after its
# validation.
after_epoch = ("val_end", "train:epoch")
grad_hists = {
    after_epoch: [
        make_layer_hists_cb(mode="gradients:outputs"),
        make_layer_hists_cb(mode="gradients:weights"),
    ]
}
weight_hists = {after_epoch: make_layer_hists_cb(mode="weights")}
output_hists = {"val_end": make_layer_hists_cb(mode="outputs", configs={"title": "layer outputs"})}

# Random seeds: seed 1 after epoch 2, seed 2 after epoch 4, ...
seed_setter = RandomSeedSetter(seed=0, freq={"train:epoch": 2})

# Train ################################################################################
C["traingen"].update(
    epochs=2 if FAST else 4,
    iter_verbosity=0,
    callbacks=[
        seed_setter,
        tglogger,
        OutputsHeatmap(),
        ConvWeightsHeatmap(),
        grad_hists,
        weight_hists,
        output_hists,
    ],
)
tg = init_session(C, make_classifier)
tglogger.savedir = tg.logdir / "logger"
tg.train()

# What was made ########################################################################
print(f"\nval accuracy per epoch: {', '.join(f'{a:.3f}' for a in tg.val_history['accuracy'])}")
print(f"seed setter's last seed: {seed_setter.seed}")
print(f"figures in {tg.logdir / 'figures'}:")
for png in sorted((tg.logdir / "figures").glob("*.png"), key=lambda p: p.stat().st_mtime):
    print(f"  {png.name}")
path = newest_log_file(tglogger)
print(f"logger files: {sorted(p.name for p in tglogger.savedir.iterdir())}")
for key, records in read_log(path).items():
    for log_id, arrays in records.items():
        shapes = {name: value.shape for name, value in arrays.items()}
        print(f"  {path.name}: {key}[{log_id}] = {shapes}")
