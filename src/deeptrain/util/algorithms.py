"""Small algorithms over nested containers (DeepTrain 0.6's ``deeptrain.util.algorithms``).

* :func:`ordered_shuffle`: one permutation applied to several lists, arrays or dicts;
* :func:`nCk`: binomial coefficient;
* :func:`deeplen`, :func:`deepget`, :func:`deepmap`, :func:`deep_isinstance`: leaves of
  nested lists, tuples, dicts and arrays;
* :func:`builtin_or_npscalar`, :func:`obj_to_str`: plain-value tests and short names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "ordered_shuffle",
    "nCk",
    "builtin_or_npscalar",
    "obj_to_str",
    "deeplen",
    "deepget",
    "deepmap",
    "deep_isinstance",
]

_BUILTIN_SCALARS = (bool, int, float, complex, str, bytes, type(None))
_BUILTIN_CONTAINERS = (list, tuple, dict, set, frozenset)


def ordered_shuffle(*iterables: Any) -> Any:
    """Shuffle several sequences (lists, tuples, arrays) or dicts by one permutation, drawn
    from NumPy's global generator; each keeps its type (a dict: its items reordered).
    Returns a tuple of them, or the one given."""
    if not iterables:
        raise ValueError("ordered_shuffle needs at least one list, array or dict")
    lengths = {len(x) for x in iterables}
    if len(lengths) != 1:
        raise ValueError(f"ordered_shuffle needs equal lengths, got {sorted(lengths)}")
    order = np.random.permutation(lengths.pop())
    shuffled = tuple(_reordered(x, order) for x in iterables)
    return shuffled if len(shuffled) > 1 else shuffled[0]


def _reordered(x: Any, order: np.ndarray) -> Any:
    if isinstance(x, np.ndarray):
        return x[order]
    if isinstance(x, Mapping):
        items = list(x.items())
        mapping_type: Any = type(x)  # dict, OrderedDict ...: built from pairs
        return mapping_type(items[i] for i in order)
    items = list(x)
    return type(x)(items[i] for i in order)


def nCk(n: int, k: int) -> int:
    """Ways to choose ``k`` of ``n`` items (0 when ``k > n``)."""
    return math.comb(n, k)


def builtin_or_npscalar(x: Any, include_type_type: bool = False) -> bool:
    """Whether ``x`` is a builtin scalar or container, or a NumPy scalar (with
    ``include_type_type``, a class counts too)."""
    if isinstance(x, type):
        return include_type_type
    return isinstance(x, _BUILTIN_SCALARS + _BUILTIN_CONTAINERS + (np.generic,))


def obj_to_str(x: Any, len_lim: int = 200, drop_absname: bool = False) -> str:
    """A short text for ``x``: a class's or function's (qualified) name, else ``str(x)``,
    cut to ``len_lim`` characters (``...`` marks a cut). ``drop_absname``: the name
    without its module path."""
    if isinstance(x, type) or (callable(x) and hasattr(x, "__qualname__")):
        name = _name(x, drop_absname)
    elif not builtin_or_npscalar(x) and not isinstance(x, np.ndarray):
        name = _name(type(x), drop_absname)
    else:
        name = str(x)
    return name if len(name) <= len_lim else name[: max(0, len_lim - 3)] + "..."


def _name(x: Any, drop_absname: bool) -> str:
    return x.__name__ if drop_absname else f"{x.__module__}.{x.__qualname__}"


def _children(obj: Any) -> list[tuple[Any, Any]] | None:
    """``[(key, child)]`` of a list, tuple, dict or array (by first axis); None for a leaf
    (strings, scalars, sets and other objects)."""
    if isinstance(obj, Mapping):
        return list(obj.items())
    if isinstance(obj, np.ndarray):
        return list(enumerate(obj)) if obj.ndim else None
    if isinstance(obj, (list, tuple)):
        return list(enumerate(obj))
    return None


def deeplen(obj: Any) -> int:
    """Number of leaves of nested lists, tuples and dicts; an array counts ``.size``
    leaves, a string one."""
    if isinstance(obj, np.ndarray):
        return int(obj.size)
    children = _children(obj)
    if children is None:
        return 1
    return sum(deeplen(child) for _, child in children)


def deepget(obj: Any, key_path: Sequence[Any], drop_keys: int = 0) -> Any:
    """``obj[k0][k1]...`` along ``key_path``, leaving out its last ``drop_keys`` keys."""
    keys = list(key_path)[: len(key_path) - drop_keys] if drop_keys else list(key_path)
    for key in keys:
        obj = obj[key]
    return obj


def deepmap(obj: Any, fn: Callable[[Any, Any], Any]) -> Any:
    """Replace every element ``x`` (at key or index ``key``) of nested lists, tuples, dicts
    and arrays by ``fn(x, key)``, outermost first, then map into what ``fn`` returned if it
    is a non-empty container. Lists, dicts and arrays are changed in place; tuples are
    rebuilt. Returns the mapped object."""
    if _children(obj) is None or not len(obj):
        raise ValueError(
            f"deepmap needs a non-empty list, tuple, dict or array; got {type(obj).__name__}"
        )
    return _deepmap(obj, fn)


def _deepmap(obj: Any, fn: Callable[[Any, Any], Any]) -> Any:
    was_tuple = isinstance(obj, tuple)
    target = list(obj) if was_tuple else obj
    for key, value in _children(obj) or []:
        new = fn(value, key)
        if not isinstance(new, (str, bytes)) and _children(new) is not None and len(new):
            new = _deepmap(new, fn)
        target[key] = new
    return tuple(target) if was_tuple else target


def deep_isinstance(obj: Any, cond: type | tuple[type, ...] | Callable[[Any], bool]) -> list:
    """For each leaf of ``obj`` (nested as in :func:`deeplen`, arrays by element), whether
    it is an instance of ``cond`` (a type or types), or ``cond(leaf)`` (a function)."""
    test: Callable[[Any], bool]
    if isinstance(cond, (type, tuple)):
        types = cond

        def test(x: Any) -> bool:
            return isinstance(x, types)
    else:
        test = cond
    out: list = []

    def visit(x: Any) -> None:
        children = None if isinstance(x, (str, bytes)) else _children(x)
        if children is None:
            out.append(test(x))
        else:
            for _, child in children:
                visit(child)

    visit(obj)
    return out
