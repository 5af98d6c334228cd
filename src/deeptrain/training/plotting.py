"""The history figure and its ``plot_configs`` (DeepTrain 0.6's format)::

    {'fig_kw': {...},                        # Figure(...) keywords, e.g. {'figsize': (12, 8)}
     '0': {'metrics': {'train': ['loss'], 'val': ['loss', 'accuracy']},
           'x_ticks': {'train': ['train_x_ticks'], 'val': ['val_train_x_ticks']},
           'vhlines': {'v': 'hist_vlines', 'h': 1.0},
           'mark_best_cfg': {'val': 'loss', 'max_is_best': False},
           'ylims': (0, 2), 'legend_kw': {'fontsize': 9},
           'color': ['C0', 'C1'], 'linewidth': [1.5]},   # any other key: a per-line plot kw
     '1': {...}}

Missing panes and keys come from :func:`default_plot_configs`: pane 0 has the train
metrics and the first ``plot_first_pane_max_vals`` validation metrics against batches fit,
with epoch lines; pane 1 (only if there are more validation metrics) the rest against the
number of validations. ``x_ticks`` and ``vhlines['v']`` name TrainGenerator attributes,
such as the :class:`~deeptrain.training.state.TrainState` fields ``'train_x_ticks'``,
``'val_train_x_ticks'``, ``'hist_vlines'`` (0.6's spellings, ``'_train_x_ticks'`` ...,
work too). Per-line lists are extended by repeating
their last element; the best value of ``mark_best_cfg``'s metric gets a green circle.

:func:`saved_history_figure` draws the same figure from a checkpoint's state alone (no model,
no data), and :func:`runs_figure` one validation metric of several runs side by side.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .state import LEGACY_NAMES

__all__ = [
    "PLOT_CFG",
    "default_plot_configs",
    "merge_plot_configs",
    "check_plot_configs",
    "plot_configs_for",
    "history_figure",
    "saved_history_figure",
    "runs_figure",
]

# Edits here change every history figure's defaults (DeepTrain 0.6's ``configs.PLOT_CFG``):
# e.g. ``PLOT_CFG['0']['ylims'] = (0, 2)``. A run's own ``plot_configs`` still win.
PLOT_CFG: dict[str, Any] = {"fig_kw": {}, "0": {}, "1": {}}

_RESERVED = ("metrics", "x_ticks", "vhlines", "mark_best_cfg", "ylims", "legend_kw")


def default_plot_configs(
    train_metrics: list[str],
    val_metrics: list[str],
    key_metric: str,
    max_is_best: bool,
    first_pane_max_vals: int = 2,
) -> dict[str, Any]:
    first, rest = val_metrics[:first_pane_max_vals], val_metrics[first_pane_max_vals:]
    configs: dict[str, Any] = {
        "fig_kw": {},
        "0": {
            "metrics": {"train": list(train_metrics), "val": first},
            "x_ticks": {"train": ["train_x_ticks"], "val": ["val_train_x_ticks"]},
            "vhlines": {"v": "hist_vlines", "h": None},
            "mark_best_cfg": {"val": key_metric, "max_is_best": max_is_best}
            if key_metric in first
            else None,
            "ylims": None,
            "legend_kw": {"fontsize": 9},
        },
    }
    if rest:
        configs["1"] = {
            "metrics": {"train": [], "val": rest},
            "x_ticks": {"train": [], "val": ["val_x_ticks"]},
            "vhlines": {"v": "val_hist_vlines", "h": None},
            "mark_best_cfg": {"val": key_metric, "max_is_best": max_is_best}
            if key_metric in rest
            else None,
            "ylims": None,
            "legend_kw": {"fontsize": 9},
        }
    return configs


def with_plot_cfg(defaults: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` with :data:`PLOT_CFG`'s edits applied (panes the figure does not have,
    and empty ones, are left out)."""
    edits = {
        k: v
        for k, v in PLOT_CFG.items()
        if v and (not str(k).isdigit() or str(k) in defaults or "metrics" in v)
    }
    return merge_plot_configs(edits, defaults)


