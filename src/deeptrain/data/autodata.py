"""AutoData: work out from a path which files hold which set nums.

A *directory* holds one batch per file, named as a common base plus a number
(``128batch__1.npy``, ``128batch__2.npy``, ...): the number is the set num. A single *file*
holds all batches (dataset mode), keyed by set num; so does a directory whose only data
file is unnumbered (``train/data.h5`` beside ``train/labels.h5``). Set nums are strings,
ordered numerically.
An entry named like the data files must be a regular file (or a symlink to one): a
directory, FIFO, broken symlink or symlink loop there is an error, not a file left out.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Discovery", "discover"]

log = logging.getLogger(__name__)

_DIGITS = re.compile(r"\d+")


@dataclass
class Discovery:
    """What :func:`discover` found at a path."""

    path: Path
    is_dataset: bool
    ext: str
    base_name: str = ""
    filepaths: dict[str, Path] = field(default_factory=dict)  # set num -> file (directory mode)


def discover(
    path: str | Path,
    argname: str,
    supported: tuple[str, ...] | None,
    exclude: str | Path | None = None,
    ext: str | None = None,
    base_name: str | None = None,
) -> Discovery:
    """Inspect ``path`` (named ``argname`` in errors).

    ``supported`` lists the extensions to consider (None: any), ``exclude`` is a file to ignore (the
    labels file when looking for data, and vice versa), ``ext`` forces an extension, and
    ``base_name`` the files' common name before the number.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{argname}={str(path)!r} does not exist")
    if path.is_file():
        return Discovery(path=path, is_dataset=True, ext=path.suffix.lower())
    if not path.is_dir():
        raise ValueError(
            f"{argname}={str(path)!r} is {_entry_kind(path)}; expected a "
            "directory of data files or a single (regular) file"
        )

    excluded = Path(exclude).resolve() if exclude is not None else None
    kinds = {
        p: _entry_kind(p)
        for p in path.iterdir()
        if not p.name.startswith(".") and (excluded is None or _resolved(p) != excluded)
    }
    files = [p for p, kind in kinds.items() if kind is None]
    odd = [p for p, kind in kinds.items() if kind is not None]
    if exclude is None and any(p.stem != "labels" for p in files):
        # a labels file beside the data (the builders' layout) is never data
        files = [p for p in files if p.stem != "labels"]
    if not files:
        _refuse(
            [
                p
                for p in odd
                if _DIGITS.search(p.stem)
                and p.suffix
                and (supported is None or p.suffix.lower() in supported)
            ],
            argname,
        )
        raise ValueError(
            f"{argname}={str(path)!r} is an empty directory (hidden files and "
            f"the labels/data file do not count)"
        )
    counts = Counter(p.suffix.lower() for p in files)
    if ext is None:
        candidates = {e: n for e, n in counts.items() if supported is None or e in supported}
        if not candidates:
            raise ValueError(
                f"{argname}={str(path)!r} holds no supported files: found extensions "
                f"{dict(counts)}, supported are {list(supported or ())} (pass a custom loader for "
                "other formats)"
            )
        ext = max(candidates, key=lambda e: (candidates[e], e == ".npy"))
        if len(candidates) > 1:
            log.warning(
                "%s=%r holds several supported file types %s; using the most frequent, "
                "%r, and ignoring the others",
                argname,
                str(path),
                candidates,
                ext,
            )
    files = [p for p in files if p.suffix.lower() == ext]
    odd = [p for p in odd if p.suffix.lower() == ext]
    if not files:
        _refuse([p for p in odd if _DIGITS.search(p.stem)], argname)
        raise ValueError(f"{argname}={str(path)!r} holds no {ext!r} files")
    if len(files) == 1 and not odd and _DIGITS.search(files[0].stem) is None:
        # one unnumbered file (train/data.h5): the dataset itself, as in DeepTrain 0.6
        log.info("%s=%r holds one data file: reading %s", argname, str(path), files[0].name)
        return Discovery(path=files[0], is_dataset=True, ext=ext)
    return _number_files(files, path, argname, ext, odd, base_name)


