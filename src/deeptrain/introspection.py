"""Introspection: weights, layer outputs and loss gradients by layer; gradient norms over a
dataset; the model's health (dead, NaN/Inf and large weights).

Functions whose first argument is ``tg`` take a TrainGenerator (the TrainGenerator methods
of the same names call them); those that only need a model also accept a Keras model there.

Layers are chosen with ``_id`` as in DeepTrain 0.6:

* ``'*'``: every layer of ``model.layers`` (input layers excluded);
* ``int``: ``model.layers[i]``; a ``Layer`` object: itself;
* ``str``: the layer of that name, else the first whose name contains it; for weights, a
  string with ``'/'`` names a weight by its path (``'dense/kernel'`` finds
  ``'sequential/dense/kernel'``; a TF1-style ``':0'`` suffix is ignored);
* a list of the above.

Names in returned dicts are weight paths (``variable.path``) or layer names.
Gradients are of the compiled loss (plus regularisation penalties), computed by
:mod:`deeptrain.backend.gradients` on tensorflow, torch or jax, and never change the model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .backend.gradients import variables_kept
from .backend.layers import (
    LayerId,
    get_gradients,
    get_outputs,
    get_weights,
    model_of,
    select_layers,
    select_weights,
    to_numpy,
    unique_names,
)
from .backend.stateful import reset_states, state_variables
from .training.contract import Traingen
from .util.misc import positive_int
from .visuals import hist_grid, save_figure

__all__ = [
    "select_layers",
    "select_weights",
    "get_weights",
    "get_outputs",
    "get_gradients",
    "compute_gradient_norm",
    "gradient_norm_over_dataset",
    "gradient_sum_over_dataset",
    "GradientNorms",
    "GradientSums",
    "kept_position",
    "peek_batch",
    "print_dead_weights",
    "print_nan_weights",
    "print_large_weights",
    "HealthReport",
    "check_health",
]

log = logging.getLogger(__name__)

NormFn = Callable | tuple[Callable, Callable]


# -- gradient norms ------------------------------------------------------------------------
def _norm_fns(norm_fn: NormFn) -> tuple[Callable, Callable]:
    if isinstance(norm_fn, (tuple, list)):
        outer, inner = norm_fn
        return outer, inner
    return (lambda v: v), norm_fn


def _norms(grads: Sequence[np.ndarray], norm_fn: NormFn, scope: str) -> np.ndarray:
    outer, inner = _norm_fns(norm_fn)
    sums = np.array([np.sum(inner(g)) for g in grads], dtype=float)
    return np.asarray(outer(sums) if scope == "local" else outer(np.sum(sums)), dtype=float)


def compute_gradient_norm(
    tg: Traingen,
    input_data: Any,
    labels: Any,
    sample_weight: Any = None,
    learning_phase: int | bool = 0,
    _id: LayerId = "*",
    mode: str = "weights",
    norm_fn: NormFn = (np.sqrt, np.square),
    scope: str = "local",
) -> np.ndarray:
    """Norm of the loss gradient on one batch: ``outer(sum(inner(g)))``.

    ``norm_fn=(outer, inner)`` (default ``(np.sqrt, np.square)``: the L2 norm; a single
    function ``f`` means ``(identity, f)``, e.g. ``np.abs`` for L1). ``scope='local'``: one
    norm per gradient tensor, a 1-D array in ``_id`` order (with ``mode='weights'`` these are
    what ``clipnorm`` compares); ``'global'``: one norm over all tensors, a 0-d array
    (what ``global_clipnorm`` compares).
    """
    if scope not in ("local", "global"):
        raise ValueError(f"scope must be 'local' or 'global', got {scope!r}")
    grads = get_gradients(tg, _id, input_data, labels, sample_weight, learning_phase, mode)
    return _norms(list(grads.values()), norm_fn, scope)


class _Unpacks:
    """Unpacks, indexes and measures like DeepTrain 0.6's 3-tuple result (``_legacy()``)."""

    def _legacy(self) -> tuple[Any, int, int]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Any]:
        return iter(self._legacy())

    def __getitem__(self, index: int | slice) -> Any:
        return self._legacy()[index]

    def __len__(self) -> int:
        return 3


