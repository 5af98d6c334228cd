"""TensorBoard event files, without TensorFlow (tensorboardX's protobuf messages).

One :class:`EventFile` per writer session: ``events.out.tfevents.<time>.<host>.<pid>.<n>``
in the directory, so a resumed run adds a file that sorts after the ones before it. A file
opened with ``purge_step=T`` begins with a ``SessionLog.START`` at step T: TensorBoard then
hides the events at steps ``>= T`` of the files before it (the steps a resumed run repeats).
Writes are synchronous, on the caller's thread (the loggers call them on their worker).
Each write lands whole or not at all: one that fails part-way (disk full, file size limit)
is cut off again and its error raised, so the file stays readable and later writes
continue it (TensorBoard's reader stops at a torn record, hiding all that follows).

Records are framed by :mod:`.records` (as tensorboardX's ``RecordWriter`` frames them), many
to one ``write``; scalar events, one per train step, are encoded there straight to bytes
rather than as protobuf messages.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .records import frame

__all__ = ["EventFile", "png_size"]

_files = itertools.count(1)


def png_size(png: bytes) -> tuple[int, int]:
    """``(height, width)`` from a PNG's header."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    width, height = struct.unpack(">II", png[16:24])
    return height, width


class EventFile:
    """An event file in ``directory``; ``purge_step``: see the module docstring."""

    def __init__(self, directory: str | Path, purge_step: int | None = None):
        from tensorboardX.proto import event_pb2, summary_pb2

        self._event, self._summary = event_pb2, summary_pb2
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        name = (
            f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
            f"{os.getpid()}.{next(_files):04d}"
        )
        self.path = directory / name
        # unbuffered: a failed write leaves no bytes in a buffer to reach the file later
        self._file = open(self.path, "wb", buffering=0)  # noqa: SIM115 (open until close())
        self._end = 0  # the size of the file's whole records
        self._torn = False  # a write failed and is not cut off yet
        events = [event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")]
        if purge_step is not None:
            start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
            events.append(
                event_pb2.Event(wall_time=time.time(), step=purge_step, session_log=start)
            )
        try:
            self._write(*events)
        except BaseException:
            self._file.close()
            raise

    def _write(self, *events: Any) -> None:
        self._append(b"".join(frame(event.SerializeToString()) for event in events))

    def _append(self, data: bytes) -> None:
        """``data`` at the end of the file, in the OS's hands (not fsynced), or, where
        writing it fails, the file cut back to what it was and the error raised."""
        if self._torn:
            self._cut()  # (an earlier failure whose cut failed: before anything follows)
        self._torn = True
        view = memoryview(data)
        try:
            while view:  # (a write can take part of it, and fail on the rest)
                view = view[self._file.write(view) :]
        except OSError:
            with contextlib.suppress(OSError):  # (its error is the one to see)
                self._cut()
            raise
        self._torn = False
        self._end += len(data)

    def _cut(self) -> None:
        """Drop what follows the whole records (the part of a failed write on disk)."""
        self._file.truncate(self._end)
        self._file.seek(self._end)
        self._torn = False

    def _event_of(self, summary: Any, step: int, walltime: float | None) -> Any:
        event = self._event.Event(wall_time=walltime or time.time(), step=int(step))
        event.summary.CopyFrom(summary)
        return event

    def summary(self, summary: Any, step: int, walltime: float | None = None) -> None:
        self._write(self._event_of(summary, step, walltime))

    def write_records(self, data: bytes) -> None:
        """Framed records (:mod:`.records`) appended, and handed to the OS (not fsynced):
        TensorBoard, reading the file as it grows, sees them."""
        self._append(data)

    def image(self, tag: str, png: bytes, step: int, walltime: float) -> None:
        """A PNG as it is (no decoding and re-encoding)."""
        height, width = png_size(png)
        image = self._summary.Summary.Image(
            height=height, width=width, colorspace=4, encoded_image_string=png
        )
        summary = self._summary.Summary(value=[self._summary.Summary.Value(tag=tag, image=image)])
        self.summary(summary, step, walltime)

    def histograms(self, arrays: Mapping[str, np.ndarray], step: int, walltime: float) -> None:
        """One histogram per array, of its finite values (none finite: skipped)."""
        from tensorboardX.summary import histogram

        events = []
        for tag, values in arrays.items():
            values = np.asarray(values, dtype=np.float64).ravel()
            values = values[np.isfinite(values)]
            if values.size:
                events.append(self._event_of(histogram(tag, values, bins=30), step, walltime))
        self._write(*events)

    def hparams(self, hparams: Mapping[str, Any], metric_tags: list[str]) -> None:
        """The hyperparameters of this run, and the scalar tags the HPARAMS tab shows
        beside them, written into the run itself (step 0)."""
        from tensorboardX.summary import hparams as hparams_summaries

        summaries = hparams_summaries(dict(hparams), {tag: 0.0 for tag in metric_tags})
        self._write(*(self._event_of(summary, 0, None) for summary in summaries))

    def flush(self) -> None:
        """Everything written so far on disk (as tensorboardX's writer: fsync; writes
        are unbuffered)."""
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            try:
                self.flush()
            finally:
                self._file.close()
