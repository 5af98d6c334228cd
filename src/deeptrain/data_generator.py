"""DeepTrain 0.6's import path: ``DataGenerator`` lives in
:mod:`deeptrain.data.generator`."""

from .data.generator import *  # noqa: F401,F403
from .data.generator import __all__  # noqa: F401
