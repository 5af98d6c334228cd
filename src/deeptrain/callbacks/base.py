"""The callback machinery: ``TraingenCallback``, ``PeriodicCallback`` and the dispatch
by stage (``CallbackList``). Stages and rules: see :mod:`deeptrain.callbacks`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..util.misc import positive_int

if TYPE_CHECKING:
    from ..training.contract import Traingen

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
    stored (the checkpoint SIGTERM asks for, which the run would not have taken: stored
    first, so that the resumed run goes on as the uninterrupted one); at load,
    ``load_state_dict(state)`` runs, then ``on_load('load')``.
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

    #: the TrainGenerator, set by :meth:`init_with_traingen` before any stage method runs
    tg: Traingen = None  # type: ignore[assignment]  # None until then, as in DeepTrain 0.6
    #: whether its stage methods may read the model's variables (False: the JAX step keeps
    #: them on the device, unsynced, for this callback)
    reads_model: bool = True
    #: whether it runs on the writing process alone when several processes train (it
    #: writes files or records of the run, which are written once)
    writer_only: bool = False

    def __init__(self) -> None:
        # DeepTrain 0.6's counts per stage, for subclasses that count their calls
        # themselves (``self._counters['val_end'] += 1``); saved with the callback's state
        self._counters: dict[str, int] = dict.fromkeys(STAGES, 0)

    def init_with_traingen(self, tg: Traingen) -> None:
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
        counters = getattr(self, "_counters", None)  # (a subclass need not call __init__)
        return {"counters": dict(counters)} if counters else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        counters = getattr(self, "_counters", None)
        if counters is not None:
            counters.update((k, int(v)) for k, v in dict(state.get("counters", {})).items())


# 'save': every n-th save; 'load' and the once-per-train() stages are not periodic
_PERIODIC_STAGES = tuple(s for s in STAGES if s not in ("load", "train_start", "train_end"))


class PeriodicCallback(TraingenCallback):
    """A callback that acts on every ``freq[stage]``-th firing of the stages in ``freq``.

    ``freq={'train:epoch': 2, 'val_end': 1}``: :meth:`on_due` runs at every second epoch
    end and after every validation; ``'save'`` counts checkpoint saves. A compound stage
    counts as its first element (``('val_end', 'train:epoch')`` is a ``'val_end'``). The
    call counters are in :meth:`state_dict`, so a resumed run keeps the rhythm. Subclasses
    implement :meth:`on_due`; if they extend ``state_dict``, they should include ``super()``'s.
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

    def on_save(self, stage: Stage) -> None:
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


class CallbackList(Sequence):
    """The callbacks as given (iterate and index it like the list DeepTrain 0.6 kept) and
    their dispatch: by stage (``entries``: dicts and ``TraingenCallback`` objects), Keras'
    hooks (``keras``: a :class:`~deeptrain.callbacks.keras_callbacks.KerasHooks`, or None
    without Keras callbacks), and the objects whose state goes into checkpoints
    (``objects``, in the order given; a Keras callback appears as its ``KerasCallback``)."""

    def __init__(self, callbacks: Any):
        from .keras_callbacks import KerasCallback, KerasHooks, is_keras_callback

        if callbacks is None:
            callbacks = []
        elif isinstance(callbacks, (Mapping, TraingenCallback)) or is_keras_callback(callbacks):
            callbacks = [callbacks]
        elif not isinstance(callbacks, (list, tuple)):
            raise TypeError(_CALLBACKS_TYPES + f"; got {callbacks!r}")
        self._given = list(callbacks)
        self.entries: list[dict[Stage, list[Callable]] | TraingenCallback] = []
        self.objects: list[TraingenCallback] = []
        adapters = []
        for cb in self._given:
            if isinstance(cb, TraingenCallback):
                self.entries.append(cb)
                self.objects.append(cb)
            elif isinstance(cb, Mapping):
                self.entries.append(_stage_entry(cb))
            elif is_keras_callback(cb):
                adapters.append(KerasCallback(cb))
                self.objects.append(adapters[-1])
            else:
                raise TypeError(_CALLBACKS_TYPES + f"; got {cb!r} in the list")
        self.keras = KerasHooks(adapters) if adapters else None

    def __len__(self) -> int:
        return len(self._given)

    def __getitem__(self, index: Any) -> Any:
        return self._given[index]

    def __repr__(self) -> str:
        return f"CallbackList({self._given!r})"

    @property
    def reads_model(self) -> bool:
        """Whether any callback may read the model's variables (functions always may)."""
        return any(not isinstance(e, TraingenCallback) or e.reads_model for e in self.entries)

    def init_with_traingen(self, tg: Traingen) -> None:
        for cb in self.objects:
            cb.init_with_traingen(tg)

    def __call__(self, stage: Stage, tg: Traingen) -> None:
        first = stage[0] if isinstance(stage, tuple) else stage
        distribution = getattr(tg, "distribution", None)
        writer = distribution is None or distribution.is_writer
        for entry in self.entries:
            if isinstance(entry, TraingenCallback):
                if entry.writer_only and not writer:
                    continue
                method = _METHODS[first]
                if getattr(type(entry), method) is not getattr(TraingenCallback, method):
                    getattr(entry, method)(stage)
                continue
            for key, fns in entry.items():
                if _fires(key, stage):
                    for fn in fns:
                        fn(tg)


_CALLBACKS_TYPES = (
    "callbacks must be a dict {stage: fn(tg)}, a TraingenCallback, a keras.callbacks.Callback, "
    "or a list of them"
)


def _stage_entry(callbacks: Mapping) -> dict[Stage, list[Callable]]:
    """``{stage: fn | [fns]}`` checked, as ``{stage: [fns]}``."""
    entry = {}
    for key, fns in callbacks.items():
        _check_stage_key(key)
        fns = list(fns) if isinstance(fns, (list, tuple)) else [fns]
        for fn in fns:
            if not callable(fn):
                raise TypeError(f"callback for stage {key!r} must be callable fn(tg), got {fn!r}")
        entry[key] = fns
    return entry


def _fires(key: Stage, stage: Stage) -> bool:
    if isinstance(key, tuple):
        return key == stage
    return key in stage if isinstance(stage, tuple) else key == stage
