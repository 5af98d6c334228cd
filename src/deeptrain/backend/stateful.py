"""Stateful RNN support that behaves the same on every Keras 3 backend.

Keras 3 leaves several gaps around ``stateful=True`` recurrent layers:

* ``Model`` has no ``reset_states()``; each RNN layer must be reset on its own,
  including those inside ``Bidirectional`` wrappers and nested models.
* The state variables (``layer.states``, named ``rnn_state``) are not part of
  ``model.weights`` and are not written by ``save_weights``, so an exact
  mid-sequence resume must save and restore them separately
  (:func:`get_states` / :func:`set_states`).
* torch: stateful ``LSTM``/``GRU`` fail in backward with an in-place
  ``RuntimeError`` (keras-team/keras#23462): their fused step (``backend.lstm`` /
  ``backend.gru``; cuDNN on GPU, a loop over precomputed input projections on CPU) reads
  the state variables' own tensors, which autograd saves, and the layer then assigns the
  new state into those tensors in place before backward runs. Keras' own escape is
  ``use_cudnn=False`` (a per-step Python loop that copies the states: 1.5-3x slower).
  And on CPU even the fused step loops over timesteps in Python: torch's own LSTM/GRU
  kernel (which Keras calls on CUDA only) computes the same on CPU several times faster.
* jax: the state is silently *not* carried between calls, because the state
  variables are untracked and the JAX trainer's pure step drops their updates.

:func:`prepare_stateful_model` applies the (private-API) workarounds for the
last two, guarded by the Keras versions on which they were verified
(:data:`VERIFIED_KERAS`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from keras import Layer

__all__ = [
    "VERIFIED_KERAS",
    "UnsupportedStatefulBackend",
    "stateful_layers",
    "reset_states",
    "get_states",
    "state_variables",
    "set_states",
    "check_states",
    "prepare_stateful_model",
]

#: Keras versions ``[lo, hi)`` on which each backend's workaround was verified.
#: TensorFlow carries the state natively and needs no workaround.
VERIFIED_KERAS: dict[str, tuple[str, str]] = {
    "torch": ("3.15.0", "3.16.0"),
    "jax": ("3.15.0", "3.16.0"),
}

log = logging.getLogger(__name__)

_NATIVE_BACKENDS = ("tensorflow",)


class UnsupportedStatefulBackend(RuntimeError):
    """Stateful RNNs cannot be made reliable on this Keras version/backend."""


# --------------------------------------------------------------------------
# discovery
# --------------------------------------------------------------------------


def _children(layer: Any) -> list[Any]:
    """Direct sub-layers of ``layer`` (models, wrappers, custom layers)."""
    kids = getattr(layer, "_layers", None)
    if kids is None:  # fall back to public attributes
        kids = list(getattr(layer, "layers", None) or [])
        for attr in ("forward_layer", "backward_layer", "layer"):
            sub = getattr(layer, attr, None)
            if sub is not None:
                kids.append(sub)
    return list(kids)


def _walk(model: Any) -> Iterator[tuple[str, Any]]:
    """Yield ``(path, layer)`` for every sub-layer, depth first, each once.

    ``path`` joins layer names from the model (excluded) down to the layer,
    e.g. ``"encoder/bidirectional/forward_lstm"``.
    """
    seen: set[int] = {id(model)}

    def rec(layer: Any, prefix: str) -> Iterator[tuple[str, Any]]:
        for child in _children(layer):
            if id(child) in seen:
                continue
            seen.add(id(child))
            path = f"{prefix}/{child.name}" if prefix else child.name
            yield path, child
            yield from rec(child, path)

    yield from rec(model, "")


def _is_stateful_rnn(layer: Any) -> bool:
    import keras

    return isinstance(layer, keras.layers.RNN) and bool(getattr(layer, "stateful", False))


def _stateful_items(model: Any) -> list[tuple[str, Any]]:
    """``(path, layer)`` of every stateful RNN layer; paths made unique."""
    items: list[tuple[str, Any]] = []
    if _is_stateful_rnn(model):  # a bare stateful RNN layer passed as model
        items.append((model.name, model))
    items.extend((p, layer) for p, layer in _walk(model) if _is_stateful_rnn(layer))
    counts: dict[str, int] = {}
    unique: list[tuple[str, Any]] = []
    for path, layer in items:
        n = counts.get(path, 0)
        counts[path] = n + 1
        unique.append((path if n == 0 else f"{path}#{n}", layer))
    return unique


def stateful_layers(model: Any) -> list[Layer]:
    """Every ``stateful=True`` RNN layer in ``model``.

    Walks nested models and layers; for ``Bidirectional`` wrappers the
    forward and backward inner layers are returned (not the wrapper).
    """
    return [layer for _, layer in _stateful_items(model)]


# --------------------------------------------------------------------------
# reset / get / set
# --------------------------------------------------------------------------


def _state_vars(layer: Any) -> list[Any]:
    import keras

    if layer.states is None:
        return []
    return list(keras.tree.flatten(layer.states))


def reset_states(model: Any) -> int:
    """Zero the state of every stateful RNN layer; return how many were reset."""
    layers = stateful_layers(model)
    for layer in layers:
        layer.reset_state()
    return len(layers)


def state_variables(model: Any) -> dict[str, list[Any]]:
    """Every stateful RNN layer's state variables, keyed as :func:`get_states` keys them."""
    return {path: _state_vars(layer) for path, layer in _stateful_items(model)}


