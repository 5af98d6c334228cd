"""Stateful LSTMs fed windows: per-iteration time on TensorFlow, torch and JAX, side by side.

Run from the repository root::

    PYTHONPATH=src python benchmarks/stateful_rnn.py                  # every backend found
    PYTHONPATH=src python benchmarks/stateful_rnn.py --python torch=.venv-torch/bin/python \\
        --python jax=.venv-jax/bin/python --threads 1                 # one env per backend

The job is the timeseries example's (``examples/utils.py``: two stateful LSTMs of 24 units ->
Dense(1), batch 64), fed windows of 8 of 24 timesteps by a ``TimeseriesPreprocessor``
(3 window iterations per batch, states reset after each batch), in a real TrainGenerator on
in-memory arrays (1024 samples: 48 window iterations per epoch). Each backend runs in its
own process (``KERAS_BACKEND``); the backends take turns, ``--rounds`` times, and each
process trains one epoch first (compiling), then times ``--epochs`` more.

Printed: ms per window iteration (median of the rounds, and each round's) and the ratio to
TensorFlow's: the median of the per-round ratios (paired: a slow spell of this shared
machine hits both backends of a round alike).
Goal (issue #15.5): torch within 1.5x of TensorFlow on CPU, on its fused LSTM path (the
workaround copies the state before the fused step instead of falling back to Keras'
per-step loop, and runs that step on torch's own LSTM kernel on CPU as well, where Keras
would loop over timesteps in Python: ``deeptrain.backend.stateful``).
``--torch-jit-compile`` adds torch with ``compile(jit_compile=True)`` (Keras' train function
through ``torch.compile``, Keras' own fused step inside it; its compilation falls in the
untimed first epoch).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BACKENDS = ("tensorflow", "torch", "jax")
GOAL_TORCH_VS_TF = 1.5
TORCH_JIT = "torch, jit_compile"  # compile(jit_compile=True): Keras' step through torch.compile


def child(epochs: int, jit_compile: bool = False) -> dict[str, float]:
    """Train the job in this process; returns ms per window iteration."""
    import keras
    import numpy as np

    from deeptrain import DataGenerator, TrainGenerator

    batch, timesteps, window, units = 64, 24, 8, 24
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1024, timesteps, 1)).astype("float32")
    y = (x.mean(axis=(1, 2)) > 0).astype("float32")[:, None]

    def datagen() -> DataGenerator:
        return DataGenerator(
            x, labels_path=y, batch_size=batch, preprocessor="timeseries",
            preprocessor_configs={"window_size": window},
        )  # fmt: skip

    keras.utils.set_random_seed(0)
    ipt = keras.Input(batch_shape=(batch, window, 1))
    h = keras.layers.LSTM(units, return_sequences=True, stateful=True)(ipt)
    h = keras.layers.LSTM(units, stateful=True)(h)
    model = keras.Model(ipt, keras.layers.Dense(1, activation="sigmoid")(h))
    model.compile("adam", "binary_crossentropy", jit_compile=True if jit_compile else "auto")
    tg = TrainGenerator(
        model, datagen(), datagen(), epochs=1, val_freq=None, reset_statefuls=True,
        iter_verbosity=0, plot_history_freq=None, unique_checkpoint_freq=None,
    )  # fmt: skip
    tg.train()  # compiles
    iters_before = tg.state.fit_iters
    tg.epochs += epochs
    start = time.perf_counter()
    tg.train()
    elapsed = time.perf_counter() - start
    iters = tg.state.fit_iters - iters_before
    return {"ms_per_iter": 1000 * elapsed / iters, "iters": iters}


def run_backend(
    backend: str, python: str, epochs: int, threads: int | None, jit_compile: bool = False
) -> dict:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
            env[name] = str(threads)
        env["TF_NUM_INTEROP_THREADS"] = "1"
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    cmd = [python, __file__, "--child", "--epochs", str(epochs)]
    cmd += ["--jit-compile"] if jit_compile else []
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--epochs", type=int, default=3, help="epochs timed per process")
    p.add_argument("--rounds", type=int, default=3, help="turns each backend takes")
    p.add_argument("--threads", type=int, default=None, help="compute threads per process")
    p.add_argument(
        "--python", action="append", default=[], metavar="BACKEND=PATH",
        help="the interpreter for a backend (default: this one)",
    )  # fmt: skip
    p.add_argument(
        "--torch-jit-compile", action="store_true",
        help=f"also torch with compile(jit_compile=True) (row '{TORCH_JIT}')",
    )  # fmt: skip
    p.add_argument("--jit-compile", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.epochs, args.jit_compile)))
        return
    pythons = dict.fromkeys(BACKENDS, sys.executable)
    pythons.update(dict(item.split("=", 1) for item in args.python))
    contenders = [*BACKENDS, *([TORCH_JIT] if args.torch_jit_compile else [])]
    times: dict[str, list[float]] = {c: [] for c in contenders}
    errors: dict[str, str] = {}
    for _ in range(args.rounds):
        for name in contenders:
            if name in errors:
                continue
            backend, jit = ("torch", True) if name == TORCH_JIT else (name, False)
            result = run_backend(backend, pythons[backend], args.epochs, args.threads, jit)
            if "error" in result:
                errors[name] = result["error"]
            else:
                times[name].append(result["ms_per_iter"])
    medians = {b: statistics.median(t) for b, t in times.items() if t}
    tf_times = times["tensorflow"]
    print("| backend | ms / window iteration | each round | vs TensorFlow (paired) |")
    print("|---|---|---|---|")
    for backend in contenders:
        if backend in medians:
            rounds = " ".join(f"{t:.2f}" for t in times[backend])
            paired = _paired(times[backend], tf_times)
            ratio = f"{paired:.2f}x" if paired else "-"
            print(f"| {backend} | {medians[backend]:.2f} | {rounds} | {ratio} |")
        else:
            print(f"| {backend} | not run: {errors.get(backend, 'no result')} | - | - |")
    ratio = _paired(times["torch"], tf_times)
    if ratio:
        verdict = "PASS" if ratio <= GOAL_TORCH_VS_TF else "FAIL"
        print(f"\ngoal torch/TF <= {GOAL_TORCH_VS_TF}: {ratio:.2f} {verdict}")
    jit_ratio = _paired(times.get(TORCH_JIT, []), tf_times)
    if jit_ratio:
        print(f"torch with jit_compile=True / TF: {jit_ratio:.2f}")


def _paired(times: list[float], reference: list[float]) -> float | None:
    """The median of the per-round ratios (None without both backends' rounds)."""
    if not times or len(times) != len(reference):
        return None
    return statistics.median(t / r for t, r in zip(times, reference, strict=True))


if __name__ == "__main__":
    main()