def _entry_kind(p: Path) -> str | None:
    """None for a regular file (or a symlink to one), else what ``p`` is, in words."""
    try:
        mode = p.stat().st_mode  # follows symlinks
    except OSError as e:
        if not p.is_symlink():
            return f"unreadable ({e.strerror})"
        if e.errno == errno.ELOOP:
            return "a symlink loop"
        return f"a broken symlink (to {os.readlink(p)!r}, which does not exist)"
    if stat.S_ISREG(mode):
        return None
    noun = (
        "directory"
        if stat.S_ISDIR(mode)
        else "FIFO (named pipe)"
        if stat.S_ISFIFO(mode)
        else "socket"
        if stat.S_ISSOCK(mode)
        else "device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "special file"
    )
    return f"a symlink to a {noun}" if p.is_symlink() else f"a {noun}"


def _resolved(p: Path) -> Path | None:
    try:
        return p.resolve()
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
        return None


def _refuse(entries: list[Path], argname: str) -> None:
    """Raise naming the first of ``entries`` (named like data files, but not regular files)."""
    if entries:
        p = sorted(entries)[0]
        raise ValueError(
            f"{argname}: {str(p)!r} is named like a data file but is "
            f"{_entry_kind(p)}; expected a regular file (remove or rename it)"
        )


def _numberings(stem: str) -> list[tuple[tuple[str, str], str, bool]]:
    """Every way ``stem`` reads as prefix + number + suffix: ``((prefix, suffix), set num,
    whether the number is the name's last)``."""
    runs = list(_DIGITS.finditer(stem))
    return [
        ((stem[: m.start()], stem[m.end() :]), str(int(m.group())), i == len(runs) - 1)
        for i, m in enumerate(runs)
    ]


def _number_files(
    files: list[Path],
    directory: Path,
    argname: str,
    ext: str,
    odd: list[Path],
    base_name: str | None = None,
) -> Discovery:
    """Number the files by the digits that number the most of them: the set num is the
    number in the same place of every name (``batch_1_fp32``, ``batch_2_fp32``: 1 and 2),
    the last number of the names when several places number as many files. Names that do
    not fit are left out, with a warning; two equal groups (``data_1..3``, ``labels_1..3``)
    are an error, unless ``base_name`` picks one."""
    groups: dict[tuple[str, str], list[tuple[str, Path]]] = defaultdict(list)
    last: dict[tuple[str, str], bool] = defaultdict(bool)
    for p in files:
        for key, num, is_last in _numberings(p.stem):
            groups[key].append((num, p))
            last[key] |= is_last
    if base_name is not None:
        groups = defaultdict(list, {k: g for k, g in groups.items() if k[0] == base_name})
        if not groups:
            raise ValueError(
                f"{argname}={str(directory)!r}: no {ext!r} file is named {base_name!r} + "
                "number (base_name)"
            )
    if not groups:
        raise ValueError(
            f"{argname}={str(directory)!r}: no {ext!r} file name contains a number "
            "(expected names like 'batch__1.npy', 'batch__2.npy', ...)"
        )

    def rank(key: tuple[str, str]) -> tuple[int, bool]:
        return len(groups[key]), last[key]

    best = max(groups, key=rank)
    rivals = [k for k in groups if rank(k) == rank(best) and k != best]
    if rivals:
        named = [f"{k[0]!r} + number + {k[1]!r}" for k in sorted([best, *rivals])]
        raise ValueError(
            f"{argname}={str(directory)!r}: cannot tell which files are the data: "
            f"{len(groups[best])} {ext!r} files each are named {' and '.join(named[:3])}. "
            "Keep one set of files per directory, or pass a DataLoader(path, base_name=...)"
        )
    prefix, suffix = best
    filepaths: dict[str, Path] = {}
    for num, p in groups[best]:
        if num in filepaths:
            raise ValueError(
                f"{argname}: {filepaths[num].name!r} and {p.name!r} both have set num {num}"
            )
        filepaths[num] = p
    _refuse([p for p in odd if any(k == best for k, _, _ in _numberings(p.stem))], argname)
    chosen = set(filepaths.values())
    ignored = sorted(p.name for p in files if p not in chosen)
    if ignored:
        (log.warning if base_name is None else log.debug)(
            "%s=%r: using the %d files named %r + number + %r; ignoring %d other %r files: %s",
            argname,
            str(directory),
            len(filepaths),
            prefix,
            suffix,
            len(ignored),
            ext,
            ", ".join(ignored[:5]) + (" ..." if len(ignored) > 5 else ""),
        )
    ordered = dict(sorted(filepaths.items(), key=lambda kv: int(kv[0])))
    log.info("Discovered %d %s files in %s", len(ordered), ext, directory)
    return Discovery(path=directory, is_dataset=False, ext=ext, base_name=prefix, filepaths=ordered)
