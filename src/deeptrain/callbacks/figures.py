"""Callbacks that draw figures (see :mod:`deeptrain.visuals`) into the log directory.

Each writes ``<logdir>/figures/<name>__e<epoch>_b<batches fit>_v<validations>.png`` and
returns that path (None, with nothing written, when the TrainGenerator has no logdir).
With windows (several iterations per batch) the name adds ``_i<iterations fit>``, and inside
a validation ``_vi<validation iterations>``, so that no figure overwrites another.
Figures are ``matplotlib.figure.Figure`` objects: never shown, never blocking.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import visuals
from ..training.contract import Traingen
from .base import PeriodicCallback, Stage

__all__ = [
    "figure_path",
    "binary_preds_per_iteration_cb",
    "binary_preds_distribution_cb",
    "infer_train_hist_cb",
    "make_layer_hists_cb",
    "VizAE2D",
]

log = logging.getLogger(__name__)


def is_writer(tg: Traingen) -> bool:
    """Whether this process writes the run's files (always, unless distributed)."""
    distribution = getattr(tg, "distribution", None)
    return distribution is None or distribution.is_writer


def figure_path(tg: Traingen, name: str) -> Path | None:
    """Where a callback figure called ``name`` goes now; None without a logdir, and on every
    process but the writer of a distributed run (figures are written once)."""
    if tg.logdir is None or not is_writer(tg):
        return None
    s = tg.state
    at = f"e{s.epoch}_b{s.batches_fit}_v{s.times_validated}"
    if s.fit_iters != s.batches_fit:  # windows: one figure per iteration, not per batch
        at += f"_i{s.fit_iters}"
    if s.train_loop_done and not s.val_loop_done:  # inside a validation: per its iteration
        at += f"_vi{s.val_iters}"
    return Path(tg.logdir) / "figures" / f"{name}__{at}.png"


def _save(tg: Traingen, fig: Any, name: str) -> Path | None:
    path = figure_path(tg, name)
    if path is None:
        log.debug("%s: the TrainGenerator has no logdir; figure not saved", name)
        return None
    return visuals.save_figure(fig, path)


def _predict_cache(tg: Traingen, name: str) -> Any:
    cache = tg.val_cache
    if not len(cache):
        log.warning(
            "%s needs the predictions of a validation in predict mode "
            "(eval_fn='predict', as a 'val_end' callback); none are cached",
            name,
        )
        return None
    return cache


def _val_batch(tg: Traingen) -> tuple[Any, Any]:
    """The validation batch (window) in memory, as the model sees it, and its labels."""
    x, labels = tg.val_datagen.get(skip_validation=True)
    return x, (x if tg.input_as_labels else labels)


def binary_preds_per_iteration_cb(tg: Traingen) -> Path | None:
    """Labels vs predictions of every validation batch (sigmoid outputs; use at
    ``'val_end'`` in predict mode). See :func:`deeptrain.visuals.binary_preds_per_iteration`."""
    cache = _predict_cache(tg, "binary_preds_per_iteration_cb")
    if cache is None:
        return None
    fig = visuals.binary_preds_per_iteration(cache.labels, cache.preds)
    return _save(tg, fig, "binary_preds_per_iteration")


def binary_preds_distribution_cb(tg: Traingen) -> Path | None:
    """All validation predictions against the prediction threshold (sigmoid outputs; use at
    ``'val_end'`` in predict mode). See :func:`deeptrain.visuals.binary_preds_distribution`."""
    cache = _predict_cache(tg, "binary_preds_distribution_cb")
    if cache is None:
        return None
    fig = visuals.binary_preds_distribution(cache.labels, cache.preds, tg.state.predict_threshold)
    return _save(tg, fig, "binary_preds_distribution")


def infer_train_hist_cb(tg: Traingen) -> Path | None:
    """Output-layer values on the current validation batch in inference vs train mode, with
    the prediction threshold and x limits (0, 1) (sigmoid outputs). See
    :func:`deeptrain.visuals.infer_train_hist`."""
    x, _ = _val_batch(tg)
    fig = visuals.infer_train_hist(tg.model, x, vline=tg.state.predict_threshold, xlims=(0, 1))
    return _save(tg, fig, "infer_train_hist")


