"""Experiment tracking: the run in TensorBoard and MLflow, as callbacks.

``callbacks=[TensorBoardLogger(), MLflowLogger()]``: train metrics (per batch in
TensorBoard, every 50th batch in MLflow, whose SQL store costs more per record), validation
metrics, the learning rate, the history figure and the report, the settings; recorded off
the train thread, and continued exactly by a resumed run (the state of each logger is in
the checkpoints). See :mod:`.base` for what is recorded when.

``tensorboardX`` (``deeptrain[tensorboard]``) and ``mlflow`` (``deeptrain[mlflow]``) are
imported only when a logger starts writing; importing this package imports neither.
"""

from .base import TrackingLogger
from .mlflow_logger import MLflowLogger, default_tracking_uri
from .tensorboard_logger import TensorBoardLogger

__all__ = ["TrackingLogger", "TensorBoardLogger", "MLflowLogger", "default_tracking_uri"]
