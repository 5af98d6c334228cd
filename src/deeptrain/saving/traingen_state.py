"""What of a TrainGenerator goes into a checkpoint, and how it comes back.

``collect(tg)`` returns the JSON payload and the arrays; ``restore(tg, ...)`` applies them to
a live TrainGenerator built with a compatible model and data. The saving and loading rules
of DeepTrain 0.6 hold: ``saveskip_list`` names attributes left out of the file,
``loadskip_list`` names saved attributes left alone at load, and ``'{auto}'`` in it stands
for the arguments passed explicitly to the constructor (they win over saved values).
Besides setting names, ``loadskip_list`` may hold ``'datagen'``, ``'val_datagen'`` (their
position), ``'rng'`` (random generators), ``'callbacks_state'``, ``'model:weights'`` and
``'optimizer_state'``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import __version__
from ..training.configs import TRAINGEN_DEFAULTS
from ..training.contract import Traingen
from ..training.state import TrainState
from ..util.jsonstate import UNSUPPORTED, from_json, restore_like, to_json
from . import model_state

__all__ = ["collect", "check", "restore", "effective_loadskip", "NOT_CONFIGS", "EXTRA_ATTRS"]

log = logging.getLogger("deeptrain")

# Settings that are code, objects or derived: never saved as configs.
NOT_CONFIGS = {
    "callbacks",
    "key_metric_fn",
    "custom_metrics",
    "name_process_key_fn",
    "loadpath",
    "fit_fn",
    "eval_fn",
    "model",
    "continue_run",
    "restore_saved_paths",
}  # how to load: never from a file
# Settings that decide where a run writes or what it reads: a checkpoint (which anyone may
# have edited) never sets them, unless the user asks with ``restore_saved_paths=True``.
PATH_SETTINGS = ("logs_dir", "logdir", "best_models_dir", "final_fig_dir", "report_fontpath")
# Attributes saved besides the configs.
EXTRA_ATTRS = ("model_num", "model_name", "best_subset_nums")


def _split_arrays(value: Any, prefix: str, arrays: dict[str, np.ndarray]) -> Any:
    """Replace NumPy arrays in nested dicts/lists by references into ``arrays`` (copies:
    the checkpoint is written while the callback goes on)."""
    if isinstance(value, np.ndarray):
        arrays[prefix] = np.array(value, copy=True)
        return {"__array__": prefix}
    if isinstance(value, Mapping):
        return {k: _split_arrays(v, f"{prefix}/{k}", arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_split_arrays(v, f"{prefix}/{i}", arrays) for i, v in enumerate(value)]
    return value


def _array_refs(value: Any) -> list[Any]:
    """The ``{"__array__": key}`` references in nested dicts/lists."""
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            return [value["__array__"]]
        return [ref for v in value.values() for ref in _array_refs(v)]
    if isinstance(value, list):
        return [ref for v in value for ref in _array_refs(v)]
    return []


def _join_arrays(value: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            return arrays[value["__array__"]]
        return {k: _join_arrays(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_join_arrays(v, arrays) for v in value]
    return value


def collect(
    tg: Traingen, kind: str, seq: int, model_arrays: dict[str, np.ndarray] | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The checkpoint payload (JSON-safe) and arrays of ``tg`` (``model_arrays``: those of
    :func:`~.model_state.capture_arrays`, if already taken). The payload's ``train_state``
    holds the live state's lists: encode it before training goes on."""
    import keras

    skip = set(tg.saveskip_list) | NOT_CONFIGS
    configs, unsaved = {}, []
    for name in [*TRAINGEN_DEFAULTS, *EXTRA_ATTRS]:
        if name in skip or not hasattr(tg, name):
            continue
        value = to_json(getattr(tg, name))
        if value is UNSUPPORTED:
            unsaved.append(name)
        else:
            configs[name] = value
    if unsaved:
        log.debug("Not saved (no JSON form): %s", unsaved)
    arrays = (
        dict(model_arrays) if model_arrays is not None else model_state.capture_arrays(tg.model)
    )
    rng, rng_arrays = model_state.capture_rng()
    arrays.update(rng_arrays)
    callbacks = []
    for i, cb in enumerate(tg.callbacks.objects):
        state = to_json(_split_arrays(cb.state_dict(), f"callbacks/{i}", arrays))
        if state is UNSUPPORTED:  # fail before anything is written
            raise TypeError(
                f"{type(cb).__qualname__}.state_dict() returned values with no "
                "JSON form (use str/int/float/bool/None, lists, dicts with str "
                "keys, and NumPy arrays)"
            )
        callbacks.append({"class": type(cb).__qualname__, "state": state})
    payload = {
        "kind": kind,
        "seq": seq,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "deeptrain_version": __version__,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "train_state": tg.state.fields_view(),  # (not copied: the caller encodes it now)
        "traingen": configs,
        "datagen": tg.datagen.state_dict(),
        "val_datagen": tg.val_datagen.state_dict(),
        "callbacks": callbacks,
        "model": model_state.variable_specs(tg.model),
        "rng": rng,
        "distribution": {
            "describe": tg.distribution.describe(),
            "processes": tg.distribution.process_count,
            "replicas": tg.distribution.replicas,
        },
    }
    return payload, arrays


