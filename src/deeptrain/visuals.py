"""Figures (the training history is :mod:`deeptrain.training.plotting`'s): binary
predictions; histograms of weights,
outputs and gradients; image grids. Drawn with matplotlib's object API
(``matplotlib.figure.Figure``) on an off-screen canvas: nothing is ever shown or blocks,
and no figure is registered with pyplot, so there is nothing to close. Every function
returns the ``Figure``; :func:`save_figure` writes one to disk, scaled by the ``SCALEFIG``
environment variable (DeepTrain 0.6's setting, see :func:`scalefig`)."""

from __future__ import annotations

import ast
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .backend.gradients import layer_outputs
from .backend.layers import get_gradients, get_outputs, get_weights
from .metrics import roc_auc_score, roc_curve

__all__ = [
    "scalefig",
    "scale_factors",
    "save_figure",
    "hist_grid",
    "image_grid",
    "binary_preds_per_iteration",
    "binary_preds_distribution",
    "infer_train_hist",
    "layer_hists",
    "viz_roc_auc",
]


def scale_factors() -> tuple[float, float]:
    """``(width, height)`` factors of the ``SCALEFIG`` environment variable: one factor
    (``'1.2'``) or a pair (``'(1, 1.2)'``); unset: ``(1, 1)``."""
    text = os.environ.get("SCALEFIG", "").strip()
    if not text:
        return 1.0, 1.0
    try:
        value = ast.literal_eval(text)
        w, h = (value, value) if isinstance(value, (int, float)) else value
        w, h = float(w), float(h)
        if not (w > 0 and h > 0):
            raise ValueError
    except (ValueError, TypeError, SyntaxError):
        raise ValueError(
            f"SCALEFIG={text!r}: expected a positive number ('1.2') or a pair ('(1, 1.2)')"
        ) from None
    return w, h


def scalefig(fig: Figure) -> Figure:
    """Scale ``fig``'s size by the ``SCALEFIG`` environment variable (:func:`scale_factors`),
    once. Every figure DeepTrain writes passes through here (0.6 scaled what it showed).
    Returns ``fig``."""
    if getattr(fig, "_deeptrain_scaled", False):
        return fig
    w, h = scale_factors()
    if (w, h) == (1.0, 1.0):
        return fig
    width, height = fig.get_size_inches()
    fig.set_size_inches(width * w, height * h)
    fig._deeptrain_scaled = True  # type: ignore[attr-defined]  # a marker: scale once
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 80) -> Path:
    """Write ``fig`` (scaled by ``SCALEFIG``) to ``path`` (parent directories created);
    returns the path."""
    scalefig(fig)
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
    names_kw: Mapping[str, Any] | None = None,
    show_names: bool = True,
    peaks_to_clip: int = 0,
    title_kw: Mapping[str, Any] | None = None,
    subplots_kw: Mapping[str, Any] | None = None,
    tight_kw: Mapping[str, Any] | None = None,
) -> Figure:
    """One histogram per ``{name: array}`` entry (flattened, non-finite values dropped),
    in a grid of ``n_cols`` columns (default: up to 4), each titled with its name
    (``names_kw``: its text keywords; ``show_names=False``: no names).
    ``share_xy``: ``sharex``/``sharey`` of the subplots; ``center_zero``: x limits
    symmetric about 0; ``peaks_to_clip=n``: the y axis stops at the (n+1)-th highest bin,
    so that n tall peaks do not flatten the rest. ``plot_kw`` go to ``Axes.stairs`` (the
    bars), ``ax.hist``'s keywords translated (``bins``, ``range`` and ``density`` to the
    binning, ``numpy.histogram``; ``log``: a log y axis; ``histtype='step'``: not filled);
    ``title_kw``,
    ``subplots_kw`` and ``tight_kw`` to ``suptitle``, ``subplots`` and ``tight_layout``."""
    names = list(data)
    n = max(1, len(names))
    n_cols = n_cols or min(4, n)
    n_rows = -(-n // n_cols)
    fig = Figure(figsize=(3.5 * n_cols * w, 2.6 * n_rows * h))
    sharing = {"sharex": share_xy[0], "sharey": share_xy[1], **dict(subplots_kw or {})}
    axes = fig.subplots(n_rows, n_cols, squeeze=False, **sharing)
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    for ax, name in zip(axes.flat, names, strict=False):  # the grid may have spare axes
        values = np.asarray(data[name], dtype=float).ravel()
        values = values[np.isfinite(values)]
        # one filled step artist per histogram: ax.hist draws a patch per bin (2x the cost)
        kw, binning, log_scale = _stairs_kw(plot_kw, bins)
        counts, edges = np.histogram(values, **binning)
        ax.stairs(counts, edges, **kw)
        if log_scale:
            ax.set_yscale("log")
        if show_names:
            ax.set_title(name, **{"fontsize": 9, **dict(names_kw or {})})
        if peaks_to_clip and np.size(counts) > peaks_to_clip:
            top = float(np.sort(np.ravel(counts))[-(int(peaks_to_clip) + 1)])
            if top > 0:  # (a log axis keeps its own bottom: 0 is not on it)
                ax.set_ylim(None if log_scale else 0, top * 1.05)
        if center_zero and values.size:
            lim = float(np.abs(values).max()) or 1.0
            ax.set_xlim(-lim, lim)
        ax.tick_params(labelsize=8)
    if title:
        fig.suptitle(title, **{"weight": "bold", **dict(title_kw or {})})
    fig.tight_layout(**dict(tight_kw or {}))
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
    """A cache entry (one batch) as a list of per-window arrays: a list of them, or an array
    ``(slices, samples, 1)`` / ``(slices, samples)`` (DeepTrain 0.6's array layout), or one
    window ``(samples, 1)`` / ``(samples,)``."""
    if isinstance(entry, (list, tuple)):
        return [np.asarray(a) for a in entry]
    a = np.asarray(entry)
    if a.ndim == 3 or (a.ndim == 2 and a.shape[-1] != 1):
        return list(a)
    return [a]


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

    ``labels_cache[b]`` / ``preds_cache[b]``: batch b's arrays, one per window (a list, as
    in ``tg._labels_cache`` / ``tg._preds_cache``), or arrays shaped
    ``(batches, slices, samples, 1)`` as DeepTrain 0.6 documented."""
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
    confidently missed positive. For sigmoid outputs; the caches are laid out as in
    :func:`binary_preds_per_iteration`."""
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
        finite = out[np.isfinite(out)]
        if finite.size < out.size:  # (a model gone NaN: shown, not a crash)
            title = f"{title} ({out.size - finite.size} of {out.size} values not finite)"
        out = finite if finite.size else np.zeros(1)
        ax.hist(out, bins=bins)
        ax.set_title(title, weight="bold", fontsize=fontsize)
        if not keep_borders:
            ax.set_frame_on(False)
        if vline is not None:
            ax.axvline(vline, color="r", linewidth=2)
        ax.set_xlim(*(xlims or (out.min(), out.max() if out.max() > out.min() else out.min() + 1)))
    fig.tight_layout()
    return fig


