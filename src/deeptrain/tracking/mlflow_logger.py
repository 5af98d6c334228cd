"""``MLflowLogger``: the run in an MLflow tracking store (params, metrics, tags, artifacts)."""

from __future__ import annotations

import importlib.util
import logging
import os
import posixpath
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..callbacks.base import Stage
from .base import FLUSH_TIMEOUT_S, TrackingLogger
from .settings import run_settings

__all__ = ["MLflowLogger", "default_tracking_uri", "mlflow_key"]

log = logging.getLogger(__name__)

METRICS_PER_BATCH = 1000  # MLflow's limits per log_batch call
PARAMS_PER_BATCH = 100
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"


def default_tracking_uri(logs_dir: str | Path) -> str:
    """The local store of a logs directory: ``sqlite:///<logs_dir>/mlflow.db``."""
    return f"sqlite:///{(Path(logs_dir) / DB_FILE).resolve()}"


def mlflow_key(name: str) -> str:
    """``name`` as a valid MLflow metric or param key (other characters become ``_``)."""
    key = re.sub(r"[^/\w.\- ]", "_", str(name))[:MAX_KEY]
    norm = posixpath.normpath(key)
    if norm != key or norm in (".", "") or norm.startswith(("..", "/")):
        key = key.replace("/", "_").replace("..", "__") or "_"
    return key


