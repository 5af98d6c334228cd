"""Training on many devices and processes, on each engine's own distribution: real
processes on localhost, simulated devices (``tests/distributed_job.py`` is the job).

For each layout, three launches of the same command, as an operator would run them:

1. SIGTERM to one process at iteration 5: every process stops there, one checkpoint is
   written (by process 0) and every process exits with status 0;
2. the same command resumes; process 0 is SIGKILLed at iteration 11: the others stop with
   an error instead of waiting forever;
3. the same command resumes from the last checkpoint and finishes; it then also runs the
   engine's own loop on the same batches (and, in one layout, DeepTrain on one device).

Then: the resumed run's weights equal the engine's own reference under the same
distribution (bitwise where the engine's loop is the same computation), the metrics are the
same on every process, the processes fed complementary rows, and only process 0 wrote.
Each test costs a few real process launches: they run one after another (2 cores).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import jobs
from deeptrain.preprocessing import numpy_data_to_numpy_sets

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

JOB = Path(__file__).with_name("distributed_job.py")
SRC = str(Path(__file__).resolve().parents[1] / "src")
BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
TIMEOUT = 600  # per launch; a hang would show as this, never as a slow pass


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dist_data")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 320)
    x = (rng.normal(size=(320, 8)) + labels[:, None]).astype("float32")
    y = np.eye(2, dtype="float32")[labels]
    numpy_data_to_numpy_sets(x[:256], y[:256], root / "train", batch_size=32, shuffle=False)
    numpy_data_to_numpy_sets(x[256:], y[256:], root / "val", batch_size=32, shuffle=False)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def python_for(backend: str) -> str:
    """This interpreter when it runs ``backend``; else the project's venv for it."""
    if backend == BACKEND:
        return sys.executable
    return str(Path(sys.executable).parents[2] / f".venv-{backend}" / "bin" / "python")


def launch(
    backend: str, data: Path, logs: Path, out: Path, processes: int, devices: int, *args: str
) -> list[subprocess.CompletedProcess]:
    """Start ``processes`` processes of the job at once; wait for all."""
    port = free_port()
    procs = []
    for rank in range(processes):
        env = dict(
            os.environ,
            PYTHONPATH=SRC,
            TF_CPP_MIN_LOG_LEVEL="2",
            MPLBACKEND="Agg",
            KERAS_BACKEND=backend,
            PYTHONUNBUFFERED="1",
        )
        if backend == "jax":  # the layout's runs share their compiled steps (tests/jobs.py)
            env.update(jobs.JAX_CACHE)
        if backend == "torch":  # what torchrun sets
            env.update(
                RANK=str(rank),
                WORLD_SIZE=str(processes),
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=str(port),
            )
        cmd = [
            python_for(backend),
            str(JOB),
            backend,
            str(data),
            str(logs),
            str(out.with_name(f"{out.stem}_{rank}.npz")),
            "--devices",
            str(devices),
            "--processes",
            str(processes),
            "--process-id",
            str(rank),
            "--port",
            str(port),
            *args,
        ]
        # forked warm (tests/jobs.py) on TensorFlow and torch; JAX's simulated devices and
        # its distributed runtime are set up by a fresh interpreter
        fresh = backend != BACKEND or backend == "jax"
        output = out.with_name(f"{out.stem}_{rank}.txt")
        procs.append(jobs.start(*cmd[1:], env=env, fresh=fresh, output=output, python=cmd[0]))
    results = []
    for proc in procs:
        proc.wait(TIMEOUT)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout))
    return results


