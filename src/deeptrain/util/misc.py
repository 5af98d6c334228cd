"""Small helpers shared across DeepTrain: argument checking and paths; and the helpers of
DeepTrain 0.6's ``deeptrain.util.misc`` that its users' code and tests call
(``pass_on_error``, ``try_except``, ``argspec``, ``get_module_methods``, ...)."""

from __future__ import annotations

import difflib
import functools
import inspect
import logging
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "append_examples_dir_to_sys_path",
    "check_kwargs",
    "closest_match_hint",
    "parameter_names",
    "capture_args",
    "positive_int",
    "pass_on_error",
    "try_except",
    "argspec",
    "get_module_methods",
]

log = logging.getLogger(__name__)


def closest_match_hint(name: str, valid: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest valid name, or ``""``."""
    matches = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f"; did you mean {matches[0]!r}?" if matches else ""


def check_kwargs(
    kwargs: Mapping[str, Any], valid: Iterable[str], owner: str, signature_of: Any = None
) -> None:
    """Raise ``TypeError`` for the first key of ``kwargs`` not in ``valid``, suggesting the
    closest of all valid names: ``valid`` and the named parameters of ``signature_of`` (a
    function), so that ``epocs`` suggests ``epochs`` although ``epochs`` never reaches
    ``**kwargs``."""
    valid = list(valid)
    for key in kwargs:
        if key not in valid:
            names = sorted(set(valid) | set(parameter_names(signature_of)))
            raise TypeError(
                f"{owner} got an unexpected keyword argument {key!r}"
                f"{closest_match_hint(key, names)} (valid: {', '.join(names)})"
            )


def parameter_names(fn: Any) -> list[str]:
    """Names ``fn`` takes as keywords (not ``self``, ``*args`` or ``**kwargs``)."""
    if fn is None:
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [
        name
        for name, p in inspect.signature(fn).parameters.items()
        if p.kind in kinds and name != "self"
    ]


def positive_int(value: Any, name: str) -> int:
    """``value`` as an ``int`` if it is an integer >= 1 (not a bool), else a ``ValueError``
    naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def append_examples_dir_to_sys_path() -> Path:
    """Make the examples' shared module (``utils``) importable, as in DeepTrain 0.6.

    Looks for the ``examples`` directory of a source checkout (next to ``src/``) and
    appends it to ``sys.path``. Returns the directory.
    """
    root = Path(__file__).resolve().parents[3]
    examples_dir = root / "examples"
    if not (examples_dir / "utils.py").is_file():
        raise FileNotFoundError(
            f"DeepTrain's examples directory was not found at {examples_dir}; the examples ship "
            "with the source checkout (git clone), not with the installed wheel"
        )
    if str(examples_dir) not in sys.path:
        sys.path.append(str(examples_dir))
    return examples_dir


def capture_args(init: Any) -> Any:
    """Decorate ``__init__`` to record the names of the arguments the caller passed (by
    position or keyword, including ``**kwargs`` keys) in ``self._passed_args``, sorted;
    ``self``, ``model``, ``datagen`` and ``val_datagen`` are left out. A value equal to the
    default still counts as passed: loading a checkpoint must not override it."""
    signature = inspect.signature(init)
    var_kw = next(
        (n for n, p in signature.parameters.items() if p.kind is inspect.Parameter.VAR_KEYWORD),
        None,
    )

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind_partial(self, *args, **kwargs).arguments
        names = set(bound) | set(bound.get(var_kw, {}) if var_kw else ())
        names -= {"self", var_kw, "model", "datagen", "val_datagen"}
        self._passed_args = sorted(names)
        init(self, *args, **kwargs)

    return wrapper


# -- DeepTrain 0.6's helpers ---------------------------------------------------------------
def pass_on_error(fn: Callable, *args: Any, errmsg: str | None = None, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``; an ``Exception`` is logged (with ``errmsg``) and swallowed,
    and None returned."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:
        log.warning("%s%s: %s", f"{errmsg} " if errmsg else "", type(e).__name__, e)
        return None


def try_except(try_fn: Callable[[], Any], except_fn: Callable[[], Any] | None) -> Any:
    """``try_fn()``; if it raises an ``Exception``, ``except_fn()`` (if given) instead."""
    try:
        return try_fn()
    except Exception:
        return except_fn() if except_fn is not None else None


def argspec(fn: Callable) -> list[str]:
    """The names of ``fn``'s parameters, in order (``*args`` / ``**kwargs`` by name)."""
    return list(inspect.signature(fn).parameters)


def get_module_methods(module: types.ModuleType) -> dict[str, Callable]:
    """``{name: function}`` of the functions (and lambdas) defined in ``module`` itself."""
    return {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, types.FunctionType) and value.__module__ == module.__name__
    }


def _validate_traingen_configs(tg: Any) -> None:
    """Check a TrainGenerator's settings again (after editing them), as at construction."""
    from ..training.checks import check_inputs

    check_inputs(tg)
    tg._set_up_metrics(reloading=True)


def _init_optimizer(model: Any, *args: Any, **kwargs: Any) -> None:
    """Build the optimizer's slot variables (DeepTrain 0.6 ran a dummy train step for
    this); extra arguments are accepted and ignored."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        raise ValueError("_init_optimizer: the model is not compiled (no optimizer)")
    if not optimizer.built:
        optimizer.build(model.trainable_variables)


def _make_plot_configs_from_metrics(tg: Any) -> dict[str, Any]:
    """The default ``plot_configs`` of ``tg``'s metrics (see
    :func:`deeptrain.training.plotting.default_plot_configs`)."""
    from ..training.plotting import default_plot_configs, with_plot_cfg

    max_is_best = tg.max_is_best if tg.max_is_best is not None else tg.key_metric != "loss"
    return with_plot_cfg(
        default_plot_configs(
            list(tg.train_metrics),
            list(tg.val_metrics),
            tg.key_metric,
            bool(max_is_best),
            tg.plot_first_pane_max_vals,
        )
    )
