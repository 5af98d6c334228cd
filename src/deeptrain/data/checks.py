"""``DataGenerator``'s arguments checked at construction, before any file is read.

Each check raises naming the argument, the value it got and what it must be: ``TypeError``
for a wrong type, ``ValueError`` for a wrong value; it returns the value normalised
(a bool as ``bool``, an int as ``int``, set nums as strings).
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = [
    "as_bool",
    "as_int",
    "check_configs_fit",
    "check_memmap_threshold",
    "check_preprocessor_configs",
    "check_seed",
    "check_set_nums",
    "check_skip_names",
]

# DeepTrain 0.6's DataGenerator attribute names, in its default skip lists: they name no
# state_dict key now (a checkpoint never holds a DataGenerator's arrays), so are ignored
OLD_ATTRIBUTE_NAMES = frozenset(
    {
        "batch",
        "superbatch",
        "labels",
        "all_labels",
        "_group_batch",
        "_group_labels",
        "data_dir",
        "data_path",
        "labels_path",
        "superbatch_dir",
        "superbatch_path",
        "data_loader",
        "superbatch_set_nums",
    }
)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def as_bool(value: Any, name: str) -> bool:
    """``value`` as a bool: True, False (NumPy's too), or exactly 1 or 0."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if _is_int(value) and value in (0, 1):
        return bool(value)
    error = ValueError if _is_int(value) else TypeError
    raise error(f"{name} must be True or False, got {value!r}")


def as_int(value: Any, name: str, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (a bool is refused)."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_seed(value: Any) -> int | None:
    """None (drawn from NumPy's global generator) or an int >= 0."""
    if value is None:
        return None
    if not _is_int(value):
        raise TypeError(f"seed must be None or an int >= 0, got {value!r}")
    if value < 0:
        raise ValueError(f"seed must be None or an int >= 0, got {value!r}")
    return int(value)


def check_memmap_threshold(value: Any) -> int | float | None:
    """None (never memory-map) or a number of bytes >= 0."""
    if value is None:
        return None
    is_number = isinstance(value, (int, float, np.integer, np.floating))
    if not is_number or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"memmap_threshold must be None or a number of bytes >= 0, got {value!r}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"memmap_threshold must be None or a number of bytes >= 0, got {value!r}")
    return value


def check_set_nums(value: Any, name: str) -> list[str] | None:
    """None, or a non-empty list of distinct set nums (ints or strings), as strings."""
    if value is None:
        return None
    expected = f"{name} must be a list of set nums (ints or strings)"
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        hint = f" (one set num: [{value!r}])" if isinstance(value, (str, int)) else ""
        raise TypeError(f"{expected}, got {value!r}{hint}")
    items = list(value)
    bad = [s for s in items if not (_is_int(s) or isinstance(s, str))]
    if bad:
        raise TypeError(f"{expected}; got {bad[0]!r} in {items!r}")
    selected = [str(s) for s in items]
    if not selected:
        raise ValueError(f"{name} is empty; pass None for all set nums")
    if len(set(selected)) != len(selected):
        raise ValueError(f"{name} has duplicates: {selected}")
    return selected


def check_preprocessor_configs(value: Any) -> dict[str, Any]:
    """None (no keywords) or a dict of keyword arguments for the preprocessor."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(
            "preprocessor_configs must be None or a dict of the preprocessor's keyword "
            f"arguments, got {value!r}"
        )
    return dict(value)


def check_configs_fit(cls: type, configs: dict[str, Any], spec: Any) -> None:
    """Raise ``TypeError`` if ``cls(**configs)`` cannot be called (missing or unknown
    keywords), naming ``preprocessor_configs``."""
    try:
        inspect.signature(cls).bind(**configs)
    except TypeError as e:
        params = [p for p in inspect.signature(cls).parameters if p not in ("args", "kwargs")]
        raise TypeError(
            f"preprocessor_configs={configs!r} does not fit preprocessor={spec!r} "
            f"({cls.__name__} takes {params}): {e}"
        ) from None
    except ValueError:  # no signature to inspect (a builtin): left to the call
        return


def check_skip_names(value: Any, name: str, state_keys: Iterable[str]) -> list[str]:
    """A list of ``state_dict`` keys; DeepTrain 0.6's attribute names (its default skip
    lists) are let through: a state holds none of them, so they change nothing."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list of state_dict keys, got {value!r}")
    bad = [n for n in value if not isinstance(n, str)]
    if bad:
        raise TypeError(f"{name} must be a list of state_dict keys (strings); got {bad[0]!r}")
    keys = sorted(state_keys)
    unknown = [n for n in value if n not in keys and n not in OLD_ATTRIBUTE_NAMES]
    if unknown:
        close = difflib.get_close_matches(unknown[0], keys, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"{name} names {unknown[0]!r}, which is not a DataGenerator state_dict key{hint} "
            f"(keys: {keys})"
        )
    return list(value)
