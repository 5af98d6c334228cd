"""What a TrainGenerator's arguments must be, checked when it is built, before training:
the DataGenerators and the model, every setting's type and range, and, under a
distribution, what cannot work there. ``load()`` checks the loaded settings again."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from ..backend.stateful import state_variables, stateful_layers
from ..data.generator import DataGenerator
from ..data.preprocessors import GenericPreprocessor, TimeseriesPreprocessor
from ..distribute.base import schedule_bytes
from ..saving.traingen_state import check_skip_names
from ..util.misc import positive_int
from .frequency import check_freq
from .setting_checks import check_settings
from .shape_checks import check_data_fits_model
from .weights import check_class_weights

if TYPE_CHECKING:
    from .generator import TrainGenerator

__all__ = [
    "canonical_metric",
    "check_data_fits_model",
    "check_distribution",
    "check_inputs",
    "check_stateful_batch_sizes",
    "is_maximized",
    "refuse_tf_graph_mode",
    "warn_if_state_carries_across_batches",
]

log = logging.getLogger("deeptrain")

# preprocessors that serve every sample of a batch (the model sees its batch size)
_KEEP_SAMPLES = (GenericPreprocessor, TimeseriesPreprocessor)


def check_inputs(tg: TrainGenerator) -> None:
    """The DataGenerators, the model and every setting checked (frequencies, class weights
    and pairs normalised in place); raises naming the argument and what it must be."""
    for name in ("datagen", "val_datagen"):
        if not isinstance(getattr(tg, name), DataGenerator):
            raise TypeError(
                f"{name} must be a deeptrain.DataGenerator, got {type(getattr(tg, name)).__name__}"
            )
    if tg.datagen is tg.val_datagen:
        raise ValueError(
            "datagen and val_datagen are the same DataGenerator: training and validation "
            "would move one data position; give validation its own DataGenerator"
        )
    if tg.datagen.preprocessor is tg.val_datagen.preprocessor:
        raise ValueError(
            f"datagen and val_datagen share one {type(tg.datagen.preprocessor).__name__} "
            "instance: its state (the batch loaded, the window served next) would be moved "
            "by both; give each DataGenerator its own preprocessor"
        )
    if getattr(tg.model, "optimizer", None) is None or not getattr(tg.model, "compiled", False):
        raise ValueError(
            "model must be compiled (model.compile(optimizer, loss, ...)) "
            "before it is given to TrainGenerator"
        )
    if not tg.input_as_labels:
        for name in ("datagen", "val_datagen"):
            if getattr(tg, name).labels_path is None:
                raise ValueError(
                    f"{name} has no labels_path; pass labels_path= or "
                    "input_as_labels=True (autoencoders)"
                )
    check_settings(tg)
    for name in ("loadskip_list", "saveskip_list"):
        check_skip_names(name, getattr(tg, name))
    if tg.iter_verbosity not in (0, 1, 2):
        raise ValueError(f"iter_verbosity must be 0, 1 or 2, got {tg.iter_verbosity!r}")
    for name in (
        "val_freq",
        "plot_history_freq",
        "unique_checkpoint_freq",
        "temp_checkpoint_freq",
    ):
        setattr(tg, name, check_freq(getattr(tg, name), name))
    if tg.temp_checkpoint_freq and tg.logs_dir is None and tg.logdir is None:
        log.warning(
            "temp_checkpoint_freq=%s, but no logs_dir or logdir: no checkpoint is written",
            tg.temp_checkpoint_freq,
        )
    if tg.val_freq and "val" in tg.val_freq:
        raise ValueError(
            "val_freq={'val': n} would validate based on validations: use "
            "'iter', 'batch' or 'epoch'"
        )
    tg.class_weights = check_class_weights(tg.class_weights, "class_weights")
    tg.val_class_weights = check_class_weights(tg.val_class_weights, "val_class_weights")
    if tg.input_as_labels and (tg.class_weights or tg.val_class_weights):
        raise ValueError(
            "class_weights need class labels; they cannot be used with input_as_labels=True"
        )
    for name in (
        "loss_weighted_slices_range",
        "pred_weighted_slices_range",
        "dynamic_predict_threshold_min_max",
    ):
        value = getattr(tg, name)
        if value is not None and (len(value) != 2 or not all(np.isscalar(v) for v in value)):
            raise ValueError(f"{name} must be None or a pair (a, b), got {value!r}")
    if tg.best_subset_size is not None:
        tg.best_subset_size = positive_int(tg.best_subset_size, "best_subset_size")
        if tg.val_datagen.shuffle_group_samples:
            raise ValueError(
                "best_subset_size needs whole validation batches: it cannot be "
                "used with val_datagen's shuffle_group_samples=True"
            )
    check_stateful_batch_sizes(tg)
    check_data_fits_model(tg)  # (the batches held: at train(), once per model and data)


def check_stateful_batch_sizes(tg: TrainGenerator) -> None:
    """Stateful RNN layers hold states for a fixed number of sequences: every batch of
    both DataGenerators must hold that many (a short last batch of combined files fails
    only when it comes, at an epoch's end, with an unclear error from the backend)."""
    layers = stateful_layers(tg.model)
    if not layers or tg.distribution.distributed:  # (refused there: check_distribution)
        return
    fixed = _fixed_batch_size(tg.model)
    for name in ("datagen", "val_datagen"):
        dg = getattr(tg, name)
        sizes = sorted(dg.batch_sizes())
        # (a preprocessor of one's own may change the number of samples: not compared)
        expected = fixed if isinstance(dg.preprocessor, _KEEP_SAMPLES) else None
        if len(sizes) > 1 or (expected is not None and sizes != [expected]):
            raise ValueError(_batch_sizes_message(layers, name, sizes, expected))


def _batch_sizes_message(layers: list[Any], name: str, sizes: list[int], fixed: int | None) -> str:
    """Why ``name``'s batch ``sizes`` cannot feed ``layers``, and what to do."""
    if len(sizes) > 1:
        fix = (
            f"pass drop_remainder=True to {name} to leave the epoch's short last batch out "
            "(or use a number of files that fills every batch)"
        )
    else:
        fix = f"give {name} batch_size={fixed}"
    held = "a fixed number of" if fixed is None else f"a fixed batch of {fixed}"
    must = "the same number of" if fixed is None else str(fixed)
    return (
        f"the model's stateful RNN layers ({', '.join(layer.name for layer in layers)}) hold "
        f"states for {held} sequences, so every batch must hold {must} samples; {name}'s "
        f"batches hold {sizes}: {fix}"
    )


def _fixed_batch_size(model: Any) -> int | None:
    """The batch size a stateful model is built for (its inputs', else its states')."""
    inputs = getattr(model, "inputs", None) or []
    size = inputs[0].shape[0] if inputs else None
    if size is None:
        states = [v for layer_vars in state_variables(model).values() for v in layer_vars]
        size = states[0].shape[0] if states else None
    return None if size is None else int(size)


def check_distribution(tg: TrainGenerator) -> None:
    """Under a distribution: what cannot work is refused now, before training (every
    process runs the same checks, in the same order: some are collectives)."""
    dist = tg.distribution
    if not dist.distributed:
        return
    log.info("Training on %s", dist.describe())
    dist.prepare(tg)
    for name in ("datagen", "val_datagen"):
        for size in sorted(getattr(tg, name).batch_sizes()):
            dist.check_batch_size(size, f"a batch of {name}")
    dist.check_same(
        schedule_bytes(tg.datagen.state_dict(), tg.val_datagen.state_dict()),
        "the DataGenerators' schedule (files, order, shuffles)",
    )


def warn_if_state_carries_across_batches(tg: TrainGenerator) -> None:
    """Stateful RNNs fed windows of each batch, with ``reset_statefuls`` left at its
    default False: the state of one batch's last window flows into the next batch's
    first, which holds other sequences. Passing ``reset_statefuls`` says it is meant."""
    sliced = [
        name
        for name in ("datagen", "val_datagen")
        if getattr(tg, name).slices_per_batch is not None
    ]
    if tg.reset_statefuls or "reset_statefuls" in tg.passed_args or not sliced:
        return
    layers = stateful_layers(tg.model)
    if layers:
        log.warning(
            "The model's stateful RNN layers (%s) are fed windows of each batch (%s: %s), "
            "and reset_statefuls is False, so the state of a batch's last window carries "
            "into the next batch, which holds other sequences. Pass reset_statefuls=True "
            "to reset the states after every batch, or reset_statefuls=False if "
            "consecutive batches continue the same sequences.",
            ", ".join(layer.name for layer in layers),
            " and ".join(sliced),
            type(getattr(tg, sliced[0]).preprocessor).__name__,
        )


def canonical_metric(tg: TrainGenerator, name: str, available: list[str]) -> str:
    """``name`` as the model calls it (``'acc'`` -> ``'accuracy'`` and back, by
    ``tg.alias_to_metric``)."""
    if name in available:
        return name
    for candidate in (
        tg.alias_to_metric.get(name),
        *[k for k, v in tg.alias_to_metric.items() if v == name],
    ):
        if candidate in available:
            return candidate
    return name


_LOSS_LIKE = (
    "loss",
    "error",
    "crossentropy",
    "hinge",
    "kld",
    "kullback",
    "divergence",  # kl_divergence
    "poisson",
    "logcosh",
    "log_cosh",
    "mse",
    "mae",
    "mape",
    "msle",
)


def is_maximized(metric: str) -> bool:
    """Whether higher is better for ``metric``, going by its name (losses, errors and
    divergences are minimized)."""
    return not any(s in metric.lower() for s in _LOSS_LIKE)


def refuse_tf_graph_mode() -> None:
    """TensorFlow 1-style graph mode (``tf.compat.v1.disable_eager_execution()``, which
    DeepTrain 0.6 supported) is refused: Keras 3 needs eager execution."""
    import keras

    tf = sys.modules.get("tensorflow")
    if tf is not None and keras.backend.backend() == "tensorflow" and not tf.executing_eagerly():
        raise RuntimeError(
            "TensorFlow runs in graph mode (tf.compat.v1.disable_eager_execution()), which "
            "Keras 3 does not support: remove that call. Train steps are still compiled: "
            "fit_fn='train_on_batch' runs one tf.function per step."
        )