def make_layer_hists_cb(
    _id: Any = "*",
    mode: str = "weights",
    x: Any = None,
    y: Any = None,
    omit_names: str | Sequence[str] | None = "bias",
    share_xy: Sequence[Any] = (False, False),
    configs: Any = None,
    **kw: Any,
) -> Any:
    """A callback ``fn(tg)`` drawing :func:`deeptrain.visuals.layer_hists` of ``mode``
    (``'weights'``, ``'outputs'``, ``'gradients:outputs'``, ``'gradients:weights'``) on
    ``x``, ``y`` (default: the validation batch in memory and its labels). ``configs``:
    DeepTrain 0.6's keys (``{'plot': {'annot_kw': None, 'peaks_to_clip': 2}, 'title':
    {...}}``, see :func:`deeptrain.visuals.layer_hists`), checked here."""
    if mode not in visuals.LAYER_HIST_MODES:
        raise ValueError(f"mode must be one of {visuals.LAYER_HIST_MODES}, got {mode!r}")
    visuals.layer_hists_kwargs(configs, mode)  # a bad key fails now, not at the first call
    name = "layer_hists_" + mode.replace(":", "-") + _id_tag(_id)

    def layer_hists_cb(tg: Traingen) -> Path | None:
        data, labels = x, y
        if mode != "weights" and data is None:
            data, labels = _val_batch(tg)
        fig = visuals.layer_hists(
            tg.model, _id, mode, data, labels, omit_names, share_xy, configs, **kw
        )
        return _save(tg, fig, name)

    return layer_hists_cb


class VizAE2D(PeriodicCallback):
    """Autoencoder images: the first ``n_images`` validation inputs (top row) and their
    reconstructions (bottom row), ``hot`` colormap.

    Args:
        n_images: images per row.
        save_images: write ``<logdir>/figures/VizAE2D__e<epoch>_b<batches>_v<vals>.png``
            (named as :func:`figure_path` says).
        freq: ``{stage: n}`` (default ``{'val_end': 1}``: after every validation).

    In predict mode with ``input_as_labels`` the images come from the prediction cache (no
    extra model call); otherwise the current validation batch is fed to the model. The
    last figure is kept as ``self.figure``; ``self.savepath`` is where it went.
    """

    def __init__(
        self, n_images: int = 8, save_images: bool = True, freq: dict[str, int] | None = None
    ):
        super().__init__({"val_end": 1} if freq is None else freq)
        self.n_images = int(n_images)
        self.save_images = save_images
        self.figure: Any = None
        self.savepath: Path | None = None

    def on_due(self, stage: Stage) -> None:
        self.viz()

    def viz(self) -> Any:
        originals, reconstructions = self.get_data()
        self.figure = visuals.image_grid(
            [list(originals), list(reconstructions)],
            cmap="hot",
            row_titles=["inputs", "reconstructions"],
        )
        self.savepath = _save(self.tg, self.figure, "VizAE2D") if self.save_images else None
        return self.figure

    def get_data(self) -> tuple[np.ndarray, np.ndarray]:
        tg, n = self.tg, self.n_images
        cache = tg.val_cache
        if tg.input_as_labels and len(cache):
            return np.asarray(cache.labels[-1][-1])[:n], np.asarray(cache.preds[-1][-1])[:n]
        x, _ = _val_batch(tg)
        x = np.asarray(x)[:n]
        return x, np.asarray(tg.model.predict_on_batch(x))


def _id_tag(_id: Any) -> str:
    """``_id`` in a file name (``''`` for ``'*'``): callbacks of other layers write other
    files."""
    if isinstance(_id, str) and _id == "*":
        return ""
    items = _id if isinstance(_id, (list, tuple)) else [_id]
    text = "-".join(str(getattr(item, "name", item)) for item in items)
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")
    if len(tag) > _MAX_TAG:  # a file name has 255 bytes: a long list of layers is hashed
        tag = f"{tag[: _MAX_TAG - 17]}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    return "_" + tag


_MAX_TAG = 120
"""Longest ``_id`` tag in a figure's file name (the rest of the name takes < 100 bytes)."""
