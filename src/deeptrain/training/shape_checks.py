"""Whether the batches the DataGenerators serve fit the model, checked before training.

The batch a DataGenerator holds (``_hold_first_batches``: the one it serves next) is
processed as ``get(skip_validation=True)`` processes it (the position is not moved) and
compared with what the model takes, by Keras' own rules, so that a mismatch is named now
(``datagen`` or ``val_datagen``, the set and its file, both shapes) rather than by the
backend at the first step. Only what Keras is sure to refuse is refused:

- inputs: the rank (a trailing axis of 1 may be left out or added); what the layers an
  input is fed to declare (their ``input_spec`` axes: a Dense layer's features, a
  convolution's channels; the features a Keras LSTM, GRU or SimpleRNN is built for); a
  functional model's declared input shapes (its ``input_spec``: the batch and ``None``
  dimensions are free), which Keras enforces on TensorFlow and torch (on JAX a built
  model's step skips them, and they are not checked). A ``Sequential`` model's declared
  input shape is not enforced by Keras: its LSTM takes any number of timesteps.
- labels: only for a single output compiled with Keras' categorical cross-entropy (it
  needs labels of the output's shape, after Keras adds or drops a trailing axis of 1):
  one-hot labels of another width, or integer class labels (a sparse loss takes those).

Not checked, as not knowable here: a preprocessor of one's own (its ``process`` may draw
random numbers or count calls: it is not called an extra time), a custom ``fit_fn`` or
``eval_fn``, a model with its own ``call``, ``train_step``, ``test_step`` or
``compute_loss``, a model not yet built, inputs that cannot be paired with the model's one
by one, labels of autoencoders (``input_as_labels``) and of several outputs. Each
DataGenerator is checked once per model, preprocessor and step (``train()`` checks again
only what changed).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..data.generator import DataGenerator
from ..data.preprocessors import GenericPreprocessor, Preprocessor, TimeseriesPreprocessor

if TYPE_CHECKING:
    from .generator import TrainGenerator

__all__ = ["check_data_fits_model", "input_mismatch", "label_mismatch"]

log = logging.getLogger("deeptrain")

Shape = tuple[Any, ...]

# what was checked, per TrainGenerator: the keys of _check_key
_checked: weakref.WeakKeyDictionary[Any, set[tuple]] = weakref.WeakKeyDictionary()

# (the focal variant broadcasts labels of width 1 instead: it is left out)
_CATEGORICAL = ("categorical_crossentropy", "categoricalcrossentropy")


def check_data_fits_model(tg: TrainGenerator) -> None:
    """Raise ``ValueError`` if the batch ``datagen`` or ``val_datagen`` holds does not fit
    the model, naming the DataGenerator, the set and file, and both shapes. A
    DataGenerator holding no batch is left for a later call (``train()`` checks again)."""
    done = _checked.setdefault(tg, set())
    for name in ("datagen", "val_datagen"):
        dg: DataGenerator = getattr(tg, name)
        step = getattr(tg, "_fit_fn" if name == "datagen" else "_eval_fn", None)
        key = _check_key(tg, dg, step)
        if key in done or step is None or not _holds_a_batch(dg):
            continue
        if _is_builtin(step) and _pure(dg.preprocessor):
            feeds_labels = name == "datagen" or tg.val_mode == "evaluate"
            _check_batch(tg, name, dg, feeds_labels)
        done.add(key)


def _check_key(tg: TrainGenerator, dg: DataGenerator, step: Any) -> tuple:
    """What the check depends on (a change of any of them checks again)."""
    model = tg.model
    return (
        id(dg),
        id(model),
        id(dg.preprocessor),
        id(step),
        id(getattr(model, "loss", None)),
        tg.input_as_labels,
        tg.val_mode,
    )


def _holds_a_batch(dg: DataGenerator) -> bool:
    return bool(dg.batch_loaded and not dg.batch_exhausted)


def _is_builtin(step: Any) -> bool:
    """DeepTrain's own train or eval step (it feeds the batch to the model as served);
    a ``fit_fn``/``eval_fn`` of one's own may change it first."""
    return str(getattr(step, "__module__", "") or "").startswith("deeptrain.")


