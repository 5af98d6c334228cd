"""Data pipeline benchmark: DeepTrain's DataGenerator against a plain loop and its peers.

Run from the repository root::

    PYTHONPATH=src python benchmarks/data_pipeline.py            # full run (~2.5 minutes)
    PYTHONPATH=src python benchmarks/data_pipeline.py --quick    # smoke run (~25 s)

Needs numpy, h5py, lz4 and deeptrain; torch, tensorflow and psutil are optional (rows
whose library is missing are left out). The script writes its own data (``--files`` files
of ``--rows x --cols`` float32, default 64 files of 128x1024 = 512 KiB, as ``.npy`` and as
lz4-frame ``.npy`` written by ``numpy_to_lz4f``, plus a labels ``.h5``) into a temporary
folder, or into ``--data-dir`` (kept and reused; ``benchmarks/_data`` is git-ignored).
The arrays are quantised random walks, which lz4 compresses to about a third, so
decompressing costs a few times what ``np.load`` does.

Machines are noisy: compare rows of one run with each other (the ratios), not figures
across runs. How to read the output, section by section:

1. **Throughput** (batches per second; higher is better). Every loader serves one file
   per batch as ``(x, y)``, labels preloaded, and nothing else happens per batch: this is
   the pipeline's own cost, the worst case for prefetching (there is no train step to
   overlap a load with; the Prefetcher sees the caller come back at once and loads inline,
   in the caller's thread: its adaptive mode, see ``deeptrain/data/prefetch.py``). Each row
   is built and run for one warm-up epoch (files
   page-cached, torch's persistent workers started); then the rows take turns, one epoch
   each, for ``--repeats`` rounds (the first row rotates every round), so machine noise
   hits all rows alike, and a row's figure is the median of its epochs.
   ``ms/batch`` is the inverse; ``vs loop ms`` is what the row adds per batch to the plain
   loop; ``vs peer`` is its speed over the fastest *goal peer* (``*``: torch DataLoader
   with 0 and 2 workers, tf.data numpy_function + prefetch) on the same files; ``vs loop``
   its speed over the plain ``np.load`` loop (for lz4, ``np.load`` + ``lz4.frame``
   decompress, the decoder the peers use too). Ratios above 1 are faster. ``IQR`` is the
   interquartile range of the row's epoch times over their median: large = noisy. Rows
   marked ``+`` are shown for information only (tf.data with a parallel map).
2. **Simulated training**: per batch a ``--load-ms`` load (a custom DataGenerator
   ``data_loader`` that sleeps, releasing the GIL as real IO does, then ``np.load``-s) and
   a ``--step-ms`` train step: ``time.sleep`` and, in full runs, a GIL-releasing numpy
   matmul calibrated to the same time (one BLAS thread unless OPENBLAS_NUM_THREADS says
   otherwise: a 2-thread BLAS on a busy 2-core machine stalls and times erratically).
   ``ideal`` is ``max(load, step) x batches``, load timed alone, step the mean of the
   epoch's own steps (``step ms``); ``ratio`` is the epoch's time over its ideal (median
   over epochs). Without prefetch expect ``(load + step) / max(load, step)``.
3. **Superbatch peak memory**: in a fresh subprocess, the RSS after the imports is the
   baseline; the peak (VmHWM) is reset, a DataGenerator with ``superbatch_set_nums='all'``
   is built and iterated for one epoch, and ``(peak - baseline) / dataset bytes`` is
   reported (1.0 = one copy of the data). ``fixed`` is the same peak for a DataGenerator
   over one file without superbatch (HDF5 and first-use imports, ~3 MiB whatever the data
   size), so small ``--files`` inflate the first ratio; the last ratio subtracts it.
4. **Goals**: each goal, the measured value, PASS/FAIL. The throughput goal judges the
   default configuration (prefetch=2, workers=1) against the fastest goal peer.
5. **Profile** (``--profile``, or automatically in a full run whose throughput goal
   fails): each DataGenerator configuration's time per batch split into the main thread
   waiting in ``Prefetcher.get``, scheduling, and the rest, with the time of one load,
   the share of loads run inline (in the main thread: the adaptive mode), thread wake-ups
   (voluntary context switches) and page faults per batch; then a
   cProfile of the main thread with prefetch on.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# One BLAS thread for the simulated matmul step (set before numpy loads its BLAS): a
# 2-thread BLAS on a busy 2-core machine stalls on its barrier and times 2-20x slower.
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import h5py  # noqa: E402
import lz4.frame  # noqa: E402
import numpy as np  # noqa: E402

try:  # run from the repo root without installing: PYTHONPATH=src
    import deeptrain  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from deeptrain import DataGenerator
from deeptrain.preprocessing import numpy_to_lz4f

DTYPE = np.float32
DEFAULT_DG = "DataGenerator prefetch=2 workers=1"  # the defaults; the row the goal judges


# -- data -------------------------------------------------------------------------------
@dataclass
class Dataset:
    root: Path
    n_files: int
    rows: int
    cols: int
    npy_dir: Path = field(init=False)
    lz4_dir: Path = field(init=False)
    labels_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.npy_dir = self.root / "npy"
        self.lz4_dir = self.root / "lz4"
        self.labels_path = self.root / "labels.h5"

    @property
    def batch_shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)

    @property
    def data_bytes(self) -> int:
        return self.n_files * self.rows * self.cols * np.dtype(DTYPE).itemsize

    @property
    def labels_bytes(self) -> int:
        return self.n_files * self.rows * np.dtype(np.int64).itemsize

    def paths(self, fmt: str) -> list[str]:
        folder = self.npy_dir if fmt == "npy" else self.lz4_dir
        return [str(folder / f"batch{i}.npy") for i in range(self.n_files)]

    def labels(self) -> list[np.ndarray]:
        with h5py.File(self.labels_path, "r") as f:
            return [f[str(i)][()] for i in range(self.n_files)]

    def compressed_bytes(self) -> int:
        return sum(os.path.getsize(p) for p in self.paths("lz4"))


def make_data(root: Path, n_files: int, rows: int, cols: int, seed: int = 0) -> Dataset:
    """Write the files (reused when ``root`` already holds data of the same sizes).

    The arrays are random walks quantised to 0.25, so lz4 compresses them to about a third
    and decompression is real work (a few times the cost of ``np.load``)."""
    ds = Dataset(root, n_files, rows, cols)
    stamp = root / "sizes.json"
    sizes = {"n_files": n_files, "rows": rows, "cols": cols, "seed": seed}
    if stamp.exists() and json.loads(stamp.read_text()) == sizes:
        return ds
    for folder in (ds.npy_dir, ds.lz4_dir):  # only what this script wrote, never root itself
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    with h5py.File(ds.labels_path, "w") as labels:
        for i in range(n_files):
            walk = np.cumsum(rng.standard_normal((rows, cols)), axis=1)
            data = (np.round(walk * 4) / 4).astype(DTYPE)
            np.save(ds.npy_dir / f"batch{i}.npy", data)
            numpy_to_lz4f(data, ds.lz4_dir / f"batch{i}.npy", overwrite=True)
            labels[str(i)] = rng.integers(0, 2, rows, dtype=np.int64)
    stamp.write_text(json.dumps(sizes))
    return ds


def read_all(ds: Dataset) -> None:
    """Read every file once, so that all rows start from the page cache."""
    for fmt in ("npy", "lz4"):
        for p in ds.paths(fmt):
            Path(p).read_bytes()


# -- the loaders compared ---------------------------------------------------------------
def load_npy(path: str) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def load_lz4(path: str, shape: tuple[int, ...]) -> np.ndarray:
    """np.load + lz4 decompress into a writable buffer (the peers' and plain loop's decoder)."""
    raw = lz4.frame.decompress(np.load(path, allow_pickle=False), return_bytearray=True)
    return np.frombuffer(raw, dtype=DTYPE).reshape(shape)


def loader_for(ds: Dataset, fmt: str) -> Callable[[str], np.ndarray]:
    return load_npy if fmt == "npy" else functools.partial(load_lz4, shape=ds.batch_shape)


@dataclass
class Case:
    """One row of the throughput table: ``epoch()`` serves one epoch, returns its batches."""

    name: str
    fmt: str
    group: str  # 'loop' | 'deeptrain' | 'peer' (a goal peer) | 'extra'
    epoch: Callable[[], int]
    close: Callable[[], None] = lambda: None
    times: list[float] = field(default_factory=list)
    batches: int = 0

    @property
    def bps(self) -> float:
        return self.batches / statistics.median(self.times)


def make_loop(ds: Dataset, fmt: str) -> Case:
    paths, labels, load = ds.paths(fmt), ds.labels(), loader_for(ds, fmt)

    def epoch() -> int:
        n = 0
        for i, p in enumerate(paths):
            _ = load(p), labels[i]  # read, as a training loop would
            n += 1
        return n

    return Case("np.load loop" + (" + lz4 decompress" if fmt == "lz4" else ""), fmt, "loop", epoch)


def datagen_kwargs(ds: Dataset, fmt: str) -> dict[str, Any]:
    kw: dict[str, Any] = dict(labels_path=ds.labels_path, shuffle=False, seed=0)
    if fmt == "lz4":
        kw.update(data_loader="numpy-lz4f", data_dtype="float32", data_batch_shape=ds.batch_shape)
    return kw


def make_datagen(
    ds: Dataset, fmt: str, prefetch: int = 2, workers: int = 1, superbatch: bool = False
) -> Case:
    folder = ds.npy_dir if fmt == "npy" else ds.lz4_dir
    dg = DataGenerator(
        folder,
        ds.rows,
        prefetch=prefetch,
        prefetch_workers=workers,
        superbatch_set_nums="all" if superbatch else None,
        **datagen_kwargs(ds, fmt),
    )

    def epoch() -> int:
        n = 0
        for _x, _y in dg:
            n += 1
        return n

    if superbatch:
        name = "DataGenerator superbatch (in RAM)"
    elif prefetch:
        name = f"DataGenerator prefetch={prefetch} workers={workers}"
    else:
        name = "DataGenerator prefetch off"
    return Case(name, fmt, "deeptrain", epoch, dg.close)


def make_torch(ds: Dataset, fmt: str, workers: int) -> Case | None:
    try:
        import torch  # noqa: F401
        from torch.utils.data import DataLoader as TorchLoader
    except ImportError:
        return None
    dataset = FileDataset(ds.paths(fmt), ds.labels(), loader_for(ds, fmt))
    loader = TorchLoader(
        dataset, batch_size=None, shuffle=False, num_workers=workers, persistent_workers=workers > 0
    )

    def epoch() -> int:
        n = 0
        for _x, _y in loader:
            n += 1
        return n

    def close() -> None:
        it = getattr(loader, "_iterator", None)
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()

    return Case(f"torch DataLoader {workers} workers", fmt, "peer", epoch, close)


class FileDataset:
    """Map-style torch Dataset: item ``i`` is ``(load(paths[i]), labels[i])``."""

    def __init__(self, paths: list[str], labels: list[np.ndarray], load: Callable) -> None:
        self.paths, self.labels, self.load = paths, labels, load

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.load(self.paths[i]), self.labels[i]


def make_tf(ds: Dataset, fmt: str, parallel: bool) -> Case | None:
    try:
        tf = import_quietly("tensorflow")
    except ImportError:
        return None
    load = loader_for(ds, fmt)

    def read(path: bytes) -> np.ndarray:
        return load(path.decode())

    files = tf.data.Dataset.from_tensor_slices((ds.paths(fmt), np.stack(ds.labels())))
    data = files.map(
        lambda p, y: (tf.numpy_function(read, [p], tf.float32), y),
        num_parallel_calls=tf.data.AUTOTUNE if parallel else None,
    )
    data = data.prefetch(tf.data.AUTOTUNE)

    def epoch() -> int:
        n = 0
        for _x, _y in data:
            n += 1
        return n

    if parallel:
        return Case("tf.data parallel map (AUTOTUNE)", fmt, "extra", epoch)
    return Case("tf.data numpy_function + prefetch", fmt, "peer", epoch)


def import_quietly(name: str) -> Any:
    """Import a module with file descriptor 2 sent to /dev/null (TensorFlow's C++ banners)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            return __import__(name)
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def build_cases(ds: Dataset, with_tf: bool, with_torch: bool) -> list[Case]:
    """torch's worker processes are forked before TensorFlow is imported (forking a
    process that runs TF's thread pools is asking for trouble)."""
    cases: list[Case | None] = []
    for fmt in ("npy", "lz4"):
        cases += [
            make_loop(ds, fmt),
            make_datagen(ds, fmt, prefetch=0),
            make_datagen(ds, fmt, prefetch=2, workers=1),
            make_datagen(ds, fmt, prefetch=2, workers=2),
            make_datagen(ds, fmt, superbatch=True),
        ]
        if with_torch:
            cases += [make_torch(ds, fmt, 0), make_torch(ds, fmt, 2)]
    built = [c for c in cases if c is not None]
    for c in built:  # warm-up epoch (forks torch's persistent workers)
        c.batches = c.epoch()
    if with_tf:
        for fmt in ("npy", "lz4"):
            for parallel in (False, True):
                c = make_tf(ds, fmt, parallel)
                if c is not None:
                    c.batches = c.epoch()
                    built.append(c)
    order = {"npy": 0, "lz4": 1}
    return sorted(built, key=lambda c: order[c.fmt])  # stable: keeps the order within a format


def run_rounds(cases: list[Case], repeats: int) -> None:
    """One epoch per case per round; the starting case rotates each round."""
    for r in range(repeats):
        k = r % len(cases)
        for c in cases[k:] + cases[:k]:
            gc.collect()
            t0 = time.perf_counter()
            n = c.epoch()
            c.times.append(time.perf_counter() - t0)
            assert n == c.batches, (c.name, n, c.batches)


# -- tables -----------------------------------------------------------------------------
def table(headers: list[str], rows: list[list[str]], title: str) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "-" * len(line(headers))
    return "\n".join([title, rule, line(headers), rule, *(line(r) for r in rows), rule])


def best_peer(cases: list[Case], fmt: str) -> Case | None:
    peers = [c for c in cases if c.fmt == fmt and c.group == "peer"]
    return max(peers, key=lambda c: c.bps) if peers else None


def throughput_table(cases: list[Case], repeats: int) -> str:
    rows = []
    for fmt in ("npy", "lz4"):
        peer = best_peer(cases, fmt)
        loop = next(c for c in cases if c.fmt == fmt and c.group == "loop")
        for c in (c for c in cases if c.fmt == fmt):
            q1, _, q3 = statistics.quantiles(c.times, n=4) if len(c.times) > 1 else (0, 0, 0)
            spread = (q3 - q1) / statistics.median(c.times)
            tag = {"peer": " *", "extra": " +"}.get(c.group, "")
            rows.append(
                [
                    c.name + tag,
                    fmt,
                    f"{c.bps:,.0f}",
                    f"{1e3 / c.bps:.3f}",
                    f"{(1e3 / c.bps - 1e3 / loop.bps):+.3f}",
                    f"{c.bps / peer.bps:.2f}x" if peer else "-",
                    f"{c.bps / loop.bps:.2f}x",
                    f"{100 * spread:.0f}%",
                ]
            )
    return table(
        ["loader", "format", "batches/s", "ms/batch", "vs loop ms", "vs peer", "vs loop", "IQR"],
        rows,
        f"Throughput: median of {repeats} interleaved epochs after a warm-up "
        f"(* = goal peer, + = extra, not a goal peer)",
    )


# -- simulated training ---------------------------------------------------------------------
def slow_npy(load_s: float, loader: Any, set_num: str) -> np.ndarray:
    """A DataGenerator ``data_loader`` function: IO latency (GIL released), then np.load."""
    time.sleep(load_s)
    return np.load(loader._path(set_num), allow_pickle=False)


def make_step(kind: str, step_s: float, ds: Dataset) -> tuple[Callable[[np.ndarray], Any], str]:
    if kind == "sleep":
        return (lambda x: time.sleep(step_s)), f"time.sleep({step_s:g})"
    # a matmul x @ W, W (cols, k): its time is linear in k, so scale k until it takes step_s
    x = np.ones(ds.batch_shape, DTYPE)
    k = 256
    for _ in range(8):
        w = np.ones((ds.cols, k), DTYPE)
        t = median_time(lambda w=w: x @ w, 7)
        if abs(t / step_s - 1) < 0.05:
            break
        k = max(1, min(1 << 18, round(k * min(8.0, step_s / t))))
    w = np.ones((ds.cols, k), DTYPE)
    return (lambda x: x @ w), (
        f"numpy matmul ({ds.rows}x{ds.cols}) @ ({ds.cols}x{k}), "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}"
    )


