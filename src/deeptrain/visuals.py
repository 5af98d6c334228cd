"""Figures: the training history (train metrics per batch, validation metrics per
validation, epoch boundaries, best point). Drawn with matplotlib's object API on an
off-screen canvas: nothing is ever shown or blocks."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

__all__ = ["history_figure"]


def history_figure(history: Mapping[str, list], val_history: Mapping[str, list],
                   train_x: Sequence[int], val_x: Sequence[int], epoch_lines: Sequence[int],
                   aliases: Mapping[str, str], key_metric: str | None = None,
                   max_is_best: bool = False, first_pane_max_vals: int = 2,
                   w: float = 1, h: float = 1) -> Figure:
    """Pane 0: train metrics and the first ``first_pane_max_vals`` validation metrics vs
    batches fit; pane 1 (if any): the other validation metrics vs batches fit."""
    val_names = [n for n in val_history if _plottable(val_history[n])]
    panes = [val_names[:first_pane_max_vals], val_names[first_pane_max_vals:]]
    n_panes = 2 if panes[1] else 1
    fig = Figure(figsize=(12 * w, 5 * h * n_panes))
    axes = fig.subplots(n_panes, 1, squeeze=False)[:, 0]
    for i, ax in enumerate(axes):
        if i == 0:
            for name, values in history.items():
                if _plottable(values) and len(values) == len(train_x):
                    ax.plot(train_x, values, label=f"{aliases.get(name, name)} (train)")
        for name in panes[i]:
            values = np.asarray(val_history[name], dtype=float)
            if len(values) == len(val_x):
                ax.plot(val_x, values, marker="o", ms=3,
                        label=f"{aliases.get(name, name)} (val)")
                if name == key_metric and len(values) and np.isfinite(values).any():
                    best = int(np.nanargmax(values) if max_is_best else np.nanargmin(values))
                    ax.plot(val_x[best], values[best], "o", ms=12, mfc="none", mec="g", mew=2)
        for x in epoch_lines:
            ax.axvline(x, color="k", lw=0.8, alpha=0.6)
        ax.set_xlabel("batches fit")
        if ax.lines:
            ax.legend(loc="best", fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _plottable(values: Sequence[Any]) -> bool:
    return len(values) > 0 and all(np.ndim(v) == 0 for v in values)