def _pure(preprocessor: Preprocessor) -> bool:
    """A built-in ``process`` (no side effects but the window count it sets anyway)."""
    cls = type(preprocessor)
    if cls.process is GenericPreprocessor.process:
        return True
    ts = TimeseriesPreprocessor
    return (
        cls.process is ts.process
        and getattr(cls, "_next_window", None) is ts._next_window
        and getattr(cls, "windows_for", None) is ts.windows_for
    )


def _check_batch(tg: TrainGenerator, name: str, dg: DataGenerator, feeds_labels: bool) -> None:
    model = tg.model
    step = "train_step" if name == "datagen" else "test_step"
    if tg.val_mode == "predict" and name == "val_datagen":
        step = "predict_step"
    if not _plain(model, step):
        return
    x, labels = _peek(dg)
    refused = input_mismatch(model, x)
    if refused is not None:
        raise ValueError(_input_message(name, dg, refused))
    if feeds_labels and not tg.input_as_labels:
        problem = label_mismatch(model, labels)
        if problem is not None:
            raise ValueError(_label_message(name, dg, problem))
    log.debug("%s's batches fit the model", name)


def _peek(dg: DataGenerator) -> tuple[Any, Any]:
    """The batch ``dg`` serves next, processed as ``get(skip_validation=True)`` does (the
    position is not moved); the preprocessor's attributes are put back after, so that its
    state is as it was (a batch's first window sets the window count)."""
    attributes = vars(dg.preprocessor)
    saved = dict(attributes)
    try:
        return dg.get(skip_validation=True)
    finally:
        attributes.clear()
        attributes.update(saved)


def _plain(model: Any, step: str) -> bool:
    """Whether ``model`` runs Keras' own ``step``, ``compute_loss`` and ``call`` of a
    functional or ``Sequential`` model (whose rules are followed here)."""
    import keras
    from keras.src.models.functional import Functional

    cls = type(model)
    if isinstance(model, keras.Sequential):
        own_call = cls.call is keras.Sequential.call
    else:
        own_call = isinstance(model, Functional) and cls.call is Functional.call
    return (
        own_call
        and getattr(cls, step) is getattr(keras.Model, step)
        and cls.compute_loss is keras.Model.compute_loss
    )


# -- inputs ------------------------------------------------------------------------------
def input_mismatch(model: Any, x: Any) -> tuple[str, Shape, Shape] | None:
    """``(input name, data shape, expected shape)`` of the first input of ``x`` that
    ``model`` (functional or ``Sequential``) refuses by Keras' rules; None if all fit or
    it is not knowable (the model not built, inputs that cannot be paired)."""
    import keras

    try:
        refs = list(model.inputs or [])
    except (AttributeError, ValueError):  # (a Sequential never built)
        return None
    # Keras checks a functional model's declared shapes in __call__; JAX's train step
    # runs call() (a built model takes other sizes there): only its layers' own rules
    declared = not isinstance(model, keras.Sequential) and keras.backend.backend() != "jax"
    for ref, array in _pairs(model, refs, x):
        shape, expected = tuple(array.shape), tuple(ref.shape)
        adjusted = _adjusted_rank(shape, expected)
        fits = (
            adjusted is not None
            and all(_layer_takes(layer, adjusted, expected) for layer in _fed(model, ref))
            and (not declared or _spec_fits(shape, expected) or _manual_spec(model))
        )
        if not fits:
            return _name_of(ref), shape, expected
    return None


def _pairs(model: Any, refs: list[Any], x: Any) -> list[tuple[Any, Any]]:
    """The model's inputs paired with the arrays of ``x`` (one array; a list or tuple in
    order; a dict by input name); none where the pairing is not certain."""
    if isinstance(x, dict):
        struct = getattr(model, "input", None)
        named = struct if isinstance(struct, dict) else {str(r.name): r for r in refs}
        if set(named) != set(x):
            return []
        pairs = [(named[k], x[k]) for k in named]
    elif isinstance(x, (list, tuple)):
        if len(x) != len(refs):
            return []
        pairs = list(zip(refs, x, strict=True))
    else:
        pairs = [(refs[0], x)] if len(refs) == 1 else []
    return [(r, a) for r, a in pairs if _has_shape(a) and _has_shape(r)]


