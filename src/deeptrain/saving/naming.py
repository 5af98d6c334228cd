"""Descriptive model names: ``M<num>__<base>-<encoded configs>__<max|min><best>``.

``model_name_configs`` maps attribute names to aliases, in the order they appear in the
name. Values come from ``model_configs`` first, then the TrainGenerator's attributes;
dotted keys reach into objects (``'datagen.batch_size'``). Keys missing or None are skipped.
``name_process_key_fn(key, alias, attrs)`` (DeepTrain 0.6's signature; ``attrs[key]`` is the
value) encodes one entry; the default is :func:`name_process_key_fn`.
Examples: ``M0__model-idp.5-pdp.4-nadam__min.081``, ``M9__AE-filt6_12_2_6_12-Adam-1e-4__max.238``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "encode_value",
    "encode_best",
    "name_process_key_fn",
    "name_suffix",
    "next_model_num",
    "MISSING",
]

MISSING = object()


def encode_value(value: Any, key: str = "") -> str:
    """Compact text for a hyperparameter value (``2e-4``, ``.5``, ``6_12x2``, ``Adam``)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if key == "name":
        return ""  # the key alone marks it (DeepTrain 0.6: '-name')
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if key == "timesteps" and value >= 1000:
            return f"{value / 1000:g}k"
        return str(value)
    if isinstance(value, float):
        return _encode_float(value)
    if isinstance(value, (list, tuple)):
        return _squash([encode_value(v, key) for v in value])
    if isinstance(value, type) or (callable(value) and hasattr(value, "__name__")):
        return value.__name__
    if type(value).__module__ != "builtins":
        return type(value).__name__  # objects such as optimizers: their class name
    raise TypeError(
        f"cannot encode {key!r}={value!r} into a model name; give "
        "name_process_key_fn or leave it out of model_name_configs"
    )


def _encode_float(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) < 1e-2:
        mantissa, exp = f"{v:.1e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exp)}"
    text = f"{v:.3f}".rstrip("0").rstrip(".")  # (0.9996 rounds to "1", not "1.")
    return text.replace("0.", ".", 1) if abs(v) < 1 else text


def _squash(items: list[str]) -> str:
    """Join with ``_``, writing runs of a repeated value as ``vxN``."""
    out: list[str] = []
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[i]:
            j += 1
        out.append(items[i] if j == i else f"{items[i]}x{j - i + 1}")
        i = j + 1
    return "_".join(out)


def encode_best(value: float | None) -> str:
    """``.081``, ``1.296``, ``10.500``, ``-.250``; ``""`` before any validation."""
    if value is None:
        return ""
    text = f"{value:.3f}"
    if text.startswith("0."):
        return text[1:]
    if text.startswith("-0."):
        return "-" + text[2:]
    return text


def _lookup(key: str, sources: list[Any]) -> Any:
    head, *rest = key.split(".")
    for source in sources:
        if isinstance(source, Mapping):
            value = source.get(head, MISSING)
        else:
            value = getattr(source, head, MISSING)
        if value is not MISSING:
            break
    else:
        return MISSING
    for part in rest:
        value = (
            value.get(part, MISSING)
            if isinstance(value, Mapping)
            else getattr(value, part, MISSING)
        )
        if value is MISSING:
            return MISSING
    return value


class _Attrs(Mapping):
    """The values a name is made of, looked up on demand: ``model_configs`` first, then the
    TrainGenerator (dotted keys reach into objects). What ``name_process_key_fn`` gets as
    ``attrs``, as in DeepTrain 0.6 (``attrs[key]``)."""

    def __init__(self, sources: list[Any]):
        self._sources = sources

    def __getitem__(self, key: str) -> Any:
        value = _lookup(key, self._sources)
        if value is MISSING:
            raise KeyError(key)
        return value

    def __iter__(self) -> Any:
        names: dict[str, None] = {}  # ordered, without repeats
        for source in self._sources:
            names.update(dict.fromkeys(source if isinstance(source, Mapping) else vars(source)))
        return iter(names)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def name_process_key_fn(key: str, alias: str | None, attrs: Mapping[str, Any]) -> str:
    """The default encoder of one ``model_name_configs`` entry, as a function with DeepTrain
    0.6's signature (``configs.NAME_PROCESS_KEY_FN``): ``-<alias><value>``, or
    ``<alias><value>`` for ``'best_key_metric'`` (``__max.910``)."""
    value = attrs[key]
    if key == "best_key_metric":
        return f"{alias if alias is not None else key}{encode_best(value)}"
    label = key.split(".")[-1] if alias is None else alias
    return f"-{label}{encode_value(value, key.split('.')[-1])}"


def name_suffix(
    configs: Mapping[str, str | None],
    sources: list[Any],
    max_is_best: bool,
    best: float | None,
    process_key_fn: Callable | None = None,
) -> str:
    """The part after ``M<num>__<base>``, from ``model_name_configs``."""
    text = ""
    attrs = _Attrs(sources)
    for key, alias in configs.items():
        if key == "best_key_metric":
            if best is not None:
                prefix = alias if alias is not None else ("__max" if max_is_best else "__min")
                text += f"{prefix}{encode_best(best)}"
            continue
        value = _lookup(key, sources)
        if value is MISSING or value is None:
            continue
        text += (process_key_fn or name_process_key_fn)(key, alias, attrs)
    return text


_NUM = re.compile(r"^M(\d+)__")
RESERVED_DIR = ".model_nums"  # logs_dir/.model_nums/<num>: numbers taken, one empty file each


def model_num_of(name: str, default: int = 0) -> int:
    """The number of a log directory named ``M<num>__...``, else ``default``."""
    m = _NUM.match(name)
    return int(m.group(1)) if m else default


def taken_model_nums(logs_dir: Path) -> set[int]:
    """Numbers of the ``M<num>__`` entries of ``logs_dir`` and of its reservations."""
    taken = set()
    logs_dir = Path(logs_dir)
    if logs_dir.is_dir():
        for p in logs_dir.iterdir():
            m = _NUM.match(p.name)
            if m:
                taken.add(int(m.group(1)))
    reserved = logs_dir / RESERVED_DIR
    if reserved.is_dir():
        taken.update(int(p.name) for p in reserved.iterdir() if p.name.isdigit())
    return taken


def next_model_num(logs_dir: Path, new_model_num: bool = True) -> int:
    """``1 + max`` of the numbers taken in ``logs_dir`` (``new_model_num``), or the lowest
    number not taken. Numbers are parsed exactly (``M1`` never matches ``M10``)."""
    taken = taken_model_nums(logs_dir)
    if new_model_num:
        return 1 + max(taken, default=-1)
    return next(i for i in range(len(taken) + 1) if i not in taken)


def reserve_model_num(logs_dir: Path, new_model_num: bool = True) -> int:
    """Take the next model number of ``logs_dir`` for this run, atomically: the number is
    claimed by creating ``logs_dir/.model_nums/<num>`` exclusively, so two runs starting at
    once never get the same number (the loser of a race takes the next one)."""
    reserved = Path(logs_dir) / RESERVED_DIR
    reserved.mkdir(parents=True, exist_ok=True)
    while True:
        num = next_model_num(logs_dir, new_model_num)
        try:
            os.close(os.open(reserved / str(num), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue  # taken between the scan and the claim
        return num
