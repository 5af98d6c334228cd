"""Callbacks: functions keyed by stage, ``TraingenCallback`` objects, and the built-ins.

Stages, in the order they fire during a run::

    'train_start'  when ``tg.train()`` starts, before the first iteration
    'train:iter'   after every train iteration (window)
    'train:batch'  after the last iteration of a batch
    'train:epoch'  after the last batch of an epoch
    'val:iter', 'val:batch', 'val:epoch'   the same during validation
    'val_end'      after validation's bookkeeping (metrics, history figure, health check);
                   ('val_end', 'train:epoch') when the validation directly follows an epoch
                   end. The best model and the checkpoint of that moment are saved right
                   after, so they include what the callbacks changed.
    'save', 'load' inside checkpoint saving (before writing) and at the end of loading
    'train_end'    when ``tg.train()`` returns or raises (an interrupt, an error)

Function callbacks are given as ``{stage: fn | [fns]}`` with ``fn(tg)``: a string key fires
on every stage that contains it (``'train:epoch'`` also at ``('val_end', 'train:epoch')``), a
tuple key only on that exact compound stage. Objects override ``on_<stage>_end(stage)`` /
``on_save(stage)`` / ``on_load(stage)`` / ``on_train_start(stage)`` / ``on_train_end(stage)``.
Callbacks run in the order given.

Built-ins:

* :class:`RandomSeedSetter` (and :func:`set_seeds`): re-seed at a stage frequency;
* :class:`VizAE2D`: autoencoder inputs vs reconstructions, as PNG;
* :class:`TraingenLogger`: weights, outputs and gradients into ``.h5`` / ``.npz`` files;
* ``fn(tg)`` figure callbacks: :func:`binary_preds_per_iteration_cb`,
  :func:`binary_preds_distribution_cb`, :func:`infer_train_hist_cb`, and the factory
  :func:`make_layer_hists_cb`;
* :class:`PeriodicCallback`: base class for "every n-th firing of a stage";
* :class:`TensorBoardLogger`, :class:`MLflowLogger`: the run in TensorBoard and MLflow
  (from :mod:`deeptrain.tracking`).

Keras callbacks (``keras.callbacks.EarlyStopping()``, ...) are accepted as they are, alone or
in the list: they get Keras' hooks, and their counters go into checkpoints (see
:mod:`deeptrain.callbacks.keras_callbacks`).
"""

from .base import STAGES, CallbackList, PeriodicCallback, TraingenCallback
from .figures import (
    VizAE2D,
    binary_preds_distribution_cb,
    binary_preds_per_iteration_cb,
    figure_path,
    infer_train_hist_cb,
    make_layer_hists_cb,
)
from .keras_callbacks import KerasCallback
from .logger import TraingenLogger, read_log
from .seeds import RandomSeedSetter, set_seeds

__all__ = [
    "STAGES",
    "CallbackList",
    "TraingenCallback",
    "PeriodicCallback",
    "KerasCallback",
    "RandomSeedSetter",
    "set_seeds",
    "VizAE2D",
    "TraingenLogger",
    "read_log",
    "binary_preds_per_iteration_cb",
    "binary_preds_distribution_cb",
    "infer_train_hist_cb",
    "make_layer_hists_cb",
    "figure_path",
    "TensorBoardLogger",
    "MLflowLogger",
]


def __getattr__(name: str):  # the loggers live in deeptrain.tracking (which imports .base)
    if name in ("TensorBoardLogger", "MLflowLogger"):
        from .. import tracking

        return getattr(tracking, name)
    raise AttributeError(f"module 'deeptrain.callbacks' has no attribute {name!r}")
