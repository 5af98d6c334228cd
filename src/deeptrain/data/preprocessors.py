"""Preprocessors: the per-iteration hook between loaded batches and the model.

A :class:`Preprocessor` transforms each batch in :meth:`process` and, through four synced
attributes, tells the :class:`~deeptrain.DataGenerator` when a batch is used up:

- ``batch_loaded``: a batch is in memory and being served;
- ``batch_exhausted``: the current batch is used up, the next ``get()`` needs a new one;
- ``slices_per_batch``: ``None`` (one iteration per batch) or the number of slices (windows);
- ``slice_idx``: the index of the slice served next (``None`` when not slicing).

The DataGenerator reads and writes these *through* the preprocessor, so a preprocessor that
keeps ``batch_exhausted = False`` feeds the same batch again, and one that sets
``slices_per_batch`` turns every batch into several iterations.
"""

from __future__ import annotations

import copy
import logging
import numbers
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..util.jsonstate import UNSUPPORTED, restore_like, to_json
from ..util.misc import positive_int

__all__ = ["Preprocessor", "GenericPreprocessor", "TimeseriesPreprocessor"]

log = logging.getLogger(__name__)


class Preprocessor(ABC):
    """Base class of all preprocessors.

    Subclasses implement :meth:`process` and may override :meth:`update_state`,
    :meth:`reset_state` and :meth:`on_epoch_end`. They need not call ``super().__init__``:
    the synced attributes get their defaults on every new *instance* in ``__new__``.
    ``loadskip_list`` names attributes that :meth:`load_state_dict` leaves alone.
    """

    batch_loaded: bool  #: a batch is in memory and being served
    batch_exhausted: bool  #: the current batch is used up: the next ``get()`` loads one
    slice_idx: int | None  #: the index of the slice (window) served next; None: not slicing
    loadskip_list: list[str]  #: attributes that :meth:`load_state_dict` leaves alone
    _slices_per_batch: int | None

    def __new__(cls, *args: Any, **kwargs: Any) -> Preprocessor:
        obj = super().__new__(cls)
        obj.batch_loaded = False
        obj.batch_exhausted = True
        obj._slices_per_batch = None
        obj.slice_idx = None
        obj.loadskip_list = []
        return obj

    @property
    def slices_per_batch(self) -> int | None:
        return self._slices_per_batch

    @slices_per_batch.setter
    def slices_per_batch(self, value: int | None) -> None:
        if value is not None and not (isinstance(value, (int, np.integer)) and value >= 1):
            raise ValueError(f"slices_per_batch must be None or an int >= 1, got {value!r}")
        self._slices_per_batch = None if value is None else int(value)

    @abstractmethod
    def process(self, batch: Any, labels: Any) -> tuple[Any, Any]:
        """Return the ``(batch, labels)`` the model sees this iteration."""

    def update_state(self) -> None:
        """Called once per iteration; by default every iteration uses up the batch."""
        self.reset_state()

    def reset_state(self) -> None:
        """Mark the batch as used up (called per iteration by default, and on epoch reset)."""
        self.batch_exhausted = True
        self.batch_loaded = False

    def on_epoch_end(self, epoch: int) -> None:  # noqa: B027 - optional hook, no-op default
        """Called by ``DataGenerator.on_epoch_end`` with the new epoch number."""

    # -- state for checkpoints ------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Every JSON-representable instance attribute (arrays and objects are left out)."""
        state = {}
        for name, value in vars(self).items():
            converted = to_json(value)
            if converted is UNSUPPORTED:
                log.debug("%s.%s is not JSON-representable; not saved", type(self).__name__, name)
            else:
                state[name] = converted
        return state

    def check_state_dict(self, state: dict[str, Any]) -> None:
        """Raise ``ValueError`` if :meth:`load_state_dict` would fail, or would give an
        attribute a value of another kind than its live one (a string for a number, ...);
        changes nothing (the state is tried on a shallow copy). Subclasses whose
        ``load_state_dict`` acts beyond setting attributes should override this."""
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise ValueError("preprocessor state must be a dict with string keys")
        skip = set(self.loadskip_list) | {"loadskip_list"}
        live = vars(self)
        saved_windows = state.get("_slices_per_batch", live.get("_slices_per_batch"))
        if "_slices_per_batch" not in skip and (saved_windows is None) != (
            self.slices_per_batch is None
        ):
            cuts = "cuts its batches into windows"
            raise ValueError(
                f"the saved preprocessor state is of one that "
                f"{cuts if saved_windows is not None else 'does not cut batches'}; this "
                f"{type(self).__name__} {'does not' if self.slices_per_batch is None else cuts}"
            )
        for name, value in state.items():
            current = live.get(name)
            if name not in skip and None not in (value, current) and _kind(value) != _kind(current):
                raise ValueError(
                    f"preprocessor state {name!r}: {value!r} is not a "
                    f"{_kind(current)} like the live value {current!r}"
                )
        try:
            copy.copy(self).load_state_dict(state)
        except (TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"preprocessor state: {e}") from None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore attributes from :meth:`state_dict`, except those in ``loadskip_list``."""
        skip = set(self.loadskip_list) | {"loadskip_list"}
        for name, value in state.items():
            if name not in skip:
                setattr(self, name, restore_like(value, getattr(self, name, None)))


class GenericPreprocessor(Preprocessor):
    """Identity: every batch is served once, unchanged."""

    def __init__(self, loadskip_list: Sequence[str] | None = None):
        self.loadskip_list = list(loadskip_list or [])

    def process(self, batch: Any, labels: Any) -> tuple[Any, Any]:
        return batch, labels


class TimeseriesPreprocessor(Preprocessor):
    """Serve each batch ``(samples, timesteps, ...)`` as consecutive windows along axis 1.

    Window ``i`` is ``batch[:, start:start + window_size]`` with
    ``start = i * slide_size + start_increment``, and a batch of ``T`` timesteps yields
    ``1 + (T - window_size - start_increment) // slide_size`` windows, recomputed at the
    first window of every batch (so ``T`` may vary between batches). Labels are unchanged.
    ``start_increments``, if given, is cycled per epoch: epoch ``e`` starts at
    ``start_increments[e % len(start_increments)]``.

    Examples with ``T = 100``: ``(25, 25, 0)`` gives 4 windows ``[0:25] ... [75:100]``;
    ``(25, 25, 10)`` gives 3 windows ``[10:35], [35:60], [60:85]``; ``(25, 10, 0)`` gives 8
    overlapping windows ``[0:25], [10:35], ..., [70:95]``.
    """

    slice_idx: int  #: the index of the window served next

    def __init__(
        self,
        window_size: int,
        slide_size: int | None = None,
        start_increments: Sequence[int] | None = None,
        loadskip_list: Sequence[str] | None = None,
    ):
        self.window_size = positive_int(window_size, "window_size")
        self.slide_size = positive_int(
            slide_size if slide_size is not None else window_size, "slide_size"
        )
        if start_increments is not None:
            start_increments = [
                _non_negative_int(s, "start_increments") for s in _as_list(start_increments)
            ]
            if not start_increments:
                raise ValueError("start_increments must be None or a non-empty list of ints")
        self.start_increments = start_increments
        self._start_increment = start_increments[0] if start_increments else 0
        self._batch_timesteps: int | None = None
        self.slices_per_batch = 1  # marks "sliced"; the real count is set per batch in process()
        self.slice_idx = 0
        self.loadskip_list = list(
            loadskip_list
            if loadskip_list is not None
            else ["start_increments", "window_size", "slide_size"]
        )

    @property
    def start_increment(self) -> int:
        return self._start_increment

    @start_increment.setter
    def start_increment(self, value: int) -> None:
        if self.start_increments is None:
            raise ValueError("start_increment can only be set when `start_increments` was given")
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError(f"start_increment must be an int, got {type(value).__name__}")
        if value not in self.start_increments:
            log.warning(
                "start_increment=%s is not in start_increments=%s", value, self.start_increments
            )
        self._start_increment = int(value)

    def process(self, batch: Any, labels: Any) -> tuple[Any, Any]:
        """Return next `batch` window, and unchanged `labels`."""
        if self.slice_idx == 0:
            # ensure number of windows accurate for every new batch
            timesteps = _timesteps(batch)
            self._batch_timesteps = timesteps
            self.slices_per_batch = self.windows_for(timesteps)
        return self._next_window(batch), labels

    def windows_for(self, timesteps: int) -> int:
        """Number of windows a batch of ``timesteps`` timesteps yields."""
        usable = timesteps - self.window_size - self._start_increment
        if usable < 0:
            raise ValueError(
                f"a batch of {timesteps} timesteps is too short for window_size="
                f"{self.window_size} with start_increment={self._start_increment}"
            )
        return 1 + usable // self.slide_size

    def _next_window(self, batch: Any) -> Any:
        """Fetches temporal slice according to `window_size`, `slide_size`,
        `start_increment`, and `slice_idx`."""
        start = self.slice_idx * self.slide_size + self._start_increment
        end = start + self.window_size
        return batch[:, start:end]

    def update_state(self) -> None:
        """Increment `slice_idx` by 1; if `slice_idx == slices_per_batch`,
        set `batch_exhausted = True`, `batch_loaded = False`."""
        self.slice_idx += 1
        if self.slice_idx == self.slices_per_batch:
            self.batch_exhausted = True
            self.batch_loaded = False

    def reset_state(self) -> None:
        self.slice_idx = 0

    def check_state_dict(self, state: dict[str, Any]) -> None:
        """Also refuses a state saved between two windows of a batch, whose windows this
        preprocessor cuts differently (``window_size``, ``slide_size`` or the start
        increment in ``loadskip_list`` and changed): its remaining windows do not exist."""
        super().check_state_dict(state)
        if not (state.get("batch_loaded") and state.get("slice_idx")):
            return  # at a batch boundary, or its first window: nothing cut yet
        skip = set(self.loadskip_list)  # (what is loaded is the saved value: no change)
        cut = {
            "window_size": self.window_size,
            "slide_size": self.slide_size,
            "_start_increment": self._start_increment,
        }
        changed = {
            name: (state[name], live)
            for name, live in cut.items()
            if name in skip and name in state and state[name] != live
        }
        if changed:
            settings = ", ".join(
                f"{n.lstrip('_')} {was} -> {now}" for n, (was, now) in changed.items()
            )
            raise ValueError(
                f"the preprocessor state was saved at window {state['slice_idx']} of a batch, "
                f"and this preprocessor cuts windows differently ({settings}); resume with "
                "the saved settings, or from a checkpoint at a batch boundary"
            )

    def on_epoch_end(self, epoch: int) -> None:
        if self.start_increments is not None:
            self.start_increment = self.start_increments[epoch % len(self.start_increments)]
        else:  # (a run resumed without start_increments: its saved offset ends with its epoch)
            self._start_increment = 0


def _kind(value: Any) -> str:
    """The JSON kind of a value (what a checkpoint can tell apart)."""
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, numbers.Real):
        return "number"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, str):
        return "str"
    return "dict" if isinstance(value, dict) else type(value).__name__


def _non_negative_int(value: Any, name: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must hold ints >= 0, got {value!r}")
    return int(value)


def _as_list(start_increments: Any) -> list[Any]:
    """``start_increments`` as a list, or a ``TypeError`` if it is no sequence (an int)."""
    if isinstance(start_increments, (Sequence, np.ndarray)) and not isinstance(
        start_increments, (str, bytes)
    ):
        return list(start_increments)
    one = isinstance(start_increments, (int, np.integer)) and not isinstance(start_increments, bool)
    raise TypeError(
        "start_increments must be None or a list of ints >= 0 (the start offsets of "
        f"successive epochs, cycled), got {start_increments!r}"
        + (f"; for one offset, pass [{start_increments}]" if one else "")
    )


def _timesteps(batch: Any) -> int:
    """The timesteps of ``batch`` (its axis 1); an error if it has none."""
    shape = getattr(batch, "shape", None)
    if shape is None:
        raise TypeError(
            "TimeseriesPreprocessor cuts windows along axis 1 of an array batch "
            f"(samples, timesteps, ...); got a {type(batch).__name__}"
        )
    if len(shape) < 2:
        raise ValueError(
            "TimeseriesPreprocessor cuts windows along axis 1 of a batch (samples, "
            f"timesteps, ...); got a batch of shape {tuple(shape)}"
        )
    return int(shape[1])