def run_layout(
    backend: str,
    data: Path,
    tmp: Path,
    processes: int,
    devices: int,
    dropout: str,
    single: bool,
    optimizer: str = "adam",
    other_layout: int | None = None,
    predict: bool = False,
    locked: bool = False,
) -> list[dict]:
    logs, out = tmp / "logs", tmp / "out.npz"
    common = ["--dropout", dropout, "--optimizer", optimizer, *(["--predict"] if predict else [])]

    # 1. SIGTERM to the last process at iteration 5 (held until the iteration's end)
    first = launch(
        backend,
        data,
        logs,
        out,
        processes,
        devices,
        *common,
        "--term-at-iter",
        "5",
        "--victim",
        str(processes - 1),
    )
    for r in first:
        assert r.returncode == 0, r.stdout[-3000:]
        assert "Preempted (SIGTERM): checkpoint saved at" in r.stdout
    (run,) = logs.glob("M*__*")
    # on torch the processes agree on signals in the step's metric reduction: one sent
    # after it (by this 'train:iter' callback) is acted on after the next step
    stop = 6 if backend == "torch" else 5
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        f"_temp_{stop}iters_1vals",
        "latest",
    ]

    # 2. resume; SIGKILL process 0 at iteration 11 (after iteration 10's checkpoint)
    resume = ["--loadpath", str(run)]
    second = launch(
        backend,
        data,
        logs,
        out,
        processes,
        devices,
        *common,
        *resume,
        "--kill-at-iter",
        "11",
        "--victim",
        "0",
    )
    assert second[0].returncode == -9
    for r in second[1:]:  # the others notice and stop with an error: no hang
        assert r.returncode != 0, r.stdout[-3000:]
    assert (run / "checkpoints" / "_temp_10iters_2vals").is_dir()
    if locked:  # run's directory held by another live run: every process stops, none waits
        from deeptrain.saving.lock import LogdirLock

        lock = LogdirLock(run)
        lock.acquire()
        try:
            refused = launch(backend, data, logs, out, processes, devices, *common, *resume)
        finally:
            lock.release()
        assert "is in use by another run" in refused[0].stdout, refused[0].stdout[-3000:]
        for r in refused[1:]:
            assert r.returncode != 0
            assert f"process 0 failed to lock {run}" in r.stdout, r.stdout[-3000:]
    if other_layout:  # the same checkpoint, resumed later on another number of devices
        shutil.copytree(logs, tmp / "logs_other")

    # 3. resume to the end, then the engine's own loop (and one device) in the same process
    third = launch(
        backend,
        data,
        logs,
        out,
        processes,
        devices,
        *common,
        *resume,
        "--reference",
        "--errors",
        *(["--single"] if single else []),
    )
    for r in third:
        assert r.returncode == 0, r.stdout[-3000:]
        assert "Loaded checkpoint" in r.stdout and "_temp_10iters_2vals" in r.stdout
    results = [dict(np.load(out.with_name(f"out_{rank}.npz"))) for rank in range(processes)]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["event"] for r in rows].count("train_batch") == 16  # no rolled-back rows
    assert [r["event"] for r in rows].count("validation") == 4
    if other_layout:
        (run_copy,) = (tmp / "logs_other").glob("M*__*")
        (other,) = launch(
            backend,
            data,
            tmp / "logs_other",
            tmp / "other.npz",
            1,
            other_layout,
            *common,
            "--loadpath",
            str(run_copy),
        )
        assert other.returncode == 0, other.stdout[-3000:]
        assert "resuming on" in other.stdout and "not bitwise" in other.stdout
        results.append(dict(np.load(tmp / "other_0.npz")))
    return results


def assert_refused_before_training(
    result: dict,
    replicas: int,
    processes: int,
    stateful: bool = False,
    built_first: bool = False,
    unbuilt: bool = False,
) -> None:
    """Bad input gets a clear error before training (recorded by launch 3)."""
    assert f"do not split evenly over the {replicas} replicas" in str(result["error_batch"])
    assert "fit_fn='fit' cannot run under" in str(result["error_fit_fn"])
    if processes > 1:  # process 1 built its DataGenerator with another seed
        message = str(result["error_schedule"])
        assert "the DataGenerators' schedule" in message, message
        assert "differs between process 0 and process(es) [1]" in message, message
    if stateful:
        assert "stateful RNN layers cannot run under" in str(result["error_stateful"])
    if built_first:
        assert "the model was built before" in str(result["error_built_first"])
    if unbuilt:
        assert "the model is not built: under torch.distributed" in str(result["error_unbuilt"])
    message = str(result["error_backup"])  # (several processes: on process 0 alone, too)
    assert "keras.callbacks.BackupAndRestore cannot run under a TrainGenerator" in message
    assert ("on process 0 alone" in message) == (processes > 1), message


