"""DeepTrain 0.6's import path: ``TrainGenerator`` lives in
:mod:`deeptrain.training.generator`."""

from .training.generator import *  # noqa: F401,F403
from .training.generator import __all__  # noqa: F401