def merge_plot_configs(user: Mapping[str, Any] | None, defaults: dict[str, Any]) -> dict:
    """``defaults`` updated pane by pane (and key by key) with the user's ``plot_configs``."""
    if user is not None and not isinstance(user, Mapping):
        raise TypeError(
            "plot_configs must be None or a dict {'fig_kw': {...}, '0': {...}, ...}, "
            f"got {user!r}"
        )
    merged = copy.deepcopy(defaults)
    for key, value in (user or {}).items():
        key = str(key)
        if key == "fig_kw":
            if value is not None and not isinstance(value, Mapping):
                raise TypeError(
                    f"plot_configs['fig_kw'] must be a dict of Figure keywords, got {value!r}"
                )
            merged["fig_kw"] = {**merged.get("fig_kw", {}), **(value or {})}
        elif key.isdigit():
            if not isinstance(value, Mapping) or "metrics" not in value and key not in merged:
                raise ValueError(
                    f"plot_configs[{key!r}] must be a dict with 'metrics' "
                    "({'train': [...], 'val': [...]}) for a new pane"
                )
            merged[key] = {**merged.get(key, {}), **copy.deepcopy(dict(value))}
        else:
            raise ValueError(
                f"plot_configs key {key!r} is not 'fig_kw' or a pane number ('0', '1', ...)"
            )
    return merged


def plot_configs_for(
    user: Mapping[str, Any] | None,
    train_metrics: list[str],
    val_metrics: list[str],
    key_metric: str,
    max_is_best: bool,
    first_pane_max_vals: int = 2,
) -> dict[str, Any]:
    """The history figure's configs: the user's ``plot_configs`` over :data:`PLOT_CFG`'s
    edits over :func:`default_plot_configs` (as ``TrainGenerator`` merges them)."""
    defaults = default_plot_configs(
        train_metrics, val_metrics, key_metric, max_is_best, first_pane_max_vals
    )
    return merge_plot_configs(user, with_plot_cfg(defaults))


# ax.plot's own keywords (not Line2D properties)
_PLOT_ONLY_KW = ("scalex", "scaley", "data")


def check_plot_configs(configs: Mapping[str, Any]) -> None:
    """Raise, naming the key, for merged ``configs`` that :func:`history_figure` cannot draw
    (it runs this first): panes, their keys, the figure's and the lines' keywords (checked
    by matplotlib, on a figure and lines of no data). The attributes that ``x_ticks`` and
    ``vhlines`` name are looked up when drawing (a callback may set them)."""
    from matplotlib.lines import Line2D

    fig_kw = configs.get("fig_kw") or {}
    if not isinstance(fig_kw, Mapping):
        raise TypeError(f"plot_configs['fig_kw'] must be a dict of Figure keywords, got {fig_kw!r}")
    _matplotlib_kw(Figure, "plot_configs['fig_kw']", fig_kw)
    for key in (k for k in configs if k.isdigit()):
        pane = configs[key]
        where = f"plot_configs[{key!r}]"
        if not isinstance(pane, Mapping):
            raise TypeError(f"{where} must be a dict, got {pane!r}")
        lines = _check_pane_keys(pane, where)
        per_line = {k: _extend(v, lines) for k, v in pane.items() if k not in _RESERVED}
        for i in range(lines):
            kw = {k: v[i] for k, v in per_line.items() if v[i] is not None}
            kw = {k: v for k, v in kw.items() if k not in _PLOT_ONLY_KW}
            _matplotlib_kw(partial(Line2D, [], []), f"{where}'s line keywords", kw)


