"""What a checkpoint needs from the model and the process, beyond DeepTrain's own state.

* weights and optimizer variables: Keras 3's ``.weights.h5`` (written and read by
  :mod:`.weights_file`; the optimizer is built first, so that its variables exist);
* variables that are not weights, such as the seed-generator states of Dropout layers;
* stateful RNN layers' states (not in Keras' weights on TensorFlow and torch);
* random number generators: Python's, NumPy's global one, torch's global one (Dropout with
  ``seed=None`` draws from it on the torch backend), and Keras' global seed generator.

Arrays go into the checkpoint's ``.npz`` (read with ``allow_pickle=False``); their
descriptions into its JSON. Nothing here unpickles or executes anything from a file.
"""

from __future__ import annotations

import random
import sys
import warnings
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import numpy as np

from ..backend.host import read_to_host
from ..backend.stateful import check_states, set_states, state_variables

__all__ = [
    "variable_specs",
    "built_optimizer",
    "check_compatible",
    "save_weights",
    "load_weights",
    "optimizer_selection",
    "extra_variables",
    "capture_arrays",
    "arrays_of",
    "check_arrays",
    "restore_arrays",
    "capture_rng",
    "check_rng",
    "restore_rng",
    "all_variables",
    "has_keras_global_seed_generator",
]


def _spec(v: Any) -> list:
    return [v.path, [int(d) for d in v.shape], str(v.dtype)]


def built_optimizer(model: Any) -> Any:
    """The model's optimizer (None without one), its variables created if they were not."""
    opt = getattr(model, "optimizer", None)
    if opt is not None and not opt.built:
        opt.build(model.trainable_variables)  # else load_weights skips the optimizer part
    return opt


def variable_specs(model: Any) -> dict[str, list]:
    """Path, shape and dtype of every variable a checkpoint restores, in order."""
    opt = built_optimizer(model)
    return {
        "weights": [_spec(v) for v in model.weights],
        "optimizer": [_spec(v) for v in opt.variables] if opt is not None else [],
        "extra": [_spec(v) for v in extra_variables(model)],
    }


def check_compatible(saved: dict[str, list], model: Any, source: str | Path) -> None:
    """Raise ``ValueError`` naming the first variable whose shape differs from the saved one.

    Variables are matched by position (as Keras' own loading does), so a model rebuilt in
    another session, where layer names may carry other suffixes, is still compatible.
    """
    live = variable_specs(model)
    for group, what in (
        ("weights", "model weight"),
        ("extra", "model variable"),
        ("optimizer", "optimizer variable"),
    ):
        ours, theirs = live[group], saved.get(group)
        if theirs is None or (group == "optimizer" and not theirs):
            continue  # not saved (no "extra" in checkpoints migrated from 0.6), or no optimizer
        for i in range(max(len(ours), len(theirs))):
            mine = ours[i] if i < len(ours) else None
            other = theirs[i] if i < len(theirs) else None
            if mine is None or other is None or list(mine[1]) != list(other[1]):
                model_part = f"'{mine[0]}' with shape {tuple(mine[1])}" if mine else "nothing"
                saved_part = f"'{other[0]}' with shape {tuple(other[1])}" if other else "nothing"
                raise ValueError(
                    f"checkpoint {source} does not fit this model: {what} #{i} is {model_part} "
                    f"in the model but {saved_part} in the checkpoint ({len(ours)} vs "
                    f"{len(theirs)} {what}s). Build the model with the architecture it was "
                    "saved with."
                )


def save_weights(model: Any, path: Path, **kwargs: Any) -> None:
    built_optimizer(model)
    model.save_weights(path, **kwargs)


def optimizer_selection(model: Any, configs: Any, argname: str) -> set[str]:
    """Paths of the optimizer variables that ``{'include': [...]}`` / ``{'exclude': [...]}``
    leave out (names match a variable path's last part, or any part with ``'*text'``)."""
    if not configs:
        return set()
    if (
        not isinstance(configs, dict)
        or not set(configs) <= {"include", "exclude"}
        or len(configs) != 1
    ):
        raise ValueError(
            f"{argname} must be None, {{'include': [names]}} or "
            f"{{'exclude': [names]}}, got {configs!r}"
        )
    ((mode, names),) = configs.items()

    def hit(path: str) -> bool:
        last = path.rsplit("/", 1)[-1]
        return any(last == n or (n.startswith("*") and n[1:] in path) for n in names)

    opt = built_optimizer(model)
    return {v.path for v in opt.variables if hit(v.path) != (mode == "include")}


