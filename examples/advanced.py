"""Multi-phase training of an autoencoder, with everything it leaves behind: logs,
checkpoints, the best model, the history figure, the report and reconstructions.

The shared convolutional autoencoder (examples/utils.py) learns to reconstruct the digit
images (inputs are their own labels, `input_as_labels=True`). Validation runs in predict
mode (`eval_fn='predict'`): the predictions of the whole validation set are kept and the key
metric, mean absolute error ('mae'), is computed from them with NumPy; the lowest so far
saves the best model. Every 2 epochs: validation, the history figure, and a checkpoint.
After every validation, VizAE2D draws inputs vs reconstructions. The model's name encodes
hyperparameters (`model_name_configs`): M0__model-idp.5-pdp.4-nadam__min.<best mae>.

Phase 1 trains with the MSE loss. Phase 2 recompiles the model with another loss (MAE) and
raises `epochs`; `tg.train()` continues where it stopped, and the histories simply go on.
Phase 3 starts over as a new session would: the TrainGenerator is destroyed, the model
rebuilt with another pre-output dropout (.7), and a new TrainGenerator resumes from the
best model's checkpoint (`loadpath=`): weights, optimizer, counters, histories and the data's
position come back; it gets a new model number (M1) and log directory, and trains on.

The script ends by printing where each output went. It takes well under a minute on two CPU
cores (about 25 s), building the data included.
Run: python examples/advanced.py
"""

import deeptrain

deeptrain.util.misc.append_examples_dir_to_sys_path()

from deeptrain.callbacks import VizAE2D, set_seeds
from utils import AE_CONFIGS as C
from utils import FAST, init_session, make_autoencoder

# epochs to reach by the end of each phase; the fast mode (tests) uses the small dataset
PHASE_EPOCHS = (2, 4, 6) if FAST else (6, 12, 16)
set_seeds(0)

# Phase 1 ##############################################################################
C["traingen"].update(
    epochs=PHASE_EPOCHS[0],
    key_metric="mae",  # computed with NumPy from the validation's predictions
    eval_fn="predict",  # (already so in AE_CONFIGS)
    val_freq={"epoch": 2},  # validate every 2 epochs,
    plot_history_freq={"epoch": 2},  # draw <logdir>/history.png after it,
    unique_checkpoint_freq={"epoch": 2},  # and write a checkpoint (<logdir>/checkpoints/)
    # name: M<num>__model-idp<input_dropout>-pdp<preout_dropout>-<optimizer>__min<best>
    model_name_configs={
        "input_dropout": "idp",
        "preout_dropout": "pdp",
        "optimizer": "",
        "best_key_metric": None,
    },
    callbacks=[VizAE2D(n_images=8, save_images=True)],  # <logdir>/figures/VizAE2D__*.png
)
# (Checkpoints hold the optimizer's state by default; DeepTrain 0.6's example had to take
# 'optimizer_state' out of `saveskip_list` for that.)
tg = init_session(C, make_autoencoder)
print(f"Phase 1: {tg.model_name}, epochs 0 -> {tg.epochs}, loss {tg.model.loss}")
tg.train()
first_logdir = tg.logdir

# Phase 2: another loss, more epochs, same session ####################################
tg.model.compile("nadam", "mae")  # a new optimizer (nadam) and loss (MAE)
tg.epochs = PHASE_EPOCHS[1]
print(f"Phase 2: epochs {tg.epoch} -> {tg.epochs}, loss {tg.model.loss}")
tg.train()

# Phase 3: new session from the best model's checkpoint ###############################
best = tg.get_last_log("checkpoint", best=True)  # <best_models_dir>/<model_name>/
print(f"Phase 2 ended at epoch {tg.epoch}; best mae {tg.best_key_metric:.4f} at {best.name}")
tg.destroy(confirm=True)

C["model"].update(preout_dropout=0.7, loss="mae")  # C['traingen']['model_configs'] too
# Arguments passed explicitly win over the checkpoint's values ('{auto}' in loadskip_list):
# here epochs and model_configs; counters, histories, the best score, the optimizer's and
# the data's state come from the checkpoint (and the weights: no model.load_weights needed).
C["traingen"].update(
    epochs=PHASE_EPOCHS[2],
    loadpath=best,  # a checkpoint directory (or a log directory: its newest)
    new_model_num=False,  # the lowest free model number (a new one if M0 is taken)
    callbacks=[VizAE2D(n_images=8, save_images=True)],  # callbacks are made anew
)
tg = init_session(C, make_autoencoder)
print(
    f"Phase 3: {tg.model_name} resumed at epoch {tg.epoch} "
    f"({tg._batches_fit} batches fit, {tg._times_validated} validations, best mae "
    f"{tg.best_key_metric:.4f}), epochs {tg.epoch} -> {tg.epochs}, loss {tg.model.loss}"
)
tg.train()
report = tg.save_report()  # the one-image report of the train state, <logdir>/report.png

# Where everything went ################################################################
print(f"\nval mae per validation: {', '.join(f'{v:.4f}' for v in tg.val_history['mae'])}")
print(
    f"final: epoch {tg.epoch}, {tg._batches_fit} batches fit, {tg._times_validated} "
    f"validations, best mae {tg.best_key_metric:.4f}"
)
outputs = {
    "log dir (phases 1-2)": first_logdir,
    "log dir (phase 3)": tg.logdir,
    "checkpoints dir": tg.logdir / "checkpoints",
    "latest checkpoint": tg.get_last_log("checkpoint"),
    "best model dir": tg.get_last_log("checkpoint", best=True),
    "history PNG": tg.logdir / "history.png",
    "report PNG": report,
    "metrics.jsonl": tg.logdir / "metrics.jsonl",
    "init_state.json": tg.get_last_log("init_state"),
}
for logdir in (first_logdir, tg.logdir):  # one figure per validation, oldest first
    for png in sorted(
        (logdir / "figures").glob("VizAE2D__*.png"), key=lambda p: int(p.stem.rsplit("_v", 1)[1])
    ):
        outputs[f"reconstructions {png.stem.rsplit('_', 1)[1]}"] = png
print("\nOutputs:")
for what, path in outputs.items():
    print(f"  {what + ':':<28} {path}")