def assert_checks(results: list[dict]) -> None:
    """What the job's ``checks`` recorded (launch 3): on every process, a train and an
    evaluate step's metrics are the global batch's, as one device computes them from the
    same predictions (AUC included: no mean of the replicas' AUCs); the weights after a
    recompile and another step are the same; a checkpoint before ``train()`` is written; a
    preprocessor that drops a row is refused at the step; Keras' ``CSVLogger`` and
    ``ModelCheckpoint`` write on process 0 alone, while a ``LambdaCallback`` runs on every
    process; a Ctrl-C with a callback's stop ends ``train()`` after that step, and
    ``train()`` again continues; a model of two inputs (a list of arrays per batch) trains
    an epoch, alike on every process. On torch, BatchNormalization's moving statistics are
    the same on every process, averaged over them."""
    if len(results) > 1:  # a Ctrl-C in process 0's own part: every process raises
        assert str(results[0]["error_writer_cut"]) == "KeyboardInterrupt"
        for r in results[1:]:
            assert "process 0 failed to write a file" in str(r["error_writer_cut"])
    for r in results:
        for step in ("eval", "train"):
            for metric in ("loss", "accuracy", "auc"):
                got, one_device = r[f"{step}_{metric}"]
                assert got == pytest.approx(one_device, rel=1e-5, abs=1e-6), (step, metric)
        assert str(r["checkpoint_first"]).endswith("_0vals_0iters")
        message = str(r["error_preprocessor"])
        assert "a batch fed to the model (after the preprocessor) holds 31 samples" in message
        assert list(r["keras_epochs_seen"]) == [0]
        assert int(r["two_inputs_fit"]) == 8
        assert int(r["ctrl_c_raised_at"]) == 3 and int(r["ctrl_c_then_fit"]) == 8
        if BACKEND == "torch":  # one all_reduce a step: the gradients, the metrics and
            # the signals (no collective of their own at the boundary)
            assert list(r["collectives_per_iter"]) == [1] * 7
            # a model's own train_step: its apply where it calls it, metrics after the step
            assert r["custom_step_max_weight"] <= np.float32(0.05)  # (the clip, in float32)
            for name in ("custom_step", "own_metrics"):
                assert list(r[f"{name}_collectives"]) == [2] * 7, name
            # the moving statistics ride in the step's one all_reduce, averaged
            assert list(r["bn_collectives"]) == [1] * 4
            for stat in ("mean", "variance"):
                np.testing.assert_allclose(
                    r[f"bn_moving_{stat}"], r[f"bn_expected_{stat}"], rtol=1e-5, atol=1e-6
                )
    writer_only = [True] + [False] * (len(results) - 1)
    assert [bool(r["keras_csv_written"]) for r in results] == writer_only
    assert [bool(r["keras_checkpoint_written"]) for r in results] == writer_only
    assert Path(str(results[0]["checkpoint_first"])).is_dir()
    for r in results[1:]:
        for key in (
            k
            for k in results[0]
            if k.startswith(
                ("recompiled_", "two_inputs_w", "custom_step_", "own_metrics_", "bn_moving_")
            )
        ):
            np.testing.assert_array_equal(r[key], results[0][key], err_msg=key)
    assert len([k for k in results[0] if k.startswith("recompiled_")]) == 4


def assert_modes_agree(results: list[dict]) -> None:
    """The last validation's loss, in evaluate mode (metrics reduced over processes) and in
    predict mode (predictions gathered, loss computed once), agree on every process."""
    for r in results:
        np.testing.assert_allclose(r["other_mode_loss"], r["val_loss"][-1], rtol=1e-5)


def weight_keys(result: dict) -> list[str]:
    return sorted(k for k in result if k[0] == "w" and k[1:].isdigit())


def assert_global_and_complementary(results: list[dict], rows_per_process: int) -> None:
    for r in results[1:]:  # the same metrics (and weights) on every process
        for key in results[0]:
            if (
                key.startswith(("hist_", "val_", "w"))
                and key[1:].isdigit()
                or key.startswith(("hist_", "val_"))
            ):
                np.testing.assert_array_equal(r[key], results[0][key])
    fed = np.concatenate([r["rows"] for r in results])
    assert all(len(r["rows"]) == rows_per_process for r in results)
    assert sorted(fed.tolist()) == sorted(set(fed.tolist())) or rows_per_process == 32
    assert set(fed.tolist()) == set(range(32))