# what loadskip_list / saveskip_list may name besides settings and train state fields
SKIP_PARTS = (
    "datagen",
    "val_datagen",
    "rng",
    "callbacks_state",
    "model:weights",
    "optimizer_state",
    "{auto}",
    "auto",
    "none",
)


def check_skip_names(argname: str, names: Any) -> None:
    """Raise ``ValueError`` if ``names`` (``loadskip_list`` or ``saveskip_list``) is not a
    list of settings, train state fields or checkpoint parts: a misspelled name would
    otherwise be ignored, and a string taken letter by letter."""
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise ValueError(f"{argname} must be a list of names (e.g. ['{{auto}}']), got {names!r}")
    known = {*TRAINGEN_DEFAULTS, *EXTRA_ATTRS, *NOT_CONFIGS, *SKIP_PARTS}
    known |= set(TrainState().to_dict())
    unknown = [n for n in names if n not in known]
    if unknown:
        import difflib

        close = {n: difflib.get_close_matches(str(n), sorted(known), n=3) for n in unknown}
        hints = "".join(f"; {n!r}: did you mean {c}?" for n, c in close.items() if c)
        raise ValueError(
            f"{argname} names {unknown}, which are neither settings, train state fields "
            f"nor parts of a checkpoint ({', '.join(SKIP_PARTS[:6])}){hints}"
        )


def effective_loadskip(loadskip_list: list[str], passed_args: list[str]) -> set[str]:
    """``loadskip_list`` with ``'{auto}'`` expanded to the explicitly passed arguments."""
    skip = set()
    for name in loadskip_list:
        if name == "{auto}":
            skip.update(passed_args)
        elif name not in ("auto", "none"):
            skip.add(name)
    return skip | {"model"}


def _callback_matches(tg: Traingen, payload: dict[str, Any]) -> list[tuple[Any, Any]]:
    """``(live callback, saved entry or None)`` by position, where the classes agree."""
    saved_cbs = payload.get("callbacks", [])
    matches = []
    for i, cb in enumerate(tg.callbacks.objects):
        match = saved_cbs[i] if i < len(saved_cbs) else None
        ok = match is not None and match["class"] == type(cb).__qualname__
        matches.append((cb, match if ok else None))
    return matches


def check(
    tg: Traingen, payload: dict[str, Any], arrays: dict[str, np.ndarray], skip: set[str]
) -> None:
    """Raise ``ValueError`` if :func:`restore` would fail on ``tg``; changes nothing.

    The payload's types are already validated (its schema); this checks what depends on
    the live objects: the DataGenerators' data and preprocessors, the random generators'
    states, and the arrays the callbacks' states refer to.
    """
    TrainState.from_dict(payload["train_state"])
    for name, value in payload.get("traingen", {}).items():
        if name not in skip and name not in NOT_CONFIGS:
            from_json(value)
    for name in ("datagen", "val_datagen"):
        if name not in skip:
            try:
                getattr(tg, name).check_state_dict(payload[name])
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
    if "rng" not in skip and "rng" in payload:  # absent: not saved (migrated from 0.6)
        model_state.check_rng(payload["rng"], arrays)
    if "callbacks_state" not in skip:
        for cb, match in _callback_matches(tg, payload):
            missing = (
                [ref for ref in _array_refs(match["state"]) if ref not in arrays]
                if match is not None
                else []
            )
            if missing:
                raise ValueError(
                    f"the saved state of callback {type(cb).__qualname__} "
                    f"refers to arrays {missing[:5]} that are not in the "
                    "checkpoint"
                )


def restore(
    tg: Traingen, payload: dict[str, Any], arrays: dict[str, np.ndarray], skip: set[str]
) -> list[str]:
    """Apply a checkpoint to ``tg`` (model weights are loaded separately). Returns the
    names of the TrainGenerator settings that were restored."""
    restored, ignored_paths = [], []
    for name, value in payload.get("traingen", {}).items():
        if name in skip or name in NOT_CONFIGS:
            continue
        if name in PATH_SETTINGS and not getattr(tg, "restore_saved_paths", False):
            current = getattr(tg, name, None)
            if value is not None and value != (None if current is None else str(current)):
                ignored_paths.append(f"{name}={value!r}")
            continue
        if name not in TRAINGEN_DEFAULTS and name not in EXTRA_ATTRS:
            log.warning("Ignoring unknown saved setting %r", name)
            continue
        setattr(tg, name, restore_like(from_json(value), getattr(tg, name, None)))
        restored.append(name)
    if ignored_paths:
        log.info(
            "Saved paths not applied (paths come from the arguments; "
            "restore_saved_paths=True applies them): %s",
            ", ".join(ignored_paths),
        )
    tg.state = TrainState.from_dict(payload["train_state"])
    for name in ("datagen", "val_datagen"):
        if name not in skip:
            getattr(tg, name).load_state_dict(payload[name])
    if "rng" not in skip and "rng" in payload:
        model_state.restore_rng(payload["rng"], arrays)
    if "callbacks_state" not in skip:  # not "callbacks": that is the (passed) argument
        for i, (cb, match) in enumerate(_callback_matches(tg, payload)):
            if match is None:
                log.warning(
                    "No saved state for callback #%d (%s); it starts fresh",
                    i,
                    type(cb).__qualname__,
                )
                continue
            cb.load_state_dict(_join_arrays(match["state"], arrays))
    return restored
