"""Model health: large, dead and NaN/Inf weights, found after every validation or on demand.

With `check_model_health=True` (the default) the TrainGenerator runs `tg.check_health()`
after every validation: it reads the weights once and logs a warning per weight tensor with
more than `large_notify_above_frac` of its values above `large_threshold` (3) in absolute
value, more than `dead_notify_above_frac` below `dead_threshold` (1e-7), or any NaN/Inf. It
returns a HealthReport (`.large`, `.dead`, `.nan`: {weight path: what was found}, `.ok`),
kept as `tg.last_health`.

Case 1: the digit classifier with a huge learning rate (Adam(10)) trains for an epoch: its
weights blow up, and the check after validation reports them as large.
Case 2: a healthy classifier, then weights planted by hand: a dead (zeroed) half of the
first convolution's kernel, NaN in the output layer's bias, and one Inf. `tg.check_health()`
finds each of them.
Run: python examples/misc/model_health.py
"""

import deeptrain

deeptrain.util.misc.append_examples_dir_to_sys_path()

import numpy as np
from keras.optimizers import Adam

from deeptrain.callbacks import set_seeds
from utils import cl_configs, init_session, make_classifier

set_seeds(0)


def show(report, title):
    print(f"{title}: ok={report.ok}")
    for kind in ("large", "dead"):
        for path, frac in getattr(report, kind).items():
            print(f"  {kind:<5} {100 * frac:5.1f}% of {path}")
    for path, (n_nan, n_inf) in report.nan.items():
        print(f"  nan   {n_nan} NaN, {n_inf} Inf in {path}")


# Case 1: exploding weights ############################################################
C = cl_configs()
C["model"]["optimizer"] = Adam(10.0)
del C["model"]["lr"]  # (make_classifier would set the configs' lr=4e-4 on the optimizer)
C["traingen"].update(epochs=1, iter_verbosity=0)
tg = init_session(C, make_classifier)
tg.train()  # the warnings appear after the validation
print(f"val loss with Adam(10): {tg.val_history['loss'][-1]:.4g}")
show(tg.last_health, "Case 1, tg.last_health after validation")
tg.destroy(confirm=True)

# Case 2: planted dead, NaN and Inf weights ############################################
C = cl_configs()
C["traingen"].update(epochs=1, iter_verbosity=0)
tg = init_session(C, make_classifier)
tg.train()
show(tg.last_health, "Case 2, after a normal epoch")

conv = next(layer for layer in tg.model.layers if "conv" in layer.name)
out = tg.model.layers[-1]
kernel, bias = conv.get_weights()
kernel[..., : kernel.shape[-1] // 2] = 0  # half of the output channels: dead
conv.set_weights([kernel, bias])
kernel, bias = out.get_weights()
bias[:3] = np.nan
kernel[0, 0] = np.inf
out.set_weights([kernel, bias])

report = tg.check_health(notify_detected_only=False)  # also say what was *not* found
show(report, "Case 2, tg.check_health() after planting")