def _check_pane_keys(pane: Mapping[str, Any], where: str) -> int:
    """A pane's reserved keys checked as drawing uses them; returns its number of lines."""
    for name in ("metrics", "x_ticks", "legend_kw", "vhlines", "mark_best_cfg"):
        value = pane.get(name, {})
        if isinstance(value, Mapping) or (name == "legend_kw" and value is None):
            continue
        if name in ("vhlines", "mark_best_cfg") and not value:  # (drawn without)
            continue
        raise TypeError(f"{where}[{name!r}] must be a dict, got {value!r}")
    lines = 0
    for kind in ("train", "val"):
        names = pane.get("metrics", {}).get(kind, [])
        if not isinstance(names, list | tuple):
            raise TypeError(
                f"{where}['metrics'][{kind!r}] must be a list of metric names, got {names!r}"
            )
        lines += len(names)
    ylims = pane.get("ylims")
    if ylims is not None and (
        isinstance(ylims, str) or not hasattr(ylims, "__len__") or len(ylims) not in (1, 2)
    ):
        raise ValueError(f"{where}['ylims'] must be None or (bottom, top), got {ylims!r}")
    return lines


def _matplotlib_kw(make: Callable[..., Any], where: str, kw: Mapping[str, Any]) -> None:
    """``make(**kw)``, matplotlib's error raised naming ``where``."""
    if not kw:
        return
    try:
        make(**kw)
    except (AttributeError, TypeError, ValueError) as e:
        raise ValueError(f"{where} {dict(kw)}: {e}") from None


def _extend(values: list, n: int) -> list:
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    return (values + [values[-1]] * n)[:n] if values else [None] * n


def history_figure(
    configs: Mapping[str, Any],
    history: Mapping[str, list],
    val_history: Mapping[str, list],
    lookup: Callable[[str], Any],
    aliases: Mapping[str, str],
    w: float = 1,
    h: float = 1,
) -> Figure:
    """Draw the panes of ``configs`` (see the module docstring); ``lookup(name)`` gives the
    TrainGenerator attribute ``name`` (x ticks, vertical line positions)."""
    check_plot_configs(configs)
    panes = [configs[k] for k in sorted((k for k in configs if k.isdigit()), key=int)]
    fig_kw = dict(configs.get("fig_kw") or {})
    fig_kw.setdefault("figsize", (12 * w, 5 * h * max(1, len(panes))))
    fig = Figure(**fig_kw)
    axes = fig.subplots(max(1, len(panes)), 1, squeeze=False)[:, 0]
    for ax, pane in zip(axes, panes, strict=False):  # no panes: one empty axis
        pane = {"metrics": {}, "x_ticks": {}, **pane}
        lines = [(name, "train") for name in pane["metrics"].get("train", [])] + [
            (name, "val") for name in pane["metrics"].get("val", [])
        ]
        xs = {
            "train": _extend(
                pane["x_ticks"].get("train") or ["train_x_ticks"],
                len(pane["metrics"].get("train", [])),
            ),
            "val": _extend(
                pane["x_ticks"].get("val") or ["val_train_x_ticks"],
                len(pane["metrics"].get("val", [])),
            ),
        }
        per_line = {k: _extend(v, len(lines)) for k, v in pane.items() if k not in _RESERVED}
        counters = {"train": 0, "val": 0}
        for i, (name, kind) in enumerate(lines):
            x_name = xs[kind][counters[kind]]
            counters[kind] += 1
            values = (history if kind == "train" else val_history).get(name, [])
            x = list(lookup(x_name)) if isinstance(x_name, str) else list(x_name or [])
            if not values or len(values) != len(x) or any(np.ndim(v) for v in values):
                continue  # nothing yet, or not a scalar series (e.g. per-threshold lists)
            kw = {k: v[i] for k, v in per_line.items() if v[i] is not None}
            if kind == "val":
                kw.setdefault("marker", "o")
                kw.setdefault("ms", 3)
            ax.plot(x, values, label=f"{aliases.get(name, name)} ({kind})", **kw)
            best = pane.get("mark_best_cfg")
            if kind == "val" and best and best.get("val") == name:
                arr = np.asarray(values, dtype=float)
                if np.isfinite(arr).any():
                    j = int(np.nanargmax(arr) if best.get("max_is_best") else np.nanargmin(arr))
                    ax.plot(x[j], arr[j], "o", ms=12, mfc="none", mec="g", mew=2)
        vh = pane.get("vhlines") or {}
        v = vh.get("v")
        for xv in lookup(v) if isinstance(v, str) else ([] if v is None else np.atleast_1d(v)):
            ax.axvline(xv, color="k", lw=0.8, alpha=0.6)
        for yv in [] if vh.get("h") is None else np.atleast_1d(vh["h"]):
            ax.axhline(yv, color="k", lw=0.8, ls="--", alpha=0.6)
        if pane.get("ylims") is not None:
            ax.set_ylim(*pane["ylims"])
        vs_validations = all(
            isinstance(x, str) and LEGACY_NAMES.get(x) == "val_x_ticks"
            for x in xs["train"] + xs["val"]
        )
        ax.set_xlabel("validations" if vs_validations else "batches fit")
        if ax.lines and pane.get("legend_kw") is not None:
            ax.legend(loc="best", **pane["legend_kw"])
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _saved_lookup(train_state: Mapping[str, Any]) -> Callable[[str], Any]:
    from .state import LEGACY_NAMES

    def lookup(name: str) -> Any:
        field = LEGACY_NAMES.get(name, name)
        if field not in train_state:
            raise ValueError(
                f"plot_configs names {name!r}, which the saved train state does not hold"
            )
        return train_state[field]

    return lookup


