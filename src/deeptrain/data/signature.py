"""All files of a data (or labels) path hold samples of one shape and dtype.

A file whose samples differ from the others' would fail deep inside the model, far from
the file, after some batches trained. :func:`signature` is what must agree (the shape of
one sample, ``shape[1:]``, and the dtype); :class:`FirstSeen` checks loaded arrays against
the first one loaded.
"""

from __future__ import annotations

import threading
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
    prefetch threads load files)."""

    def __init__(self, argname: str):
        self.argname = argname
        self._first: tuple[Signature, str] | None = None
        self._lock = threading.Lock()

    def check(self, array: Any, source: str) -> None:
        """Raise :class:`DataLoadError` naming ``source`` (the file) if ``array`` differs."""
        sig = signature(array.shape, array.dtype)
        with self._lock:
            if self._first is None:
                self._first = (sig, source)
                return
        first, first_source = self._first
        if sig != first:
            raise DataLoadError(
                f"{source} holds {describe(sig)}, but {first_source} (the first "
                f"file loaded) holds {describe(first)}; all files of "
                f"{self.argname} must hold samples of one shape and dtype"
            )
