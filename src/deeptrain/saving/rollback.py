"""Undoing a load that failed half-way.

A load is checked completely before anything is applied, so a failure while applying is
unexpected (a bug, a full disk, a callback's ``load_state_dict`` raising). Should it
happen, :class:`LiveState` puts back what the load changes: the TrainGenerator's attributes
(settings, ``state``), the model's and optimizer's variables and the RNN states, both
DataGenerators' positions, the random generators and the callbacks' states. The capture
holds every variable's value for the duration of the load: on TensorFlow and JAX the value
itself, no copy (:func:`~deeptrain.backend.host.values_kept`: the load gives the variables
new buffers); on torch a copy in host memory.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend.host import values_kept
from ..backend.stateful import get_states, set_states
from ..training.contract import Traingen
from . import model_state

__all__ = ["LiveState", "whole_datagen_state", "load_whole_datagen_state"]

log = logging.getLogger("deeptrain")

DATAGENS = ("datagen", "val_datagen")


def whole_datagen_state(dg: Any) -> dict[str, Any]:
    """The DataGenerator's whole state, whatever its ``saveskip_list``."""
    skip, dg.saveskip_list = dg.saveskip_list, []
    try:
        return copy.deepcopy(dg.state_dict())
    finally:
        dg.saveskip_list = skip


def load_whole_datagen_state(dg: Any, state: dict[str, Any]) -> None:
    """Load what :func:`whole_datagen_state` gave, whatever the ``loadskip_list``."""
    skip, dg.loadskip_list = dg.loadskip_list, []
    try:
        dg.load_state_dict(state)
    finally:
        dg.loadskip_list = skip


def _forget_keras_global_seed_generator() -> None:
    try:
        from keras.src.backend.common import global_state
    except ImportError:  # pragma: no cover - private path moved
        return
    global_state.set_global_attribute("global_seed_generator", None)


@dataclass
class LiveState:
    """What a load may change in a TrainGenerator, as it was."""

    attributes: dict[str, Any]
    train_state: Any  # a copy: settings such as predict_threshold write into tg.state
    variables: list[tuple[Any, Any]]  # (variable, its value: a tensor, array or copy)
    rnn_states: dict[str, list[np.ndarray]]
    datagens: dict[str, dict[str, Any]]
    rng: tuple[dict[str, Any], dict[str, np.ndarray]]
    had_keras_seed_generator: bool
    callbacks: list[tuple[Any, Any]]

    @classmethod
    def capture(cls, tg: Traingen) -> LiveState:
        model = tg.model
        return cls(
            attributes=dict(vars(tg)),
            train_state=copy.deepcopy(tg.state),
            variables=_read_all(model),
            rnn_states=get_states(model),
            datagens={name: whole_datagen_state(getattr(tg, name)) for name in DATAGENS},
            rng=model_state.capture_rng(),
            had_keras_seed_generator=model_state.has_keras_global_seed_generator(),
            callbacks=[(cb, copy.deepcopy(cb.state_dict())) for cb in tg.callbacks.objects],
        )

    def restore(self, tg: Traingen) -> None:
        """Put everything back; a part that fails is logged and the others still run."""
        steps = [
            ("settings and train state", lambda: self._restore_attributes(tg)),
            ("model variables", self._restore_variables),
            (
                "RNN states",
                lambda: set_states(tg.model, self.rnn_states) if self.rnn_states else None,
            ),
            *[
                (
                    name,
                    lambda name=name: load_whole_datagen_state(
                        getattr(tg, name), self.datagens[name]
                    ),
                )
                for name in DATAGENS
            ],
            ("random generators", self._restore_rng),
            *[
                (
                    f"callback {type(cb).__qualname__}",
                    lambda cb=cb, state=state: cb.load_state_dict(state),
                )
                for cb, state in self.callbacks
            ],
        ]
        for what, step in steps:
            try:
                step()
            except Exception:
                log.exception("Undoing a failed load: could not restore the %s", what)

    def _restore_attributes(self, tg: Traingen) -> None:
        attributes = vars(tg)
        for name in [n for n in attributes if n not in self.attributes]:
            del attributes[name]
        attributes.update(self.attributes)
        vars(tg.state).clear()  # the same object, as it was (code may hold a reference)
        vars(tg.state).update(vars(copy.deepcopy(self.train_state)))

    def _restore_variables(self) -> None:
        for variable, value in self.variables:
            variable.assign(value)

    def _restore_rng(self) -> None:
        model_state.restore_rng(*self.rng)
        if not self.had_keras_seed_generator:
            _forget_keras_global_seed_generator()


def _read_all(model: Any) -> list[tuple[Any, Any]]:
    variables = model_state.all_variables(model)
    return list(zip(variables, values_kept(model, variables), strict=True))
