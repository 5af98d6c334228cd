"""DeepTrain 0.6's import path: the threshold and subset searches live in
:mod:`deeptrain.training.search`."""

from ..training.search import *  # noqa: F401,F403
from ..training.search import __all__  # noqa: F401