def _stairs_kw(
    plot_kw: Mapping[str, Any] | None, bins: Any
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """``(Axes.stairs keywords, numpy.histogram keywords, log y axis)`` from ``plot_kw``,
    ``ax.hist``'s keywords (DeepTrain 0.6's ``'plot'`` configs) translated."""
    kw = dict(plot_kw or {})
    binning = {"bins": kw.pop("bins", bins)}
    binning.update({k: kw.pop(k) for k in ("range", "density") if k in kw})
    log_scale = bool(kw.pop("log", False))
    histtype = kw.pop("histtype", "bar")
    if histtype not in ("bar", "barstacked", "step", "stepfilled"):
        raise ValueError(f"histtype must be 'bar', 'step' or 'stepfilled', got {histtype!r}")
    return {"fill": histtype != "step", **kw}, binning, log_scale


def check_plot_kw(plot_kw: Mapping[str, Any] | None) -> None:
    """Raise now, naming it, for a histogram keyword the bars would refuse when drawn."""
    from matplotlib.patches import StepPatch

    kw, binning, _ = _stairs_kw(plot_kw, 10)
    try:
        np.histogram(np.zeros(2), **binning)
        StepPatch(np.ones(1), np.arange(2), **kw)
    except (AttributeError, TypeError, ValueError) as e:
        raise ValueError(f"histogram keywords {dict(plot_kw or {})}: {e}") from None


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
    :mod:`deeptrain.introspection`). ``omit_names`` applies to weights. ``configs`` (DeepTrain
    0.6's keys): ``'plot'``: kwargs of ``ax.hist`` (translated, see :func:`hist_grid`), plus
    ``'annot_kw'`` (the subplot names' text kwargs; None: no names) and ``'peaks_to_clip'``;
    ``'title'``: the title's text, or its kwargs; ``'subplot'``, ``'tight'``: kwargs of
    ``subplots`` and ``tight_layout``; ``'annot'``: like ``'annot_kw'``; ``'save'``: not
    used (callbacks save the figure). ``kw`` go to :func:`hist_grid` (bins, n_cols,
    center_zero, w, h)."""
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
    return hist_grid(data, share_xy=share_xy, **layer_hists_kwargs(configs, mode), **kw)


LAYER_HISTS_CONFIG_KEYS = ("plot", "subplot", "title", "tight", "annot", "save")


def layer_hists_kwargs(configs: Mapping[str, Any] | None, title: str) -> dict[str, Any]:
    """:func:`hist_grid` keywords from :func:`layer_hists`' ``configs``."""
    configs = dict(configs or {})
    unknown = [k for k in configs if k not in LAYER_HISTS_CONFIG_KEYS]
    if unknown:
        raise ValueError(f"configs keys {unknown} are not among {list(LAYER_HISTS_CONFIG_KEYS)}")
    plot = dict(configs.get("plot") or {})
    annot = plot.pop("annot_kw", configs.get("annot", {}))
    peaks_to_clip = int(plot.pop("peaks_to_clip", 0) or 0)
    check_plot_kw(plot)
    title_cfg = configs.get("title", title)
    return {
        "plot_kw": plot,
        "peaks_to_clip": peaks_to_clip,
        "show_names": annot is not None,
        "names_kw": annot or None,
        "title": title_cfg if isinstance(title_cfg, str) else title,
        "title_kw": title_cfg if isinstance(title_cfg, Mapping) else None,
        "subplots_kw": configs.get("subplot"),
        "tight_kw": configs.get("tight"),
    }


def viz_roc_auc(y_true: Any, y_pred: Any) -> Figure:
    """The ROC curve of binary predictions (labels above 0.5 are positives), titled with
    its area (AUC), as :func:`deeptrain.metrics.roc_auc_score` computes it."""
    labels = (np.asarray(y_true, dtype=float) > 0.5).astype(float)
    fpr, tpr = roc_curve(labels, y_pred)
    auc = roc_auc_score(labels, y_pred)
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
