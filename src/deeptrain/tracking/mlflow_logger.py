"""``MLflowLogger``: the run in an MLflow tracking store (params, metrics, tags, artifacts)."""

from __future__ import annotations

import atexit
import functools
import importlib.util
import logging
import os
import posixpath
import re
import shutil
import sys
import tempfile
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..callbacks.base import Stage
from .base import FLUSH_TIMEOUT_S, TrackingLogger
from .mlflow_store import MAX_KEY, METRICS_PER_BATCH
from .settings import run_settings
from .store_process import StoreEnded, StoreProcess

__all__ = ["MLflowLogger", "default_tracking_uri", "mlflow_key"]

log = logging.getLogger(__name__)

MAX_PARAM_VALUE = 6000  # MLflow's limits (and MAX_KEY)
MAX_TAG_VALUE = 8000
DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
# train metrics every 50th batch by default (Lightning's log_every_n_steps): an MLflow SQL
# store spends ~0.05-0.2 ms of CPU per metric row (measured, SQLite: its ORM), as much as a
# small model's whole train step; every 10th cost a 0.9 ms step 3-5% (benchmarks/
# loop_overhead.py), every 50th ~1%. MLflow's charts sample long histories anyway.
TRAIN_EVERY = 50


MAX_RESTARTS = 3  # MLflow processes started in place of one that ended, per logger
_live: weakref.WeakSet[MLflowLogger] = weakref.WeakSet()


@atexit.register  # (runs before the workers drain: registered after theirs)
def _send_at_exit() -> None:
    """Metrics recorded outside ``train()`` (a ``validate()`` after it) and not yet sent
    go to the workers, which send them before the interpreter exits."""
    for logger in list(_live):
        logger._send()


def default_tracking_uri(logs_dir: str | Path) -> str:
    """The local store of a logs directory: ``sqlite:///<logs_dir>/mlflow.db``."""
    return f"sqlite:///{(Path(logs_dir) / DB_FILE).resolve()}"


@functools.cache
def mlflow_key(name: str) -> str:
    """``name`` as a valid MLflow metric or param key (other characters become ``_``)."""
    key = re.sub(r"[^/\w.\- ]", "_", str(name))[:MAX_KEY]
    norm = posixpath.normpath(key)
    if norm != key or norm in (".", "") or norm.startswith(("..", "/")):
        key = key.replace("/", "_").replace("..", "__") or "_"
    return key


