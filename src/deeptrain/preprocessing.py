"""DeepTrain 0.6's import path: the dataset builders live in
:mod:`deeptrain.data.builders`."""

from .data.builders import *  # noqa: F401,F403
from .data.builders import __all__  # noqa: F401
