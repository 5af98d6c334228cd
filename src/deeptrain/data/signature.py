"""All files of a data (or labels) path hold samples of one shape and dtype.

A file whose samples differ from the others' would fail deep inside the model, far from
the file, after some batches trained. :func:`signature` is what must agree (the shape of
one sample, ``shape[1:]``, and the dtype); :class:`FirstSeen` checks loaded arrays against
the first one loaded.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .formats import DataLoadError

__all__ = ["Signature", "signature", "describe", "FirstSeen"]

Signature = tuple[tuple[int, ...], np.dtype]


def signature(shape: tuple[int, ...], dtype: Any) -> Signature:
    """Per-sample shape and dtype (byte order aside) of an array of shape ``shape``."""
    return tuple(int(n) for n in shape[1:]), np.dtype(dtype).newbyteorder("=")


def describe(sig: Signature) -> str:
    return f"samples of shape {sig[0]} and dtype {sig[1]}"


class FirstSeen:
    """Checks that arrays share the signature of the first one checked (thread-safe: the
    prefetch threads load files). If the first file is what is wrong, it is the one to
    fix: once it is rewritten, the reference is taken anew from the next file checked."""

    def __init__(self, argname: str):
        self.argname = argname
        self._first: tuple[Signature, str, Path | None, tuple | None] | None = None
        self._lock = threading.Lock()

    def check(self, array: Any, source: str, path: Path | None = None) -> None:
        """Raise :class:`DataLoadError` naming ``source`` if ``array`` differs from the
        first one (``path``: the file it came from, whose rewriting renews the reference)."""
        sig = signature(array.shape, array.dtype)
        with self._lock:
            if self._first is None or (self._first[0] != sig and self._rewritten()):
                self._first = (sig, source, path, _identity(path))
                return
            first, first_source, _, _ = self._first
        if sig != first:
            raise DataLoadError(
                f"{source} holds {describe(sig)}, but {first_source} (the first "
                f"file loaded) holds {describe(first)}; all files of "
                f"{self.argname} must hold samples of one shape and dtype"
            )

    def _rewritten(self) -> bool:
        """Whether the first file was changed since it was checked (fixed, perhaps)."""
        assert self._first is not None
        _, _, path, identity = self._first
        return path is not None and _identity(path) != identity


def _identity(path: Path | None) -> tuple | None:
    """What changes when a file is rewritten: inode, size, modification time."""
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)
