"""Loss gradients and layer outputs on every Keras 3 backend (tensorflow, torch, jax).

Keras 3 has no backend-neutral "gradient of the loss" call, so each backend gets a few lines:

* tensorflow: ``tf.GradientTape`` around ``model(x)`` and ``model.compute_loss``;
* torch: ``torch.autograd.grad`` on the same loss (no ``.grad`` is left on the weights);
* jax: ``jax.value_and_grad`` over ``model.compute_loss_and_updates`` (the JAX trainer's
  own pure loss function).

Layer outputs are reached by temporarily wrapping the chosen layers' ``call`` (an instance
attribute that shadows the class method, removed afterwards), so any model works: Sequential,
functional or subclassed. On tensorflow and torch the wrapper just keeps the output tensor
and the gradient is taken w.r.t. it. JAX cannot differentiate w.r.t. an intermediate value,
so there the wrapper adds a zero "probe" argument to the output: ``d loss / d probe`` at
``probe = 0`` is exactly ``d loss / d output``.

The model is left as it was: with ``training=True`` (BatchNorm statistics, seed-generator
states) every non-trainable variable is restored afterwards (on torch also its random
generators, which Dropout draws from). Under mixed precision the loss is differentiated
scaled, as the train step does (``LossScaleOptimizer``: gradients through float16 layers
would otherwise underflow), and the gradients are unscaled in float32; the loss returned is
the unscaled one.

Limits: a layer whose output is wanted must be called once per forward pass (no shared
layers) and return one tensor; quantized layers (which run ``quantized_call``) are not seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["LossGradients", "loss_gradients", "layer_outputs", "variables_kept"]


@dataclass
class LossGradients:
    """What :func:`loss_gradients` returns: the loss, and NumPy gradients in the order asked."""

    loss: float
    weights: list[np.ndarray] = field(default_factory=list)
    outputs: list[np.ndarray] = field(default_factory=list)


def loss_gradients(
    model: Any,
    x: Any,
    y: Any,
    sample_weight: Any = None,
    *,
    variables: Sequence[Any] = (),
    layers: Sequence[Any] = (),
    training: bool = False,
    carry_states: bool = False,
    carry_variables: bool = False,
) -> LossGradients:
    """Gradients of ``model``'s compiled loss (regularisation penalties included) on one batch.

    Args:
        model: a compiled Keras 3 model.
        x, y, sample_weight: one batch, as ``train_on_batch`` takes them.
        variables: trainable variables of ``model`` to differentiate w.r.t.
        layers: layers of ``model`` whose outputs to differentiate w.r.t.
        training: run the model in train mode (Dropout active, BatchNorm on batch stats).
        carry_states: stateful RNN layers keep the states this forward pass leaves (as a
            train step does: windows of a batch, one call each), instead of going back.
        carry_variables: every non-trainable variable (seed generators, BatchNorm
            statistics, stateful RNN states) and torch's random generators keep what this
            pass leaves: for a caller that makes several passes as training would (a new
            Dropout mask each) and restores the model itself afterwards
            (:func:`variables_kept`).

    Returns:
        :class:`LossGradients`: ``weights[i]`` has ``variables[i]``'s shape; ``outputs[i]``
        the shape of ``layers[i]``'s output on ``x``.
    """
    import keras

    variables, layers = list(variables), list(layers)
    _check_variables(model, variables)
    x, y, sample_weight = _to_tensors((x, y, sample_weight))
    backend = keras.backend.backend()
    fn = {"tensorflow": _grads_tf, "torch": _grads_torch, "jax": _grads_jax}.get(backend)
    if fn is None:
        raise NotImplementedError(f"gradients are not implemented for the {backend!r} backend")
    kept = nullcontext() if carry_variables else variables_kept(model, training, carry_states)
    scale = loss_scale(model)
    with kept:
        loss, gw, go, updates = fn(model, x, y, sample_weight, variables, layers, training, scale)
        if updates is not None:  # JAX's stateless pass: its updates, as TF and torch keep them
            _apply_updates(model, updates, carry_variables)
    return LossGradients(float(_np(loss)), _unscaled(gw, scale), _unscaled(go, scale))


def loss_scale(model: Any) -> float:
    """The factor the model's optimizer scales the loss by before differentiating (a
    ``LossScaleOptimizer``'s current scale; 1 for others)."""
    optimizer = getattr(model, "optimizer", None)
    scale = getattr(optimizer, "scale_loss", None)
    return 1.0 if scale is None else float(_np(scale(1.0)))


def _unscaled(grads: Sequence[Any], scale: float) -> list[np.ndarray]:
    """Host gradients of a loss scaled by ``scale``, unscaled (in float32 at least: a
    float16 gradient divided in float16 would underflow again)."""
    if scale == 1.0:
        return [_np(g) for g in grads]
    out = []
    for g in grads:
        g = _np(g)
        out.append(g.astype(np.promote_types(g.dtype, np.float32)) / np.float32(scale))
    return out