@dataclass
class GradientNorms(_Unpacks):
    """Result of :func:`gradient_norm_over_dataset`.

    ``norms[i, j]``: iteration ``i``'s norm of gradient tensor ``names[j]`` (one column,
    named ``'global'``, with ``scope='global'``); ``stat[i] = stat_fn(norms[i])``.
    It unpacks like DeepTrain 0.6's result:
    ``grad_norms, batches_processed, iters_processed = tg.gradient_norm_over_dataset()``
    gives ``stat`` (0.6's per-iteration values) and the two counts.
    """

    norms: np.ndarray
    names: list[str]
    stat: np.ndarray
    batches_processed: int
    iters_processed: int
    figure: Any = None
    savepath: Path | None = None

    def _legacy(self) -> tuple[np.ndarray, int, int]:
        return self.stat, self.batches_processed, self.iters_processed


@dataclass
class GradientSums(_Unpacks):
    """Result of :func:`gradient_sum_over_dataset`: ``sums[name]`` is the gradient tensor
    summed over ``iters_processed`` iterations (divide for the mean gradient). It unpacks
    like DeepTrain 0.6's result: ``grads_sum, batches_processed, iters_processed``."""

    sums: dict[str, np.ndarray]
    batches_processed: int
    iters_processed: int
    figure: Any = None
    savepath: Path | None = None

    def _legacy(self) -> tuple[dict[str, np.ndarray], int, int]:
        return self.sums, self.batches_processed, self.iters_processed


def gradient_norm_over_dataset(
    tg: Traingen,
    val: bool = False,
    learning_phase: int | bool = 0,
    mode: str = "weights",
    norm_fn: NormFn = (np.sqrt, np.square),
    stat_fn: Callable = np.median,
    n_iters: int | None = None,
    prog_freq: int = 10,
    w: float = 1,
    h: float = 1,
    _id: LayerId = "*",
    scope: str = "local",
    plot: bool = True,
    savepath: str | Path | None = None,
) -> GradientNorms:
    """Gradient norms at every iteration over the train (or ``val``) data: for picking
    ``clipnorm``.

    Runs over one whole epoch of ``datagen`` (or ``val_datagen``) from its start,
    or ``n_iters`` iterations if fewer, then puts the DataGenerator back exactly where it
    was. Per iteration it keeps every tensor's norm (:func:`compute_gradient_norm`), so
    ``norms`` has shape ``(iters_processed, n_tensors)`` (DeepTrain 0.6 documented this shape
    but returned only ``stat_fn`` per iteration, which is now ``stat``). Logs the mean and
    max of ``stat``; draws a histogram of all norms, saved to ``savepath`` (default
    ``<logdir>/figures/gradient_norms.png`` when the TrainGenerator has a logdir).
    """
    if scope not in ("local", "global"):
        raise ValueError(f"scope must be 'local' or 'global', got {scope!r}")
    model = tg.model
    names: list[str] = []

    def gather(acc: list, x: Any, y: Any, sw: Any) -> list:
        grads = get_gradients(model, _id, x, y, sw, learning_phase, mode, carry_variables=True)
        if not names:
            names.extend(grads if scope == "local" else ["global"])
        acc.append(_norms(list(grads.values()), norm_fn, scope).reshape(-1))
        return acc

    _notify_start("gradient norms", val, learning_phase)
    rows, batches, iters = _gather_over_dataset(
        tg, gather, [], val, n_iters, prog_freq, learning_phase
    )
    norms = np.array(rows, dtype=float).reshape(iters, -1)
    stat = np.array([stat_fn(r) for r in norms], dtype=float)
    if iters:
        log.info(
            "GRADIENT NORM %s (AVG, MAX) = (%.4g, %.4g), over %d batches, %d iterations of %s",
            getattr(stat_fn, "__name__", "stat"),
            stat.mean(),
            stat.max(),
            batches,
            iters,
            "val_datagen" if val else "datagen",
        )
    result = GradientNorms(norms, names, stat, batches, iters)
    if plot and iters:
        result.figure = hist_grid(
            {f"gradient norms ({mode}, {scope})": norms.ravel()},
            bins=min(600, max(10, norms.size)),
            w=1.5 * w,
            h=h,
        )
        result.savepath = _save(tg, result.figure, savepath, "gradient_norms.png")
    return result