def _name_of(tensor: Any) -> str:
    """The name of the layer that makes a model's input or output tensor (``'dense_1'``;
    a tensor's own name is ``'keras_tensor_3'``)."""
    history = getattr(tensor, "_keras_history", None)
    layer = getattr(history, "operation", None)
    return str(getattr(layer, "name", None) or getattr(tensor, "name", "?"))


def _has_shape(obj: Any) -> bool:
    shape = getattr(obj, "shape", None)
    return isinstance(shape, Sequence) or hasattr(shape, "__len__")


def _manual_spec(model: Any) -> bool:
    """An ``input_spec`` set by hand replaces the declared shapes (not followed here)."""
    return hasattr(model, "_manual_input_spec")


def _adjusted_rank(shape: Shape, expected: Shape) -> Shape | None:
    """``shape`` as Keras' functional call adjusts it to the rank of ``expected`` (a
    trailing axis of 1 squeezed or added); None if it cannot."""
    if len(shape) == len(expected):
        return shape
    if len(shape) == len(expected) + 1 and shape[-1] == 1:
        return shape[:-1]
    if len(shape) == len(expected) - 1 and expected and expected[-1] == 1:
        return (*shape, 1)
    return None


def _spec_fits(shape: Shape, expected: Shape) -> bool:
    """Keras' ``input_spec`` check of a functional model: dimensions compared after
    either shape's trailing axis of 1 is dropped; batch and ``None`` dimensions free."""
    spec = (None, *expected[1:])
    if shape and shape[-1] == 1:
        shape = shape[:-1]
    if spec and spec[-1] == 1:
        spec = spec[:-1]
    return all(a is None or b is None or a == b for a, b in zip(spec, shape, strict=False))


def _fed(model: Any, ref: Any) -> list[Any]:
    """The layers of ``model`` whose first (or only) input is ``ref``, one of the
    model's inputs, fed directly."""
    return [
        layer
        for layer in getattr(model, "layers", None) or []
        if any(
            (getattr(node, "input_tensors", None) or [None])[0] is ref
            for node in getattr(layer, "_inbound_nodes", None) or []
        )
    ]


def _layer_takes(layer: Any, shape: Shape, built_for: Shape) -> bool:
    """What ``layer`` declares it takes (one ``input_spec``'s axes, the batch axis aside)
    and, for an RNN, the number of features its cell was built for (``built_for``: the
    shape of the input it is fed)."""
    spec = getattr(layer, "input_spec", None)
    if isinstance(spec, (list, tuple)):  # (one per input: only a single one is followed)
        spec = spec[0] if len(spec) == 1 else None
    for axis, size in (getattr(spec, "axes", None) or {}).items():
        fixed = isinstance(axis, int) and -len(shape) < axis < len(shape) and axis != 0
        if fixed and size is not None and shape[axis] != size:
            return False
    if _is_rnn(layer) and built_for and built_for[-1] is not None:
        return bool(shape[-1] == built_for[-1])
    return True


def _is_rnn(layer: Any) -> bool:
    """Keras' LSTM, GRU or SimpleRNN (or one made bidirectional): kernels of the input's
    number of features (an RNN of a cell of one's own may take any)."""
    from keras import layers

    rnns = (layers.LSTM, layers.GRU, layers.SimpleRNN)
    if isinstance(layer, layers.Bidirectional):
        layer = getattr(layer, "forward_layer", None)
    return isinstance(layer, rnns)