def layer_outputs(
    model: Any, x: Any, layers: Sequence[Any], training: bool = False
) -> list[np.ndarray]:
    """Outputs of ``layers`` (of ``model``) on input ``x``, as NumPy arrays, in order."""
    import keras

    layers = list(layers)
    x = _to_tensors(x)
    with variables_kept(model, training):
        if keras.backend.backend() == "jax":
            # stateless: an eager train-mode call would write BatchNorm statistics
            tv = [v.value for v in model.trainable_variables]
            ntv = [v.value for v in model.non_trainable_variables]
            with _captured(layers) as outs:
                model.stateless_call(tv, ntv, x, **_training_kw(model, training))
        else:
            with _captured(layers) as outs, _grad_mode(False):
                model(x, **_training_kw(model, training))
        return [_np(o) for o in _single_outputs(layers, outs)]


# -- per backend -------------------------------------------------------------------------
def _grads_tf(model, x, y, sw, variables, layers, training, scale):
    import tensorflow as tf

    with tf.GradientTape() as tape, _captured(layers) as outs:
        y_pred = model(x, **_training_kw(model, training))
        if layers:  # Keras computes crossentropy from a softmax/sigmoid output's cached
            # logits, which bypasses the output tensor: d loss / d output would be zero
            y_pred = tf.nest.map_structure(tf.identity, y_pred)
        loss = _compute_loss(model, x, y, y_pred, sw, training)
        scaled = loss * scale if scale != 1.0 else loss
    targets = [v.value for v in variables] + _single_outputs(layers, outs)
    grads = tape.gradient(scaled, targets, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return loss, grads[: len(variables)], grads[len(variables) :], None


def _grads_torch(model, x, y, sw, variables, layers, training, scale):
    import torch

    with torch.enable_grad(), _captured(layers) as outs:
        y_pred = model(x, **_training_kw(model, training))
        loss = _compute_loss(model, x, y, y_pred, sw, training)
    targets = [v.value for v in variables] + _single_outputs(layers, outs)
    if not targets:
        return loss.detach(), [], [], None
    grads = torch.autograd.grad(loss * scale if scale != 1.0 else loss, targets, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, targets, strict=True)]
    return loss.detach(), grads[: len(variables)], grads[len(variables) :], None


def _grads_jax(model, x, y, sw, variables, layers, training, scale):
    import jax
    import jax.numpy as jnp

    _build_loss(model, x, y, sw)
    trainable = list(model.trainable_variables)
    position = {id(v): i for i, v in enumerate(trainable)}
    picked = [position[id(v)] for v in variables]
    tv = [v.value for v in trainable]
    ntv = [v.value for v in model.non_trainable_variables]
    mv = [v.value for v in model.metrics_variables]
    opt = getattr(model, "optimizer", None)
    ov = None if opt is None else [v.value for v in opt.variables]
    kw = _training_kw(model, training)

    def forward(tv):  # output shapes of the layers, traced abstractly (nothing computed)
        with _captured(layers) as outs:
            model.stateless_call(tv, ntv, x, **kw)
        return _single_outputs(layers, outs)

    probes = [jnp.zeros(s.shape, s.dtype) for s in jax.eval_shape(forward, tv)] if layers else []

    def loss_fn(chosen, probes):
        values = list(tv)
        for i, value in zip(picked, chosen, strict=True):
            values[i] = value
        with _captured(layers, add=probes):
            _, aux = model.compute_loss_and_updates(
                values, ntv, mv, x, y, sw, training=training, optimizer_variables=ov
            )
        return aux[0] * scale, aux  # (aux[0]: the loss unscaled, whatever ``training``)

    (_, aux), (gw, go) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
        [tv[i] for i in picked], probes
    )
    return aux[0], gw, go, aux[2]  # (the non-trainable values the pass left)


# -- helpers -----------------------------------------------------------------------------
@contextmanager
def _captured(layers: Sequence[Any], add: Sequence[Any] | None = None) -> Iterator[list[list[Any]]]:
    """Wrap each layer's ``call`` so its outputs are collected (``outs[i]`` lists layer i's
    outputs, one per call); with ``add``, ``add[i]`` is added to layer i's output."""
    outs: list[list[Any]] = [[] for _ in layers]
    missing = object()
    saved = []
    try:
        for i, layer in enumerate(layers):
            saved.append(vars(layer).get("call", missing))
            vars(layer)["call"] = _wrap(layer.call, outs[i], None if add is None else add[i])
        yield outs
    finally:
        for layer, old in zip(layers, saved, strict=True):
            if old is missing:
                vars(layer).pop("call", None)
            else:
                vars(layer)["call"] = old


