"""The JSON Schema (Draft 2020-12) of a checkpoint's ``state.json``, and its validation.

Every field of the payload is covered: TrainState (types from the dataclass; counters are
integers in ``[0, 2**53]``), the TrainGenerator settings (known names only, any JSON value),
both DataGenerators' state, the model's variable specs, the random generators, the
callbacks' states and the ``files`` record. Objects whose keys are known allow no others.
"Integer" means a JSON integer: ``3.0`` is not one (JSON Schema alone would accept it).

``jsonschema`` is imported on first validation only, so ``import deeptrain`` stays light.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import fields
from typing import Any

from ..training.configs import TRAINGEN_DEFAULTS
from ..training.state import TrainState
from .checkpoint import DIGEST_FIELD, FORMAT, KINDS, READ_VERSIONS
from .traingen_state import EXTRA_ATTRS

__all__ = ["INT_MAX", "state_schema", "schema_error"]

INT_MAX = 2**53  # counters beyond this are not exact in most JSON readers

_COUNTER = {"type": "integer", "minimum": 0, "maximum": INT_MAX}
_STRING_OR_NULL = {"type": ["string", "null"]}
_STRINGS = {"type": "array", "items": {"type": "string"}}
_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_XXH128 = {"type": "string", "pattern": "^[0-9a-f]{32}$"}

# TrainState field annotation -> schema (a new field needs an entry here)
_ANNOTATIONS: dict[str, dict[str, Any]] = {
    "int": _COUNTER,
    "bool": {"type": "boolean"},
    "float": {"type": "number"},
    "float | None": {"type": ["number", "null"]},
    "str | None": _STRING_OR_NULL,
    "list": {"type": "array"},
    "dict[str, list]": {"type": "object", "additionalProperties": {"type": "array"}},
}


def _closed(properties: dict[str, Any], required: list[str] | tuple = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def _train_state() -> dict[str, Any]:
    props = {}
    for f in fields(TrainState):
        annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        if annotation not in _ANNOTATIONS:
            raise TypeError(f"TrainState.{f.name}: no checkpoint schema for {annotation!r}")
        props[f.name] = _ANNOTATIONS[annotation]
    counters = [name for name, schema in props.items() if schema is _COUNTER]
    return _closed(props, counters)


def _datagen() -> dict[str, Any]:
    order = {"type": ["array", "null"], "items": _COUNTER}
    group = _closed(
        {
            "set_nums": {**_STRINGS, "minItems": 1},
            "n_samples": {**_COUNTER, "minimum": 1},
            "n_batches": {**_COUNTER, "minimum": 1},
            "sample_order": order,
            "batch_order": order,
            "next_batch": _COUNTER,
        },
        ("set_nums", "n_samples", "n_batches", "sample_order", "batch_order", "next_batch"),
    )
    rng = {
        "type": "object",
        "required": ["bit_generator", "state"],
        "properties": {
            "bit_generator": {"type": "string"},
            "state": {"type": "object"},
            "has_uint32": {"type": "integer"},
            "uinteger": {"type": "integer"},
        },
    }
    return _closed(
        {
            "format": {"type": "integer"},
            "epoch": _COUNTER,
            "set_nums_original": _STRINGS,
            "set_nums_to_process": _STRINGS,
            "group": {"anyOf": [{"type": "null"}, group]},
            "set_num": _STRING_OR_NULL,
            "set_name": _STRING_OR_NULL,
            "all_data_exhausted": {"type": "boolean"},
            "rng": rng,
            "seed": {"type": ["integer", "null"]},
            "preprocessor": {"type": "object"},
        },
        ("format",),
    )


def _model() -> dict[str, Any]:
    spec = {
        "type": "array",
        "minItems": 3,
        "maxItems": 3,
        "items": False,
        "prefixItems": [
            {"type": "string"},
            {"type": "array", "items": _COUNTER},
            {"type": "string"},
        ],
    }
    specs = {"type": "array", "items": spec}
    return _closed(
        {"weights": specs, "optimizer": specs, "extra": specs, "optimizer_unsaved": _STRINGS},
        ("weights", "optimizer"),  # no "extra": not saved (checkpoints migrated from 0.6)
    )


def _rng() -> dict[str, Any]:
    python = {
        "type": "array",
        "minItems": 3,
        "maxItems": 3,
        "items": False,
        "prefixItems": [
            {"type": "integer"},
            {"type": "array", "items": {**_COUNTER, "maximum": 2**32}},
            {"type": ["number", "null"]},
        ],
    }
    numpy = _closed(
        {
            "bit_generator": {"type": "string"},
            "pos": {"type": "integer", "minimum": 0, "maximum": 624},
            "has_gauss": {"type": "integer", "minimum": 0, "maximum": 1},
            "gauss": {"type": "number"},
        },
        ("bit_generator", "pos", "has_gauss", "gauss"),
    )
    return _closed({"python": python, "numpy": numpy}, ("python", "numpy"))


@functools.cache
def state_schema() -> dict[str, Any]:
    """The schema of a whole ``state.json``."""
    callback = _closed(
        {"class": {"type": "string"}, "state": {"type": "object"}}, ("class", "state")
    )
    size = {"type": "integer", "minimum": 0, "maximum": 2**63}
    record = {  # a file's size and digest: XXH3-128 (version 3), SHA-256 (versions 1, 2)
        **_closed({"bytes": size, "xxh128": _XXH128, "sha256": _SHA256}, ("bytes",)),
        "oneOf": [{"required": ["xxh128"]}, {"required": ["sha256"]}],
    }
    files = {
        "type": "object",
        "additionalProperties": record,
        "propertyNames": {"pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]*$"},
    }
    settings = {
        "type": "object",
        "additionalProperties": False,
        "properties": {name: {} for name in [*TRAINGEN_DEFAULTS, *EXTRA_ATTRS]},
    }
    properties = {
        "format": {"const": FORMAT},
        "version": {"enum": list(READ_VERSIONS)},
        "kind": {"enum": list(KINDS)},
        "seq": _COUNTER,
        DIGEST_FIELD: _SHA256,
        "created": {"type": "string"},
        "deeptrain_version": {"type": "string"},
        "keras_version": {"type": "string"},
        "backend": {"type": "string"},
        "train_state": _train_state(),
        "traingen": settings,
        "datagen": _datagen(),
        "val_datagen": _datagen(),
        "callbacks": {"type": "array", "items": callback},
        "model": _model(),
        "rng": _rng(),
        "files": files,
        "distribution": _closed(  # where it was written (optional: older checkpoints)
            {"describe": {"type": "string"}, "processes": _COUNTER, "replicas": _COUNTER},
            ("describe", "processes", "replicas"),
        ),
    }
    optional = (DIGEST_FIELD, "distribution", "rng")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        # "rng" may be absent: not saved (checkpoints migrated from 0.6)
        **_closed(properties, [k for k in properties if k not in optional]),
    }


_JSON_CLASSES: dict[str, tuple[type, ...]] = {  # what json.loads makes of each type
    "string": (str,),
    "integer": (int,),  # (not bool: type(True) is bool)
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
    "object": (dict,),
    "array": (list,),
}


def _is_integer(checker: Any, value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(checker: Any, value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _counter_bounds(items: Any) -> tuple[int, int] | None:
    """``(minimum, maximum)`` if ``items`` is an integer schema with bounds and nothing else."""
    if (
        isinstance(items, dict)
        and items.get("type") == "integer"
        and set(items) <= {"type", "minimum", "maximum"}
    ):
        return items.get("minimum", -INT_MAX), items.get("maximum", INT_MAX)
    return None


@functools.cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator, validators

    types = Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"integer": _is_integer, "number": _is_number}
    )
    plain_items = Draft202012Validator.VALIDATORS["items"]

    def items(validator: Any, schema: Any, instance: Any, parent: Any) -> Any:
        """Arrays of bounded integers (random generator states: 625 of them) checked in one
        pass; item by item (for the error message) only when that pass finds a bad one."""
        bounds = _counter_bounds(schema)
        if bounds is not None and isinstance(instance, list) and "prefixItems" not in parent:
            lo, hi = bounds
            if all(type(x) is int and lo <= x <= hi for x in instance):
                return
        yield from plain_items(validator, schema, instance, parent)

    plain_type = Draft202012Validator.VALIDATORS["type"]

    def type_(validator: Any, types: Any, instance: Any, schema: Any) -> Any:
        """A parsed JSON value's class settles its type (the type checker, which also
        takes NumPy scalars, then only for the others and for the error message)."""
        cls = type(instance)
        for name in [types] if isinstance(types, str) else types:
            if cls in _JSON_CLASSES.get(name, ()):
                return
        yield from plain_type(validator, types, instance, schema)

    root = state_schema()
    plain_properties = Draft202012Validator.VALIDATORS["properties"]

    def properties(validator: Any, properties: Any, instance: Any, schema: Any) -> Any:
        """A top-level field whose JSON text passed before is not checked again: most of a
        state (settings, variable specs) is the same checkpoint after checkpoint, and
        checking it cost ~6 ms of each write (the seed autoencoder's state, 16 KB)."""
        if schema is not root or not isinstance(instance, dict):
            yield from plain_properties(validator, properties, instance, schema)
            return
        held = _field_texts.get()
        texts = held[1] if held is not None and held[0] is instance else {}
        for name, subschema in properties.items():
            if name in instance:
                text = texts.get(name)
                yield from _checked_once(validator, name, instance[name], subschema, text)

    strict = validators.extend(
        Draft202012Validator,
        validators={"items": items, "type": type_, "properties": properties},
        type_checker=types,
    )
    return strict(root)  # (a valid JSON Schema: tested, not checked here, ~45 ms)


_PASSED_PER_FIELD = 4  # digests of a top-level field's JSON texts known to pass (newest)
_passed: dict[str, list[bytes]] = {}


_field_texts: ContextVar[tuple[Any, Mapping[str, str]] | None] = ContextVar(
    "field_texts", default=None
)
"""``(state, texts)``: the JSON texts of the top-level fields of ``state``, being validated,
where its writer has them already (:func:`encoded_schema_error`'s ``field_texts``)."""


def _checked_once(
    validator: Any, name: str, value: Any, schema: Any, text: str | None = None
) -> Any:
    """The errors of top-level field ``name``, unless its JSON text (``text``, or encoded
    here) passed before (known by its SHA-256: a state read from a file may be made to
    collide with a weaker hash)."""
    import hashlib
    import json

    if text is None:
        try:
            text = json.dumps(value, allow_nan=True)  # (as the writer encodes a field)
        except (TypeError, ValueError):  # not plain JSON: checked every time
            yield from validator.descend(value, schema, path=name, schema_path=name)
            return
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    known = _passed.setdefault(name, [])
    if digest in known:
        return
    failed = False
    for error in validator.descend(value, schema, path=name, schema_path=name):
        failed = True
        yield error
    if not failed:
        known.append(digest)
        del known[:-_PASSED_PER_FIELD]


def _field(path: Any) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def schema_error(state: Any) -> str | None:
    """``'<field>: <what is wrong>'`` for the most relevant schema violation in ``state``
    (None: valid)."""
    return encoded_schema_error(state, None)


def encoded_schema_error(state: Any, field_texts: Mapping[str, str] | None) -> str | None:
    """:func:`schema_error` for a writer that has encoded ``state``'s top-level fields
    already: ``field_texts[name]`` must be ``json.dumps(state[name], allow_nan=True)``
    (not checked: the memo of fields that passed trusts them; so not exported)."""
    from jsonschema.exceptions import best_match

    token = _field_texts.set(None if field_texts is None else (state, field_texts))
    try:
        error = best_match(_validator().iter_errors(state))
    finally:
        _field_texts.reset(token)
    if error is None:
        return None
    message = error.message if len(error.message) <= 300 else error.message[:300] + "..."
    return f"{_field(error.absolute_path)}: {message}"
