"""``StoreProcess``: the logger's end of the MLflow child process (see :mod:`.mlflow_store`).

Requests are made from one thread at a time (the logger's worker); each blocks on the
pipe, so the training thread runs meanwhile. The process is in a session of its own and
ignores SIGINT and SIGTERM: a Ctrl-C in the terminal, or a scheduler's SIGTERM to the job,
is the training process's to handle (its preemption checkpoint still sends the metrics).
It ends when its input closes, which the training process's end (even a kill) does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["StoreProcess", "StoreError", "StoreEnded"]

SERVER = Path(__file__).with_name("mlflow_store.py")
EXIT_WAIT_S = 60.0


class StoreError(RuntimeError):
    """An error raised in the MLflow process (its type and message)."""


class StoreEnded(StoreError):
    """The MLflow process is gone (killed, crashed): a new one can take over."""


class StoreProcess:
    """A running ``mlflow_store.py``; :meth:`request` calls one of its operations."""

    def __init__(self) -> None:
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        try:
            # -P: the script's folder is not put on sys.path (its modules are DeepTrain's)
            self.proc = subprocess.Popen(
                [sys.executable, "-P", str(SERVER), str(req_r), str(rep_w)],
                pass_fds=(req_r, rep_w),
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # no terminal or process-group signal reaches it
            )
        finally:
            os.close(req_r)
            os.close(rep_w)
        self._requests = os.fdopen(req_w, "wb")
        self._replies = os.fdopen(rep_r, "rb")

    def request(self, op: str, *args: Any) -> Any:
        try:
            self._requests.write(json.dumps({"op": op, "args": args}).encode("utf-8") + b"\n")
            self._requests.flush()
            line = self._replies.readline()
        except (OSError, ValueError) as e:  # a broken pipe; closed
            raise StoreEnded(f"the MLflow process is not reachable ({e})") from None
        if not line:
            raise StoreEnded(f"the MLflow process ended (exit code {self.proc.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise StoreError(reply["error"])
        return reply["result"]

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        """End the process after the requests it has (closing its input ends it)."""
        if self._requests.closed:
            return
        try:
            self._requests.close()
        except OSError:  # (a dead process: nothing was waiting to be written anyway)
            pass
        try:
            self.proc.wait(EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._replies.close()
