"""Experiment tracking against the real programs: TensorBoard event files read back with
TensorBoard's own reader, MLflow runs read back through MLflow's client from a real
``mlflow server`` (started and stopped here) and from the local default store, and runs
killed with SIGKILL and resumed (real subprocesses) continuing the same event stream and
the same MLflow run with no step recorded twice."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

import jobs
from deeptrain import DataGenerator, TrainGenerator, __version__
from deeptrain.preprocessing import numpy_data_to_numpy_sets
from deeptrain.tracking import MLflowLogger, TensorBoardLogger, default_tracking_uri

BACKEND = keras.backend.backend()
BATCH, N_TRAIN, N_VAL = 8, 4, 2  # 4 train batches per epoch, 2 validation batches
JOB = Path(__file__).with_name("tracking_job.py")


# -- helpers -------------------------------------------------------------------------------
def make_data(root: Path, n_train: int = N_TRAIN, n_val: int = N_VAL) -> Path:
    """``root/train`` and ``root/val``: batches of ``BATCH`` rows of 6 features, 2 classes."""
    rng = np.random.default_rng(0)
    n = (n_train + n_val) * BATCH
    labels = rng.integers(0, 2, n)
    x = (rng.normal(size=(n, 6)) + labels[:, None]).astype("float32")
    y = np.eye(2, dtype="float32")[labels]
    cut = n_train * BATCH
    for name, sl in (("train", slice(0, cut)), ("val", slice(cut, n))):
        numpy_data_to_numpy_sets(x[sl], y[sl], root / name, batch_size=BATCH, verbose=0)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp("tracking_data"))


def make_traingen(
    data: Path,
    logs: Path,
    callbacks,
    epochs: int = 2,
    learning_rate: Any = 0.01,
    accumulate: int | None = None,
    **kw,
) -> TrainGenerator:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    optimizer = keras.optimizers.Adam(learning_rate, gradient_accumulation_steps=accumulate)
    model.compile(optimizer, "categorical_crossentropy", metrics=["accuracy"])
    dgs = [
        DataGenerator(data / n, batch_size=BATCH, labels_path=data / n / "labels.h5", seed=0)
        for n in ("train", "val")
    ]
    return TrainGenerator(
        model,
        *dgs,
        epochs=epochs,
        logs_dir=logs,
        callbacks=callbacks,
        iter_verbosity=0,
        model_configs={"units": 8},
        **kw,
    )


def read_events(directory: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    guidance = {"scalars": 0, "images": 0, "histograms": 0, "tensors": 0}
    accumulator = EventAccumulator(str(directory), size_guidance=guidance)
    accumulator.Reload()
    return accumulator


def scalars(events, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in events.Scalars(tag)]


def metrics_rows(logdir: Path, event: str) -> list[dict]:
    lines = (logdir / "metrics.jsonl").read_text().splitlines()
    return [row for row in map(json.loads, lines) if row["event"] == event]


def as_float32(value: float) -> float:
    """A value as an event file holds it (a float32 ``simple_value``)."""
    return float(np.float32(value))


def assert_scalars_match_metrics_log(events, logdir: Path) -> None:
    """Every train batch and validation of metrics.jsonl, once, at its step, with its value."""
    for event, prefix in (("train_batch", "train"), ("validation", "val")):
        rows = metrics_rows(logdir, event)
        for metric in ("loss", "accuracy"):
            expected = [(r["batches_fit"], as_float32(r[metric])) for r in rows]
            assert scalars(events, f"{prefix}/{metric}") == expected, (prefix, metric)


# -- TensorBoard ---------------------------------------------------------------------------
@pytest.mark.backends
def test_tensorboard_event_files_read_back(data, tmp_path):
    """Train metrics per batch, validation metrics, the learning rate, the figures, weight
    and gradient histograms and the settings, read back with TensorBoard's reader; written
    without TensorFlow on torch and JAX."""
    logger = TensorBoardLogger(histogram_freq={"epoch": 1}, histograms=("weights", "gradients"))
    tg = make_traingen(data, tmp_path / "logs", [logger])
    tg.train()
    if BACKEND != "tensorflow":
        assert "tensorflow" not in sys.modules
    assert logger.directory == tg.logdir / "tensorboard"
    events = read_events(logger.directory)

    assert_scalars_match_metrics_log(events, tg.logdir)
    assert [s for s, _ in scalars(events, "train/loss")] == list(range(1, 9))
    assert scalars(events, "val/loss") == [
        (4, as_float32(tg.val_history["loss"][0])),
        (8, as_float32(tg.val_history["loss"][1])),
    ]
    assert scalars(events, "learning_rate") == [(4, as_float32(0.01)), (8, as_float32(0.01))]

    history = events.Images("figures/history")
    assert [e.step for e in history] == [4, 8]
    assert history[-1].encoded_image_string == (tg.logdir / "history.png").read_bytes()
    assert [e.step for e in events.Images("figures/report")] == [4, 8]

    tg.sync_model()
    for weight in tg.model.weights:
        value = np.asarray(keras.ops.convert_to_numpy(weight.value), dtype=np.float64)
        final = events.Histograms(f"weights/{weight.path}")[-1]
        assert final.step == 8
        assert final.histogram_value.num == value.size
        assert final.histogram_value.min == value.min()
        assert final.histogram_value.max == value.max()
        assert [e.step for e in events.Histograms(f"gradients/{weight.path}")] == [4, 8]

    from tensorboard.plugins.hparams import plugin_data_pb2

    content = events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["epochs"].number_value == 2
    assert hparams["optimizer"].string_value == "Adam"
    assert hparams["key_metric"].string_value == "loss"
    assert hparams["model.units"].number_value == 8
    assert hparams["datagen.batch_size"].number_value == BATCH


def test_tensorboard_logger_errors_name_what_is_wrong(data, tmp_path):
    with pytest.raises(ValueError, match="histogram_freq: loggers record per 'batch'"):
        TensorBoardLogger(histogram_freq={"iter": 1})
    with pytest.raises(ValueError, match="histograms:.*'biases'"):
        TensorBoardLogger(histograms=("biases",))
    for freq in ({"epoch": 1}, {"batch": 2}):  # the figures are drawn at validations
        with pytest.raises(ValueError, match=r"images_freq: .* give \{'val': n\}"):
            TensorBoardLogger(images_freq=freq)
    tg = make_traingen(data, None, [TensorBoardLogger()])
    with pytest.raises(ValueError, match="TensorBoardLogger needs a directory: pass logdir="):
        tg.train()
    assert tg.state.fit_iters == 0  # before any step


@pytest.mark.backends
def test_loggers_do_not_make_the_model_sync_every_step(data, tmp_path):
    """The loggers read only the train state per batch: the train step's device state (JAX)
    is written back into the model at epoch ends and validations, not at every step, while
    a function callback (which may read the model) still gets a synced model every time."""
    counts = []
    for callbacks in (
        [TensorBoardLogger(logdir=tmp_path / "tb")],
        [{"train:batch": lambda tg: None}],
    ):
        tg = make_traingen(data, None, callbacks, val_freq=None, unique_checkpoint_freq=None)
        calls = [0]
        sync = tg._fit_fn.sync

        def counted(sync=sync, calls=calls):
            calls[0] += 1
            sync()

        tg._fit_fn.sync = counted
        tg.train()
        counts.append(calls[0])
    logger_syncs, function_syncs = counts
    assert function_syncs >= 2 * N_TRAIN * 2  # before every iteration's callbacks
    assert logger_syncs <= 2  # train start and end (the learning rate: variable_values)


@pytest.mark.backends
@pytest.mark.parametrize("accumulate", [None, 2])
def test_learning_rate_recorded_is_the_schedules_at_each_epoch_end(data, tmp_path, accumulate):
    """The learning rate read per epoch is the schedule's at that step (on JAX: read from
    the train step's device state without ending it), with gradient accumulation too (the
    schedule's step is then the optimizer's Variable, not its computed ``iterations``)."""
    schedule = keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=1, decay_rate=0.5)
    logger = TensorBoardLogger(logdir=tmp_path / "tb")
    tg = make_traingen(
        data, None, [logger], learning_rate=schedule, val_freq=None, accumulate=accumulate
    )
    tg.train()
    events = read_events(tmp_path / "tb")
    expected = [(s, as_float32(0.01 * 0.5**s)) for s in (N_TRAIN, 2 * N_TRAIN)]
    assert scalars(events, "learning_rate") == expected


def test_learning_rate_under_mixed_precision_is_the_wrapped_optimizers(data, tmp_path):
    """Under mixed_float16 Keras wraps the optimizer in a LossScaleOptimizer, whose own
    rate is a placeholder 0: the rate and the optimizer recorded are the wrapped one's."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        tg = make_traingen(data, None, [TensorBoardLogger(logdir=tmp_path / "tb")], epochs=1)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert type(tg.model.optimizer).__name__ == "LossScaleOptimizer"
    tg.train()
    events = read_events(tmp_path / "tb")
    assert scalars(events, "learning_rate") == [(N_TRAIN, as_float32(0.01))]
    from deeptrain.tracking.settings import run_settings

    assert run_settings(tg)["optimizer"] == "Adam"


