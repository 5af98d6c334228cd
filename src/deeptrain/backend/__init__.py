"""Backend-specific helpers (Keras 3: tensorflow, torch, jax)."""

from deeptrain.backend.stateful import (
    VERIFIED_KERAS,
    UnsupportedStatefulBackend,
    get_states,
    prepare_stateful_model,
    reset_states,
    set_states,
    stateful_layers,
)

__all__ = [
    "VERIFIED_KERAS",
    "UnsupportedStatefulBackend",
    "get_states",
    "prepare_stateful_model",
    "reset_states",
    "set_states",
    "stateful_layers",
]
