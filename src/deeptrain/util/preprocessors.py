"""DeepTrain 0.6's import path: the preprocessors live in
:mod:`deeptrain.data.preprocessors`."""

from ..data.preprocessors import *  # noqa: F401,F403
from ..data.preprocessors import __all__  # noqa: F401