def gradient_sum_over_dataset(
    tg: Traingen,
    val: bool = False,
    learning_phase: int | bool = 0,
    mode: str = "weights",
    n_iters: int | None = None,
    prog_freq: int = 10,
    plot_kw: Mapping[str, Any] | None = None,
    _id: LayerId = "*",
    plot: bool = True,
    savepath: str | Path | None = None,
) -> GradientSums:
    """Gradient tensors summed over the train (or ``val``) data, full shapes kept: for mean
    gradients or ``clipvalue``. Iterates like :func:`gradient_norm_over_dataset` (position
    restored afterwards); draws a histogram per tensor (``plot_kw`` goes to
    :func:`~deeptrain.visuals.hist_grid`), saved to ``savepath`` (default
    ``<logdir>/figures/gradient_sums.png``)."""
    model = tg.model

    def gather(acc: dict, x: Any, y: Any, sw: Any) -> dict:
        grads = get_gradients(model, _id, x, y, sw, learning_phase, mode, carry_variables=True)
        for name, g in grads.items():
            acc[name] = acc[name] + g if name in acc else np.array(g, dtype=np.float64)
        return acc

    _notify_start("gradient sums", val, learning_phase)
    sums, batches, iters = _gather_over_dataset(
        tg, gather, {}, val, n_iters, prog_freq, learning_phase
    )
    log.info(
        "GRADIENT SUMS over %d batches, %d iterations of %s",
        batches,
        iters,
        "val_datagen" if val else "datagen",
    )
    result = GradientSums(sums, batches, iters)
    if plot and sums:
        kw = {"share_xy": (False, False), "center_zero": True, **dict(plot_kw or {})}
        result.figure = hist_grid(sums, **kw)
        result.savepath = _save(tg, result.figure, savepath, "gradient_sums.png")
    return result


def _notify_start(what: str, val: bool, learning_phase: Any) -> None:
    log.info(
        "Computing %s over %s batches, in %s mode",
        what,
        "val_datagen" if val else "datagen",
        "train" if learning_phase else "inference",
    )


def _gather_over_dataset(
    tg: Traingen,
    gather_fn: Callable,
    acc: Any,
    val: bool = False,
    n_iters: int | None = None,
    prog_freq: int = 10,
    learning_phase: int | bool = 0,
) -> tuple[Any, int, int]:
    """``acc = gather_fn(acc, x, y, sample_weight)`` for every iteration (batch, or window of
    one) of one pass over the data from its start, stopping early after ``n_iters``.
    Returns ``(acc, batches_processed, iters_processed)``; the DataGenerator's position is
    restored afterwards (:func:`kept_position`), and so are the stateful RNN states, and
    after a pass in train mode (``learning_phase``) every non-trainable variable and
    torch's random generators. In the pass they move as training moves them (``gather_fn``
    asks for gradients with ``carry_variables=True``): stateful RNNs' states start from
    zero, carry from window to window and are reset after every batch with
    ``reset_statefuls``; in train mode each iteration draws a new Dropout mask."""
    if n_iters is not None:
        n_iters = positive_int(n_iters, "n_iters")
    batches = iters = 0
    model = tg.model
    # (in inference mode only the stateful RNN states move: the rest is not copied)
    with kept_position(tg, val) as dg, variables_kept(model, bool(learning_phase)):
        dg.reset_state(shuffle=False)
        reset_states(model)
        while n_iters is None or iters < n_iters:
            x, y, sw = tg.get_data(val=val)
            acc = gather_fn(acc, x, y, sw)
            iters += 1
            dg.update_state()
            if dg.batch_exhausted:
                batches += 1
                if tg.reset_statefuls:
                    reset_states(model)
                if prog_freq and batches % prog_freq == 0:
                    log.info("... %d batches (%d iterations)", batches, iters)
            if dg.all_data_exhausted:
                break
    return acc, batches, iters