class MLflowLogger(TrackingLogger):
    """Record the run in MLflow (install ``deeptrain[mlflow]``).

    Records (see :mod:`deeptrain.tracking.base`) train metrics every 50th batch (an MLflow
    SQL store spends ~0.05-0.2 ms of CPU per metric row; ``train_freq={'batch': 1}`` for
    every batch), validation metrics and the learning rate as metrics (step: batches
    fit); the run's settings as params; tags ``deeptrain.model_name``,
    ``deeptrain.backend``, ``deeptrain.version``, ``keras.version``, ``deeptrain.logdir``;
    and artifacts: ``figures/history.png`` and ``figures/report.png`` (at
    ``images_freq``), ``best_model/model.weights.h5`` (each new best model, with
    ``log_best_model``) and ``checkpoint/<name>/`` (the last checkpoint at
    the end of ``train()``, with ``log_final_checkpoint``).

    Args:
        tracking_uri: any MLflow tracking URI; default: a SQLite store in the logs
            directory, ``sqlite:///<logs_dir>/mlflow.db`` (``mlflow ui --backend-store-uri``
            opens it), with artifacts in ``<logs_dir>/mlartifacts``.
        experiment: experiment name (created if missing).
        run_name: default: the log directory's name (``M0__model-adam``).
        artifact_location: of a new experiment; default: the store's (the local default
            store: ``<logs_dir>/mlartifacts``).
        tags: more tags for the run.
        train_freq, lr_freq, images_freq: ``{'batch' | 'epoch' | 'val': n}`` or None
            (default train metrics every 50 batches, the learning rate every epoch,
            figures at every validation).
        send_every_s: in a run that writes no checkpoints, metrics are sent at the first
            batch, epoch or validation end ``send_every_s`` seconds after the last send (or
            once a full batch of rows, 1000, is waiting); default 5.

    Metrics are sent at every checkpoint (which waits for them), every ``send_every_s``
    seconds when the run writes no checkpoints, and at the end of ``train()``: a run killed
    and resumed has in the store exactly the steps up to its checkpoint, and sends the rest
    once. Sending rows in batches matters: MLflow's SQL stores spend ~20 ms per call plus
    ~0.1 ms per row. The MLflow client runs in a child process fed by a background thread
    (:mod:`.mlflow_store`): the training process never imports mlflow, and MLflow's work
    (~0.2 ms of Python per metric row in a SQL store) never holds its interpreter lock.

    The run's id is saved in the checkpoints: resuming the run (the same log directory)
    continues the same MLflow run; a new run from a checkpoint (``continue_run=False``, a
    best model) gets a new one, tagged ``deeptrain.parent_run_id``. Steps the store
    already has are not sent again.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment: str = "deeptrain",
        run_name: str | None = None,
        artifact_location: str | None = None,
        tags: Mapping[str, str] | None = None,
        train_freq: Mapping[str, int] | None = {"batch": TRAIN_EVERY},
        lr_freq: Mapping[str, int] | None = {"epoch": 1},
        images_freq: Mapping[str, int] | None = {"val": 1},
        log_best_model: bool = True,
        log_final_checkpoint: bool = False,
        send_every_s: float = 5.0,
    ):
        if importlib.util.find_spec("mlflow") is None:
            raise ImportError(
                "MLflowLogger needs mlflow, which is not installed: pip install 'deeptrain[mlflow]'"
            )
        if tracking_uri is not None and not isinstance(tracking_uri, str):
            raise TypeError(f"tracking_uri must be a str, got {tracking_uri!r}")
        if not isinstance(experiment, str) or not experiment:
            raise ValueError(f"experiment must be a non-empty str, got {experiment!r}")
        if isinstance(send_every_s, bool) or not isinstance(send_every_s, (int, float)):
            raise TypeError(f"send_every_s must be a number of seconds, got {send_every_s!r}")
        if not send_every_s >= 0:
            raise ValueError(f"send_every_s must be >= 0 seconds, got {send_every_s!r}")
        super().__init__(train_freq, lr_freq, images_freq)
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self.artifact_location = artifact_location
        # (MLflow's tags are text, their keys and values of limited length)
        self.tags = {mlflow_key(k): str(v)[:MAX_TAG_VALUE] for k, v in (tags or {}).items()}
        self.log_best_model = log_best_model
        self.log_final_checkpoint = log_final_checkpoint
        self.send_every_s = float(send_every_s)
        self.run_id: str | None = None  # of the open run
        self._store: StoreProcess | None = None  # the MLflow process (see .mlflow_store)
        self._ended = False  # this logger marked the run FINISHED, FAILED or KILLED
        self._model_name_sent: str | None = None
        self._saved: dict[str, Any] = {}  # run id and log directory name from a checkpoint
        self._buffer: list[tuple[str, float, int, int]] = []  # (key, value, ms, step)
        self._sent_steps: dict[str, int] = {}  # per key, the newest step the store has
        self._last_send = time.monotonic()
        self._best_sent: tuple | None = None
        self._start_info: tuple[str, dict[str, Any]] = ("", {})  # what _start was given
        self._restarts = 0  # MLflow processes started after one ended
        _live.add(self)

    # -- opening ---------------------------------------------------------------------------
    def _uri(self) -> str:
        if self.tracking_uri is not None:
            return self.tracking_uri
        logs_dir = self.tg.logs_dir or (self.tg.logdir.parent if self.tg.logdir else None)
        if logs_dir is None:
            raise ValueError(
                "MLflowLogger needs a tracking store: pass tracking_uri=, or give the "
                "TrainGenerator logs_dir (the default store is <logs_dir>/mlflow.db)"
            )
        return default_tracking_uri(logs_dir)

    def _open(self) -> None:
        tg = self.tg
        uri = self._uri()
        location = self.artifact_location
        if location is None and self.tracking_uri is None:
            location = Path(uri.removeprefix("sqlite:///")).with_name(ARTIFACTS_DIR).as_uri()
        run_dir = tg.logdir.name if tg.logdir is not None else None
        params = {mlflow_key(k): str(v)[:MAX_PARAM_VALUE] for k, v in run_settings(tg).items()}
        info = {
            "experiment": self.experiment,
            "location": location,
            "saved": self._saved,
            "run_dir": run_dir,
            "run_name": self.run_name or run_dir or tg.model_name,
            "tags": {**self._run_tags(), **self.tags},
            "params": params,
        }
        self._start_info = (uri, info)
        try:
            started = self._worker.call(self._start, uri, info)
        except Exception as e:
            raise RuntimeError(
                f"MLflowLogger could not start a run in the tracking store {uri!r}: {e}"
            ) from e
        self.run_id, self._sent_steps = started["run_id"], started["steps"]
        log.info(
            "MLflow run %s %s in %s (mlflow ui --backend-store-uri %s)",
            self.run_id,
            "continued" if started["resumed"] else "started",
            uri,
            uri,
        )

    def _start(self, uri: str, info: dict[str, Any]) -> dict[str, Any]:
        """(Worker) The MLflow process (a new one if the last ended), the store, the run."""
        if self._store is not None and not self._store.alive:
            self._store.close()
            self._store = None
        if self._store is None:
            self._store = StoreProcess()
        store = self._store
        store.request("open_store", uri)
        return store.request("start_run", info)

    def _request(self, op: str, *args: Any) -> None:
        """(Worker) One operation in the MLflow process (started by :meth:`_start`). If the
        process is gone (killed by the OOM killer, a signal to it alone), a new one takes
        the run over and the operation is sent again; metrics the store already has at a
        step are not (a process killed within a call may have stored part of it)."""
        if self._store is None:
            raise RuntimeError("the MLflow process is not running")
        try:
            self._store.request(op, *args)
        except StoreEnded as e:
            if self._restarts >= MAX_RESTARTS or self.run_id is None:
                raise
            self._restarts += 1
            log.warning(
                "MLflowLogger: %s; starting a new one (%d of %d)", e, self._restarts, MAX_RESTARTS
            )
            uri, info = self._start_info
            saved = {"run_id": self.run_id, "run_dir": info["run_dir"]}  # the same run
            steps = self._start(uri, {**info, "saved": saved})["steps"]
            if op == "log_metrics":
                run_id, rows = args
                args = (run_id, [r for r in rows if r[3] > steps.get(r[0], -1)])
            self._store.request(op, *args)

    def _run_tags(self) -> dict[str, str]:
        import keras

        from .. import __version__

        tg = self.tg
        return {
            "deeptrain.model_name": str(tg.model_name),
            "deeptrain.backend": keras.backend.backend(),
            "deeptrain.version": __version__,
            "keras.version": keras.__version__,
            "deeptrain.logdir": str(tg.logdir) if tg.logdir is not None else "",
        }

    # -- records ---------------------------------------------------------------------------
    def _record_scalars(self, values: dict[str, float], step: int, walltime: float) -> None:
        ms = int(walltime * 1000)
        for name, value in values.items():
            key = mlflow_key(name)
            if step > self._sent_steps.get(key, -1):
                self._buffer.append((key, value, ms, step))

    def _send(self) -> None:
        """Hand the buffered metrics to the worker."""
        if self._buffer and self.run_id is not None:
            batch, self._buffer = self._buffer, []
            self._worker.submit(self._request, "log_metrics", self.run_id, batch)
            self._last_send = time.monotonic()

    def _send_if_due(self) -> None:
        """In a run without checkpoints: send every ``send_every_s`` seconds, or once a
        full MLflow batch is waiting (a call per step would cost the store ~20 ms each)."""
        if self._buffer and not self._writes_checkpoints():
            waited = time.monotonic() - self._last_send
            if waited >= self.send_every_s or len(self._buffer) >= METRICS_PER_BATCH:
                self._send()

    def _images(self, pngs: dict[str, bytes], step: int) -> None:
        self._ensure_open()
        upload = Path(tempfile.mkdtemp(prefix="deeptrain-mlflow-"))
        for name, png in pngs.items():
            (upload / f"{name}.png").write_bytes(png)
        self._upload(upload, "figures", remove=True)

    def _upload(self, directory: Path, artifact_path: str, remove: bool) -> None:
        """Upload a directory's files (then delete it, with ``remove``)."""
        args = (self.run_id, str(directory), artifact_path, remove)
        self._worker.submit(self._request, "log_artifacts", *args)

    def _best_model(self) -> None:
        """Upload the best model's weights if a new best model was saved since the last."""
        if not self.log_best_model or self.run_id is None or self.tg.best_models_dir is None:
            return
        try:  # a best model being replaced in the background may vanish meanwhile: then
            # the newer one is sent at the next checkpoint or at the end of train()
            weights = self.tg.get_last_log("weights", best=True)
            if weights is None:
                return
            stat = weights.stat()
            identity = (weights.parent.name, stat.st_mtime_ns, stat.st_size)
            if identity == self._best_sent:
                return
            copy = Path(tempfile.mkdtemp(prefix="deeptrain-mlflow-"))
            try:
                os.link(weights, copy / weights.name)  # instant, safe from the next best save
            except FileNotFoundError:
                shutil.rmtree(copy, ignore_errors=True)
                raise
            except OSError:
                shutil.copy2(weights, copy / weights.name)
        except FileNotFoundError:
            return
        self._best_sent = identity
        self._upload(copy, "best_model", remove=True)
        self._worker.submit(
            self._request, "set_tag", self.run_id, "deeptrain.best_model", weights.parent.name
        )

    # -- stages ----------------------------------------------------------------------------
    def _writes_checkpoints(self) -> bool:
        tg = self.tg
        return tg.logdir is not None and bool(tg.unique_checkpoint_freq or tg.temp_checkpoint_freq)

    def on_train_start(self, stage: Stage) -> None:
        opened = self._opened
        super().on_train_start(stage)
        if opened and self._ended:  # a run an earlier train() ended goes on
            self._ended = False
            self._worker.submit(self._request, "set_status", self.run_id, "RUNNING")

    def on_train_batch_end(self, stage: Stage) -> None:
        super().on_train_batch_end(stage)
        self._send_if_due()

    def on_train_epoch_end(self, stage: Stage) -> None:
        super().on_train_epoch_end(stage)
        self._send_if_due()

    def on_val_end(self, stage: Stage) -> None:
        super().on_val_end(stage)
        if self._opened:
            self._best_model()
            self._send_if_due()

    def _at_checkpoint(self) -> None:
        self._send()
        self._best_model()

    def on_train_end(self, stage: Stage) -> None:
        if not self._opened:
            return
        tg = self.tg
        self._send()
        self._best_model()
        if tg.model_name != self._model_name_sent:
            self._model_name_sent = tg.model_name
            self._worker.submit(
                self._request, "set_tag", self.run_id, "deeptrain.model_name", tg.model_name
            )
        raised = sys.exc_info()[1]  # (what train() is raising: 'train_end' runs as it does)
        finished = raised is None and tg.state.epoch >= tg.epochs and not tg.state.train_loop_done
        if finished and self.log_final_checkpoint and tg.logdir is not None:
            last = tg.get_last_log("checkpoint")
            if last is not None:
                self._upload(last, f"checkpoint/{last.name}", remove=False)
        if finished or raised is not None:  # (a Ctrl-C or SIGTERM: KILLED; RUNNING once resumed)
            stopped = isinstance(raised, KeyboardInterrupt | SystemExit)
            status = "FINISHED" if finished else "KILLED" if stopped else "FAILED"
            self._ended = True
            self._worker.submit(self._request, "set_status", self.run_id, status)
        if not self.flush(FLUSH_TIMEOUT_S):
            log.warning("MLflowLogger: still sending to %s after train()", self._uri())

    def flush(self, timeout: float | None = FLUSH_TIMEOUT_S) -> bool:
        """Send what is buffered and wait until the store has it; False on a timeout."""
        self._send()
        return super().flush(timeout)

    def on_load(self, stage: Stage) -> None:
        """Drop what was recorded after the last send (the loaded checkpoint is at or before
        it) and reopen: the store then says which steps it already has."""
        self._buffer = []
        if self._opened:
            self.flush(FLUSH_TIMEOUT_S)
            self._opened = False
            self.run_id = None

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        tg = self.tg
        run_dir = tg.logdir.name if tg is not None and tg.logdir is not None else None
        run_id = self.run_id or self._saved.get("run_id")
        return {**super().state_dict(), "run_id": run_id, "run_dir": run_dir}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._saved = {"run_id": state.get("run_id"), "run_dir": state.get("run_dir")}

    def close(self) -> None:
        """Send what is buffered, then end the background thread and the MLflow process."""
        self._send()
        self._worker.close(FLUSH_TIMEOUT_S)
        if self._store is not None:
            self._store.close()
            self._store = None
        if self.run_id is not None:  # a later train() continues this run
            logdir = self.tg.logdir if self.tg is not None else None
            self._saved = {"run_id": self.run_id, "run_dir": getattr(logdir, "name", None)}
        self._opened = False
        self.run_id = None
