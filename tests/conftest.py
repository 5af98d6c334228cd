"""Test session setup and shared fixtures (small real datasets in pytest's tmp_path)."""

from __future__ import annotations

import os
import signal
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from datafactory import write_dataset  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def ctrl_c_as_in_a_terminal() -> None:
    """Python's own Ctrl-C handler, as a run started from a terminal has, also where the
    suite was started with SIGINT ignored (``cmd &`` in a non-interactive shell): the tests
    send real SIGINTs, and DeepTrain leaves an ignored SIGINT ignored. The jobs the tests
    start inherit it (an exec resets a handled signal to its default)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True, scope="session")
def full_float32_on_gpus() -> None:
    """GPUs run float32 matmuls, convolutions and cuDNN RNNs in TF32 by default (a 10-bit
    mantissa): tests that compare two computations of the same math to float32 rounding
    (windows vs the whole sequence, the fused RNN step vs Keras' per-step loop) ask for
    full float32, as the engines' own test suites do. Nothing changes on a CPU. (In the
    test process: jobs in other processes compare with themselves, at any precision.)"""
    backend = os.environ["KERAS_BACKEND"]
    if backend == "jax" and "jax" in sys.modules:
        import jax

        if jax.default_backend() == "gpu":
            jax.config.update("jax_default_matmul_precision", "highest")
    elif backend == "torch" and "torch" in sys.modules:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    elif backend == "tensorflow" and "tensorflow" in sys.modules:
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            tf.config.experimental.enable_tensor_float_32_execution(False)


@pytest.fixture
def npy_dir(tmp_path: Path) -> Path:
    """6 files ``batch__1..6.npy`` of 8 samples + ``labels.h5`` (see ``datafactory``)."""
    return write_dataset(tmp_path / "data", n_files=6, file_size=8)