class MLflowLogger(TrackingLogger):
    """Record the run in MLflow (install ``deeptrain[mlflow]``).

    Records (see :mod:`deeptrain.tracking.base`) train metrics per batch, validation
    metrics and the learning rate as metrics (step: batches fit); the run's settings as
    params; tags ``deeptrain.model_name``, ``deeptrain.backend``, ``deeptrain.version``,
    ``keras.version``, ``deeptrain.logdir``; and artifacts: ``figures/history.png`` and
    ``figures/report.png`` (at ``images_freq``), ``best_model/model.weights.h5`` (each new
    best model, with ``log_best_model``) and ``checkpoint/<name>/`` (the last checkpoint at
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
        train_freq, lr_freq, images_freq: ``{'batch' | 'epoch' | 'val': n}`` or None.

    Metrics are sent from a background thread at every checkpoint (which waits for them),
    at validation and epoch ends when the run writes no checkpoints, and at the end of
    ``train()``: a run killed and resumed has in the store exactly the steps up to its
    checkpoint, and sends the rest once. The run's id is saved in the
    checkpoints: resuming the run (the same log directory) continues the same MLflow run;
    a new run from a checkpoint (``continue_run=False``, a best model) gets a new one,
    tagged ``deeptrain.parent_run_id``. Steps the store already has are not sent again.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment: str = "deeptrain",
        run_name: str | None = None,
        artifact_location: str | None = None,
        tags: Mapping[str, str] | None = None,
        train_freq: Mapping[str, int] | None = {"batch": 1},
        lr_freq: Mapping[str, int] | None = {"epoch": 1},
        images_freq: Mapping[str, int] | None = {"val": 1},
        log_best_model: bool = True,
        log_final_checkpoint: bool = False,
    ):
        if importlib.util.find_spec("mlflow") is None:
            raise ImportError(
                "MLflowLogger needs mlflow, which is not installed: pip install 'deeptrain[mlflow]'"
            )
        if tracking_uri is not None and not isinstance(tracking_uri, str):
            raise TypeError(f"tracking_uri must be a str, got {tracking_uri!r}")
        if not isinstance(experiment, str) or not experiment:
            raise ValueError(f"experiment must be a non-empty str, got {experiment!r}")
        super().__init__(train_freq, lr_freq, images_freq)
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self.artifact_location = artifact_location
        self.tags = dict(tags or {})
        self.log_best_model = log_best_model
        self.log_final_checkpoint = log_final_checkpoint
        self.run_id: str | None = None  # of the open run
        self._client: Any = None
        self._saved: dict[str, Any] = {}  # run id and log directory name from a checkpoint
        self._buffer: list[tuple[str, float, int, int]] = []  # (key, value, ms, step)
        self._sent_steps: dict[str, int] = {}  # per key, the newest step the store has
        self._best_sent: tuple | None = None

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
        info = {
            "uri": uri,
            "location": location,
            "run_dir": run_dir,
            "run_name": self.run_name or run_dir or tg.model_name,
            "tags": {**self._run_tags(), **self.tags},
            "params": run_settings(tg),
        }
        try:
            self.run_id, resumed = self._worker.call(self._start_run, info)
        except Exception as e:
            raise RuntimeError(
                f"MLflowLogger could not start a run in the tracking store {uri!r}: "
                f"{type(e).__name__}: {e}"
            ) from e
        log.info(
            "MLflow run %s %s in %s (mlflow ui --backend-store-uri %s)",
            self.run_id,
            "continued" if resumed else "started",
            uri,
            uri,
        )

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

    def _start_run(self, info: dict[str, Any]) -> tuple[str, bool]:
        """(Worker) The experiment, then the saved run if it continues, else a new one."""
        from mlflow.tracking import MlflowClient

        client = self._client = MlflowClient(tracking_uri=info["uri"])
        experiment = client.get_experiment_by_name(self.experiment)
        if experiment is None:
            experiment_id = client.create_experiment(
                self.experiment, artifact_location=info["location"]
            )
        elif experiment.lifecycle_stage != "active":
            raise ValueError(f"experiment {self.experiment!r} is deleted; restore or rename it")
        else:
            experiment_id = experiment.experiment_id
        run = self._saved_run(client, info["run_dir"])
        params = {mlflow_key(k): str(v)[:MAX_PARAM_VALUE] for k, v in info["params"].items()}
        if run is not None:
            client.update_run(run.info.run_id, status="RUNNING")
            self._sent_steps = self._newest_steps(client, run)
            old = run.data.params
            new_params = {k: v for k, v in params.items() if k not in old}
            changed = {f"changed_param.{k}": v for k, v in params.items() if old.get(k, v) != v}
            self._log_params(client, run.info.run_id, new_params, {**info["tags"], **changed})
            return run.info.run_id, True
        tags = dict(info["tags"])
        if self._saved.get("run_id"):
            tags["deeptrain.parent_run_id"] = self._saved["run_id"]
        run = client.create_run(experiment_id, run_name=info["run_name"], tags=tags)
        self._sent_steps = {}
        self._log_params(client, run.info.run_id, params, {})
        return run.info.run_id, False

    def _saved_run(self, client: Any, run_dir: str | None) -> Any:
        """The run a checkpoint named, if this TrainGenerator continues its log directory
        and the store has it."""
        from mlflow.exceptions import MlflowException

        run_id = self._saved.get("run_id")
        if not run_id or self._saved.get("run_dir") != run_dir:
            return None
        try:
            run = client.get_run(run_id)
        except MlflowException:
            log.warning("MLflow run %s (from the checkpoint) is not in this store", run_id)
            return None
        return run if run.info.lifecycle_stage == "active" else None

    @staticmethod
    def _newest_steps(client: Any, run: Any) -> dict[str, int]:
        return {
            key: max((m.step for m in client.get_metric_history(run.info.run_id, key)), default=-1)
            for key in run.data.metrics
        }

    @staticmethod
    def _log_params(client: Any, run_id: str, params: dict, tags: dict) -> None:
        from mlflow.entities import Param, RunTag

        items = list(params.items())
        for i in range(0, len(items), PARAMS_PER_BATCH):
            batch = [Param(k, v) for k, v in items[i : i + PARAMS_PER_BATCH]]
            client.log_batch(run_id, params=batch)
        if tags:
            client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

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
            self._worker.submit(self._log_metrics, self.run_id, batch)

    def _log_metrics(self, run_id: str, batch: list[tuple[str, float, int, int]]) -> None:
        from mlflow.entities import Metric

        for i in range(0, len(batch), METRICS_PER_BATCH):
            metrics = [Metric(k, v, ms, s) for k, v, ms, s in batch[i : i + METRICS_PER_BATCH]]
            self._client.log_batch(run_id, metrics=metrics)

    def _images(self, pngs: dict[str, bytes], step: int) -> None:
        self._ensure_open()
        files = {f"{name}.png": png for name, png in pngs.items()}
        self._worker.submit(self._upload_bytes, self.run_id, files, "figures")

    def _upload_bytes(self, run_id: str, files: dict[str, bytes], artifact_path: str) -> None:
        with tempfile.TemporaryDirectory(prefix="deeptrain-mlflow-") as tmp:
            for name, data in files.items():
                (Path(tmp) / name).write_bytes(data)
            self._client.log_artifacts(run_id, tmp, artifact_path)

    def _upload_dir(self, run_id: str, directory: Path, artifact_path: str, remove: bool) -> None:
        try:
            self._client.log_artifacts(run_id, str(directory), artifact_path)
        finally:
            if remove:
                shutil.rmtree(directory, ignore_errors=True)

    def _best_model(self) -> None:
        """Upload the best model's weights if a new best model was saved since the last."""
        if not self.log_best_model or self.run_id is None or self.tg.best_models_dir is None:
            return
        weights = self.tg.get_last_log("weights", best=True)
        if weights is None:
            return
        stat = weights.stat()
        identity = (weights.parent.name, stat.st_mtime_ns, stat.st_size)
        if identity == self._best_sent:
            return
        self._best_sent = identity
        copy = Path(tempfile.mkdtemp(prefix="deeptrain-mlflow-"))
        try:
            os.link(weights, copy / weights.name)  # instant, and safe from the next best save
        except OSError:
            shutil.copy2(weights, copy / weights.name)
        self._worker.submit(self._upload_dir, self.run_id, copy, "best_model", True)
        self._worker.submit(self._set_tag, self.run_id, "deeptrain.best_model", weights.parent.name)

    def _set_tag(self, run_id: str, key: str, value: str) -> None:
        self._client.set_tag(run_id, key, value)

    # -- stages ----------------------------------------------------------------------------
    def _writes_checkpoints(self) -> bool:
        tg = self.tg
        return tg.logdir is not None and bool(tg.unique_checkpoint_freq or tg.temp_checkpoint_freq)

    def on_train_start(self, stage: Stage) -> None:
        opened = self._opened
        super().on_train_start(stage)
        if opened:  # a run finished by an earlier train() goes on
            self._worker.submit(self._set_status, self.run_id, "RUNNING")

    def on_train_epoch_end(self, stage: Stage) -> None:
        super().on_train_epoch_end(stage)
        if not self._writes_checkpoints():
            self._send()

    def on_val_end(self, stage: Stage) -> None:
        super().on_val_end(stage)
        if self._opened:
            self._best_model()
            if not self._writes_checkpoints():
                self._send()

    def _at_checkpoint(self) -> None:
        self._send()
        self._best_model()

    def on_train_end(self, stage: Stage) -> None:
        if not self._opened:
            return
        tg = self.tg
        self._send()
        self._best_model()
        self._worker.submit(self._set_tag, self.run_id, "deeptrain.model_name", tg.model_name)
        finished = tg.state.epoch >= tg.epochs and not tg.state.train_loop_done
        if finished and self.log_final_checkpoint and tg.logdir is not None:
            last = tg.get_last_log("checkpoint")
            if last is not None:
                self._worker.submit(
                    self._upload_dir, self.run_id, last, f"checkpoint/{last.name}", False
                )
        if finished:
            self._worker.submit(self._set_status, self.run_id, "FINISHED")
        if not self.flush(FLUSH_TIMEOUT_S):
            log.warning("MLflowLogger: still sending to %s after train()", self._uri())

    def _set_status(self, run_id: str, status: str) -> None:
        self._client.update_run(run_id, status=status)

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
        """Send what is buffered and stop the background thread."""
        self._send()
        self._worker.close(FLUSH_TIMEOUT_S)