def median_time(fn: Callable[[], Any], n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def simulated_training(
    ds: Dataset, n_batches: int, load_ms: float, step_ms: float, step_kind: str, repeats: int
) -> tuple[str, dict[str, float]]:
    """Epochs of ``for x, y in dg: step(x)`` with prefetch off and on, taking turns.

    Each epoch's ideal is ``max(load, step) x batches``, with ``load`` the slow loader timed
    alone and ``step`` the mean of that epoch's own steps (timed in the loop, so that a
    busy machine slowing the step down does not count against the pipeline)."""
    load_s, step_s = load_ms / 1e3, step_ms / 1e3
    step, step_desc = make_step(step_kind, step_s, ds)
    set_nums = list(range(n_batches))
    gens = {
        name: DataGenerator(
            ds.npy_dir,
            ds.rows,
            set_nums=set_nums,
            prefetch=prefetch,
            data_loader=functools.partial(slow_npy, load_s),
            **datagen_kwargs(ds, "npy"),
        )
        for name, prefetch in (("prefetch off", 0), ("prefetch=2 workers=1", 2))
    }
    first = next(iter(gens.values()))
    t_load = median_time(lambda: first.data_loader.load("0"), 7)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in gens}  # (epoch, step)
    for r in range(repeats):
        names = list(gens)[r % 2 :] + list(gens)[: r % 2]
        for name in names:
            dg = gens[name]
            gc.collect()
            n, t_steps = 0, 0.0
            t0 = time.perf_counter()
            for x, _y in dg:
                t1 = time.perf_counter()
                step(x)
                t_steps += time.perf_counter() - t1
                n += 1
            runs[name].append((time.perf_counter() - t0, t_steps / n))
            assert n == n_batches
    rows, ratios = [], {}
    for name, epochs in runs.items():
        ratio = statistics.median(t / (max(t_load, st) * n_batches) for t, st in epochs)
        med = statistics.median(t for t, _ in epochs)
        t_step = statistics.median(st for _, st in epochs)
        ideal = max(t_load, t_step) * n_batches
        ratios[name] = ratio
        rows.append(
            [
                f"DataGenerator {name}",
                f"{med:.3f}",
                f"{1e3 * t_step:.2f}",
                f"{ideal:.3f}",
                f"{ratio:.3f}",
                f"{1e3 * (med - ideal) / n_batches:+.2f}",
            ]
        )
    for dg in gens.values():
        dg.close()
    title = (
        f"Simulated training, step = {step_desc}: {n_batches} batches, load "
        f"{t_load * 1e3:.2f} ms (sleep {load_ms:g} ms + np.load), median of {repeats}"
    )
    return table(
        ["loop", "epoch s", "step ms", "ideal s", "ratio", "ms/batch over ideal"], rows, title
    ), ratios