def test_importing_deeptrain_imports_no_tracking_or_cli_library():
    code = (
        "import sys, deeptrain, deeptrain.callbacks, deeptrain.tracking\n"
        "from deeptrain.callbacks import TensorBoardLogger, MLflowLogger\n"
        "loaded = {'tensorboardX', 'tensorboard', 'mlflow', 'click'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


# -- MLflow against a real server ------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """``mlflow server`` on 127.0.0.1 with a SQLite store, for this module; stopped after."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    mlflow_cli = [sys.executable, "-c", "from mlflow.cli import cli; cli()"]
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        mlflow_cli
        + ["server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        + ["--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"]
        + ["--artifacts-destination", str(root / "artifacts")],
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its workers share its process group: stopped together
        # no background job runner (a pool of worker processes for MLflow's GenAI jobs)
        env=dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    try:
        while True:
            assert proc.poll() is None, (root / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow server did not start in 240 s"
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        yield uri
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
        log.close()


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def assert_metrics_match_metrics_log(client, run_id: str, logdir: Path) -> None:
    for event, prefix in (("train_batch", "train"), ("validation", "val")):
        rows = metrics_rows(logdir, event)
        for metric in ("loss", "accuracy"):
            expected = [(r["batches_fit"], r[metric]) for r in rows]
            assert history(client, run_id, f"{prefix}/{metric}") == expected, (prefix, metric)


def artifacts(client, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for item in client.list_artifacts(run_id, path):
        out += artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return out


@pytest.mark.subprocess
def test_mlflow_server_run_resumed_in_process_and_branched(data, tmp_path, mlflow_server):
    """Params, metrics with steps, tags and artifacts in a real MLflow server; a resumed
    TrainGenerator continues the same run (no step twice), a branched one starts a new run
    tagged with its parent."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    logs, best = tmp_path / "logs", tmp_path / "best"

    def logger() -> MLflowLogger:
        return MLflowLogger(
            mlflow_server,
            experiment="tracking-test",
            log_final_checkpoint=True,
            train_freq={"batch": 1},
        )

    tg = make_traingen(data, logs, [logger()], epochs=1, best_models_dir=best)
    tg.train()
    run_id = tg.callbacks.objects[0].run_id
    store = tg.callbacks.objects[0]._store.proc  # open until close(); below our priority
    assert os.getpriority(os.PRIO_PROCESS, store.pid) == min(19, os.nice(0) + 10)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == tg.logdir.name
    assert run.data.params["epochs"] == "1"
    assert run.data.params["model.units"] == "8"
    assert run.data.params["optimizer"] == "Adam"
    tags = run.data.tags
    assert tags["deeptrain.backend"] == BACKEND
    assert tags["deeptrain.version"] == __version__
    assert tags["keras.version"] == keras.__version__
    assert tags["deeptrain.model_name"] == tg.model_name
    assert_metrics_match_metrics_log(client, run_id, tg.logdir)
    assert history(client, run_id, "learning_rate") == [(4, pytest.approx(0.01))]
    checkpoint = tg.get_last_log("checkpoint")
    assert sorted(artifacts(client, run_id)) == sorted(
        [
            "best_model/model.weights.h5",
            "figures/history.png",
            "figures/report.png",
            *(f"checkpoint/{checkpoint.name}/{f.name}" for f in checkpoint.iterdir()),
        ]
    )
    downloaded = client.download_artifacts(run_id, "best_model/model.weights.h5", str(tmp_path))
    assert Path(downloaded).read_bytes() == tg.get_last_log("weights", best=True).read_bytes()
    logdir = tg.logdir
    tg.destroy(confirm=True)

    # resumed: the same log directory, the same MLflow run
    tg = make_traingen(data, logs, [logger()], epochs=2, loadpath=logdir)
    tg.train()
    assert tg.logdir == logdir and tg.callbacks.objects[0].run_id == run_id
    assert client.get_run(run_id).info.status == "FINISHED"
    assert_metrics_match_metrics_log(client, run_id, logdir)
    assert [s for s, _ in history(client, run_id, "train/loss")] == list(range(1, 9))
    assert client.get_run(run_id).data.params["epochs"] == "1"  # params are set once
    assert client.get_run(run_id).data.tags["changed_param.epochs"] == "2"
    tg.destroy(confirm=True)

    # branched: a new run from the checkpoint, in a new log directory
    tg = make_traingen(data, logs, [logger()], epochs=3, loadpath=logdir, continue_run=False)
    tg.train()
    branch = tg.callbacks.objects[0].run_id
    assert tg.logdir != logdir and branch != run_id
    assert client.get_run(branch).data.tags["deeptrain.parent_run_id"] == run_id
    assert [s for s, _ in history(client, branch, "train/loss")] == list(range(9, 13))
    runs = client.search_runs([client.get_experiment_by_name("tracking-test").experiment_id])
    assert sorted(r.info.run_id for r in runs) == sorted([run_id, branch])
    tg.destroy(confirm=True)


def test_mlflow_logger_errors_name_what_is_wrong(data, tmp_path):
    with pytest.raises(ValueError, match="experiment must be a non-empty str"):
        MLflowLogger(experiment="")
    with pytest.raises(ValueError, match="send_every_s must be >= 0 seconds, got -1"):
        MLflowLogger(send_every_s=-1)
    with pytest.raises(TypeError, match="send_every_s must be a number of seconds, got '5'"):
        MLflowLogger(send_every_s="5")
    tg = make_traingen(data, None, [MLflowLogger()])
    with pytest.raises(ValueError, match="MLflowLogger needs a tracking store: pass tracking_uri"):
        tg.train()
    assert tg.state.fit_iters == 0
    unreachable = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    tg = make_traingen(data, tmp_path / "logs", [MLflowLogger(unreachable)])
    with pytest.raises(RuntimeError, match=r"tracking server http://127\.0\.0\.1:\d+ cannot be"):
        tg.train()
    assert tg.state.fit_iters == 0


@pytest.mark.subprocess
def test_jobs_opening_a_new_default_store_at_once_all_get_it(tmp_path):
    """Parallel runs of one logs directory share its default store: the first opens of a
    new database, at once, must not race through MLflow's table creation."""
    import threading

    from deeptrain.tracking.store_process import StoreProcess

    uri = default_tracking_uri(tmp_path)
    stores = [StoreProcess() for _ in range(2)]
    errors: list[str] = []

    def open_store(store: StoreProcess) -> None:
        try:
            store.request("open_store", uri)
        except Exception as e:
            errors.append(str(e))

    threads = [threading.Thread(target=open_store, args=(store,)) for store in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for store in stores:
        store.close()
    assert errors == []
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("e", (tmp_path / "art").as_uri()))
    assert client.get_run(run.info.run_id).info.status == "RUNNING"


def test_mlflow_run_continues_after_close_and_destroy_closes_the_loggers(data, tmp_path):
    """``close()`` then ``train()`` again continues the same MLflow run (tags that are not
    strings are recorded as text, and accepted again when it continues); ``destroy()``
    leaves no event file open, no logger thread and no MLflow process behind (a sweep of
    TrainGenerators would pile them up)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ml = MLflowLogger(
        uri,
        artifact_location=str(tmp_path / "artifacts"),  # (MLflow's default: ./mlruns)
        tags={"trial": 3},
        train_freq={"batch": 1},
    )
    tb = TensorBoardLogger(logdir=tmp_path / "tb")
    tg = make_traingen(data, tmp_path / "logs", [tb, ml], epochs=1)
    tg.train()
    run_id = ml.run_id
    ml.close()
    tg.epochs = 2
    tg.train()
    assert ml.run_id == run_id
    client = MlflowClient(uri)
    assert [s for s, _ in history(client, run_id, "train/loss")] == list(range(1, 2 * N_TRAIN + 1))
    assert client.get_run(run_id).data.tags["trial"] == "3"

    store = ml._store.proc
    threads = [logger._worker._thread for logger in (tb, ml)]
    assert store.poll() is None and all(t is not None and t.is_alive() for t in threads)
    tg.destroy(confirm=True)
    assert store.wait(timeout=60) == 0 and tb._file is None
    assert not any(t.is_alive() for t in threads)


def test_the_mlflow_process_ignores_the_jobs_signals_and_a_killed_one_is_replaced(
    data, tmp_path, caplog
):
    """A Ctrl-C in the terminal or a scheduler's SIGTERM to the job does not reach the MLflow
    process (the training process handles them, and sends what is left); one killed anyway
    (the OOM killer) is replaced within ``train()``: the same run gets every step once."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ml = MLflowLogger(uri, artifact_location=str(tmp_path / "artifacts"), train_freq={"batch": 1})
    killed: list[int] = []

    def kill(tg: TrainGenerator) -> None:  # mid-epoch, metrics recorded but not yet sent
        if tg.state.batches_fit == N_TRAIN + 2 and not killed:
            proc = ml._store.proc
            proc.kill()
            proc.wait()
            killed.append(proc.pid)

    tg = make_traingen(data, tmp_path / "logs", [ml, {"train:batch": kill}], epochs=1)
    tg.train()
    run_id, proc = ml.run_id, ml._store.proc
    assert os.getsid(proc.pid) != os.getsid(0)  # (a signal to the job's group misses it)
    for sig in (signal.SIGINT, signal.SIGTERM):
        proc.send_signal(sig)
    ml._worker.call(ml._request, "set_tag", run_id, "probe", "after the signals")
    assert proc.poll() is None and not killed

    tg.epochs = 3
    with caplog.at_level(logging.WARNING, logger="deeptrain"):
        tg.train()
    assert killed and ml._store.proc.pid != killed[0] and ml.run_id == run_id
    assert "MLflowLogger: the MLflow process" in caplog.text
    client = MlflowClient(uri)
    steps = [s for s, _ in history(client, run_id, "train/loss")]
    assert steps == list(range(1, 3 * N_TRAIN + 1))
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["probe"] == "after the signals"
    ml.close()


def test_mlflow_flush_sends_and_what_is_recorded_after_train_is_sent_at_exit(data, tmp_path):
    """``flush()`` sends what is buffered (a ``validate()`` after ``train()`` in a run with
    checkpoints is sent at no checkpoint); at interpreter exit, whatever is still buffered
    is sent (a real interpreter exits after ``validate()``)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ml = MLflowLogger(uri, artifact_location=str(tmp_path / "artifacts"))
    tg = make_traingen(data, tmp_path / "logs", [ml], epochs=1)
    tg.train()
    client = MlflowClient(uri)
    before = len(history(client, ml.run_id, "val/loss"))
    tg.epochs = 2
    tg.train()
    tg.validate()
    assert ml._buffer  # (held for the next send)
    assert ml.flush() and not ml._buffer
    assert len(history(client, ml.run_id, "val/loss")) > before
    ml.close()

    script = f"""
import sys
sys.path[:0] = {[str(Path(__file__).parent)]!r}
import test_tracking as t
from pathlib import Path
from deeptrain.tracking import MLflowLogger
ml = MLflowLogger({uri!r}, experiment="at-exit", artifact_location={str(tmp_path / "a2")!r})
tg = t.make_traingen(Path({str(data)!r}), Path({str(tmp_path / "logs2")!r}), [ml], epochs=1)
tg.train()
tg.validate()
print(ml.run_id, len(ml._buffer))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    run_id, buffered = out.stdout.split()[-2:]
    assert int(buffered) > 0
    validations = history(client, run_id, "val/loss")
    assert len(validations) == 2  # train()'s and the validate() after it, at one step


def test_mlflow_run_without_checkpoints_sends_every_send_every_s(data, tmp_path):
    """Without checkpoints, metrics reach the store as training goes: at every batch end
    with ``send_every_s=0``; with an interval longer than the run, all at the end of
    ``train()`` (one call to the store instead of one per step). By default, train metrics
    every 50th batch."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    every_batch = {"batch": 1}
    for every, freq, epochs, expected, steps in (
        (0, every_batch, 1, [[1], [1, 2], [1, 2, 3], [1, 2, 3, 4]], [1, 2, 3, 4]),
        (3600, every_batch, 1, [[]] * 4, [1, 2, 3, 4]),
        (0, None, 25, [[]] * 49 + [[50]] * 50 + [[50, 100]], [50, 100]),
    ):
        in_store: list[list[int]] = []

        def look(tg: TrainGenerator, in_store: list = in_store) -> None:
            logger = tg.callbacks.objects[0]
            assert logger._worker.flush()  # (what was sent so far is in; flush() would send)
            in_store.append([s for s, _ in history(client, logger.run_id, "train/loss")])

        kw = {"train_freq": freq} if freq else {}  # None: the default
        logger = MLflowLogger(
            uri,
            experiment=f"every-{every}-{freq}",
            artifact_location=str(tmp_path / "artifacts"),  # (MLflow's default: ./mlruns)
            send_every_s=every,
            **kw,
        )
        tg = make_traingen(data, None, [logger, {"train:batch": look}], epochs=epochs)
        tg.train()
        assert in_store == expected, (every, freq)
        assert [s for s, _ in history(client, logger.run_id, "train/loss")] == steps
        logger.close()


# -- killed and resumed --------------------------------------------------------------------
def run_job(data: Path, logs: Path, *args: str) -> subprocess.CompletedProcess:
    return jobs.run(JOB, data, logs, *args)


@pytest.mark.backends
@pytest.mark.subprocess
def test_sigkill_and_resume_continue_the_event_stream_and_the_mlflow_run(tmp_path):
    """Killed after iteration 7 (checkpoint at batch 4; batches 5 and 6 and the validation
    at 6 already in the event file), then resumed: TensorBoard shows every step once, with
    the values of the (rewound and continued) metrics log; the local default MLflow store
    held exactly steps 1-4 at the kill, and the resumed job continues that run."""
    from mlflow.tracking import MlflowClient

    data, logs = tmp_path / "data", tmp_path / "logs"
    proc = run_job(data, logs, "--kill-at-iter", "7")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    (logdir,) = [p for p in logs.iterdir() if p.name.startswith("M")]
    (killed_file,) = (logdir / "tensorboard").iterdir()
    killed = read_events(killed_file)
    assert [s for s, _ in scalars(killed, "train/loss")] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in scalars(killed, "val/loss")] == [3, 6]

    client = MlflowClient(default_tracking_uri(logs))
    (run,) = client.search_runs([client.get_experiment_by_name("deeptrain").experiment_id])
    assert [s for s, _ in history(client, run.info.run_id, "train/loss")] == [1, 2, 3, 4]
    assert [s for s, _ in history(client, run.info.run_id, "val/loss")] == [3]
    assert (logs / "mlflow.db").is_file()

    proc = run_job(data, logs, "--loadpath", str(logdir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Loaded checkpoint" in proc.stderr
    events = read_events(logdir / "tensorboard")
    assert_scalars_match_metrics_log(events, logdir)
    assert [s for s, _ in scalars(events, "train/loss")] == list(range(1, 25))
    assert [s for s, _ in scalars(events, "val/loss")] == list(range(3, 25, 3))

    (resumed,) = client.search_runs([client.get_experiment_by_name("deeptrain").experiment_id])
    assert resumed.info.run_id == run.info.run_id
    assert resumed.info.status == "FINISHED"
    assert_metrics_match_metrics_log(client, run.info.run_id, logdir)
    figures = artifacts(client, run.info.run_id)
    assert sorted(figures) == ["figures/history.png", "figures/report.png"]
    assert (logs / "mlartifacts").is_dir()


def test_event_records_are_framed_as_tensorboardx_frames_them(tmp_path):
    """DeepTrain frames many records into one write; each record is byte for byte what
    tensorboardX's ``RecordWriter`` writes for it."""
    from tensorboardX.record_writer import RecordWriter

    from deeptrain.tracking.records import frame

    payloads = [b"", b"x", bytes(range(256)) * 3, b"y" * 40, b"z" * 40]
    writer = RecordWriter(str(tmp_path / "tensorboardx"))
    for data in payloads:
        writer.write(data)
    writer.close()
    assert b"".join(map(frame, payloads)) == (tmp_path / "tensorboardx").read_bytes()


def scalar_event(tags, step: int, walltime: float, values) -> bytes:
    """A scalar ``Event`` as tensorboardX's protobuf classes serialize it."""
    from tensorboardX.proto import event_pb2, summary_pb2

    summary = summary_pb2.Summary(
        value=[
            summary_pb2.Summary.Value(tag=t, simple_value=v)
            for t, v in zip(tags, values, strict=True)
        ]
    )
    return event_pb2.Event(wall_time=walltime, step=step, summary=summary).SerializeToString()


def test_scalar_events_encoded_at_once_are_the_protobuf_messages_bytes(tmp_path):
    """Scalar events encoded many at a time are byte for byte tensorboardX's ``Event``
    messages, serialized and framed by its ``RecordWriter``: steps whose varints take 0
    (step 0: absent) to 6 bytes in one call, values float32 cannot hold (+-inf), NaN, -0,
    subnormals, non-ASCII and long tags; bad steps are refused."""
    from tensorboardX.record_writer import RecordWriter

    from deeptrain.tracking.records import scalar_records

    tags = ("train/loss", "val/accuracy", "é" * 70, "x" * 200)
    steps = [0, 1, 127, 128, 129, 16383, 16384, 2**40, 5, 6]
    values = [[0.0, -0.0, float("nan"), 1e40], [-1e40, 1e-45, 3.3, -2.5]] * 5
    rows = [(s, 1.7e9 + i / 7, *v) for i, (s, v) in enumerate(zip(steps, values, strict=True))]
    writer = RecordWriter(str(tmp_path / "tensorboardx"))
    for step, walltime, *row in rows:
        writer.write(scalar_event(tags, step, walltime, row))
    writer.close()
    assert scalar_records(tags, rows) == (tmp_path / "tensorboardx").read_bytes()
    assert scalar_records(tags, []) == b""
    for bad in ((-1, 1.0, 1, 2, 3, 4), (1.5, 1.0, 1, 2, 3, 4), (1, 0.0, 1, 2, 3, 4)):
        with pytest.raises(
            ValueError, match=r"an integer step \(0 <= step < 2\*\*53\), a non-zero"
        ):
            scalar_records(tags, [bad])


def test_scalar_events_in_large_random_tables_are_the_protobuf_messages_bytes(tmp_path):
    """Hundreds of rows at once, as the logger hands them over: steps counting up across
    varint lengths (127 -> 128, 2**14 - 1 -> 2**14, ..., 2**49 - 1 -> 2**49) and in random
    order, random values (float32's range and beyond, NaN, zeros): the same bytes as
    tensorboardX's ``Event`` messages, and as the rows encoded one at a time."""
    from deeptrain.tracking.records import frame, scalar_records

    rng = np.random.default_rng(7)
    tags = ("train/loss", "train/acc", "lr")
    edges = [2 ** (7 * k) + d for k in range(1, 8) for d in range(-3, 3)]
    counting = list(range(1, 300)) + edges
    shuffled = rng.permutation([0, *counting, 2**53 - 1]).tolist()
    specials = [np.nan, np.inf, -np.inf, 0.0, -0.0, 3.5e38, -3.5e38, 1e-46]
    for steps in (counting, shuffled):
        values = rng.normal(scale=10.0 ** rng.integers(-40, 41, (len(steps), 3)))
        values.flat[rng.integers(0, values.size, 40)] = rng.choice(specials, 40)
        rows = [(s, 1.7e9 + rng.random(), *v) for s, v in zip(steps, values.tolist(), strict=True)]
        expected = b""
        for step, walltime, *row in rows:
            expected += frame(scalar_event(tags, step, walltime, row))
        assert scalar_records(tags, rows) == expected
        assert b"".join(scalar_records(tags, [row]) for row in rows) == expected
    bad_rows = [(1, 1.0, 2.0), (2**53, 1.0, 1, 2, 3), (2, None, 1, 2, 3), (2, 1.0, "x", 2, 3)]
    for bad in bad_rows:  # (after a good row: the bad one is named)
        with pytest.raises(ValueError, match=r"0 <= step < 2\*\*53.*got " + re.escape(repr(bad))):
            scalar_records(tags, [(1, 1.0, 1, 2, 3), bad])
    empty_tag = frame(scalar_event(("",), 3, 1.5, [2.0]))  # (proto3 omits an empty string)
    assert scalar_records(("",), [(3, 1.5, 2.0)]) == empty_tag


def test_a_tags_events_keep_their_step_order_in_the_file(data, tmp_path):
    """Rows are written a tag set at a time; a set sharing a tag with a pending one (here
    ``train/loss`` with another scalar, every 3rd batch) is handed over after what came
    before it, so every tag's steps come in order in the file: TensorBoard's loader drops
    a tag's events at steps >= one that follows them."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    logger = TensorBoardLogger(logdir=tmp_path / "tb")

    def extra(tg: TrainGenerator) -> None:
        if tg.state.batches_fit % 3 == 0:
            logger._scalars({"train/loss": -1.0, "extra": 2.0}, tg.state.batches_fit)

    tg = make_traingen(data, None, [logger, {"train:batch": extra}], epochs=3, val_freq=None)
    tg.train()
    steps: dict[str, list[int]] = {}
    for file in sorted((tmp_path / "tb").glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(file)).Load():
            for value in event.summary.value:
                steps.setdefault(value.tag, []).append(event.step)
    n = tg.state.batches_fit
    assert steps["extra"] == list(range(3, n + 1, 3))
    assert steps["train/loss"] == sorted([*range(1, n + 1), *range(3, n + 1, 3)])


def test_train_metrics_at_an_epoch_frequency_are_the_epochs_means(data, tmp_path):
    """``train_freq={'epoch': 1}``: one ``train/<metric>`` per epoch, the epoch's mean at
    its last batch (what the progress bar shows), and none per batch."""
    logger = TensorBoardLogger(logdir=tmp_path / "tb", train_freq={"epoch": 1})
    tg = make_traingen(data, None, [logger], epochs=2)
    tg.train()
    events = read_events(tmp_path / "tb")
    assert [s for s, _ in scalars(events, "train/loss")] == [4, 8]
    means = [as_float32(v) for v in tg.history["loss"][3::4]]
    assert [v for _, v in scalars(events, "train/loss")] == means


def test_scalars_reach_the_event_file_while_training(data, tmp_path, monkeypatch):
    """Train rows are handed to the writer every ``HANDOVER_EVERY`` rows (64 here) even
    when other records (the learning rate at every 4-batch epoch end) fall between them,
    and written through to the file: TensorBoard sees them while the run goes on, not only
    at its end."""
    from deeptrain.tracking import tensorboard_logger

    monkeypatch.setattr(tensorboard_logger, "HANDOVER_EVERY", 64)
    seen: list[list[int]] = []

    def look(tg: TrainGenerator) -> None:
        if tg.state.batches_fit in (60, 70):
            logger = tg.callbacks.objects[0]
            logger._worker.flush()  # what was handed over is written (not a flush point)
            events = read_events(tmp_path / "tb")
            seen.append([s for s, _ in scalars(events, "train/loss")])

    logger = TensorBoardLogger(logdir=tmp_path / "tb")
    tg = make_traingen(data, None, [logger, {"train:batch": look}], epochs=18, val_freq=None)
    tg.train()
    # 64 rows (train rows and a learning rate per 4) were reached at step 51 or 52
    for steps in seen:
        assert len(steps) >= 51 and steps == list(range(1, len(steps) + 1))


def test_mlflow_tags_and_changed_params_within_mlflows_limits(data, tmp_path):
    """More tags than MLflow takes in one call, keys and values longer than it takes, and a
    long setting changed between two ``train()`` calls of one run (a ``changed_param.``
    tag): all recorded, cut to MLflow's limits, none failing the run's start."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tags = {f"t{i}": i for i in range(150)}
    tags["k" * 300] = "v" * 9000
    ml = MLflowLogger(uri, artifact_location=str(tmp_path / "artifacts"), tags=tags)
    long_key = "u" * 245
    tg = make_traingen(data, tmp_path / "logs", [ml], epochs=1)
    tg.model_configs = {long_key: 1}
    tg.train()
    ml.close()
    tg.model_configs = {long_key: 2}
    tg.epochs = 2
    tg.train()
    run = MlflowClient(uri).get_run(ml.run_id)
    assert run.data.tags["t149"] == "149" and run.data.tags["k" * 250] == "v" * 8000
    (changed,) = [k for k in run.data.tags if k.startswith("changed_param.model.")]
    assert len(changed) == 250 and run.data.tags[changed] == "2"
    ml.close()


def test_a_worker_closed_while_a_call_hangs_runs_later_calls_on_a_new_thread():
    """``close()`` gives up on a call that does not return within its timeout (a store that
    does not answer); later calls run in order on a new thread, never beside the old one
    on one queue; the old thread ends when its call returns."""
    from deeptrain.tracking.worker import BackgroundWorker

    worker = BackgroundWorker("test.worker")
    release, ran = threading.Event(), []
    worker.submit(release.wait)
    old = worker._thread
    worker.close(timeout=0.2)
    assert old is not None and old.is_alive()
    for i in range(3):
        worker.submit(ran.append, (i, threading.current_thread().name))
    worker.submit(lambda: ran.append(threading.current_thread()))
    assert worker.flush(timeout=30)
    assert [r[0] for r in ran[:3]] == [0, 1, 2] and ran[3] is not old
    release.set()
    old.join(timeout=30)
    assert not old.is_alive() and worker.pending == 0
    worker.close(timeout=30)


def test_mlflow_run_status_says_how_train_ended(data, tmp_path):
    """A ``train()`` that raises marks the run FAILED (a Ctrl-C or SIGTERM: KILLED), the next
    ``train()`` RUNNING again, and one that completes the epochs FINISHED."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    ml = MLflowLogger(uri, artifact_location=str(tmp_path / "artifacts"))
    failures = [RuntimeError("a callback failed"), KeyboardInterrupt()]
    seen: list[str] = []

    def fail(tg: TrainGenerator) -> None:  # (at a validation's end: train() can go on)
        seen.append(client.get_run(ml.run_id).info.status)
        if failures:
            raise failures.pop(0)

    tg = make_traingen(data, tmp_path / "logs", [ml, {"val_end": fail}], epochs=1)
    statuses = []
    for expected in (RuntimeError, KeyboardInterrupt):
        with pytest.raises(expected):
            tg.train()
        ml.flush()
        statuses.append(client.get_run(ml.run_id).info.status)
    tg.train()
    ml.flush()
    assert statuses == ["FAILED", "KILLED"] and seen == ["RUNNING"] * 3
    assert client.get_run(ml.run_id).info.status == "FINISHED"
    ml.close()
