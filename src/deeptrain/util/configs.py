"""DeepTrain 0.6's ``deeptrain.util.configs``: the defaults a TrainGenerator or
DataGenerator takes for what it is not given, under 0.6's names.

Every name here *is* the live default object (not a copy), so editing it changes the
defaults of TrainGenerators and DataGenerators built afterwards, as 0.6's docs describe::

    from deeptrain.util import configs
    configs._TRAINGEN_CFG['max_checkpoints'] = 2
    configs.MODEL_NAME_CFG['batch_size'] = 'BS'
    configs.PLOT_CFG['0']['ylims'] = (0, 2)

Arguments passed explicitly always win. The sources: ``deeptrain.training.configs``
(``TRAINGEN_DEFAULTS``), ``deeptrain.data.generator`` (``DATAGEN_KWARGS``),
``deeptrain.training.plotting`` (``PLOT_CFG``), ``deeptrain.saving.report``
(``REPORT_CFG``), ``deeptrain.saving.checkpointer`` (``MODEL_SAVE_KW``,
``MODEL_SAVE_WEIGHTS_KW``) and ``deeptrain.saving.naming`` (``NAME_PROCESS_KEY_FN``).
"""

from __future__ import annotations

from ..data.generator import DATAGEN_KWARGS
from ..saving.checkpointer import MODEL_SAVE_KW, MODEL_SAVE_WEIGHTS_KW
from ..saving.naming import name_process_key_fn
from ..saving.report import REPORT_CFG
from ..training.configs import TRAINGEN_DEFAULTS
from ..training.plotting import PLOT_CFG

__all__ = [
    "PLOT_CFG",
    "MODEL_NAME_CFG",
    "REPORT_CFG",
    "TRAINGEN_SAVESKIP_LIST",
    "TRAINGEN_LOADSKIP_LIST",
    "DATAGEN_SAVESKIP_LIST",
    "DATAGEN_LOADSKIP_LIST",
    "MODEL_SAVE_KW",
    "MODEL_SAVE_WEIGHTS_KW",
    "METRIC_PRINTSKIP_CFG",
    "METRIC_TO_ALIAS",
    "ALIAS_TO_METRIC",
    "NAME_PROCESS_KEY_FN",
    "_TRAINGEN_CFG",
    "_DATAGEN_CFG",
]

_TRAINGEN_CFG = TRAINGEN_DEFAULTS
_DATAGEN_CFG = DATAGEN_KWARGS

MODEL_NAME_CFG = TRAINGEN_DEFAULTS["model_name_configs"]
TRAINGEN_SAVESKIP_LIST = TRAINGEN_DEFAULTS["saveskip_list"]
TRAINGEN_LOADSKIP_LIST = TRAINGEN_DEFAULTS["loadskip_list"]
DATAGEN_SAVESKIP_LIST = DATAGEN_KWARGS["saveskip_list"]
DATAGEN_LOADSKIP_LIST = DATAGEN_KWARGS["loadskip_list"]
METRIC_PRINTSKIP_CFG = TRAINGEN_DEFAULTS["metric_printskip_configs"]
METRIC_TO_ALIAS = TRAINGEN_DEFAULTS["metric_to_alias"]
ALIAS_TO_METRIC = TRAINGEN_DEFAULTS["alias_to_metric"]
NAME_PROCESS_KEY_FN = name_process_key_fn