def get_states(model: Any) -> dict[str, list[np.ndarray]]:
    """Copy of every stateful RNN layer's state, keyed by layer path.

    The key is the ``/``-joined layer names from the model down to the layer
    (e.g. ``"bidirectional/forward_lstm"``). Layers not built yet map to ``[]``.
    """
    import keras

    return {
        path: [np.array(keras.ops.convert_to_numpy(v)) for v in _state_vars(layer)]
        for path, layer in _stateful_items(model)
    }


def set_states(model: Any, states: Mapping[str, Sequence[Any]]) -> None:
    """Assign states produced by :func:`get_states` back into ``model``.

    Everything is validated before anything is assigned.

    Raises:
        ValueError: a layer's key is missing from ``states``, ``states`` has keys
            for layers the model lacks, or the number or shapes of the arrays do
            not match the layer's state variables (the message names the layer
            and both shapes).
    """
    for var, arr in _plan_states(model, states):
        var.assign(arr.astype(var.dtype))


def check_states(model: Any, states: Mapping[str, Sequence[Any]]) -> None:
    """Raise the ``ValueError`` :func:`set_states` would raise; assigns nothing."""
    _plan_states(model, states)


def _plan_states(model: Any, states: Mapping[str, Sequence[Any]]) -> list[tuple[Any, np.ndarray]]:
    """``(variable, value)`` pairs for :func:`set_states`, after every check. States of as
    many layers under other names (a model built again in the same process: ``lstm_1``
    for ``lstm``) are matched by position, as Keras matches weights."""
    items = _stateful_items(model)
    known = {path for path, _ in items}
    if set(states) != known and len(states) == len(items):
        log.info(
            "Stateful RNN layers %s matched by position to %s (their names differ)",
            list(states),
            [path for path, _ in items],
        )
        states = dict(zip([path for path, _ in items], states.values(), strict=True))
    unknown = sorted(set(states) - known)
    if unknown:
        raise ValueError(
            f"set_states: no stateful RNN layer at {unknown}; "
            f"the model's stateful layers are {sorted(known)}"
        )
    plan: list[tuple[Any, np.ndarray]] = []
    for path, layer in items:
        if path not in states:
            raise ValueError(
                f"set_states: missing state for stateful RNN layer '{path}' "
                f"(got states for {sorted(states)})"
            )
        variables = _state_vars(layer)
        values = list(states[path])
        if len(values) != len(variables):
            raise ValueError(
                f"set_states: layer '{path}' has {len(variables)} state "
                f"variable(s) {[tuple(v.shape) for v in variables]} but "
                f"{len(values)} array(s) were given "
                f"{[tuple(np.shape(a)) for a in values]}"
                + ("" if variables else " (is the layer built?)")
            )
        for i, (var, value) in enumerate(zip(variables, values, strict=True)):
            arr = np.asarray(value)
            if tuple(arr.shape) != tuple(var.shape):
                raise ValueError(
                    f"set_states: shape mismatch for layer '{path}' state {i}: "
                    f"model has {tuple(var.shape)}, given {tuple(arr.shape)}"
                )
            plan.append((var, arr))
    return plan


