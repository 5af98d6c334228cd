"""Exact resume: a run killed with SIGKILL and resumed from its latest checkpoint ends
bit-identical to an uninterrupted run (weights, optimizer state, histories).

Every run is a real process (``tests/resume_job.py``, forked warm: ``tests/jobs.py``) on
the backend KERAS_BACKEND selects, with shuffled data and Dropout, or a stateful LSTM fed
windows (killed mid-batch, between windows), checkpoints written in the background: killed
between writes, inside one (from the writing thread, while training goes on), or at a
random moment. CPU only.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import jobs

pytestmark = [pytest.mark.backends, pytest.mark.subprocess]

JOB = Path(__file__).with_name("resume_job.py")
ITERS = {"dense": 24, "lstm": 54}  # 2 epochs: 12 batches; 9 batches x 3 windows


def run_job(data: Path, logs: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return jobs.run(JOB, data, logs, out, *args)


def load(out: Path) -> dict[str, np.ndarray]:
    with np.load(out) as npz:
        return {k: npz[k] for k in npz.files}


def assert_identical(resumed: dict, reference: dict, context: str) -> None:
    assert sorted(resumed) == sorted(reference), context
    for key in reference:
        np.testing.assert_array_equal(
            resumed[key], reference[key], err_msg=f"{key} differs ({context})"
        )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("resume")


@pytest.fixture(scope="module")
def reference(workdir):
    """Uninterrupted runs, one per model kind (computed on first use)."""
    cache = {}

    def get(model: str) -> dict[str, np.ndarray]:
        if model not in cache:
            out = workdir / f"ref_{model}.npz"
            proc = run_job(
                workdir / f"data_{model}",
                workdir / f"ref_logs_{model}",
                out,
                "--model",
                model,
                "--temp-freq",
                '{"iter": 1}',
            )
            assert proc.returncode == 0, proc.stderr[-3000:]
            cache[model] = load(out)
            assert int(cache[model]["fit_iters"]) == ITERS[model]
        return cache[model]

    return get


def kill_and_resume(
    workdir: Path,
    model: str,
    name: str,
    freq: str,
    kill: list[str] | None = None,
    external_kill=None,
    options: tuple[str, ...] = (),
) -> tuple[dict, str]:
    data, logs = workdir / f"data_{model}", workdir / f"logs_{name}"
    out = workdir / f"{name}.npz"
    if external_kill is None:
        proc = run_job(data, logs, out, "--model", model, "--temp-freq", freq, *options, *kill)
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    else:
        external_kill(data, logs, out)
    assert not out.exists()
    (logdir,) = list(logs.glob("M*__*"))
    proc = run_job(
        data, logs, out, "--model", model, "--loadpath", str(logdir), "--temp-freq", freq, *options
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return load(out), proc.stderr


@pytest.mark.parametrize(
    "model, freq, kill, resumed_at",
    [
        ("dense", '{"batch": 3}', ["--kill-at-iter", "8"], 6),  # replays two batches
        ("dense", '{"iter": 1}', ["--kill-in-write", "17", "write arrays.npz"], 16),
        ("lstm", '{"iter": 2}', ["--kill-in-write", "22", "rename into place"], 20),  # mid-batch
        ("lstm", '{"epoch": 1}', ["--kill-at-iter", "40"], 27),  # only the epoch's checkpoint
    ],
    ids=["dense-between-writes", "dense-in-a-write", "lstm-mid-batch-in-a-write", "lstm-epoch"],
)
def test_sigkill_then_resume_is_bit_exact(workdir, reference, model, freq, kill, resumed_at):
    resumed, log = kill_and_resume(workdir, model, f"{model}_{kill[1]}", freq, kill)
    assert_identical(resumed, reference(model), f"{model} killed ({kill}), checkpoints {freq}")
    assert re.search(rf"Loaded checkpoint \S+_{resumed_at}iters", log), log[-2000:]


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND") != "torch", reason="torch.compile")
def test_torch_compiled_train_function_resumes_bit_exact(workdir):
    """``compile(jit_compile=True)`` on torch: Keras' train function through
    ``torch.compile`` (the stateful LSTM layers on Keras' fused step while it traces).
    Killed mid-batch inside a background write and resumed (compiled again), the run ends
    bit-identical to the uninterrupted compiled run."""
    freq, options = '{"iter": 2}', ("--jit-compile",)
    ref = workdir / "ref_lstm_compiled.npz"
    data, ref_logs = workdir / "data_lstm", workdir / "ref_logs_lstm_compiled"
    proc = run_job(data, ref_logs, ref, "--model", "lstm", "--temp-freq", freq, *options)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference = load(ref)
    assert int(reference["fit_iters"]) == ITERS["lstm"] and bool(reference["jit_compile"])
    kill = ["--kill-in-write", "22", "rename into place"]
    resumed, log = kill_and_resume(workdir, "lstm", "lstm_compiled", freq, kill, options=options)
    assert_identical(resumed, reference, "compiled LSTM killed mid-batch in a write")
    assert re.search(r"Loaded checkpoint \S+_20iters", log), log[-2000:]


def test_keras_callbacks_stop_and_decay_at_the_same_batch_after_a_sigkill(workdir):
    """EarlyStopping (patience 2, best weights restored) and ReduceLROnPlateau (patience 1)
    in a 5-epoch run that stops after epoch 3, killed in epoch 3 after the learning rate was
    halved once: the resumed run halves it again and stops at the same batch, with the same
    best weights, bit for bit."""
    data = workdir / "data_dense"
    keras_run = ("--keras-callbacks", "--epochs", "5", "--temp-freq", '{"batch": 3}')
    ref = workdir / "ref_keras.npz"
    proc = run_job(data, workdir / "ref_logs_keras", ref, *keras_run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference = load(ref)
    assert int(reference["fit_iters"]) == 36  # stopped after 3 of 5 epochs
    assert reference["EarlyStopping_stopped_epoch"] == 2
    assert reference["ReduceLROnPlateau_wait"] == 0  # reset by the second decay

    logs, out = workdir / "logs_keras", workdir / "keras.npz"
    proc = run_job(data, logs, out, *keras_run, "--kill-at-iter", "28")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    (logdir,) = list(logs.glob("M*__*"))
    proc = run_job(data, logs, out, *keras_run, "--loadpath", str(logdir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_identical(load(out), reference, "Keras callbacks, killed after iteration 28")


@pytest.mark.parametrize(
    "name, options, checkpoint_at",
    [
        ("mixed_float16", ("--precision", "mixed_float16"), 5),  # scale 2**17, initial 2**18
        ("mixed_bfloat16", ("--precision", "mixed_bfloat16"), 7),
        ("accumulate", ("--accumulate", "3"), 7),  # mid-cycle: 1 gradient of 3 accumulated
    ],
)
def test_mixed_precision_and_gradient_accumulation_resume_bit_exact(
    workdir, name, options, checkpoint_at
):
    """One epoch of the dense model, checkpointed after iteration ``checkpoint_at``, killed
    after the next one: mixed_float16 (a LossScaleOptimizer whose scale grows, overflows and
    shrinks, checkpointed when scale and step counter differ from a new optimizer's: both
    must be restored), mixed_bfloat16, and gradient_accumulation_steps=3 (the accumulators
    hold one gradient of three)."""
    data = workdir / "data_dense"
    run = ("--epochs", "1", "--temp-freq", f'{{"iter": {checkpoint_at}}}', *options)
    ref = workdir / f"ref_{name}.npz"
    proc = run_job(data, workdir / f"ref_logs_{name}", ref, *run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs, out = workdir / f"logs_{name}", workdir / f"{name}.npz"
    proc = run_job(data, logs, out, *run, "--kill-at-iter", str(checkpoint_at + 1))
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    (logdir,) = list(logs.glob("M*__*"))
    proc = run_job(data, logs, out, *run, "--loadpath", str(logdir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{checkpoint_at} batches fit" in proc.stderr
    assert_identical(load(out), load(ref), f"{name}, resumed from iteration {checkpoint_at}")


def test_sigkill_at_a_random_moment_during_checkpoint_writes(workdir, reference):
    """Killed from outside at a random time while a checkpoint is written every iteration:
    the newest intact checkpoint is found and the run still ends bit-identical."""
    seed = int(os.environ.get("DEEPTRAIN_TEST_SEED", time.time_ns() % 10_000))
    rng = random.Random(seed)

    def external_kill(data, logs, out):
        proc = jobs.start(JOB, data, logs, out, "--model", "dense", "--temp-freq", '{"iter": 1}')
        deadline = time.monotonic() + 300
        wanted = rng.randrange(3, ITERS["dense"] - 4)
        seen = set()
        while len(seen) < wanted and time.monotonic() < deadline and proc.poll() is None:
            for pointer in logs.glob("*/checkpoints/latest"):
                try:
                    seen.add(pointer.read_text())
                except OSError:
                    pass
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, f"job ended before the kill (seed {seed})"

    resumed, _ = kill_and_resume(
        workdir, "dense", "dense_external", '{"iter": 1}', external_kill=external_kill
    )
    assert_identical(resumed, reference("dense"), f"external kill, DEEPTRAIN_TEST_SEED={seed}")
