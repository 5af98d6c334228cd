"""Automatic model names: hyperparameters in the name of every log directory and best model.

`model_name_configs` maps names to aliases, in the order they appear in the name
`M<model_num>__<model_base_name>-<alias><value>-...`. A name is looked up in
`model_configs` (the model's hyperparameters) first, then among the TrainGenerator's
attributes; a dotted name reaches into an attribute's object ('datagen.batch_size'). An
alias '' writes the value alone (-Adam); names with no value are left out. 'best_key_metric'
appends the best validation score so far, after its alias, once there is one. An alias is
only text: '__max' here (as in DeepTrain 0.6's example) though the autoencoder's loss is
minimised; the default alias None writes '__max' or '__min' as `max_is_best` says.

Here the shared autoencoder is named M<n>__AE-BS128-filt6_12_2_6_12-Adam-1e-4 when it is
made, and gets its best score appended after training. (DeepTrain 0.6 silently left dotted
names out, so its BS part was missing; they are encoded now. Its `get_last_log('best')` was
an invalid name that raised by accident; now an invalid name raises a ValueError that
lists the valid ones, shown at the end.)
Run: python examples/misc/model_auto_naming.py
"""

import deeptrain

deeptrain.util.misc.append_examples_dir_to_sys_path()

from utils import AE_CONFIGS as C
from utils import init_session, make_autoencoder

name_cfg = {
    "datagen.batch_size": "BS",  # tg.datagen.batch_size
    "filters": "filt",  # model_configs['filters'], a list: 6_12_2_6_12
    "optimizer": "",  # model_configs['optimizer']: the value alone
    "lr": "",  # model_configs['lr'] = 1e-4 -> '1e-4'
    "best_key_metric": "__max",
}  # the best score, once there is one
C["traingen"].update(epochs=1, iter_verbosity=0, model_base_name="AE", model_name_configs=name_cfg)
C["model"].update(optimizer="Adam", lr=1e-4)

tg = init_session(C, make_autoencoder)
print(f"model name before training: {tg.model_name}")
tg.train()
print(f"model name after training:  {tg.model_name}")

# The log directory is named when the TrainGenerator is made; checkpoints and best models
# carry the name of their moment, score included.
print(f"log directory:    {tg.logdir}")
print(f"latest checkpoint: {tg.get_last_log('checkpoint').name}")
print(f"best model:        {tg.get_last_log('checkpoint', best=True)}")
for name in ("report", "history", "weights", "state"):
    print(f"get_last_log({name!r}, best=True): {tg.get_last_log(name, best=True)}")

try:
    tg.get_last_log("best")
except ValueError as e:
    print(f"get_last_log('best') -> ValueError: {e}")