# -- superbatch memory ------------------------------------------------------------------
def rss_kib(field_name: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field_name} in /proc/self/status")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so that import-time peaks don't count."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_child(args_json: str) -> None:
    """In a fresh process: baseline RSS after the imports, reset the peak, then either a
    full-superbatch epoch (``mode='superbatch'``) or, for the fixed cost of any
    DataGenerator, one over a single file without superbatch (``mode='fixed'``)."""
    a = json.loads(args_json)
    ds = Dataset(Path(a["root"]), a["n_files"], a["rows"], a["cols"])
    gc.collect()
    baseline = rss_kib("VmRSS")
    reset = reset_peak_rss()
    folder = ds.npy_dir if a["fmt"] == "npy" else ds.lz4_dir
    if a["mode"] == "superbatch":
        dg = DataGenerator(
            folder, ds.rows, superbatch_set_nums="all", **datagen_kwargs(ds, a["fmt"])
        )
    else:
        dg = DataGenerator(
            folder, ds.rows, set_nums=[0], prefetch=0, **datagen_kwargs(ds, a["fmt"])
        )
    built = rss_kib("VmRSS")
    n = sum(1 for _ in dg)
    peak = rss_kib("VmHWM")
    try:
        import psutil

        end_rss = psutil.Process().memory_info().rss // 1024
    except ImportError:
        end_rss = rss_kib("VmRSS")
    print(
        json.dumps(
            {
                "baseline_kib": baseline,
                "reset": reset,
                "built_kib": built,
                "peak_kib": peak,
                "end_kib": end_rss,
                "batches": n,
            }
        )
    )