# --------------------------------------------------------------------------
# backend workarounds
# --------------------------------------------------------------------------


def _parse_version(text: str) -> Any:
    try:
        from packaging.version import Version

        return Version(text)
    except ImportError:  # pragma: no cover - packaging ships with keras' deps
        import re

        return tuple(int(p) for p in re.findall(r"\d+", text.split("+")[0])[:3])


def _keras_version() -> str:
    import keras

    return str(keras.version())


def _check_verified(backend: str, n_layers: int) -> None:
    version = _keras_version()
    lo, hi = VERIFIED_KERAS[backend]
    if _parse_version(lo) <= _parse_version(version) < _parse_version(hi):
        return
    why = {
        "torch": (
            "stateful LSTM/GRU crash in backward with an in-place RuntimeError "
            "unless their initial state is copied before the fused step, a workaround "
            "only verified on"
        ),
        "jax": (
            "RNN state would be silently dropped between batches (the JAX "
            "trainer discards updates to untracked state variables); the "
            "private-API workaround is only verified on"
        ),
    }[backend]
    raise UnsupportedStatefulBackend(
        f"{n_layers} stateful RNN layer(s) on the '{backend}' backend with "
        f"keras {version}: {why} keras >={lo},<{hi}. Use the TensorFlow "
        f"backend (KERAS_BACKEND=tensorflow), or pin keras to "
        f"'keras>={lo},<{hi}'."
    )


_COPIES_STATE = "_deeptrain_copies_state"


def _copy_state_first(layer: Any) -> None:
    """Make ``layer`` hand its fused step copies of its state variables' tensors, and run
    torch's own kernel for that step on every device when the layer allows it.

    ``RNN.call`` passes ``self.states`` (the variables' own tensors) to ``inner_loop``,
    whose fused step saves them for backward; ``call`` then assigns the new state into the
    same tensors in place. With a copy going in, backward finds its tensors unchanged. The
    copy is of the state only (batch x units), a few microseconds per call. While
    ``torch.compile`` traces the step (``compile(jit_compile=True)``), Keras' own step runs:
    it cannot lower torch's LSTM kernel on CPU (``mkldnn_rnn_layer``).
    """
    import keras
    import torch

    fused = layer.inner_loop
    native = _native_step(layer)

    def inner_loop(sequences: Any, initial_state: Any, mask: Any, training: bool = False):
        initial_state = keras.tree.map_structure(torch.clone, initial_state)
        if keras.tree.is_nested(mask):
            mask = mask[0]
        if (
            native is not None
            and mask is None
            and not (training and layer.dropout)
            and not torch.compiler.is_compiling()
        ):
            return native(sequences, initial_state)
        return fused(sequences, initial_state, mask, training=training)

    setattr(inner_loop, _COPIES_STATE, True)
    layer.inner_loop = inner_loop


def _native_step(layer: Any) -> Any:
    """``step(sequences, initial_state)`` on torch's own LSTM/GRU kernel (``torch._VF``,
    through the functions Keras calls it with on CUDA: its weight layout, gate order and
    outputs), or None for a configuration that kernel does not compute (other
    activations, no bias, ``unroll``, recurrent dropout, GRU ``reset_after=False``,
    ``use_cudnn=False``). Masked calls and input dropout in training keep Keras' step."""
    import importlib

    import keras
    import torch
    from keras.src.backend.torch.core import convert_to_tensor

    # the module (the package's ``rnn`` attribute is its function of that name)
    rnn = importlib.import_module("keras.src.backend.torch.rnn")

    cell = layer.cell
    tanh = (keras.activations.tanh, keras.ops.tanh, torch.tanh)
    sigmoid = (keras.activations.sigmoid, keras.ops.sigmoid, torch.sigmoid)
    is_gru = isinstance(layer, keras.layers.GRU)
    if (
        layer.use_cudnn not in ("auto", True)
        or cell.activation not in tanh
        or cell.recurrent_activation not in sigmoid
        or not cell.use_bias
        or layer.unroll
        or layer.recurrent_dropout
        or (is_gru and not cell.reset_after)
    ):
        return None

    def step(sequences: Any, initial_state: Any) -> Any:
        kernel = convert_to_tensor(cell.kernel)
        weights = (kernel, convert_to_tensor(cell.recurrent_kernel), convert_to_tensor(cell.bias))
        x = convert_to_tensor(sequences).to(kernel.dtype)
        if layer.go_backwards:
            x = torch.flip(x, dims=[1])
        states = [convert_to_tensor(s).to(kernel.dtype) for s in keras.tree.flatten(initial_state)]
        if is_gru:
            return rnn._cudnn_gru(x, states[0], *weights, layer.return_sequences, x.device)
        return rnn._cudnn_lstm(x, *states, *weights, layer.return_sequences, x.device)

    return step


