"""Conversion of plain Python/NumPy values to JSON-safe data and back.

Train state is saved as JSON (never pickle), so everything that goes into a state dict
passes through :func:`to_json`. Values that have no faithful JSON form are reported as
unsupported rather than silently mangled.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["UNSUPPORTED", "to_json", "from_json", "restore_like"]

UNSUPPORTED = object()
"""Returned by :func:`to_json` for values that cannot be represented in JSON."""


def to_json(value: Any) -> Any:
    """Return a JSON-serialisable copy of ``value``, or :data:`UNSUPPORTED`.

    Tuples become lists, NumPy scalars Python scalars. Dicts with non-string scalar keys
    (``class_weights={0: 1., 1: 5.}``) become ``{"__items__": [[key, value], ...]}``, which
    :func:`from_json` turns back into the dict.
    Non-finite floats are kept (Python's json writes them as NaN/Infinity and reads them back).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (list, tuple)):
        items = [to_json(v) for v in value]
        return UNSUPPORTED if any(v is UNSUPPORTED for v in items) else items
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            items = [[to_json(k), to_json(v)] for k, v in value.items()]
            keys_ok = all(isinstance(k, (int, float, bool, str)) for k, _ in items)
            if not keys_ok or any(v is UNSUPPORTED for _, v in items):
                return UNSUPPORTED
            return {"__items__": items}
        mapping = {k: to_json(v) for k, v in value.items()}
        return UNSUPPORTED if any(v is UNSUPPORTED for v in mapping.values()) else mapping
    return UNSUPPORTED


def from_json(value: Any) -> Any:
    """Undo :func:`to_json`'s encoding of dicts with non-string keys."""
    if isinstance(value, dict):
        if set(value) == {"__items__"} and isinstance(value["__items__"], list):
            items = value["__items__"]
            if not all(
                isinstance(i, list) and len(i) == 2 and isinstance(i[0], (int, float, bool, str))
                for i in items
            ):
                raise ValueError(f"malformed encoded dict {value!r}")
            return {k: from_json(v) for k, v in items}
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def restore_like(saved: Any, current: Any) -> Any:
    """Undo the tuple-to-list conversion of :func:`to_json` where ``current`` is a tuple."""
    if isinstance(current, tuple) and isinstance(saved, list):
        return tuple(saved)
    return saved