def load_weights(
    model: Any,
    path: Path,
    skip_optimizer: bool = False,
    keep_optimizer: AbstractSet[str] = frozenset(),
) -> None:
    """Load weights and optimizer state; the live optimizer's values are kept for all its
    variables with ``skip_optimizer``, else for those whose path is in ``keep_optimizer``.
    The file is opened once (no links followed) and each dataset read once."""
    from .safe_io import open_binary
    from .weights_file import load_weights_file, weights_layout

    opt = built_optimizer(model)
    keep = [
        v
        for v in (opt.variables if opt is not None else [])
        if skip_optimizer or v.path in keep_optimizer
    ]
    if weights_layout(model).cacheable:
        with open_binary(path) as f:
            load_weights_file(model, f, {id(v) for v in keep}, source=path)
        return
    kept = [np.array(v.numpy()) for v in keep]  # layers that store computed values: Keras loads
    with warnings.catch_warnings():
        if skip_optimizer:  # its values are put back below: Keras' note on a mismatch is moot
            warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")
        model.load_weights(path)
    for v, value in zip(keep, kept, strict=True):
        v.assign(value)


def extra_variables(model: Any) -> list[Any]:
    """Model variables that ``save_weights`` leaves out (seed-generator states and such)."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def capture_arrays(model: Any) -> dict[str, np.ndarray]:
    """Host copies of the variables ``save_weights`` leaves out and of the RNN states."""
    extras, states = extra_variables(model), state_variables(model)
    flat = [v for values in states.values() for v in values]
    return arrays_of(extras, states, read_to_host(model, [*extras, *flat]))


def arrays_of(
    extras: list[Any], states: dict[str, list[Any]], values: list[np.ndarray]
) -> dict[str, np.ndarray]:
    """The checkpoint arrays ``extra/<i>`` and ``rnn/<layer path>/<i>`` from ``values``
    (host copies of ``extras`` and then of ``states``' variables, in order)."""
    arrays = {f"extra/{i}": values[i] for i in range(len(extras))}
    rest = iter(values[len(extras) :])
    for path, variables in states.items():
        for i in range(len(variables)):
            arrays[f"rnn/{path}/{i}"] = next(rest)
    return arrays


def _rnn_states(arrays: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """``{layer path: [state arrays]}`` from the ``rnn/<path>/<i>`` arrays, the layers in
    the order they were written (the model's)."""
    numbered: dict[str, dict[int, np.ndarray]] = {}
    for key in arrays:
        if key.startswith("rnn/"):
            path, _, index = key[len("rnn/") :].rpartition("/")
            if not path or not index.isdigit():
                raise ValueError(f"array {key!r} is not named rnn/<layer path>/<index>")
            numbered.setdefault(path, {})[int(index)] = arrays[key]
    return {path: [by_index[i] for i in sorted(by_index)] for path, by_index in numbered.items()}


def check_arrays(model: Any, arrays: dict[str, np.ndarray]) -> None:
    """Raise ``ValueError`` if :func:`restore_arrays` would fail on ``model``; changes
    nothing."""
    for i, v in enumerate(extra_variables(model)):
        key = f"extra/{i}"
        if key in arrays and tuple(arrays[key].shape) != tuple(v.shape):
            raise ValueError(
                f"array {key!r} has shape {tuple(arrays[key].shape)} but the "
                f"model variable '{v.path}' has shape {tuple(v.shape)}"
            )
    states = _rnn_states(arrays)
    if states:
        check_states(model, states)


def restore_arrays(model: Any, arrays: dict[str, np.ndarray]) -> None:
    for i, v in enumerate(extra_variables(model)):
        key = f"extra/{i}"
        if key in arrays:
            v.assign(arrays[key])
    states = _rnn_states(arrays)
    if states:
        set_states(model, states)


def all_variables(model: Any) -> list[Any]:
    """Every variable a checkpoint restores: the model's (weights and the rest) and the
    optimizer's."""
    opt = built_optimizer(model)
    seen, found = set(), []
    for v in [*model.variables, *(opt.variables if opt is not None else [])]:
        if id(v) not in seen:
            seen.add(id(v))
            found.append(v)
    return found


def capture_rng() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The process's random generators: a JSON part and an array part."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    info: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
    }
    arrays = {"rng/numpy_key": np.asarray(np_state["state"]["key"])}
    torch = sys.modules.get("torch")
    if torch is not None:
        arrays["rng/torch"] = torch.get_rng_state().numpy().copy()
        if torch.cuda.is_initialized():  # Keras' unseeded Dropout draws from the GPU's
            # this process's GPU (Keras' torch backend uses the current device)
            arrays["rng/torch_cuda"] = torch.cuda.get_rng_state().numpy().copy()
    seed_gen = _keras_global_seed_generator(create=False)
    if seed_gen is not None:
        arrays["rng/keras_global"] = np.array(seed_gen.state.numpy())
    return info, arrays


def check_rng(info: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Raise ``ValueError`` if :func:`restore_rng` would fail; changes no generator (the
    states are tried on new, private generators)."""
    try:
        version, internal, gauss = info["python"]
        random.Random().setstate((version, tuple(internal), gauss))
        n = info["numpy"]
        if "rng/numpy_key" not in arrays:
            raise ValueError("the array 'rng/numpy_key' is missing")
        np.random.RandomState().set_state(
            {
                "bit_generator": n["bit_generator"],
                "state": {"key": arrays["rng/numpy_key"], "pos": n["pos"]},
                "has_gauss": n["has_gauss"],
                "gauss": n["gauss"],
            }
        )
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise ValueError(f"random generator state: {e}") from None
    torch_state = arrays.get("rng/torch")
    if torch_state is not None and (torch_state.dtype != np.uint8 or torch_state.ndim != 1):
        raise ValueError(
            f"torch generator state must be a 1-D uint8 array, got "
            f"{torch_state.dtype} with shape {torch_state.shape}"
        )
    cuda_state = arrays.get("rng/torch_cuda")
    if cuda_state is not None and (cuda_state.dtype != np.uint8 or cuda_state.shape != (16,)):
        raise ValueError(
            "torch CUDA generator state must be 16 uint8 (its Philox seed and offset), got "
            f"{cuda_state.dtype} with shape {cuda_state.shape}"
        )
    keras_state = arrays.get("rng/keras_global")
    if keras_state is not None and keras_state.shape != (2,):
        raise ValueError(
            f"Keras seed generator state must have shape (2,), got {keras_state.shape}"
        )


def restore_rng(info: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    version, internal, gauss = info["python"]
    random.setstate((version, tuple(internal), gauss))
    n = info["numpy"]
    np.random.set_state(
        {
            "bit_generator": n["bit_generator"],
            "state": {"key": arrays["rng/numpy_key"], "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    if "rng/torch" in arrays:
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_rng_state(torch.from_numpy(arrays["rng/torch"].copy()))
            _restore_cuda_rng(torch, arrays.get("rng/torch_cuda"))
    if "rng/keras_global" in arrays:
        seed_gen = _keras_global_seed_generator(create=True)
        if seed_gen is not None:
            seed_gen.state.assign(arrays["rng/keras_global"])
    else:  # there was none (as after keras.utils.set_random_seed): nor is there now
        _clear_keras_global_seed_generator()


def _restore_cuda_rng(torch: Any, state: np.ndarray | None) -> None:
    """This process's GPU generator (under distribution: process 0's, as for the other
    generators; a process group seeded alike draws alike). Without a GPU there is none to
    restore, and a GPU run resumed there is not bitwise."""
    if state is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.from_numpy(state.copy()))


def has_keras_global_seed_generator() -> bool:
    return _keras_global_seed_generator(create=False) is not None


def _clear_keras_global_seed_generator() -> None:
    """No process-wide SeedGenerator: the next ``keras.random`` op without a seed makes
    one, seeded from Python's ``random`` (restored), as ``set_random_seed`` leaves it."""
    try:
        from keras.src.backend.common import global_state
    except ImportError:  # pragma: no cover - private path moved
        return
    global_state.set_global_attribute("global_seed_generator", None)


def _keras_global_seed_generator(create: bool) -> Any:
    """Keras' process-wide SeedGenerator (used by ``keras.random`` ops given no seed)."""
    try:
        from keras.src.backend.common import global_state
        from keras.src.random import seed_generator
    except ImportError:  # pragma: no cover - private path moved
        return None
    existing = global_state.get_global_attribute("global_seed_generator")
    if existing is not None or not create:
        return existing
    return seed_generator.global_seed_generator()
