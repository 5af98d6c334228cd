"""Background prefetch: same batches as without, errors re-raised, threads stopped."""
from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from deeptrain import DataGenerator
from deeptrain.data.prefetch import Prefetcher
from deeptrain.util.data_loaders import DataLoadError
from datafactory import run_epoch, write_dataset


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("deeptrain-prefetch")]


@pytest.mark.parametrize("batch_size", [2, 8, 16])
def test_prefetch_on_and_off_serve_identical_sequences(npy_dir, batch_size):
    def epochs(prefetch):
        dg = DataGenerator(npy_dir, batch_size=batch_size, labels_path=npy_dir / "labels.h5",
                           shuffle=True, shuffle_group_samples=True, seed=11, prefetch=prefetch,
                           prefetch_workers=2 if prefetch else 1)
        return [run_epoch(dg) for _ in range(3)]
    assert epochs(0) == epochs(2) == epochs(5)


def test_loads_run_in_the_background_while_the_main_thread_works(tmp_path):
    write_dataset(tmp_path, n_files=4, labels=None)
    loaded_by = []

    def slow_loader(self, set_num):
        loaded_by.append(threading.current_thread().name)
        time.sleep(0.05)
        return np.load(self._path(set_num))

    dg = DataGenerator(tmp_path, batch_size=8, data_loader=slow_loader, prefetch=2)
    dg.get()
    time.sleep(0.15)  # "training": the next files load meanwhile
    t0 = time.perf_counter()
    dg.update_state()
    dg.get()
    waited = time.perf_counter() - t0
    assert any(name.startswith("deeptrain-prefetch") for name in loaded_by)
    assert waited < 0.04, "the second batch should already be loaded"


def test_loader_error_is_raised_in_the_main_thread_naming_the_file(tmp_path):
    d = write_dataset(tmp_path, n_files=4, labels=None)
    dg = DataGenerator(d, batch_size=8, prefetch=3)
    (d / "batch__3.npy").write_bytes(b"corrupt")  # corrupted after construction
    dg.get()
    dg.update_state()
    dg.get()
    dg.update_state()
    with pytest.raises(DataLoadError, match="batch__3.npy"):
        dg.get()
    assert threading.current_thread() is threading.main_thread()


def wait_until_gone(threads, timeout=5.0) -> bool:
    deadline = time.time() + timeout
    while any(t.is_alive() for t in threads) and time.time() < deadline:
        time.sleep(0.01)
    return not any(t.is_alive() for t in threads)


def test_close_and_garbage_collection_stop_the_threads(npy_dir):
    before = set(prefetch_threads())
    dg = DataGenerator(npy_dir, batch_size=8, prefetch=2)
    dg.get()
    ours = set(prefetch_threads()) - before
    assert ours
    dg.close()
    assert wait_until_gone(ours)

    dg = DataGenerator(npy_dir, batch_size=8, prefetch=2)
    dg.get()
    ours = set(prefetch_threads()) - before
    del dg  # no close(): dropping the last reference is enough
    assert wait_until_gone(ours)


def test_failed_load_is_retried_on_the_next_get():
    calls = []

    def load(key):
        calls.append(key)
        if key == "b" and calls.count("b") == 1:
            raise OSError("disk hiccup")
        return key.upper()

    p = Prefetcher(load, depth=2)
    p.schedule(["a", "b", "c"])
    assert p.get("a") == "A"
    with pytest.raises(OSError, match="hiccup"):
        p.get("b")
    p.schedule(["b", "c"])
    assert p.get("b") == "B" and p.get("c") == "C"
    p.close()


def test_ctrl_c_while_waiting_keeps_the_load_in_line():
    calls = []

    def slow(key):
        calls.append(key)
        time.sleep(0.4)
        return key.upper()

    p = Prefetcher(slow, depth=2)
    p.schedule(["a", "b"])
    threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        p.get("a")  # a real SIGINT arrives while the main thread waits
    assert p.get("a") == "A" and p.get("b") == "B"
    assert calls == ["a", "b"]  # nothing loaded twice, nothing skipped
    p.close()
