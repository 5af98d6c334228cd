"""Scaling: DeepTrain's loop against each engine's own loop, under the same distribution.

Run from the repository root (the torch and JAX rows use ``.venv-torch`` / ``.venv-jax``
beside ``.venv`` when they exist)::

    PYTHONPATH=src python benchmarks/scaling.py            # 1, 2, 4, 8 devices; ~10 min
    PYTHONPATH=src python benchmarks/scaling.py --quick    # 1 and 2 devices, fewer steps
    PYTHONPATH=src python benchmarks/scaling.py --backends jax --sizes 1 8

For every backend and size, one worker run (a real multi-process launch for torch) trains
an MLP (Dense 512-512-10, Adam, global batch 256 of 128 features) with both loops under
the *same* distribution, in alternating rounds (so slow drifts of this shared machine hit
both alike), after a warm-up epoch each:

* JAX: ``keras.distribution.DataParallel`` over N simulated CPU devices
  (``XLA_FLAGS=--xla_force_host_platform_device_count=N``); the engine's loop is Keras
  ``fit`` over the same arrays.
* TensorFlow: ``MirroredStrategy`` over N logical CPUs; the engine's loop is ``fit``.
* torch: N gloo processes; the engine's loop is a plain ``DistributedDataParallel`` loop
  (the same Keras model as a ``torch.nn.Module``, torch's Adam and loss). Keras has no
  torch distribution, so a third loop shows what Keras' own torch train step costs: Keras
  ``fit`` on each process's rows, gradients averaged as DeepTrain averages them.

``--torch-jit-compile`` adds torch rows with both Keras models compiled with
``jit_compile=True`` (Keras' train function through ``torch.compile``; the DDP loop stays
eager): Keras' eager torch train step is what the plain rows measure against plain torch.

DeepTrain's loop is a ``TrainGenerator`` over a DataGenerator of in-RAM files
(``superbatch_set_nums='all'``), validation and logs off. Each timed call trains as many
epochs as take ~0.5 s (one 16-step epoch on simulated devices is tens of ms, about the
machine's jitter), and a configuration gets 6 to 30 rounds, as many as ~60 s of timing
allows (``--rounds`` fixes it). Reported: median ms per step of each loop and the median of
the per-round ratios; goal: DeepTrain within 1.05x of the engine's loop at every size.

Bytes read per epoch: DeepTrain's default is one global schedule; every process reads every
file of the epoch and feeds its own rows (so the data position does not depend on the
number of processes). The table shows those bytes per process next to what reading only a
process's share of the files would cost (``1/N`` of them), the saving an I/O-bound job
would trade exact, process-count-independent resume for.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BATCH, FEATURES, UNITS, CLASSES, FILES = 256, 128, 512, 10, 16
CALL_S, BUDGET_S, MIN_ROUNDS, MAX_ROUNDS = 0.5, 60.0, 6, 30  # (see round_plan)


def python_for(backend: str) -> str:
    venv = REPO / (".venv" if backend == "tensorflow" else f".venv-{backend}")
    exe = venv / "bin" / "python"
    return str(exe) if exe.exists() else sys.executable


def make_data(root: Path) -> Path:
    sys.path.insert(0, str(REPO / "src"))
    import numpy as np

    from deeptrain.preprocessing import numpy_data_to_numpy_sets

    rng = np.random.default_rng(0)
    n = BATCH * FILES
    labels = rng.integers(0, CLASSES, n)
    x = rng.normal(size=(n, FEATURES)).astype("float32")
    y = np.eye(CLASSES, dtype="float32")[labels]
    numpy_data_to_numpy_sets(x, y, root / "train", batch_size=BATCH, shuffle=False, verbose=0)
    return root / "train"


# -- worker ------------------------------------------------------------------------------
def build(scope, jit_compile: bool = False):
    import keras

    keras.utils.set_random_seed(0)
    with scope():
        m = keras.Sequential(
            [
                keras.Input((FEATURES,)),
                keras.layers.Dense(UNITS, "relu"),
                keras.layers.Dense(UNITS, "relu"),
                keras.layers.Dense(CLASSES, "softmax"),
            ]
        )
        m.compile(
            keras.optimizers.Adam(1e-3),
            "categorical_crossentropy",
            jit_compile=True if jit_compile else "auto",  # (Keras' default: "auto")
        )
    return m


def worker(args: argparse.Namespace) -> None:
    os.environ["KERAS_BACKEND"] = args.backend
    if args.backend == "jax":
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.size}"
    import contextlib

    import numpy as np

    scope = contextlib.nullcontext
    if args.backend == "jax":
        import keras

        keras.distribution.set_distribution(keras.distribution.DataParallel())
    elif args.backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.size
        )
        scope = tf.distribute.MirroredStrategy(
            [d.name for d in tf.config.list_logical_devices("CPU")]
        ).scope
    else:
        import torch.distributed as dist

        dist.init_process_group("gloo")
    from deeptrain import DataGenerator, TrainGenerator

    data = Path(args.data)
    dg = DataGenerator(
        data,
        batch_size=BATCH,
        labels_path=data / "labels.h5",
        superbatch_set_nums="all",
        prefetch=0,
        seed=0,  # the same schedule on every process
    )
    vdg = DataGenerator(
        data, batch_size=BATCH, labels_path=data / "labels.h5", set_nums=[1], seed=0
    )
    jit = bool(args.jit_compile)
    tg = TrainGenerator(
        build(scope, jit),
        dg,
        vdg,
        epochs=1,
        iter_verbosity=0,
        val_freq=None,
        plot_history_freq=None,
        unique_checkpoint_freq=None,
        check_model_health=False,
    )
    x = np.concatenate([dg.superbatch[s] for s in dg.set_nums_original])
    y = np.concatenate([dg.all_labels[s] for s in dg.set_nums_original])
    engine = engine_loop(args.backend, build(scope), x, y)
    loops = {"deeptrain": None, "engine": engine}
    if args.backend == "torch":  # Keras' own loop on torch, for the gap of its train step
        loops["keras"] = keras_fit_loop(build(scope, jit), x, y)
    steps = len(dg)

    def deeptrain_epochs(n: int) -> None:
        tg.epochs += n
        tg.train()

    loops["deeptrain"] = deeptrain_epochs
    for fn in loops.values():
        fn(1)  # warm-up (compiles)
    epochs, rounds = round_plan(loops["deeptrain"], steps, args.rounds, len(loops))
    timings: dict[str, list[float]] = {name: [] for name in loops}
    for r in range(rounds):
        order = list(loops.items())
        for name, fn in order if r % 2 == 0 else order[::-1]:
            sync()
            t0 = time.perf_counter()
            fn(epochs)
            sync()
            timings[name].append((time.perf_counter() - t0) / (epochs * steps) * 1e3)
    rank = int(os.environ.get("RANK", 0))
    if rank == 0:
        print(
            "RESULT",
            json.dumps(
                {
                    "backend": args.backend,
                    "size": args.size,
                    "describe": tg.distribution.describe(),
                    "jit_compile": jit,
                    "rounds": rounds,
                    "epochs": epochs,
                    **timings,
                }
            ),
            flush=True,
        )


def round_plan(deeptrain, steps: int, rounds: int | None, loops: int) -> tuple[int, int]:
    """Epochs per timed call, and rounds: each call ~``CALL_S`` long (a 16-step epoch on
    simulated devices is tens of ms, where the machine's jitter is several percent), and
    unless ``--rounds`` is given, as many rounds as ~``BUDGET_S`` of timing allows, from
    ``MIN_ROUNDS`` to ``MAX_ROUNDS``: the paired ratio's median needs more of them when a
    call is short. One plan for every process (process 0's)."""
    t0 = time.perf_counter()
    deeptrain(1)
    epoch_s = time.perf_counter() - t0
    epochs = max(1, round(CALL_S / epoch_s))
    if rounds is None:
        rounds = int(BUDGET_S / (loops * epochs * epoch_s))
        rounds = min(MAX_ROUNDS, max(MIN_ROUNDS, rounds))
    plan = [epochs, rounds]
    if "torch.distributed" in sys.modules:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.broadcast_object_list(plan, src=0)
    return plan[0], plan[1]


def sync() -> None:
    if "torch.distributed" in sys.modules:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()


def engine_loop(backend: str, model, x, y):
    """One epoch of the engine's own loop over the same global batches."""
    if backend != "torch":
        return lambda n: model.fit(x, y, batch_size=BATCH, epochs=n, shuffle=False, verbose=0)
    import torch
    import torch.distributed as dist

    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    rank, world = dist.get_rank(), dist.get_world_size()
    share = BATCH // world
    xs = torch.as_tensor(x)
    ys = torch.as_tensor(y)

    def epochs(n: int) -> None:
        for _ in range(n):
            for start in range(0, len(x), BATCH):
                rows = slice(start + rank * share, start + (rank + 1) * share)
                probs = ddp(xs[rows], training=True)
                loss = -(ys[rows] * torch.log(probs.clamp(1e-7, 1 - 1e-7))).sum(-1).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()

    return epochs


def keras_fit_loop(model, x, y):
    """torch: Keras ``fit`` on this process's rows of each global batch, its gradients
    averaged across processes the way DeepTrain averages them (one flat ``all_reduce`` in
    the optimizer's ``apply``): the same train step as DeepTrain's, in Keras' own loop."""
    import numpy as np
    import torch.distributed as dist

    from deeptrain.distribute.torch import average_gradients

    rank, world = dist.get_rank(), dist.get_world_size()
    share = BATCH // world
    rows = np.concatenate(
        [np.arange(s + rank * share, s + (rank + 1) * share) for s in range(0, len(x), BATCH)]
    )
    if world > 1:
        model.optimizer.build(model.trainable_variables)
        average_gradients(model.optimizer, world)
    xs, ys = x[rows], y[rows]
    return lambda n: model.fit(xs, ys, batch_size=share, epochs=n, shuffle=False, verbose=0)


# -- driver ------------------------------------------------------------------------------
def run(backend: str, size: int, data: Path, rounds: int | None, jit: bool = False) -> dict | None:
    script = [
        python_for(backend),
        __file__,
        "--worker",
        "--backend",
        backend,
        "--size",
        str(size),
        "--data",
        str(data),
        *(["--rounds", str(rounds)] if rounds else []),
        *(["--jit-compile"] if jit else []),
    ]
    path = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path, TF_CPP_MIN_LOG_LEVEL="2")
    if backend == "torch":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        procs = [
            subprocess.Popen(
                script,
                env=dict(
                    env,
                    RANK=str(r),
                    WORLD_SIZE=str(size),
                    MASTER_ADDR="127.0.0.1",
                    MASTER_PORT=str(port),
                    # each process its share of the cores (torchrun sets 1 for several
                    # processes per node); unset, each takes every core: on 16 cores, 2
                    # processes stepped 80x slower than one (measured)
                    OMP_NUM_THREADS=os.environ.get(
                        "OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // size))
                    ),
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for r in range(size)
        ]
    else:
        procs = [
            subprocess.Popen(
                script, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        ]
    outputs = [p.communicate(timeout=3600)[0] for p in procs]
    for line in outputs[0].splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    print(f"{backend} x{size} failed:\n{outputs[0][-3000:]}", file=sys.stderr)
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", nargs="+", default=["jax", "tensorflow", "torch"])
    p.add_argument("--sizes", nargs="+", type=int, default=[1, 2, 4, 8])
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help=f"rounds per configuration (default: {MIN_ROUNDS}-{MAX_ROUNDS}, as many as "
        f"~{BUDGET_S:.0f} s of timing allows)",
    )
    p.add_argument("--quick", action="store_true", help="sizes 1 and 2, 3 rounds")
    p.add_argument(
        "--torch-jit-compile",
        action="store_true",
        help="torch rows also with compile(jit_compile=True): Keras' train function "
        "through torch.compile (the DDP loop stays eager)",
    )
    p.add_argument("--jit-compile", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--backend", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    if args.quick:
        args.sizes, args.rounds = [1, 2], 3
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp))
        file_bytes = sum(f.stat().st_size for f in data.glob("*.npy"))
        rows = []
        for backend in args.backends:
            jits = [False, True] if backend == "torch" and args.torch_jit_compile else [False]
            for jit in jits:
                for size in args.sizes:
                    result = run(backend, size, data, args.rounds, jit)
                    if result is not None:
                        rows.append(result)
    print(
        f"\nMLP {FEATURES}-{UNITS}-{UNITS}-{CLASSES}, Adam, global batch {BATCH}, "
        f"{FILES} steps per epoch; median ms/step over rounds (rounds x epochs per "
        "timed call in the devices column)\n"
    )
    print(
        "| backend | devices | distribution | engine ms | DeepTrain ms | ratio | goal "
        "<= 1.05 | Keras fit ms | DeepTrain / Keras fit | bytes read / process / epoch "
        "| 1/N of the files |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = paired(r["deeptrain"], r["engine"])
        keras_ms, keras_ratio = "(engine)", "(ratio)"
        if "keras" in r:
            keras_ms = f"{statistics.median(r['keras']):.2f}"
            keras_ratio = f"{paired(r['deeptrain'], r['keras']):.3f}"
        print(
            f"| {r['backend']}{', jit_compile' if r.get('jit_compile') else ''} | "
            f"{r['size']} ({r['rounds']}x{r['epochs']}) | {r['describe']} | "
            f"{statistics.median(r['engine']):.2f} | {statistics.median(r['deeptrain']):.2f} | "
            f"{ratio:.3f} | {'PASS' if ratio <= 1.05 else 'FAIL'} | {keras_ms} | "
            f"{keras_ratio} | {file_bytes / 2**20:.1f} MiB | "
            f"{file_bytes / r['size'] / 2**20:.1f} MiB |"
        )
    print(
        "\ntorch: the engine is a plain DDP loop (torch's Adam and loss); Keras fit runs "
        "Keras' own torch train step, its gradients averaged as DeepTrain averages them; "
        "'jit_compile': both Keras models compiled with jit_compile=True (torch.compile), "
        "the DDP loop eager."
    )


def paired(a: list[float], b: list[float]) -> float:
    """The median of the per-round ratios (rounds alternate their order)."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


if __name__ == "__main__":
    main()
