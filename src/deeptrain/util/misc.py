"""Small helpers shared across DeepTrain: argument checking and paths."""
from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["append_examples_dir_to_sys_path", "check_kwargs", "closest_match_hint"]


def closest_match_hint(name: str, valid: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest valid name, or ``""``."""
    matches = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f"; did you mean {matches[0]!r}?" if matches else ""


def check_kwargs(kwargs: Mapping[str, Any], valid: Iterable[str], owner: str) -> None:
    """Raise ``TypeError`` for the first key of ``kwargs`` not in ``valid``, suggesting the closest one."""
    valid = list(valid)
    for key in kwargs:
        if key not in valid:
            raise TypeError(
                f"{owner} got an unexpected keyword argument {key!r}"
                f"{closest_match_hint(key, valid)} (valid: {', '.join(sorted(valid))})")


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
            "with the source checkout (git clone), not with the installed wheel")
    if str(examples_dir) not in sys.path:
        sys.path.append(str(examples_dir))
    return examples_dir