def _prepare_torch(items: list[tuple[str, Any]]) -> list[str]:
    import keras

    applied = []
    for path, layer in items:
        if not isinstance(layer, (keras.layers.LSTM, keras.layers.GRU)):
            continue
        if layer.use_cudnn is False or getattr(layer.inner_loop, _COPIES_STATE, False):
            continue  # the per-step loop copies the states itself; or done already
        _copy_state_first(layer)
        applied.append(
            f"torch: stateful {type(layer).__name__} '{path}' copies its state before "
            "its fused step (avoids the in-place RuntimeError in backward; "
            "use_cudnn stays as set), run by torch's own kernel where it applies"
        )
    return applied


def _prepare_jax(items: list[tuple[str, Any]]) -> list[str]:
    unbuilt = [p for p, layer in items if not layer.built or layer.states is None]
    if unbuilt:
        raise ValueError(
            f"prepare_stateful_model: stateful RNN layer(s) {unbuilt} are not "
            "built; build the model first with a static batch size (e.g. "
            "keras.Input(batch_shape=(batch, timesteps, features)) or "
            "model.build(...)) and call prepare_stateful_model before the first "
            "train/predict call"
        )
    applied = []
    for path, layer in items:
        tracker = layer._tracker
        new = [
            v
            for v in _state_vars(layer)
            if not tracker.is_in_store("non_trainable_variables", v)
            and not tracker.is_in_store("trainable_variables", v)
        ]
        if not new:
            continue
        was_locked = tracker.locked
        tracker.unlock()
        try:
            for v in new:
                layer._track_variable(v)
        finally:
            if was_locked:
                tracker.lock()
        applied.append(
            f"jax: registered {len(new)} state variable(s) of stateful "
            f"{type(layer).__name__} '{path}' with the layer tracker so the "
            "JAX trainer carries the state (they now also appear in "
            "model.weights / non_trainable_variables and in save_weights files)"
        )
    return applied


def prepare_stateful_model(model: Any) -> list[str]:
    """Apply the backend's stateful-RNN workarounds to ``model`` in place.

    * tensorflow: nothing needed.
    * torch: each stateful ``LSTM``/``GRU`` copies its state before its fused step
      (``use_cudnn`` is left as set; the fused step is the fast one), which runs on
      torch's own LSTM/GRU kernel on every device where the layer's configuration allows
      (Keras uses it on CUDA only; on CPU it is several times faster than Keras' loop).
    * jax: register each stateful layer's state variables with the layer's
      tracker (the model must be built; call before the first train/predict).

    Idempotent: a second call applies nothing and returns ``[]``.

    Returns:
        Human-readable descriptions of what this call changed (for logging);
        ``[]`` when there are no stateful layers or nothing was needed.

    Raises:
        UnsupportedStatefulBackend: stateful layers on torch/jax with a Keras
            version outside :data:`VERIFIED_KERAS`, or on a backend where
            carrying state has not been verified at all.
        ValueError: jax and a stateful layer is not built yet.
    """
    import keras

    items = _stateful_items(model)
    if not items:
        return []
    backend = keras.backend.backend()
    if backend in _NATIVE_BACKENDS:
        return []
    if backend not in VERIFIED_KERAS:
        raise UnsupportedStatefulBackend(
            f"{len(items)} stateful RNN layer(s) on the '{backend}' backend with "
            f"keras {_keras_version()}: carrying RNN state between batches has "
            "not been verified on this backend. Use the TensorFlow backend "
            "(KERAS_BACKEND=tensorflow)."
        )
    _check_verified(backend, len(items))
    if backend == "torch":
        return _prepare_torch(items)
    return _prepare_jax(items)