def saved_history_figure(state: Mapping[str, Any]) -> Figure:
    """The history figure of a checkpoint's ``state`` (as read from its ``state.json``):
    its saved ``plot_configs`` over the defaults, its histories and x positions."""
    from ..util.jsonstate import from_json
    from .configs import METRIC_TO_ALIAS

    train_state = state["train_state"]
    settings = {k: from_json(v) for k, v in dict(state.get("traingen", {})).items()}
    val_history = train_state["val_history"]
    val_names = [
        n for n in settings.get("val_metrics") or list(val_history) if n in val_history
    ] or list(val_history)
    key_metric = settings.get("key_metric", "loss")
    configs = merge_plot_configs(
        settings.get("plot_configs"),
        with_plot_cfg(  # PLOT_CFG's edits, as the run's own figures have them
            default_plot_configs(
                list(train_state["history"]),
                val_names,
                key_metric,
                bool(settings.get("max_is_best")),
                int(settings.get("plot_first_pane_max_vals", 2)),
            )
        ),
    )
    aliases = settings.get("metric_to_alias") or METRIC_TO_ALIAS
    return history_figure(
        configs, train_state["history"], val_history, _saved_lookup(train_state), aliases
    )


def runs_figure(runs: list[tuple[str, Mapping[str, Any]]], metric: str) -> Figure:
    """Validation ``metric`` against batches fit for each ``(name, state)``, one line per
    run, each run's best marked by its direction (``max_is_best``)."""
    fig = Figure(figsize=(12, 5))
    ax = fig.subplots()
    for name, state in runs:
        train_state = state["train_state"]
        values = train_state["val_history"].get(metric, [])
        x = train_state["val_train_x_ticks"]
        if not values or len(values) != len(x) or any(np.ndim(v) for v in values):
            continue
        (line,) = ax.plot(x, values, marker="o", ms=3, label=name)
        arr = np.asarray(values, dtype=float)
        if np.isfinite(arr).any():
            max_is_best = bool(state.get("traingen", {}).get("max_is_best"))
            j = int(np.nanargmax(arr) if max_is_best else np.nanargmin(arr))
            ax.plot(x[j], arr[j], "o", ms=12, mfc="none", mec=line.get_color(), mew=2)
    ax.set_xlabel("batches fit")
    ax.set_ylabel(f"{metric} (validation)")
    if ax.lines:
        ax.legend(loc="best", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
