"""DeepTrain 0.6's import path: ``DataLoader`` lives in
:mod:`deeptrain.data.loader`."""

from ..data.loader import *  # noqa: F401,F403
from ..data.loader import __all__  # noqa: F401