def run_memory_child(ds: Dataset, fmt: str, mode: str) -> dict[str, Any]:
    args = json.dumps(
        {
            "root": str(ds.root),
            "n_files": ds.n_files,
            "rows": ds.rows,
            "cols": ds.cols,
            "fmt": fmt,
            "mode": mode,
        }
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    )
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def superbatch_memory(ds: Dataset) -> tuple[str, dict[str, float]]:
    rows, ratios = [], {}
    data = ds.data_bytes + ds.labels_bytes
    mib = lambda kib: f"{kib / 1024:.1f}"  # noqa: E731
    for fmt in ("npy", "lz4"):
        m = run_memory_child(ds, fmt, "superbatch")
        fixed = run_memory_child(ds, fmt, "fixed")
        extra = m["peak_kib"] - m["baseline_kib"]
        fixed_extra = fixed["peak_kib"] - fixed["baseline_kib"]
        ratios[fmt] = extra * 1024 / data
        rows.append(
            [
                fmt,
                f"{data / 2**20:.1f}",
                mib(m["baseline_kib"]),
                mib(m["built_kib"] - m["baseline_kib"]),
                mib(extra),
                f"{extra * 1024 / data:.3f}",
                mib(fixed_extra),
                f"{(extra - fixed_extra) * 1024 / data:.3f}",
                "yes" if m["reset"] else "no",
            ]
        )
    return table(
        [
            "format",
            "data MiB",
            "baseline MiB",
            "built +MiB",
            "peak-base MiB",
            "(peak-base)/data",
            "fixed MiB",
            "(peak-base-fixed)/data",
            "peak reset",
        ],
        rows,
        "Superbatch peak RSS (fresh subprocess, superbatch_set_nums='all', one epoch); "
        "'fixed' = peak of a\nDataGenerator over 1 file without superbatch (HDF5, "
        "imports done on first use): a cost independent of the data size",
    ), ratios