def _wrap(call: Callable, sink: list, probe: Any) -> Callable:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        out = call(*args, **kwargs)
        if probe is not None:
            out = out + probe
        sink.append(out)
        return out

    return wrapped


def _single_outputs(layers: Sequence[Any], outs: list[list[Any]]) -> list[Any]:
    import keras

    single = []
    for layer, calls in zip(layers, outs, strict=True):
        if len(calls) != 1:
            raise ValueError(
                f"layer {layer.name!r} was called {len(calls)} times in one "
                "forward pass; outputs (and their gradients) need a layer called "
                "exactly once"
            )
        if len(keras.tree.flatten(calls[0])) != 1:
            raise ValueError(
                f"layer {layer.name!r} returns several tensors; outputs (and "
                "their gradients) need a layer with a single output tensor"
            )
        single.append(calls[0])
    return single


@contextmanager
def variables_kept(model: Any, training: bool = True, carry_states: bool = False) -> Iterator[None]:
    """Restore what a forward pass changes: stateful RNN states (any call; with
    ``carry_states`` they keep what the pass left), and every non-trainable variable after a
    train-mode call (BatchNorm statistics, seed-generator states). Introspection must not
    change the model."""
    from .stateful import get_states, set_states

    states = get_states(model)
    variables = list(model.non_trainable_variables) if training else []
    values = [np.array(_np(v.value)) for v in variables]
    torch_rng = _torch_rng_state() if training else None
    try:
        yield
    finally:
        left = get_states(model) if carry_states and states else None
        for v, value in zip(variables, values, strict=True):
            v.assign(value)
        if states:
            set_states(model, left if left is not None else states)
        if torch_rng is not None:
            _set_torch_rng_state(torch_rng)


def _apply_updates(model: Any, non_trainable_values: Sequence[Any], every: bool) -> None:
    """JAX: a stateless pass's non-trainable values assigned: the stateful RNN states among
    them, or ``every`` one (:func:`variables_kept` then keeps or restores them)."""
    from .stateful import state_variables

    pairs: Iterable[tuple[Any, Any]]
    pairs = zip(model.non_trainable_variables, non_trainable_values, strict=True)
    if not every:
        states = {id(v) for values in state_variables(model).values() for v in values}
        pairs = ((v, value) for v, value in pairs if id(v) in states)
    for v, value in pairs:
        v.assign(value)


def _torch_rng_state() -> tuple[Any, Any] | None:
    """torch's generators (CPU, and the GPUs'), which Keras' unseeded Dropout draws from
    on torch (on TensorFlow and JAX it draws from seed-generator variables, restored with
    the other non-trainable ones): a train-mode pass here must not move them."""
    import keras

    if keras.backend.backend() != "torch":
        return None
    import torch

    # (only once CUDA is up: a model on the GPU has started it; asking would start it)
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _set_torch_rng_state(state: tuple[Any, Any]) -> None:
    import torch

    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


@contextmanager
def _grad_mode(enabled: bool) -> Iterator[None]:
    import keras

    if keras.backend.backend() == "torch":
        import torch

        with torch.set_grad_enabled(enabled):
            yield
    else:
        yield


def _compute_loss(model, x, y, y_pred, sw, training):
    if hasattr(model, "_compute_loss"):  # handles compute_loss overrides without `training`
        return model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sw, training=training)
    return model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sw, training=training)


def _build_loss(model, x, y, sw) -> None:
    """JAX: the compiled loss creates its variables on first use, which a stateless (traced)
    call cannot do; a first eager call builds it."""
    compiled = getattr(model, "_compile_loss", None)
    if compiled is not None and not compiled.built:
        from .stateful import get_states, set_states

        states = get_states(model)  # (the eager call moves stateful RNNs' states)
        model.compute_loss(x=x, y=y, y_pred=model(x), sample_weight=sw)
        if states:
            set_states(model, states)


def _training_kw(model: Any, training: bool) -> dict[str, bool]:
    return {"training": training} if getattr(model, "_call_has_training_arg", True) else {}


def _check_variables(model: Any, variables: Sequence[Any]) -> None:
    known = {id(v) for v in model.trainable_variables}
    for v in variables:
        if id(v) not in known:
            raise ValueError(
                f"{getattr(v, 'path', v)!r} is not a trainable variable of model {model.name!r}"
            )


def _to_tensors(data: Any) -> Any:
    import keras

    return (
        keras.tree.map_structure(
            lambda a: None if a is None else keras.ops.convert_to_tensor(a), data, none_is_leaf=True
        )
        if data is not None
        else None
    )


def _np(value: Any) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(value))