@contextmanager
def kept_position(tg: Traingen, val: bool = False) -> Iterator[Any]:
    """Yield ``datagen`` (or ``val_datagen``) and put it back afterwards exactly where it
    was: queue, current batch and window, epoch, shuffling generator; the TrainGenerator's
    ``set_name`` / ``val_set_name`` too."""
    dg = tg.val_datagen if val else tg.datagen
    snapshot = dg.state_dict()
    batch, labels, exhausted = dg.batch, dg.labels, dg.all_data_exhausted
    names = tg.state.set_name, tg.state.val_set_name
    try:
        yield dg
    finally:
        dg.reset_state(shuffle=False)
        dg.load_state_dict(snapshot)
        dg.batch, dg.labels, dg.all_data_exhausted = batch, labels, exhausted
        tg.state.set_name, tg.state.val_set_name = names


def peek_batch(tg: Traingen, val: bool = True) -> tuple[Any, Any, Any]:
    """``(x, y, sample_weight)`` of the first batch (window) of the data, as the model would
    get it, without moving the DataGenerator."""
    with kept_position(tg, val) as dg:
        dg.reset_state(shuffle=False)
        return tg.get_data(val=val)


def _save(tg: Traingen, fig: Any, savepath: str | Path | None, default_name: str) -> Path | None:
    if savepath is None:
        logdir = getattr(tg, "logdir", None)
        if logdir is None:
            return None
        savepath = Path(logdir) / "figures" / default_name
    return save_figure(fig, savepath)


# -- model health --------------------------------------------------------------------------
def _all_weights(model: Any, trainable_only: bool = True) -> dict[str, np.ndarray]:
    """The weights the health checks judge, by path, read once (see :func:`_read_weights`):
    the trainable ones, or (``trainable_only=False``, for NaN and Inf) every one."""
    weights, trainable = _read_weights(model)
    return {k: v for k, v in weights.items() if k in trainable} if trainable_only else weights


def _read_weights(model: Any) -> tuple[dict[str, np.ndarray], set[str]]:
    """Every weight but stateful RNN states (which JAX tracks among the weights), by path,
    and the paths of the trainable ones. Dead and large weights are judged among the
    trainable ones, the parameters training learns: not state that is not a weight (seed
    states; BatchNorm's moving mean and variance), whose zeros or large values say nothing
    about health, nor frozen layers, which training does not change. NaN and Inf among
    all of them: a NaN moving variance or frozen kernel makes every output NaN."""
    model = model_of(model)
    states = {id(v) for values in state_variables(model).values() for v in values}
    weights = [w for w in model.weights if id(w) not in states]
    names = unique_names([w.path for w in weights])
    trainable = {name for name, w in zip(names, weights, strict=True) if w.trainable}
    return dict(zip(names, map(to_numpy, weights), strict=True)), trainable


def _percent(frac: float, notify_above_frac: float) -> str:
    """``frac`` as a percentage with enough decimals to show ``notify_above_frac``."""
    digits = 1
    if 0 < notify_above_frac < 1e-3:
        digits = int(np.ceil(-np.log10(100 * notify_above_frac)))
    return f"{100 * frac:.{digits}f}%"


def _dead(
    weights: Mapping[str, np.ndarray],
    dead_threshold: float,
    notify_above_frac: float,
    notify_detected_only: bool,
) -> dict[str, float]:
    found, any_dead = {}, False
    for name, value in weights.items():
        n_dead = int(np.sum(np.abs(value) < dead_threshold))
        any_dead |= n_dead > 0
        frac = n_dead / max(1, value.size)
        if frac > notify_above_frac:
            found[name] = frac
            log.warning("%s dead -- %r", _percent(frac, notify_above_frac), name)
    if not found and not notify_detected_only:
        log.info(
            "%s (dead_threshold, notify_above_frac) = (%s, %s)",
            "Dead weights detected, but below the notify fraction;"
            if any_dead
            else "No dead weights detected;",
            dead_threshold,
            notify_above_frac,
        )
    return found


