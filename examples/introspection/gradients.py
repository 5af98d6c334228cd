"""Gradients over a whole dataset: choosing a gradient-clipping threshold.

`tg.gradient_norm_over_dataset()` runs once over the training data (without training, and
putting the DataGenerator back where it was) and keeps the L2 norm of every gradient tensor
(one per weight: each conv kernel, bias, ...) at every iteration. Keras' `clipnorm` clips
each tensor's gradient to that norm, so a value somewhat above the typical norm, here 1.5x
the median, leaves ordinary gradients alone and tames the extreme ones.

The shared autoencoder is recompiled with Adam(clipnorm=1.5 * median) and trains for an
epoch; then `tg.gradient_sum_over_dataset()` sums the gradient tensors themselves (shapes
kept) over the data: divided by the iterations it is the mean gradient of each weight, the
basis for choosing a `clipvalue` instead. Both draw histograms, saved in the run's
figures/ folder (gradient_norms.png, gradient_sums.png).
Run: python examples/introspection/gradients.py
"""

import deeptrain

deeptrain.util.misc.append_examples_dir_to_sys_path()

import numpy as np
from keras.optimizers import Adam

from utils import AE_CONFIGS as C
from utils import init_session, make_autoencoder

C["traingen"].update(epochs=1, iter_verbosity=0)
tg = init_session(C, make_autoencoder)

# Gradient norms over the dataset ######################################################
gn = tg.gradient_norm_over_dataset()  # median norm per iteration: gn.stat
print(
    f"gradient norms: {gn.norms.shape[0]} iterations x {gn.norms.shape[1]} tensors, "
    f"over {gn.batches_processed} batches"
)
print(
    f"per-tensor L2 norms: median {np.median(gn.norms):.4g}, mean {gn.norms.mean():.4g}, "
    f"max {gn.norms.max():.4g}"
)
largest = np.argsort(gn.norms.mean(0))[::-1][:3]
print(
    "largest on average: "
    + ", ".join(f"{gn.names[j]} ({gn.norms[:, j].mean():.3g})" for j in largest)
)

# Recompile with clipnorm, train ######################################################
clipnorm = 1.5 * float(np.median(gn.norms))
print(
    f"clipnorm = 1.5 x median = {clipnorm:.4g} ({np.mean(gn.norms > clipnorm):.0%} of the "
    "norms seen are above it)"
)
tg.model.compile(Adam(clipnorm=clipnorm), tg.model.loss)
tg.train()
print(
    f"trained {tg.epoch} epoch with Adam(clipnorm={clipnorm:.4g}); "
    f"val loss {tg.val_history['loss'][-1]:.4f}"
)

# Gradient sums over the dataset #######################################################
gs = tg.gradient_sum_over_dataset(plot_kw={"h": 2})  # taller figure: many weights
print(f"gradient sums over {gs.iters_processed} iterations, {len(gs.sums)} tensors:")
for name, total in gs.sums.items():
    mean = total / gs.iters_processed
    print(f"  {name:<38} shape {str(total.shape):<16} mean |grad| {np.abs(mean).mean():.3g}")
print(f"figures: {gn.savepath}, {gs.savepath}")
