"""DeepTrain 0.6's ``deeptrain.util.experimental``: :func:`deepcopy_v2`. Its pickling
helpers are not kept: DeepTrain saves state as JSON (``state_dict()``), never pickles."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._legacy import not_kept

__all__ = ["deepcopy_v2", "extract_pickleable", "exclude_unpickleable"]

_NO_PICKLES = (
    "state is saved as JSON (state_dict() of the TrainGenerator, DataGenerators and "
    "callbacks) and arrays in .npz, never pickled; see deeptrain.saving"
)


def deepcopy_v2(obj: Any, item_fn: Callable[[Any], Any] | None = None) -> Any:
    """A copy of nested lists, tuples and dicts in which every other value ``x`` (arrays and
    objects included) becomes ``item_fn(x)`` (default: ``x`` itself). ``obj`` is unchanged."""
    if isinstance(obj, Mapping):
        mapping_type: Any = type(obj)  # dict, OrderedDict ...: built from pairs
        return mapping_type((k, deepcopy_v2(v, item_fn)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(deepcopy_v2(v, item_fn) for v in obj)
    return item_fn(obj) if item_fn is not None else obj


extract_pickleable = not_kept(__name__, "extract_pickleable", _NO_PICKLES)
exclude_unpickleable = not_kept(__name__, "exclude_unpickleable", _NO_PICKLES)
