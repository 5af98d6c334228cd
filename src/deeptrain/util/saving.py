"""DeepTrain 0.6's ``deeptrain.util.saving``: saving and loading, as functions of the
TrainGenerator (``self``), each calling the TrainGenerator method of the same name.

Checkpoints are directories of JSON, ``.npz`` and Keras' ``.weights.h5``
(:mod:`deeptrain.saving`); the optimizer's state is in the weights file. 0.6's pickled
``*__state.h5`` files are not loaded: convert them with :func:`deeptrain.migrate.migrate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._legacy import not_kept

__all__ = ["save", "load", "checkpoint", "_save_best_model", "_save_history_fig"]

_OPTIMIZER = (
    "the optimizer's variables are saved and loaded with the model's weights "
    "(model.weights.h5 in each checkpoint); optimizer_save_configs / "
    "optimizer_load_configs select them by name"
)


def save(self: Any, savepath: str | Path | None = None) -> Path:
    """:meth:`TrainGenerator.save`."""
    return self.save(savepath)


def load(self: Any, filepath: str | Path | None = None, passed_args: Any = None) -> Path:
    """:meth:`TrainGenerator.load`."""
    return self.load(filepath, passed_args)


def checkpoint(self: Any, forced: bool = False, overwrite: bool | None = None) -> Path | None:
    """:meth:`TrainGenerator.checkpoint`."""
    return self.checkpoint(forced=forced, overwrite=overwrite)


def _save_best_model(self: Any, del_previous_best: bool | None = None) -> Path | None:
    """Save the best model now (to ``best_models_dir``); ``del_previous_best`` overrides
    ``max_one_best_save`` for this save."""
    return self._save_best_model(del_previous_best)


def _save_history_fig(self: Any, savepath: str | Path | None = None) -> Any:
    """Draw the history figure and save it (``<logdir>/history.png`` or ``savepath``)."""
    return self.plot_history(savepath=savepath)


_get_optimizer_state = not_kept(__name__, "_get_optimizer_state", _OPTIMIZER)
_load_optimizer_state = not_kept(__name__, "_load_optimizer_state", _OPTIMIZER)
