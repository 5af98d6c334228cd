"""The callback machinery: ``TraingenCallback``, ``PeriodicCallback`` and the dispatch
by stage (``CallbackList``). Stages and rules: see :mod:`deeptrain.callbacks`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from ..util.misc import positive_int

__all__ = ["TraingenCallback", "PeriodicCallback", "CallbackList", "STAGES"]

log = logging.getLogger(__name__)

STAGES = (
    "train_start",
    "train:iter",
    "train:batch",
    "train:epoch",
    "val:iter",
    "val:batch",
    "val:epoch",
    "val_end",
    "save",
    "load",
    "train_end",
)

_METHODS = {
    "train_start": "on_train_start",
    "train:iter": "on_train_iter_end",
    "train:batch": "on_train_batch_end",
    "train:epoch": "on_train_epoch_end",
    "val:iter": "on_val_iter_end",
    "val:batch": "on_val_batch_end",
    "val:epoch": "on_val_epoch_end",
    "val_end": "on_val_end",
    "save": "on_save",
    "load": "on_load",
    "train_end": "on_train_end",
}

Stage = str | tuple[str, ...]


class TraingenCallback:
    """Base class of callback objects: override the stage methods you need.

    ``init_with_traingen(tg)`` is called once when the TrainGenerator starts (or loads) and
    stores ``self.tg``. Only the methods a subclass overrides are called; each gets the
    stage (a compound stage such as ``('val_end', 'train:epoch')`` goes to the method of its
    first element).

    Checkpoints (no pickle): at save, ``on_save('save')`` runs, then ``state_dict()`` is
    stored; at load, ``load_state_dict(state)`` runs, then ``on_load('load')``.
    ``state_dict()`` returns a dict of JSON-serialisable values (numbers, strings, bools,
    None, lists, dicts with string keys), in which NumPy arrays may appear at any depth:
    the checkpoint writer puts the arrays in an ``.npz`` beside the JSON and hands them
    back as arrays. Callback objects hold a reference to their TrainGenerator: make new ones for a
    new TrainGenerator.

    ``reads_model``: whether the train-stage methods read the model's variables. On JAX the
    train step keeps them on the device, and the TrainGenerator writes them back into the
    model before calling callbacks that read them (a cost at every iteration); a callback
    that reads only ``tg.state`` sets it False (and syncs itself, with
    ``tg.sync_model()``, on the rare calls that do read the model).
    """

    tg: Any = None
    reads_model: bool = True

    def init_with_traingen(self, tg: Any) -> None:
        self.tg = tg

    def on_train_start(self, stage: Stage) -> None: ...
    def on_train_iter_end(self, stage: Stage) -> None: ...
    def on_train_batch_end(self, stage: Stage) -> None: ...
    def on_train_epoch_end(self, stage: Stage) -> None: ...
    def on_val_iter_end(self, stage: Stage) -> None: ...
    def on_val_batch_end(self, stage: Stage) -> None: ...
    def on_val_epoch_end(self, stage: Stage) -> None: ...
    def on_val_end(self, stage: Stage) -> None: ...
    def on_save(self, stage: Stage) -> None: ...
    def on_load(self, stage: Stage) -> None: ...
    def on_train_end(self, stage: Stage) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


_PERIODIC_STAGES = tuple(s for s in STAGES if s not in ("save", "load", "train_start", "train_end"))


class PeriodicCallback(TraingenCallback):
    """A callback that acts on every ``freq[stage]``-th firing of the stages in ``freq``.

    ``freq={'train:epoch': 2, 'val_end': 1}``: :meth:`on_due` runs at every second epoch
    end and after every validation. A compound stage counts as its first element
    (``('val_end', 'train:epoch')`` is a ``'val_end'``). The call counters are in
    :meth:`state_dict`, so a resumed run keeps the rhythm. Subclasses implement
    :meth:`on_due`; if they extend ``state_dict``, they should include ``super()``'s.
    """

    def __init__(self, freq: Mapping[str, int]):
        if not isinstance(freq, Mapping) or not freq:
            raise TypeError(f"freq must be a non-empty dict {{stage: n}}, got {freq!r}")
        for stage, n in freq.items():
            if stage not in _PERIODIC_STAGES:
                raise ValueError(f"freq stage {stage!r} is not one of {_PERIODIC_STAGES}")
            positive_int(n, f"freq[{stage!r}]")
        self.freq = dict(freq)
        self._counters = {stage: 0 for stage in self.freq}

    def on_due(self, stage: Stage) -> None:
        raise NotImplementedError

    def _tick(self, stage: Stage) -> None:
        first = stage[0] if isinstance(stage, tuple) else stage
        if first in self.freq:
            self._counters[first] += 1
            if self._counters[first] % self.freq[first] == 0:
                self.on_due(stage)

    def on_train_iter_end(self, stage: Stage) -> None:
        self._tick(stage)

    def on_train_batch_end(self, stage: Stage) -> None:
        self._tick(stage)

    def on_train_epoch_end(self, stage: Stage) -> None:
        self._tick(stage)

    def on_val_iter_end(self, stage: Stage) -> None:
        self._tick(stage)

    def on_val_batch_end(self, stage: Stage) -> None:
        self._tick(stage)

    def on_val_epoch_end(self, stage: Stage) -> None:
        self._tick(stage)

    def on_val_end(self, stage: Stage) -> None:
        self._tick(stage)

    def state_dict(self) -> dict[str, Any]:
        return {"counters": dict(self._counters)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for stage, count in dict(state.get("counters", {})).items():
            if stage in self._counters:
                self._counters[stage] = int(count)


def _check_stage_key(key: Any) -> None:
    keys = key if isinstance(key, tuple) else (key,)
    bad = [k for k in keys if k not in STAGES]
    if bad or not keys:
        raise ValueError(f"callback stage {key!r} is not one of {STAGES} (or a tuple of them)")


class CallbackList:
    """Validated callbacks and their dispatch by stage."""

    def __init__(self, callbacks: Any):
        if callbacks is None:
            callbacks = []
        elif isinstance(callbacks, (dict, TraingenCallback)):
            callbacks = [callbacks]
        self.entries: list[dict[Stage, list[Callable]] | TraingenCallback] = []
        for cb in callbacks:
            if isinstance(cb, TraingenCallback):
                self.entries.append(cb)
            elif isinstance(cb, Mapping):
                entry = {}
                for key, fns in cb.items():
                    _check_stage_key(key)
                    fns = list(fns) if isinstance(fns, (list, tuple)) else [fns]
                    for fn in fns:
                        if not callable(fn):
                            raise TypeError(
                                f"callback for stage {key!r} must be callable fn(tg), got {fn!r}"
                            )
                    entry[key] = fns
                self.entries.append(entry)
            else:
                raise TypeError(
                    "callbacks must be a dict {stage: fn}, a TraingenCallback, or a "
                    f"list of them; got {cb!r}"
                )

    @property
    def objects(self) -> list[TraingenCallback]:
        return [e for e in self.entries if isinstance(e, TraingenCallback)]

    @property
    def reads_model(self) -> bool:
        """Whether any callback may read the model's variables (functions always may)."""
        return any(not isinstance(e, TraingenCallback) or e.reads_model for e in self.entries)

    def init_with_traingen(self, tg: Any) -> None:
        for cb in self.objects:
            cb.init_with_traingen(tg)

    def __call__(self, stage: Stage, tg: Any) -> None:
        first = stage[0] if isinstance(stage, tuple) else stage
        for entry in self.entries:
            if isinstance(entry, TraingenCallback):
                method = _METHODS[first]
                if getattr(type(entry), method) is not getattr(TraingenCallback, method):
                    getattr(entry, method)(stage)
                continue
            for key, fns in entry.items():
                if _fires(key, stage):
                    for fn in fns:
                        fn(tg)


def _fires(key: Stage, stage: Stage) -> bool:
    if isinstance(key, tuple):
        return key == stage
    return key in stage if isinstance(stage, tuple) else key == stage
