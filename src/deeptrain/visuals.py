"""Figures (the training history is :mod:`deeptrain.training.plotting`'s): binary
predictions; histograms of weights,
outputs and gradients; image grids. Drawn with matplotlib's object API
(``matplotlib.figure.Figure``) on an off-screen canvas: nothing is ever shown or blocks,
and no figure is registered with pyplot, so there is nothing to close. Every function
returns the ``Figure``; :func:`save_figure` writes one to disk."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .backend.gradients import layer_outputs
from .backend.layers import get_gradients, get_outputs, get_weights

__all__ = [
    "save_figure",
    "hist_grid",
    "image_grid",
    "binary_preds_per_iteration",
    "binary_preds_distribution",
    "infer_train_hist",
    "layer_hists",
    "viz_roc_auc",
]


def save_figure(fig: Figure, path: str | Path, dpi: int = 80) -> Path:
    """Write ``fig`` to ``path`` (parent directories created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def hist_grid(
    data: Mapping[str, Any],
    bins: int = 100,
    share_xy: Sequence[Any] = (False, False),
    n_cols: int | None = None,
    center_zero: bool = False,
    title: str | None = None,
    plot_kw: Mapping[str, Any] | None = None,
    w: float = 1,
    h: float = 1,
) -> Figure:
    """One histogram per ``{name: array}`` entry (flattened, non-finite values dropped),
    in a grid of ``n_cols`` columns (default: up to 4), each titled with its name.
    ``share_xy``: ``sharex``/``sharey`` of the subplots; ``center_zero``: x limits
    symmetric about 0."""
    names = list(data)
    n = max(1, len(names))
    n_cols = n_cols or min(4, n)
    n_rows = -(-n // n_cols)
    fig = Figure(figsize=(3.5 * n_cols * w, 2.6 * n_rows * h))
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharex=share_xy[0], sharey=share_xy[1])
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    for ax, name in zip(axes.flat, names, strict=False):  # the grid may have spare axes
        values = np.asarray(data[name], dtype=float).ravel()
        values = values[np.isfinite(values)]
        ax.hist(values, bins=bins, **dict(plot_kw or {}))
        ax.set_title(name, fontsize=9)
        if center_zero and values.size:
            lim = float(np.abs(values).max()) or 1.0
            ax.set_xlim(-lim, lim)
        ax.tick_params(labelsize=8)
    if title:
        fig.suptitle(title, weight="bold")
    fig.tight_layout()
    return fig


def image_grid(
    rows: Sequence[Any],
    cmap: str = "hot",
    row_titles: Sequence[str] | None = None,
    w: float = 1,
    h: float = 1,
) -> Figure:
    """Images in a grid: ``rows[i][j]`` is row i, column j; each image ``(H, W)``,
    ``(H, W, 1)`` or ``(H, W, 3)``."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig = Figure(figsize=(1.4 * n_cols * w, 1.5 * n_rows * h))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for i, row in enumerate(rows):
        for j, ax in enumerate(axes[i]):
            ax.set_axis_off()
            if j < len(row):
                img = np.asarray(row[j], dtype=float)
                ax.imshow(img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img, cmap=cmap)
        if row_titles:
            axes[i][0].set_title(row_titles[i], fontsize=9, loc="left")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.9, wspace=0.05, hspace=0.25)
    return fig


def _windows(entry: Any) -> list[np.ndarray]:
    """A cache entry (one batch): a list of per-window arrays, or one array."""
    return (
        [np.asarray(a) for a in entry] if isinstance(entry, (list, tuple)) else [np.asarray(entry)]
    )


def _binary(a: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    if a.ndim > 1 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 1:
        raise ValueError(
            f"binary_preds_* need one sigmoid output per sample; {what} has shape {a.shape}"
        )
    return a


def binary_preds_per_iteration(
    labels_cache: Sequence[Any], preds_cache: Sequence[Any], w: float = 1, h: float = 1
) -> Figure:
    """One image per validation batch: its labels (two rows) above its predictions (one row
    per window), samples along x; ``bwr`` colormap (blue 0, red 1). For sigmoid outputs.

    ``labels_cache[b]`` / ``preds_cache[b]``: batch b's arrays, one per window (a list),
    as in ``TrainGenerator._val_cache``."""
    n = len(preds_cache)
    if n == 0:
        raise ValueError("binary_preds_per_iteration: no predictions cached")
    fig = Figure(figsize=(12 * w, max(1.2, 0.9 * n) * h))
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    for ax, labels, preds in zip(axes, labels_cache, preds_cache, strict=True):
        lab = _binary(_windows(labels)[0], "labels")
        image = np.vstack([lab, lab] + [_binary(p, "predictions") for p in _windows(preds)])
        ax.imshow(image, cmap="bwr", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        ax.set_axis_off()
    fig.subplots_adjust(bottom=0.02, top=0.98, left=0.01, right=0.99, hspace=0.3)
    return fig


def binary_preds_distribution(
    labels_cache: Sequence[Any],
    preds_cache: Sequence[Any],
    pred_th: float,
    w: float = 1,
    h: float = 1,
) -> Figure:
    """All predictions as dots along x in [0, 1], spread over a few rows; red: label 1,
    blue: label 0; a thick black line at the threshold ``pred_th``. A red dot far left is a
    confidently missed positive. For sigmoid outputs."""
    pred_list, label_list = [], []
    for label_entry, pred_entry in zip(labels_cache, preds_cache, strict=True):
        batch_labels = _binary(_windows(label_entry)[0], "labels")  # windows share labels
        for p in _windows(pred_entry):
            pred_list.append(_binary(p, "predictions"))
            label_list.append(batch_labels)
    preds, labels = np.concatenate(pred_list), np.concatenate(label_list)
    n_rows = 24 if len(preds) > 5000 else 16 if len(preds) > 3000 else 10
    colors = np.where(labels[:, None] > 0.5, [[1.0, 0, 0]], [[0, 0, 1.0]])
    fig = Figure(figsize=(13 * w, (4 if len(preds) < 5000 else 6) * h))
    ax = fig.subplots()
    ax.axvline(pred_th, color="black", linewidth=4)
    ax.scatter(preds, np.arange(len(preds)) % n_rows, c=colors, s=12)
    ax.set_yticks([])
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("prediction")
    fig.tight_layout()
    return fig


def infer_train_hist(
    model: Any,
    input_data: Any,
    layer: Any = None,
    keep_borders: bool = True,
    bins: int = 100,
    xlims: Sequence[float] | None = None,
    fontsize: int = 14,
    vline: float | None = None,
    w: float = 1,
    h: float = 1,
) -> Figure:
    """Histograms of a layer's outputs (default: the last layer) on ``input_data`` in
    inference mode (top, "Train mode OFF") and train mode (bottom, "Train mode ON"): the
    effect of Dropout, BatchNormalization and the like. (DeepTrain 0.6 swapped the titles.)
    The model is not changed."""
    layer = layer if layer is not None else model.layers[-1]
    outs = [layer_outputs(model, input_data, [layer], training=t)[0] for t in (False, True)]
    fig = Figure(figsize=(13 * w, 6 * h))
    axes = fig.subplots(2, 1, sharex=True, sharey=True)
    for ax, out, title in zip(axes, outs, ("Train mode OFF", "Train mode ON"), strict=True):
        out = np.asarray(out, dtype=float).ravel()
        ax.hist(out, bins=bins)
        ax.set_title(title, weight="bold", fontsize=fontsize)
        if not keep_borders:
            ax.set_frame_on(False)
        if vline is not None:
            ax.axvline(vline, color="r", linewidth=2)
        ax.set_xlim(*(xlims or (out.min(), out.max() if out.max() > out.min() else out.min() + 1)))
    fig.tight_layout()
    return fig


LAYER_HIST_MODES = ("weights", "outputs", "gradients", "gradients:outputs", "gradients:weights")


def layer_hists(
    model: Any,
    _id: Any = "*",
    mode: str = "weights",
    input_data: Any = None,
    labels: Any = None,
    omit_names: str | Sequence[str] | None = "bias",
    share_xy: Sequence[Any] = (False, False),
    configs: Mapping[str, Any] | None = None,
    **kw: Any,
) -> Figure:
    """Histogram grid of the weights, outputs or gradients (``'gradients'`` means
    ``'gradients:outputs'``) of the layers ``_id`` chooses (see
    :mod:`deeptrain.introspection`). ``omit_names`` applies to weights. ``configs``:
    ``{'plot': kwargs of ax.hist, 'title': suptitle text}``; ``kw`` go to :func:`hist_grid`
    (bins, n_cols, center_zero, w, h)."""
    if mode not in LAYER_HIST_MODES:
        raise ValueError(f"mode must be one of {LAYER_HIST_MODES}, got {mode!r}")
    if mode != "weights" and input_data is None:
        raise ValueError(f"mode={mode!r} needs input_data")
    if mode.startswith("gradients") and labels is None:
        raise ValueError(f"mode={mode!r} needs labels")
    if mode == "weights":
        data = get_weights(model, _id, omit_names)
    elif mode == "outputs":
        data = get_outputs(model, _id, input_data)
    else:
        data = get_gradients(
            model,
            _id,
            input_data,
            labels,
            mode="weights" if mode == "gradients:weights" else "outputs",
        )
    configs = dict(configs or {})
    return hist_grid(
        data, share_xy=share_xy, plot_kw=configs.get("plot"), title=configs.get("title", mode), **kw
    )


def viz_roc_auc(y_true: Any, y_pred: Any) -> Figure:
    """The ROC curve of binary predictions, titled with its area (AUC)."""
    y_true = np.asarray(y_true).ravel()
    order = np.argsort(-np.asarray(y_pred, dtype=float).ravel(), kind="stable")
    hits = y_true[order] > 0.5
    tpr = np.concatenate([[0.0], np.cumsum(hits) / max(1, hits.sum())])
    fpr = np.concatenate([[0.0], np.cumsum(~hits) / max(1, (~hits).sum())])
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    fig = Figure(figsize=(6, 6))
    ax = fig.subplots()
    ax.plot(fpr, tpr, marker=".")
    ax.plot([0, 1], [0, 1], color="gray", lw=0.8, ls="--")
    kw: dict[str, Any] = dict(fontsize=12, weight="bold")
    ax.set_title(f"Receiver Operating Characteristic (AUC = {auc:.3f})", **kw)
    ax.set_xlabel("1 - specificity", **kw)
    ax.set_ylabel("sensitivity", **kw)
    fig.tight_layout()
    return fig
