"""DeepTrain 0.6's TrainGenerator attributes that now live in ``tg.state``.

Each is declared here by name (so type checkers, editors and the API reference see it) as a
:class:`StateAlias`: reading or writing ``tg._fit_iters`` reads or writes
``tg.state.fit_iters``. New code names the :class:`~deeptrain.training.state.TrainState`
field through ``tg.state``; these keep 0.6 code and configs working.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, overload

from .state import TrainState

__all__ = ["StateAlias", "TrainStateAliases"]

T = TypeVar("T")


class StateAlias(Generic[T]):
    """An attribute that reads and writes the field ``field`` of its owner's ``state``."""

    def __init__(self, field: str) -> None:
        self.field = field
        self.__doc__ = f"Alias of ``state.{field}``."

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> StateAlias[T]: ...
    @overload
    def __get__(self, obj: Any, owner: type | None = None) -> T: ...
    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(obj.state, self.field)

    def __set__(self, obj: Any, value: T) -> None:
        setattr(obj.state, self.field, value)

    def __repr__(self) -> str:
        return f"StateAlias({self.field!r})"


class TrainStateAliases:
    """The ``TrainState`` fields as attributes of their owner (DeepTrain 0.6's names)."""

    state: TrainState

    # the fields by their own names (``epoch`` and ``val_epoch`` are TrainGenerator properties)
    fit_iters = StateAlias[int]("fit_iters")
    batches_fit = StateAlias[int]("batches_fit")
    val_iters = StateAlias[int]("val_iters")
    batches_validated = StateAlias[int]("batches_validated")
    times_validated = StateAlias[int]("times_validated")
    train_loop_done = StateAlias[bool]("train_loop_done")
    val_loop_done = StateAlias[bool]("val_loop_done")
    history = StateAlias[dict[str, list]]("history")
    temp_history = StateAlias[dict[str, list]]("temp_history")
    epoch_sums = StateAlias[dict[str, list]]("epoch_sums")
    val_history = StateAlias[dict[str, list]]("val_history")
    val_temp_history = StateAlias[dict[str, list]]("val_temp_history")
    val_temp_sizes = StateAlias[list]("val_temp_sizes")
    key_metric_history = StateAlias[list]("key_metric_history")
    best_key_metric = StateAlias[float | None]("best_key_metric")
    #: binary threshold passed to predict-mode metrics (``state.predict_threshold``)
    predict_threshold = StateAlias[float]("predict_threshold")
    train_x_ticks = StateAlias[list]("train_x_ticks")
    train_val_x_ticks = StateAlias[list]("train_val_x_ticks")
    val_x_ticks = StateAlias[list]("val_x_ticks")
    val_train_x_ticks = StateAlias[list]("val_train_x_ticks")
    hist_vlines = StateAlias[list]("hist_vlines")
    val_hist_vlines = StateAlias[list]("val_hist_vlines")
    set_name_cache = StateAlias[list]("set_name_cache")
    val_set_name_cache = StateAlias[list]("val_set_name_cache")
    set_name = StateAlias[str | None]("set_name")
    val_set_name = StateAlias[str | None]("val_set_name")
    save_seq = StateAlias[int]("save_seq")
    checkpoint_due = StateAlias[str | None]("checkpoint_due")

    # DeepTrain 0.6's private spellings: the same descriptors
    _fit_iters = fit_iters
    _batches_fit = batches_fit
    _val_iters = val_iters
    _batches_validated = batches_validated
    _times_validated = times_validated
    _train_loop_done = train_loop_done
    _val_loop_done = val_loop_done
    _train_x_ticks = train_x_ticks
    _train_val_x_ticks = train_val_x_ticks
    _val_x_ticks = val_x_ticks
    _val_train_x_ticks = val_train_x_ticks
    _hist_vlines = hist_vlines
    _val_hist_vlines = val_hist_vlines
    _set_name_cache = set_name_cache
    _val_set_name_cache = val_set_name_cache
    _set_name = set_name
    _val_set_name = val_set_name
