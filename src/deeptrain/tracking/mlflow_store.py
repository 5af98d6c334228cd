"""The MLflow side of ``MLflowLogger``: an MLflow client in a child process.

MLflow's SQL stores (the local default, SQLite) spend ~0.2 ms of Python per metric row;
in the training process that time would hold the interpreter lock the train loop needs. So
the logger starts this file as its own process (``python -P mlflow_store.py IN OUT``, no
DeepTrain import) and sends it requests, one JSON line each on the pipe ``IN``; every
request gets one JSON line on ``OUT``: ``{"result": ...}`` or ``{"error": "..."}``. The
process ends when ``IN`` closes (the logger closed, or its process ended, even killed).
The logger process never imports mlflow. The process runs at a lower priority (``nice``
+10) than the training process.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no lock (MLflow's own behaviour)
    fcntl = None  # type: ignore[assignment]

NICENESS = 10  # added to the training process's (os.nice)
PARAMS_PER_BATCH = 100  # MLflow's limits per log_batch call (params, tags)
METRICS_PER_BATCH = 1000
MAX_KEY = 250  # of a param, tag or metric key

_client: Any = None


def open_store(uri: str) -> None:
    global _client
    _check_reachable(uri)  # (before importing mlflow: seconds)
    from mlflow.tracking import MlflowClient

    with _creation_lock(uri):  # (the client creates or migrates the tables, at once or at
        _client = MlflowClient(tracking_uri=uri)  # its first request)
        _client.search_experiments(max_results=1)


def _check_reachable(uri: str, timeout_s: float = 10.0) -> None:
    """A tracking server that does not answer is an error now, before training: MLflow's
    own retries would take minutes to give up, silently."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except OSError as e:
        raise ValueError(f"the tracking server {uri} cannot be reached ({e})") from None


@contextlib.contextmanager
def _creation_lock(uri: str) -> Iterator[None]:
    """For an SQLite store, one process at a time through its creation: MLflow creates
    and migrates a new database's tables without a lock, and jobs opening one store at
    once (parallel runs of one logs directory, whose default store they share) break it
    for good ("table ... already exists")."""
    if not uri.startswith("sqlite:///") or fcntl is None:
        yield
        return
    path = uri.removeprefix("sqlite:///")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    lock = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.lock")  # (hidden)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _experiment_id(name: str, location: str | None) -> str:
    experiment = _client.get_experiment_by_name(name)
    if experiment is None:
        return _client.create_experiment(name, artifact_location=location)
    if experiment.lifecycle_stage != "active":
        raise ValueError(f"experiment {name!r} is deleted; restore or rename it")
    return experiment.experiment_id


def _saved_run(saved: dict[str, Any], run_dir: str | None) -> Any:
    """The run a checkpoint named, if its log directory is this one and the store has it."""
    from mlflow.exceptions import MlflowException

    run_id = saved.get("run_id")
    if not run_id or saved.get("run_dir") != run_dir:
        return None
    try:
        run = _client.get_run(run_id)
    except MlflowException:
        print(f"MLflow run {run_id} (from the checkpoint) is not in this store", file=sys.stderr)
        return None
    return run if run.info.lifecycle_stage == "active" else None


def _log_params(run_id: str, params: dict[str, str], tags: dict[str, str]) -> None:
    """Params and tags, as many calls as MLflow's limit per call (100 of each) needs."""
    from mlflow.entities import Param, RunTag

    for kind, entity, items in (("params", Param, params), ("tags", RunTag, tags)):
        pairs = list(items.items())
        for i in range(0, len(pairs), PARAMS_PER_BATCH):
            batch = [entity(k, v) for k, v in pairs[i : i + PARAMS_PER_BATCH]]
            _client.log_batch(run_id, **{kind: batch})


def start_run(info: dict[str, Any]) -> dict[str, Any]:
    """The saved run if it continues (status RUNNING again; new params logged, changed
    ones as ``changed_param.<key>`` tags), else a new run; and per metric key the newest
    step the store has."""
    experiment_id = _experiment_id(info["experiment"], info["location"])
    run = _saved_run(info["saved"], info["run_dir"])
    params, tags = info["params"], info["tags"]
    if run is not None:
        run_id = run.info.run_id
        _client.update_run(run_id, status="RUNNING")
        old = run.data.params
        new = {k: v for k, v in params.items() if k not in old}
        changed = {
            f"changed_param.{k}"[:MAX_KEY]: v for k, v in params.items() if old.get(k, v) != v
        }
        _log_params(run_id, new, {**tags, **changed})
        steps = {
            key: max((m.step for m in _client.get_metric_history(run_id, key)), default=-1)
            for key in run.data.metrics
        }
        return {"run_id": run_id, "resumed": True, "steps": steps}
    if info["saved"].get("run_id"):
        tags = {**tags, "deeptrain.parent_run_id": info["saved"]["run_id"]}
    run = _client.create_run(experiment_id, run_name=info["run_name"])
    _log_params(run.info.run_id, params, tags)
    return {"run_id": run.info.run_id, "resumed": False, "steps": {}}


def log_metrics(run_id: str, rows: list[list]) -> None:
    """``rows``: ``[key, value, timestamp_ms, step]``."""
    from mlflow.entities import Metric

    for i in range(0, len(rows), METRICS_PER_BATCH):
        batch = [Metric(k, v, ms, s) for k, v, ms, s in rows[i : i + METRICS_PER_BATCH]]
        _client.log_batch(run_id, metrics=batch)


def log_artifacts(run_id: str, directory: str, artifact_path: str, remove: bool) -> None:
    try:
        _client.log_artifacts(run_id, directory, artifact_path)
    finally:
        if remove:
            shutil.rmtree(directory, ignore_errors=True)


def set_tag(run_id: str, key: str, value: str) -> None:
    _client.set_tag(run_id, key, value)


def set_status(run_id: str, status: str) -> None:
    _client.update_run(run_id, status=status)


OPS = {
    f.__name__: f for f in (open_store, start_run, log_metrics, log_artifacts, set_tag, set_status)
}


def serve(fd_in: int, fd_out: int) -> None:
    with os.fdopen(fd_in, "rb") as requests, os.fdopen(fd_out, "wb") as replies:
        for line in requests:
            request = json.loads(line)
            try:
                reply: dict[str, Any] = {"result": OPS[request["op"]](*request["args"])}
            except Exception as e:  # sent back: the logger reports it
                reply = {"error": f"{type(e).__name__}: {e}"}
            replies.write(json.dumps(reply).encode("utf-8") + b"\n")
            replies.flush()


if __name__ == "__main__":
    # the training process handles Ctrl-C and SIGTERM, and sends what is left before it
    # ends; this process ends when its input closes (see store_process.py)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # below the training process's priority: MLflow's SQL work (~0.2 ms of CPU per metric
    # row) takes the cores training leaves idle, and all of them while a checkpoint waits
    # for it, rather than time slices of the training's threads
    os.nice(NICENESS)
    serve(int(sys.argv[1]), int(sys.argv[2]))