@pytest.mark.skipif(BACKEND != "jax", reason="runs in the JAX job")
@pytest.mark.backends
@pytest.mark.parametrize("processes, devices", [(1, 8), (2, 2)])
def test_jax_data_parallel(data, tmp_path, processes, devices):
    results = run_layout(
        "jax",
        data,
        tmp_path,
        processes,
        devices,
        "0.3",
        single=processes == 1,
        other_layout=4 if processes == 1 else None,
        predict=processes == 2,
    )
    if processes == 1:  # resumed on 4 devices instead of 8: the same data, close results
        other = results.pop()
        assert int(other["fit_iters"]) == 16
        for key in weight_keys(other):
            np.testing.assert_allclose(other[key], results[0][key], atol=1e-6)
    assert results[0]["describe"] == (
        f"JAX DataParallel (mesh batch={processes * devices}; {processes} process(es))"
    )
    assert_global_and_complementary(results, 32 // processes)
    assert_modes_agree(results)
    assert_checks(results)
    assert_refused_before_training(
        results[0], processes * devices, processes, stateful=True, built_first=True
    )
    for r in results:  # bitwise: train_on_batch under the same distribution
        for key in weight_keys(r) + sorted(k for k in r if k.startswith("opt")):
            np.testing.assert_array_equal(r[key], r["ref_" + key], err_msg=key)
    if processes == 1:  # close to one device, even with Dropout (the same masks)
        for key in weight_keys(results[0]):
            np.testing.assert_allclose(results[0][key], results[0]["single_" + key], atol=1e-6)


@pytest.mark.skipif(BACKEND != "jax", reason="runs in the JAX job")
@pytest.mark.backends
@pytest.mark.parametrize("victim", [0, 1])
def test_jax_error_on_one_process_stops_the_others_with_it(data, tmp_path, victim):
    """An error on one process alone (a callback's, outside any checkpoint): it exits with
    its error and the other is told which and stops within seconds. Without DeepTrain's
    failure watch JAX hangs both for its 5-minute shutdown barrier, then aborts them with
    a message that names no error."""
    logs, out = tmp_path / "logs", tmp_path / "out.npz"
    args = ["--dropout", "0.0", "--raise-at-iter", "3", "--victim", str(victim)]
    results = launch("jax", data, logs, out, 2, 2, *args)
    failed, other = results[victim], results[1 - victim]
    assert failed.returncode == 1, failed.stdout[-3000:]
    assert f"RuntimeError: a callback failed on process {victim}" in failed.stdout
    assert other.returncode == 1, other.stdout[-3000:]
    assert (
        f"Another process of this job failed (process {victim}: RuntimeError: a callback "
        f"failed on process {victim})" in other.stdout
    ), other.stdout[-3000:]


@pytest.mark.skipif(BACKEND != "tensorflow", reason="runs in the TensorFlow job")
def test_tensorflow_mirrored_strategy(data, tmp_path):
    (result,) = run_layout("tensorflow", data, tmp_path, 1, 4, "0.0", single=True)
    assert result["describe"] == "TensorFlow MirroredStrategy (4 replicas)"
    assert_refused_before_training(result, 4, 1, stateful=True)
    assert_modes_agree([result])
    assert_checks([result])
    for key in weight_keys(result) + sorted(k for k in result if k.startswith("opt")):
        # bitwise: Keras fit under the same strategy, on the same global batches
        np.testing.assert_array_equal(result[key], result["ref_" + key], err_msg=key)
    for key in weight_keys(result):  # and close to one device
        np.testing.assert_allclose(result[key], result["single_" + key], atol=1e-5)


@pytest.mark.skipif(BACKEND != "torch", reason="runs in the torch job")
@pytest.mark.backends
def test_torch_gloo_processes(data, tmp_path):
    results = run_layout(
        "torch",
        data,
        tmp_path,
        2,
        1,
        "0.0",
        single=True,
        optimizer="sgd",
        predict=True,
        locked=True,
    )
    assert results[0]["describe"] == "torch.distributed (gloo, 2 processes)"
    assert_global_and_complementary(results, 16)
    assert_refused_before_training(results[1], 2, 2, stateful=True, unbuilt=True)
    assert_modes_agree(results)
    assert_checks(results)
    for key in weight_keys(results[0]):
        # torch's own DistributedDataParallel with torch's SGD (Keras' SGD arithmetic, other
        # kernels); and DeepTrain on one device
        np.testing.assert_allclose(results[0][key], results[0]["ref_" + key], atol=1e-5)
        np.testing.assert_allclose(results[0][key], results[0]["single_" + key], atol=1e-5)


@pytest.mark.skipif(BACKEND != "torch", reason="runs in the torch job")
@pytest.mark.backends
def test_torch_gloo_processes_with_a_compiled_train_function(data, tmp_path):
    """``compile(jit_compile=True)``: Keras' train function through ``torch.compile`` (with
    it, DeepTrain's torch step is as fast as a plain DDP loop: benchmarks/scaling.py). The
    gradients are still averaged inside it: the weights equal torch's own
    DistributedDataParallel on the same global batches, and the metrics are global, the
    same on both processes."""
    out = tmp_path / "out.npz"
    flags = ("--dropout", "0.0", "--optimizer", "sgd", "--jit-compile", "--reference")
    for r in launch("torch", data, tmp_path / "logs", out, 2, 1, *flags):
        assert r.returncode == 0, r.stdout[-3000:]
    results = [dict(np.load(out.with_name(f"out_{rank}.npz"))) for rank in range(2)]
    assert all(r["jit_compile"] for r in results)
    assert_global_and_complementary(results, 16)
    assert_modes_agree(results)
    for key in weight_keys(results[0]):
        np.testing.assert_allclose(results[0][key], results[0]["ref_" + key], atol=1e-5)


@pytest.mark.skipif(BACKEND != "jax", reason="runs in the JAX job")
@pytest.mark.backends
def test_jax_model_parallel(data, tmp_path):
    """A batch x model mesh (2 x 4) in one process: the step equals train_on_batch, and the
    checkpoint of the sharded variables loads back into a model laid out the same way."""
    (r,) = launch(
        "jax",
        data,
        tmp_path / "logs",
        tmp_path / "out.npz",
        1,
        8,
        "--dropout",
        "0.3",
        "--model-parallel",
        "--reference",
        "--check-load",
    )
    assert r.returncode == 0, r.stdout[-3000:]
    result = dict(np.load(tmp_path / "out_0.npz"))
    assert str(result["describe"]) == "JAX ModelParallel (mesh batch=2, model=4; 1 process(es))"
    assert len(result["rows"]) == 32
    for key in weight_keys(result) + sorted(k for k in result if k.startswith("opt")):
        np.testing.assert_array_equal(result[key], result["ref_" + key], err_msg=key)
        np.testing.assert_array_equal(result[key], result["loaded_" + key], err_msg=key)


MWMS_SCRIPT = """
import keras, tensorflow as tf
from deeptrain import DataGenerator, TrainGenerator
from deeptrain.distribute import DistributionError

strategy = tf.distribute.MultiWorkerMirroredStrategy()  # no TF_CONFIG: one local worker
with strategy.scope():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "categorical_crossentropy")
try:
    dg = [DataGenerator({data!r}, labels_path={labels!r}, batch_size=8) for _ in "tv"]
    TrainGenerator(model, *dg, iter_verbosity=0)
except DistributionError as e:
    print("refused:", e)
"""


@pytest.mark.skipif(BACKEND != "tensorflow", reason="runs in the TensorFlow job")
def test_tensorflow_multi_worker_strategy_is_refused_naming_what_works(tmp_path):
    """MultiWorkerMirroredStrategy fails in Keras 3.15's own train paths: refused before
    training, with the alternatives (in a child process: the strategy sets up TF's
    collectives for good)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype("float32")
    y = np.eye(2, dtype="float32")[rng.integers(0, 2, 16)]
    numpy_data_to_numpy_sets(x, y, tmp_path / "data", batch_size=8, verbose=0)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))
    )
    env.pop("TF_CONFIG", None)
    script = MWMS_SCRIPT.format(
        data=str(tmp_path / "data"), labels=str(tmp_path / "data" / "labels.h5")
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=TIMEOUT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "refused: MultiWorkerMirroredStrategy is not supported" in proc.stdout
    assert "MirroredStrategy (one process" in proc.stdout and "JAX backend" in proc.stdout


@pytest.mark.skipif(BACKEND != "tensorflow", reason="runs in the TensorFlow job")
def test_tensorflow_mirrored_strategy_of_one_replica_and_other_strategies(tmp_path):
    """A MirroredStrategy over one device (a one-GPU machine) trains under its scope; a
    strategy DeepTrain does not run under is refused before training, naming it."""
    import keras
    import tensorflow as tf

    from deeptrain import DataGenerator, TrainGenerator
    from deeptrain.distribute import DistributionError

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = np.eye(2, dtype="float32")[rng.integers(0, 2, 32)]
    numpy_data_to_numpy_sets(x, y, tmp_path / "data", batch_size=8, verbose=0)

    def session(strategy):
        with strategy.scope():
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, "softmax")])
            model.compile("adam", "categorical_crossentropy")
        datagens = [
            DataGenerator(
                tmp_path / "data", labels_path=tmp_path / "data" / "labels.h5", batch_size=8
            )
            for _ in "tv"
        ]
        return TrainGenerator(model, *datagens, iter_verbosity=0, plot_history_freq=None)

    tg = session(tf.distribute.MirroredStrategy(["/cpu:0"]))
    assert tg.distribution.describe() == "TensorFlow MirroredStrategy (1 replicas)"
    tg.train()
    assert tg.state.batches_fit == 4 and tg.model.optimizer.iterations.numpy() == 4
    with pytest.raises(DistributionError, match="OneDeviceStrategy is not supported"):
        session(tf.distribute.OneDeviceStrategy("/cpu:0"))