# -- profile ----------------------------------------------------------------------------------
def profile_datagen(ds: Dataset, repeats: int) -> str:
    """Where a DataGenerator batch's time goes, by wrapping its Prefetcher's methods.

    ``main: get`` is the main thread inside ``Prefetcher.get`` (waiting for a prefetched
    load, or loading inline when prefetch is off); ``main: schedule`` queueing loads;
    ``main: rest`` everything else the main thread does per batch (``get()``,
    ``advance_batch``, ``_serve``, ``update_state``, the loop). ``load`` is one load's time
    in whichever thread ran it; ``inline`` the share of loads run by the main thread
    (prefetch off, or the Prefetcher's adaptive inline mode). ``ctx sw`` are voluntary
    context switches (thread
    wake-ups) and ``faults`` minor page faults, per batch. Then a cProfile of the main
    thread with prefetch on (npy), top functions by own time."""
    import resource

    try:
        import psutil

        proc = psutil.Process()
        ctx = lambda: proc.num_ctx_switches().voluntary  # noqa: E731
    except ImportError:
        ctx = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw  # noqa: E731
    faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt  # noqa: E731
    rows = []
    for fmt in ("npy", "lz4"):
        for prefetch, workers in ((0, 1), (2, 1), (2, 2)):
            case = make_datagen(ds, fmt, prefetch=prefetch, workers=workers)
            pre = case.close.__self__._prefetcher
            acc = {"get": 0.0, "schedule": 0.0, "load": 0.0, "loads": 0, "inline": 0}

            def timed(fn: Callable, key: str, acc: dict = acc) -> Callable:
                def wrapper(*args: Any, **kwargs: Any) -> Any:
                    t0 = time.perf_counter()
                    try:
                        return fn(*args, **kwargs)
                    finally:
                        acc[key] += time.perf_counter() - t0
                        if key == "load":
                            acc["loads"] += 1
                            acc["inline"] += threading.current_thread() is threading.main_thread()

                return wrapper

            pre.get, pre.schedule = timed(pre.get, "get"), timed(pre.schedule, "schedule")
            pre._load = timed(pre._load, "load")
            case.epoch()
            acc.update(get=0.0, schedule=0.0, load=0.0, loads=0, inline=0)
            c0, f0, t0, n = ctx(), faults(), time.perf_counter(), 0
            for _ in range(repeats):
                n += case.epoch()
            total = time.perf_counter() - t0
            c1, f1 = ctx(), faults()
            case.close()
            ms = lambda x, n=n: f"{1e3 * x / n:.3f}"  # noqa: E731
            rows.append(
                [
                    case.name,
                    fmt,
                    ms(total),
                    ms(acc["get"]),
                    ms(acc["schedule"]),
                    ms(total - acc["get"] - acc["schedule"]),
                    f"{1e3 * acc['load'] / max(1, acc['loads']):.3f}",
                    f"{100 * acc['inline'] / max(1, acc['loads']):.0f}%",
                    f"{(c1 - c0) / n:.1f}",
                    f"{(f1 - f0) / n:.0f}",
                ]
            )
    out = [
        table(
            [
                "DataGenerator",
                "format",
                "ms/batch",
                "main: get",
                "main: schedule",
                "main: rest",
                "load ms",
                "inline",
                "ctx sw",
                "faults",
            ],
            rows,
            f"Per-batch breakdown, {repeats} epochs back to back (ms per batch)",
        )
    ]
    case = make_datagen(ds, "npy", prefetch=2, workers=1)
    case.epoch()
    prof = cProfile.Profile()
    prof.enable()
    n = sum(case.epoch() for _ in range(repeats))
    prof.disable()
    case.close()
    st = pstats.Stats(prof)
    rows = []
    for (file, line, func), (_, nc, tt, ct, _) in sorted(
        st.stats.items(), key=lambda kv: -kv[1][2]
    )[:12]:
        where = f"{Path(file).name}:{line}" if line else file
        rows.append(
            [f"{func} ({where})", f"{nc / n:.1f}", f"{1e3 * tt / n:.4f}", f"{1e3 * ct / n:.4f}"]
        )
    out.append("")
    out.append(
        table(
            ["function (main thread)", "calls/batch", "own ms/batch", "cum ms/batch"],
            rows,
            f"cProfile, DataGenerator prefetch=2 workers=1 [npy], {n} batches "
            f"(profiler overhead inflates the small functions)",
        )
    )
    return "\n".join(out)


