"""Reading checkpoint files without following links, blocking, or reading without bound.

A checkpoint may only name regular files inside its own directory. Every file is opened
with ``O_NOFOLLOW`` (a symbolic link is refused) and ``O_NONBLOCK`` (a FIFO never blocks
the opener), and ``fstat`` must report a regular file before a byte is read. Reads of
whole files are capped. Any failure is a :class:`CorruptCheckpointError` naming the file.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from .errors import CorruptCheckpointError

__all__ = [
    "open_regular",
    "open_binary",
    "read_capped",
    "read_prefix",
    "FILE_DIGEST",
    "FILE_DIGESTS",
    "bytes_digest",
    "new_digest",
    "file_digest",
    "record_digest",
    "is_plain_name",
    "is_real_dir",
]

_READ_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


def is_plain_name(name: object) -> bool:
    """Whether ``name`` is one entry of a directory: no separator, not ``.``/``..``, not
    hidden (temporary and backup directories are), no control characters."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= 255
        and not name.startswith(".")
        and "/" not in name
        and "\\" not in name
        and name.isprintable()
    )


def is_real_dir(path: Path) -> bool:
    """A directory, and not a symbolic link to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


# what opening a checkpoint's file fails with when the file is not what it should be
_DAMAGED = {errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.ENODEV}


def open_regular(path: Path) -> int:
    """A read-only descriptor of the regular file ``path`` (links, FIFOs, devices,
    sockets and directories are refused)."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as e:
        if os.path.islink(path):
            raise CorruptCheckpointError(
                f"{path} is a symbolic link; a checkpoint's files "
                "must be regular files in its directory"
            ) from None
        if e.errno not in _DAMAGED:  # too many open files, no permission...: this process's
            raise  # or this machine's state, not the file's (a damaged checkpoint would be
            # skipped, or deleted in favour of its backup)
        raise CorruptCheckpointError(f"{path} cannot be opened ({e.strerror or e})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise CorruptCheckpointError(
                f"{path} is not a regular file (a checkpoint's files must be)"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_binary(path: Path) -> BinaryIO:
    """:func:`open_regular` as a binary file object (for NumPy and h5py)."""
    return os.fdopen(open_regular(path), "rb")


def read_capped(path: Path, limit: int) -> bytes:
    """The whole content of ``path``, refused without reading when over ``limit`` bytes."""
    with open_binary(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise CorruptCheckpointError(
                f"{path} holds {size} bytes, more than the {limit} a checkpoint's state may hold"
            )
        data = f.read(limit + 1)
    if len(data) > limit:
        raise CorruptCheckpointError(f"{path} grew past {limit} bytes while read")
    return data


def read_prefix(path: Path, size: int) -> bytes:
    """At most the first ``size`` bytes of ``path``."""
    with open_binary(path) as f:
        return f.read(size)


FILE_DIGEST = "xxh128"
"""The digest of a checkpoint's files (format version 3): XXH3-128 (``xxhash``), ~20 GB/s on
one core where SHA-256 runs at ~1.8: a 120 MB weights file hashes in ~5 ms instead of ~65.
The digests find torn, truncated and damaged files, not tampering (whoever can change a file
can change the record beside it), which a non-cryptographic 128-bit hash does as well."""
FILE_DIGESTS = ("xxh128", "sha256")
"""The digests a file record may hold: ``sha256`` in checkpoints of versions 1 and 2."""


def new_digest(algorithm: str = FILE_DIGEST) -> Any:
    """A hash object (``update``, ``hexdigest``) of ``algorithm``."""
    if algorithm == "xxh128":
        import xxhash

        return xxhash.xxh3_128()
    if algorithm == "sha256":
        return hashlib.sha256()
    raise ValueError(f"file digest must be one of {FILE_DIGESTS}, got {algorithm!r}")


def bytes_digest(data: bytes | bytearray | memoryview, algorithm: str = FILE_DIGEST) -> str:
    """The hex digest of ``data``."""
    h = new_digest(algorithm)
    h.update(data)
    return str(h.hexdigest())


def file_digest(path: Path, algorithm: str = FILE_DIGEST) -> tuple[int, str]:
    """Size and hex digest of the regular file ``path``."""
    h = new_digest(algorithm)
    size = 0
    with open_binary(path) as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
            size += len(chunk)
    return size, str(h.hexdigest())


def record_digest(record: Mapping[str, Any]) -> tuple[str, str]:
    """``(algorithm, hex digest)`` of a checkpoint's file record (``{"bytes": n, <algorithm>:
    digest}``)."""
    for algorithm in FILE_DIGESTS:
        if algorithm in record:
            return algorithm, str(record[algorithm])
    raise ValueError(f"a file record holds none of {FILE_DIGESTS}: {dict(record)}")
