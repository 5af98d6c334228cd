"""What checkpoints, callbacks and introspection may use of a TrainGenerator.

:class:`Traingen` is that contract as a :class:`typing.Protocol`: the modules of
:mod:`deeptrain.saving`, :mod:`deeptrain.callbacks` and :mod:`deeptrain.introspection` type
their ``tg`` with it, so they reach a TrainGenerator only through what is listed here, and a
type checker verifies that :class:`~deeptrain.TrainGenerator` provides it. Settings are
documented on :class:`~deeptrain.TrainGenerator`; counters and histories are in ``state``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from ..callbacks.base import CallbackList
    from ..data.generator import DataGenerator
    from ..distribute.base import Distribution
    from .state import TrainState
    from .validation import PredictCache

__all__ = ["Traingen"]


class Traingen(Protocol):
    """The part of a TrainGenerator that checkpoints, callbacks and introspection use."""

    # -- what it trains, on what, and where it stands
    model: Any  #: the compiled Keras model; :meth:`sync_model` before reading it
    datagen: DataGenerator  #: the training data
    val_datagen: DataGenerator  #: the validation data
    state: TrainState  #: every counter, flag and history of the run
    callbacks: CallbackList  #: the callbacks, dispatched by stage
    distribution: Distribution  #: the devices and processes it trains on (one, by default)

    # -- how long, how often
    epochs: int  #: train while ``epoch < epochs``
    val_metrics: list[str]  #: metrics reported by validation
    unique_checkpoint_freq: dict[str, int] | None  #: when a kept checkpoint is written
    temp_checkpoint_freq: dict[str, int] | None  #: when a temp checkpoint is written
    last_validation: dict[str, Any]  #: the metrics of the last validation

    # -- names and places
    logs_dir: str | Path | None  #: the parent of log directories
    logdir: Path | None  #: this run's log directory (None: nothing is written)
    best_models_dir: str | Path | None  #: where best models go (None: not saved)
    model_num: int  #: the ``M<num>`` of the model name
    model_name: str  #: the model name, ``M<num>__<base><encoded settings>``
    best_subset_nums: list[str | None] | None  #: the best validation subset of the last validation

    # -- settings read by checkpoints and figures (see TrainGenerator)
    input_as_labels: bool
    reset_statefuls: bool
    max_is_best: bool
    saveskip_list: list[str]
    loadskip_list: list[str]
    optimizer_save_configs: dict[str, list[str]] | None
    optimizer_load_configs: dict[str, list[str]] | None
    model_save_kw: dict[str, Any] | None
    model_save_weights_kw: dict[str, Any] | None
    model_configs: dict[str, Any] | None
    report_configs: dict[str, Any] | None
    report_fontpath: str | Path | None
    max_one_best_save: bool
    max_checkpoints: int
    logs_use_full_model_name: bool
    checkpoints_overwrite_duplicates: bool
    checkpoint_async: bool
    restore_saved_paths: bool

    @property
    def passed_args(self) -> list[str]:
        """Names of the arguments passed to the constructor (``'{auto}'`` in
        ``loadskip_list``)."""
        ...

    @property
    def val_cache(self) -> PredictCache:
        """Predict mode: the labels, predictions and sample weights of the validation in
        progress (or just ended), one entry per batch."""
        ...

    def sync_model(self) -> None:
        """Make the model's variables current (JAX keeps them on the device while training)."""

    def variable_values(self, variables: Sequence[Any], fixed: bool = False) -> list[np.ndarray]:
        """Host copies of ``variables``' current values (on JAX, without ending the
        device state; ``fixed``: not written by the train step, read once per state)."""
        ...

    def build_optimizer(self) -> None:
        """Create the optimizer's variables if they are not yet (every process: under a
        distribution it is a collective)."""

    def ensure_consistent(self) -> None:
        """Raise if a cut (a second Ctrl-C, an error) left the state unfit to continue."""

    def check_logdir_owned(self) -> None:
        """Raise if another TrainGenerator took the log directory over."""

    def write_figure(self, name: str, path: Path) -> None:
        """Write the ``'history'`` or ``'report'`` figure to ``path``."""

    def drawn_figure(self, name: str) -> Path | None:
        """The ``'history'`` or ``'report'`` PNG drawn at this point of training, if any."""
        ...

    def save_report(self, savepath: str | Path | None = None) -> Path:
        """Draw the report (default: ``<logdir>/report.png``)."""
        ...

    def get_last_log(self, name: str, best: bool = False) -> Path | None:
        """The newest checkpoint (``'checkpoint'``) or weights file (``'weights'``)."""
        ...

    def get_data(self, val: bool = False) -> tuple[Any, Any, Any]:
        """The next ``(x, y, sample_weight)`` of the train (or validation) data."""
        ...
