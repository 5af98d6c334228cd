"""AutoData: work out from a path which files hold which set nums.

A *directory* holds one batch per file, named as a common base plus a number
(``128batch__1.npy``, ``128batch__2.npy``, ...): the number is the set num. A single *file*
holds all batches (dataset mode), keyed by set num. Set nums are strings, ordered numerically.
"""
from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Discovery", "discover"]

log = logging.getLogger(__name__)

_NUMBERED = re.compile(r"^(?P<prefix>.*?)(?P<num>\d+)(?P<suffix>\D*)$")


@dataclass
class Discovery:
    """What :func:`discover` found at a path."""
    path: Path
    is_dataset: bool
    ext: str
    base_name: str = ""
    filepaths: dict[str, Path] = field(default_factory=dict)  # set num -> file (directory mode)


def discover(path: str | Path, argname: str, supported: tuple[str, ...] | None,
             exclude: str | Path | None = None, ext: str | None = None) -> Discovery:
    """Inspect ``path`` (named ``argname`` in errors).

    ``supported`` lists the extensions to consider (None: any), ``exclude`` is a file to ignore (the
    labels file when looking for data, and vice versa), and ``ext`` forces an extension.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{argname}={str(path)!r} does not exist")
    if path.is_file():
        return Discovery(path=path, is_dataset=True, ext=path.suffix.lower())

    excluded = Path(exclude).resolve() if exclude is not None else None
    files = [p for p in path.iterdir()
             if p.is_file() and not p.name.startswith(".") and p.resolve() != excluded]
    if exclude is None and any(p.stem != "labels" for p in files):
        # a labels file beside the data (the builders' layout) is never data
        files = [p for p in files if p.stem != "labels"]
    if not files:
        raise ValueError(f"{argname}={str(path)!r} is an empty directory (hidden files and "
                         f"the labels/data file do not count)")
    counts = Counter(p.suffix.lower() for p in files)
    if ext is None:
        candidates = {e: n for e, n in counts.items() if supported is None or e in supported}
        if not candidates:
            raise ValueError(
                f"{argname}={str(path)!r} holds no supported files: found extensions "
                f"{dict(counts)}, supported are {list(supported)} (pass a custom loader for "
                "other formats)")
        ext = max(candidates, key=lambda e: (candidates[e], e == ".npy"))
        if len(candidates) > 1:
            log.warning("%s=%r holds several supported file types %s; using the most frequent, "
                        "%r, and ignoring the others", argname, str(path), candidates, ext)
    files = [p for p in files if p.suffix.lower() == ext]
    if not files:
        raise ValueError(f"{argname}={str(path)!r} holds no {ext!r} files")
    return _number_files(files, path, argname, ext)


def _number_files(files: list[Path], directory: Path, argname: str, ext: str) -> Discovery:
    groups: dict[tuple[str, str], dict[str, Path]] = defaultdict(dict)
    unnumbered = []
    for p in files:
        m = _NUMBERED.match(p.stem)
        if m is None:
            unnumbered.append(p.name)
            continue
        key = (m["prefix"], m["suffix"])
        num = str(int(m["num"]))
        if num in groups[key]:
            raise ValueError(f"{argname}: {groups[key][num].name!r} and {p.name!r} both have "
                             f"set num {num}")
        groups[key][num] = p
    if not groups:
        raise ValueError(f"{argname}={str(directory)!r}: no {ext!r} file name contains a number "
                         "(expected names like 'batch__1.npy', 'batch__2.npy', ...)")
    (prefix, suffix), filepaths = max(groups.items(), key=lambda kv: len(kv[1]))
    ignored = sorted(p.name for key, g in groups.items() if key != (prefix, suffix)
                     for p in g.values()) + sorted(unnumbered)
    if ignored:
        log.warning("%s=%r: using the %d files named %r + number + %r; ignoring %d other %r "
                    "files: %s", argname, str(directory), len(filepaths), prefix, suffix,
                    len(ignored), ext, ", ".join(ignored[:5]) + (" ..." if len(ignored) > 5 else ""))
    ordered = dict(sorted(filepaths.items(), key=lambda kv: int(kv[0])))
    log.info("Discovered %d %s files in %s", len(ordered), ext, directory)
    return Discovery(path=directory, is_dataset=False, ext=ext, base_name=prefix,
                     filepaths=ordered)
