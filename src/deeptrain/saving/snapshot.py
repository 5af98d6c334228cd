"""The first phase of a checkpoint: everything it will hold, copied to host memory.

:func:`take_snapshot` runs on the training thread and is the only part of a checkpoint that
blocks training: it copies the weights, optimizer and other variables, RNN states and
random generators' states to NumPy, encodes the TrainGenerator's, DataGenerators' and
callbacks' states as JSON text, and collects what the figures are drawn from. Nothing in
a :class:`Snapshot` refers to a live object, so the files are written from it in another
thread (:mod:`.writer`) while training goes on.

Files Keras writes itself (``model.keras`` when the full model is saved, and the weights
file when ``model_save_weights_kw`` passes options to ``save_weights``) are written here,
on the training thread, into a private staging directory, and copied into the checkpoint.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backend.host import read_to_host
from ..backend.stateful import state_variables
from . import model_state
from .checkpoint import MODEL_FILE, WEIGHTS_FILE
from .report import report_configs, report_entries
from .traingen_state import collect
from .weights_file import WeightsImage, snapshot_weights, weights_layout

__all__ = ["Snapshot", "FigureData", "take_snapshot", "MODEL_SAVE_KW", "MODEL_SAVE_WEIGHTS_KW"]

# Keyword arguments of model.save / model.save_weights when model_save_kw /
# model_save_weights_kw are None (DeepTrain 0.6's ``configs.MODEL_SAVE_KW`` ...): edits
# here apply to every TrainGenerator.
MODEL_SAVE_KW: dict[str, Any] = {}
MODEL_SAVE_WEIGHTS_KW: dict[str, Any] = {}


@dataclass
class FigureData:
    """What the history and report figures are drawn from (or their PNGs, when already
    drawn at this point of training)."""

    history: dict[str, Any] | None = None  # keyword arguments of history_figure
    report: dict[str, Any] | None = None  # report_entries, report_configs, title, font
    drawn: dict[str, bytes] = field(default_factory=dict)  # name -> PNG bytes


@dataclass
class Snapshot:
    """A checkpoint's content in host memory, independent of the live objects.

    ``state_json``: the state without ``kind`` and ``seq`` (added per checkpoint written
    from it); ``weights``: the weights file's arrays (None when the weights are not saved
    or Keras wrote them into ``staged``); ``staged``: files Keras wrote, by name."""

    state_json: str
    arrays: dict[str, np.ndarray]
    weights: WeightsImage | None
    staged: dict[str, Path]
    figures: FigureData | None
    staging_dir: Path | None = None
    host_values: list[np.ndarray] = field(default_factory=list)  # the variables read, in order

    @property
    def nbytes(self) -> int:
        """Bytes of the state held: the arrays, the state's JSON text, PNGs drawn."""
        weights = self.weights.nbytes if self.weights is not None else 0
        drawn = sum(map(len, self.figures.drawn.values())) if self.figures is not None else 0
        arrays = sum(a.nbytes for a in self.arrays.values())
        return weights + arrays + len(self.state_json) + drawn

    def discard(self) -> None:
        """Free the staging directory (once the checkpoints are written, or failed)."""
        if self.staging_dir is not None:
            shutil.rmtree(self.staging_dir, ignore_errors=True)
            self.staging_dir = None