# -- labels ------------------------------------------------------------------------------
def label_mismatch(model: Any, labels: Any) -> tuple[str, Shape, Shape, str] | None:
    """``(output name, labels shape, output shape, loss)`` if ``model`` has one output,
    compiled with Keras' categorical cross-entropy, and ``labels`` cannot match it (another
    rank, or another number of classes); None otherwise."""
    loss = _categorical_loss(getattr(model, "loss", None))
    if loss is None or not _has_shape(labels):
        return None
    try:
        outputs = list(model.outputs or [])
    except (AttributeError, ValueError):
        return None
    if len(outputs) != 1 or not _has_shape(outputs[0]):
        return None
    shape, out = tuple(labels.shape), tuple(outputs[0].shape)
    y, o = _same_rank(shape, out)
    if len(y) == len(o) and (not o or o[-1] is None or y[-1] == o[-1]):
        return None
    return _name_of(outputs[0]), shape, out, loss


def _categorical_loss(loss: Any) -> str | None:
    """The name of Keras' categorical cross-entropy if ``loss`` is it (one loss, or a list
    or dict of one); None for any other loss."""
    import keras

    if isinstance(loss, (list, tuple)) and len(loss) == 1:
        loss = loss[0]
    if isinstance(loss, dict) and len(loss) == 1:
        loss = next(iter(loss.values()))
    if isinstance(loss, str):
        return loss if loss.lower() in _CATEGORICAL else None
    if loss is keras.losses.categorical_crossentropy:
        return "categorical_crossentropy"
    if type(loss) is keras.losses.CategoricalCrossentropy:
        return "CategoricalCrossentropy"
    return None


def _same_rank(y: Shape, out: Shape) -> tuple[Shape, Shape]:
    """Labels and output shapes as Keras' losses adjust them (``squeeze_or_expand_to_same_
    rank``: a trailing axis of 1 squeezed, a rank-1 one expanded)."""
    if len(y) == len(out) + 1 and y[-1] == 1:
        return (y, (*out, 1)) if len(out) == 1 else (y[:-1], out)
    if len(out) == len(y) + 1 and out[-1] == 1:
        return ((*y, 1), out) if len(y) == 1 else (y, out[:-1])
    return y, out


# -- messages ----------------------------------------------------------------------------
def _where(dg: DataGenerator, labels: bool = False) -> str:
    """The set served and its file(s): ``set 3 (/data/batch__3.npy)``."""
    loader = dg.labels_loader if labels else dg.data_loader
    group = getattr(dg, "_group", None)
    set_nums = list(getattr(group, "set_nums", None) or [dg.set_num])
    files = []
    for set_num in set_nums:
        try:
            files.append(str(loader._path(set_num)))  # type: ignore[union-attr]
        except (AttributeError, KeyError):  # (no labels loader; a set num without file)
            return f"set {dg.set_name}"
    return f"set {dg.set_name} ({', '.join(dict.fromkeys(files))})"


def _served(dg: DataGenerator) -> str:
    pp = dg.preprocessor
    if isinstance(pp, TimeseriesPreprocessor):
        return f" (as windows of {pp.window_size} timesteps, by {type(pp).__name__})"
    return ""


def _input_message(name: str, dg: DataGenerator, problem: tuple[str, Shape, Shape]) -> str:
    input_name, shape, expected = problem
    return (
        f"{name}'s batches do not fit the model: {_where(dg)} is served with shape "
        f"{shape}{_served(dg)}, but the model's input (layer {input_name!r}) takes "
        f"{expected} (the batch dimension and None are free). Give {name} "
        "data of that shape, or build the model for the data's shape"
    )


def _label_message(name: str, dg: DataGenerator, problem: tuple[str, Shape, Shape, str]) -> str:
    output, shape, out, loss = problem
    classes = out[-1] if out else None
    hint = (
        "; integer class labels need a sparse loss (sparse_categorical_crossentropy)"
        if len(shape) < len(out) or (shape and shape[-1] == 1)
        else ""
    )
    return (
        f"{name}'s labels do not fit the model: {_where(dg, labels=True)} has labels of "
        f"shape {shape}, but the model's output (layer {output!r}) is {out} and its "
        f"loss {loss} needs labels of that shape (one-hot, {classes} classes){hint}"
    )
