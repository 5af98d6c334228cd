"""Timeseries binary classification on real data with stateful LSTMs fed window by window.

Data: ItalyPowerDemand (UCR archive, shipped by sktime): 1096 days of Italian electrical power
demand, 24 hourly values per day; the task is to tell days from April to September (label
1) from days from October to March (label 0). Files hold batches of 64 days, (64, 24, 1).

TimeseriesPreprocessor serves each batch as 3 consecutive windows of 8 hours, (64, 8, 1),
to two stateful LSTMs, which carry their state from window to window; `reset_statefuls`
resets it after every batch. Validation runs in predict mode (`eval_fn='predict'`): the
predictions of the whole validation set are collected and F1 (the key metric that picks the
best model), TNR and TPR computed from them with NumPy. `class_weights` weight each class's
samples in the loss, here to balance the classes' counts in the training data.

Writes samples.png (a few days of each class) and the history figure to the run's logdir,
and, after every validation, the figures of TS_CONFIGS' callbacks to its figures/ folder:
labels vs predictions per batch and window, all predictions against the threshold, and the
output layer's values in inference vs train mode.
Run: python examples/misc/timeseries.py
"""

import deeptrain

deeptrain.util.misc.append_examples_dir_to_sys_path()

import h5py
import matplotlib
import numpy as np

from utils import TS_CONFIGS as C
from utils import dataset, init_session, make_timeseries_classifier

matplotlib.use("Agg")  # figures go to files
import matplotlib.pyplot as plt  # noqa: E402

# Configure windows ##################################################################
batch_size, timesteps = 64, 24
window_size = 8  # 24 / 8 = 3 windows per batch
C["datagen"]["preprocessor"] = "timeseries"
C["val_datagen"]["preprocessor"] = "timeseries"
C["datagen"]["preprocessor_configs"] = {"window_size": window_size}
C["val_datagen"]["preprocessor_configs"] = {"window_size": window_size}
C["model"]["batch_shape"] = (batch_size, window_size, 1)  # the model sees one window

# Class weights inversely proportional to class counts ("balanced") #################
with h5py.File(dataset("timeseries") / "train" / "labels.h5", "r") as f:
    labels = np.concatenate([f[k][:] for k in f]).ravel()
counts = np.bincount(labels.astype(int), minlength=2)
class_weights = {c: round(float(len(labels) / (2 * n)), 3) for c, n in enumerate(counts)}
print(
    f"train labels: {counts[0]} of class 0, {counts[1]} of class 1; class_weights={class_weights}"
)

# eval_fn='predict': metrics over the whole validation set, computed with NumPy
# key_metric='f1_score': picks the best model; val_metrics: what validation reports
# plot_first_pane_max_vals=1: the loss alone in the history figure's first pane
C["traingen"].update(
    dict(
        eval_fn="predict",
        key_metric="f1_score",
        val_metrics=("loss", "tnr", "tpr"),
        plot_first_pane_max_vals=1,
        class_weights=class_weights,
        reset_statefuls=True,
    )
)
tg = init_session(C, make_timeseries_classifier)

# A look at the data ###################################################################
vdg = tg.val_datagen
x = vdg.superbatch[vdg.set_nums_original[0]]
y = vdg.all_labels[vdg.set_nums_original[0]].ravel()
fig, axes = plt.subplots(1, 2, figsize=(10, 3), sharey=True)
for label, ax in enumerate(axes):
    ax.plot(x[y == label][:8, :, 0].T, alpha=0.7)
    ax.set_title(["October to March", "April to September"][label])
    for edge in range(window_size, timesteps, window_size):
        ax.axvline(edge - 0.5, color="k", linestyle=":")  # window boundaries
    ax.set_xlabel("hour")
fig.savefig(tg.logdir / "samples.png", dpi=80, bbox_inches="tight")
plt.close(fig)

# Train ################################################################################
tg.train()
print(
    f"windows per batch: {tg.datagen.slices_per_batch}; "
    f"iterations: {tg._fit_iters} over {tg._batches_fit} batches"
)
for name, values in tg.val_history.items():
    print(f"val {name}: {', '.join(f'{v:.3f}' for v in values)}")
print(f"best f1_score: {tg.best_key_metric:.3f}; logdir: {tg.logdir}")