# -- main -------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes for a smoke run (~25 s): 16 files, 3 repeats",
    )
    p.add_argument("--files", type=int, help="files (= batches per epoch); default 64")
    p.add_argument("--rows", type=int, default=128, help="samples per file (= batch size)")
    p.add_argument("--cols", type=int, default=1024, help="float32 values per sample")
    p.add_argument("--repeats", type=int, help="timed epochs per row; default 31 (quick: 3)")
    p.add_argument("--sim-batches", type=int, help="batches of the simulated epoch; default 64")
    p.add_argument("--sim-repeats", type=int, help="simulated epochs per loop; default 3")
    p.add_argument("--load-ms", type=float, default=15.0, help="simulated load time per batch")
    p.add_argument("--step-ms", type=float, default=20.0, help="simulated train step per batch")
    p.add_argument(
        "--step",
        choices=["sleep", "matmul", "both"],
        help="simulated step: time.sleep, a numpy matmul, or both (default: both; "
        "quick: sleep); the Goals table judges each one run",
    )
    p.add_argument("--no-tf", action="store_true", help="skip the tf.data rows")
    p.add_argument("--no-torch", action="store_true", help="skip the torch rows")
    p.add_argument(
        "--profile",
        action="store_true",
        help="print the per-batch breakdown and cProfile of DataGenerator (also "
        "printed, unless --quick, when a throughput goal fails)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        help="where to write the data (kept, reused); default: a temp folder",
    )
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    q = a.quick
    a.files = a.files or (16 if q else 64)
    a.repeats = a.repeats or (3 if q else 31)
    a.sim_batches = min(a.sim_batches or (12 if q else 64), a.files)
    a.sim_repeats = a.sim_repeats or (1 if q else 3)
    a.step = a.step or ("sleep" if q else "both")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.memory_child:
        memory_child(a.memory_child)
        return 0
    t_start = time.perf_counter()
    tmp = None
    root = a.data_dir
    if root is None:
        tmp = tempfile.mkdtemp(prefix="deeptrain-bench-")
        root = Path(tmp)
    try:
        ds = make_data(Path(root), a.files, a.rows, a.cols)
        read_all(ds)
        mib = ds.data_bytes / 2**20
        print(
            f"Data: {ds.n_files} files of {ds.rows}x{ds.cols} float32 "
            f"({ds.data_bytes / ds.n_files / 1024:.0f} KiB each, {mib:.1f} MiB), lz4 "
            f"{ds.compressed_bytes() / ds.data_bytes:.2f} of that; {os.cpu_count()} CPUs; "
            f"python {sys.version.split()[0]}, numpy {np.__version__}, "
            f"sys.getswitchinterval()={sys.getswitchinterval() * 1e3:g} ms"
        )
        print()

        cases = build_cases(ds, with_tf=not a.no_tf, with_torch=not a.no_torch)
        run_rounds(cases, a.repeats)
        for c in cases:
            c.close()
        print(throughput_table(cases, a.repeats))
        print()

        sim_ratios: dict[str, dict[str, float]] = {}
        for kind in ["sleep", "matmul"] if a.step == "both" else [a.step]:
            text, sim_ratios[kind] = simulated_training(
                ds, a.sim_batches, a.load_ms, a.step_ms, kind, a.sim_repeats
            )
            print(text)
            print()

        mem_text, mem = superbatch_memory(ds)
        print(mem_text)
        print()

        goals, throughput_ok = goals_table(cases, sim_ratios, mem)
        print(goals)
        if a.profile or (not throughput_ok and not a.quick):
            print()
            print(profile_datagen(ds, repeats=max(5, a.repeats // 2)))
        print(f"\n(total {time.perf_counter() - t_start:.0f} s)")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def goals_table(
    cases: list[Case], sim: dict[str, dict[str, float]], mem: dict[str, float]
) -> tuple[str, bool]:
    """The goals table, and whether the throughput goals passed."""
    rows, throughput_ok = [], True
    for fmt in ("npy", "lz4"):
        peer = best_peer(cases, fmt)
        if peer is None:
            continue
        c = next(c for c in cases if c.fmt == fmt and c.name == DEFAULT_DG)
        ratio = c.bps / peer.bps
        throughput_ok &= ratio >= 1.0
        rows.append(
            [
                f"{c.name} [{fmt}] vs fastest peer ({peer.name})",
                f"{ratio:.2f}x",
                ">= 1.00x",
                "PASS" if ratio >= 1.0 else "FAIL",
            ]
        )
    for kind, ratios in sim.items():
        r = ratios["prefetch=2 workers=1"]
        rows.append(
            [
                f"simulated epoch with prefetch, step={kind} / max(load, step) x batches",
                f"{r:.3f}",
                "<= 1.10",
                "PASS" if r <= 1.1 else "FAIL",
            ]
        )
    for fmt, r in mem.items():
        rows.append(
            [
                f"superbatch (peak RSS - baseline) / dataset bytes [{fmt}]",
                f"{r:.3f}",
                "<= 1.20",
                "PASS" if r <= 1.2 else "FAIL",
            ]
        )
    return table(["goal", "measured", "target", "result"], rows, "Goals"), throughput_ok


if __name__ == "__main__":
    sys.exit(main())