def take_snapshot(
    tg: Any, figures: bool, spare: Sequence[np.ndarray | None] | None = None
) -> Snapshot:
    """Everything a checkpoint of ``tg`` holds, as it is now (the model must be current:
    the caller syncs it first). ``spare``: the ``host_values`` of an earlier snapshot,
    written and no longer used: its large arrays are copied into again (see
    :func:`~deeptrain.backend.host.read_to_host`)."""
    skip = set(tg.saveskip_list)
    # the optimizer's variables, all of them, in the weights file and in the specs alike
    model_state.built_optimizer(tg.model)
    weights_kw = dict(_or_default(tg.model_save_weights_kw, MODEL_SAVE_WEIGHTS_KW))
    own_weights = "model:weights" not in skip and not weights_kw
    weights, model_arrays, values = _read_model(tg.model, own_weights, spare)
    payload, arrays = collect(tg, "temp", 0, model_arrays)  # kind and seq: set per target
    del payload["kind"], payload["seq"]
    if "optimizer_state" in skip:
        payload["model"]["optimizer"] = []
    payload["model"]["optimizer_unsaved"] = sorted(
        model_state.optimizer_selection(
            tg.model, tg.optimizer_save_configs, "optimizer_save_configs"
        )
    )
    state_json = json.dumps(payload, allow_nan=True)
    figure_data = _figure_data(tg) if figures else None
    staged: dict[str, Path] = {}
    staging: Path | None = None
    try:
        if "model:weights" not in skip and weights_kw:  # options for Keras' own writer
            staging = Path(tempfile.mkdtemp(prefix="deeptrain-snapshot-"))
            staged[WEIGHTS_FILE] = staging / WEIGHTS_FILE
            model_state.save_weights(tg.model, staged[WEIGHTS_FILE], **weights_kw)
        if "model" not in skip:
            staging = staging or Path(tempfile.mkdtemp(prefix="deeptrain-snapshot-"))
            staged[MODEL_FILE] = staging / MODEL_FILE
            tg.model.save(staged[MODEL_FILE], **dict(_or_default(tg.model_save_kw, MODEL_SAVE_KW)))
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    return Snapshot(state_json, arrays, weights, staged, figure_data, staging, values)


def _or_default(value: dict[str, Any] | None, default: dict[str, Any]) -> dict[str, Any]:
    return default if value is None else value


def _read_model(
    model: Any, weights: bool, spare: Sequence[np.ndarray | None] | None = None
) -> tuple[WeightsImage | None, dict[str, np.ndarray], list[np.ndarray]]:
    """The weights file's arrays (if ``weights``) and the other variables and RNN states,
    read to host memory in one batch (into ``spare``'s arrays where they fit); and every
    array read, in order."""
    extras, states = model_state.extra_variables(model), state_variables(model)
    flat_states = [v for values in states.values() for v in values]
    layout = weights_layout(model) if weights else None
    layout_vars = layout.variables() if layout is not None and layout.cacheable else []
    values = read_to_host(model, [*layout_vars, *extras, *flat_states], spare)
    image = snapshot_weights(model, values[: len(layout_vars)]) if weights else None
    return image, model_state.arrays_of(extras, states, values[len(layout_vars) :]), values


def _figure_data(tg: Any) -> FigureData:
    """The history figure's series and settings and the report's text, copied; a figure
    already drawn at this point of training (``plot_history`` at this validation's end)
    is taken as its PNG instead."""
    data = FigureData()
    for name in ("history", "report"):
        drawn = tg.drawn_figure(name)
        if drawn is not None:
            data.drawn[name] = drawn.read_bytes()
    if "history" not in data.drawn:
        configs = tg._plot_configs()  # a new, merged dict
        data.history = dict(
            configs=configs,
            history=_copy_series(tg.state.history),
            val_history=_copy_series(tg.state.val_history),
            series={name: list(getattr(tg, name)) for name in _series_names(configs)},
            aliases=dict(tg.metric_to_alias),
        )
    if "report" not in data.drawn:
        fontpath = tg.report_fontpath
        if fontpath is not None and not Path(fontpath).is_file():
            raise FileNotFoundError(f"report_fontpath={str(fontpath)!r} does not exist")
        data.report = dict(
            entries=report_entries(tg),
            configs=copy.deepcopy(report_configs(tg)),
            title=tg.model_name,
            fontpath=fontpath,
        )
    return data


def _copy_series(history: dict[str, list]) -> dict[str, list]:
    """A copy of ``{metric: [value or list of values, ...]}`` (lists copied two deep)."""
    return {k: [list(x) if isinstance(x, list) else x for x in v] for k, v in history.items()}


def _series_names(configs: dict[str, Any]) -> set[str]:
    """TrainGenerator attributes the history figure looks up (x ticks, vertical lines)."""
    names = {"_train_x_ticks", "_val_train_x_ticks"}
    for key, pane in configs.items():
        if not key.isdigit():
            continue
        for xs in (pane.get("x_ticks") or {}).values():
            names.update(
                x for x in (xs if isinstance(xs, (list, tuple)) else [xs]) if isinstance(x, str)
            )
        v = (pane.get("vhlines") or {}).get("v")
        if isinstance(v, str):
            names.add(v)
    return names