def _nan(
    weights: Mapping[str, np.ndarray], notify_detected_only: bool
) -> dict[str, tuple[int, int]]:
    found = {}
    for name, value in weights.items():
        if not np.issubdtype(value.dtype, np.inexact):
            continue
        n_nan, n_inf = int(np.isnan(value).sum()), int(np.isinf(value).sum())
        if n_nan or n_inf:
            found[name] = (n_nan, n_inf)
            log.warning(
                "%d NaN, %d Inf (%s of %d) -- %r",
                n_nan,
                n_inf,
                _percent((n_nan + n_inf) / value.size, 1e-3),
                value.size,
                name,
            )
    if not found and not notify_detected_only:
        log.info("No NaN or Inf weights detected")
    return found


def _large(
    weights: Mapping[str, np.ndarray],
    large_threshold: float,
    notify_above_frac: float,
    notify_detected_only: bool,
) -> dict[str, float]:
    found = {}
    for name, value in weights.items():
        with np.errstate(invalid="ignore"):
            n_large = int(np.sum(np.isfinite(value) & (np.abs(value) > large_threshold)))
        frac = n_large / max(1, value.size)
        if frac > notify_above_frac:
            found[name] = frac
            log.warning(
                "%s large (|w| > %s) -- %r",
                _percent(frac, notify_above_frac),
                large_threshold,
                name,
            )
    if not found and not notify_detected_only:
        log.info(
            "No large weights detected; (large_threshold, notify_above_frac) = (%s, %s)",
            large_threshold,
            notify_above_frac,
        )
    return found


def print_dead_weights(
    model: Any,
    dead_threshold: float = 1e-7,
    notify_above_frac: float = 1e-3,
    notify_detected_only: bool = False,
) -> dict[str, float]:
    """Log weights with more than ``notify_above_frac`` of their values ``|w| <
    dead_threshold``; return ``{path: dead fraction}`` of those."""
    return _dead(_all_weights(model), dead_threshold, notify_above_frac, notify_detected_only)


def print_nan_weights(model: Any, notify_detected_only: bool = False) -> dict[str, tuple[int, int]]:
    """Log weights holding NaN or Inf (trainable or not); return ``{path: (n_nan, n_inf)}``
    of those."""
    return _nan(_all_weights(model, trainable_only=False), notify_detected_only)


def print_large_weights(
    model: Any,
    large_threshold: float = 3,
    notify_above_frac: float = 1e-3,
    notify_detected_only: bool = False,
) -> dict[str, float]:
    """Log weights with more than ``notify_above_frac`` of their finite values ``|w| >
    large_threshold``; return ``{path: large fraction}`` of those."""
    return _large(_all_weights(model), large_threshold, notify_above_frac, notify_detected_only)


@dataclass
class HealthReport:
    """What :func:`check_health` found, by weight path."""

    dead: dict[str, float] = field(default_factory=dict)
    nan: dict[str, tuple[int, int]] = field(default_factory=dict)
    large: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.dead or self.nan or self.large)


def check_health(
    tg: Traingen,
    dead_threshold: float = 1e-7,
    dead_notify_above_frac: float = 0.1,
    large_threshold: float = 3,
    large_notify_above_frac: float = 1e-3,
    notify_detected_only: bool = True,
) -> HealthReport:
    """Dead, NaN/Inf and large weights of ``tg.model`` (or of a model), read once; each
    finding is logged as a warning. Meant to run after every validation when the
    TrainGenerator's ``check_model_health`` is set. Dead and large: trainable weights; NaN
    and Inf: every weight (see :func:`_read_weights`). ``dead_notify_above_frac`` is 0.1
    (DeepTrain 0.6: 1e-3, which flags a healthy layer for one unit whose zero-initialised
    bias has not moved yet: a ReLU unit no sample has activated so far)."""
    every, trainable = _read_weights(tg)
    weights = {k: v for k, v in every.items() if k in trainable}
    return HealthReport(
        dead=_dead(weights, dead_threshold, dead_notify_above_frac, notify_detected_only),
        nan=_nan(every, notify_detected_only),
        large=_large(weights, large_threshold, large_notify_above_frac, notify_detected_only),
    )
