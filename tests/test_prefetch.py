"""Background prefetch: same batches as without, errors re-raised, threads stopped."""

from __future__ import annotations

import signal
import threading
import time

import numpy as np
import pytest

from datafactory import run_epoch, write_dataset
from deeptrain import DataGenerator
from deeptrain.data.prefetch import Prefetcher
from deeptrain.util.data_loaders import DataLoadError


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("deeptrain-prefetch")]


@pytest.mark.parametrize("batch_size", [2, 8, 16])
def test_prefetch_on_and_off_serve_identical_sequences(npy_dir, batch_size):
    def epochs(prefetch):
        dg = DataGenerator(
            npy_dir,
            batch_size=batch_size,
            labels_path=npy_dir / "labels.h5",
            shuffle=True,
            shuffle_group_samples=True,
            seed=11,
            prefetch=prefetch,
            prefetch_workers=2 if prefetch else 1,
        )
        return [run_epoch(dg) for _ in range(3)]

    assert epochs(0) == epochs(2) == epochs(5)


def test_loads_run_in_the_background_while_the_main_thread_works(tmp_path):
    """Overlap shown by events, not by timing: the next file is loaded by a prefetch
    thread before the main thread asks for it, and is not loaded again when it does."""
    write_dataset(tmp_path, n_files=4, labels=None)
    loads: list[tuple[str, str]] = []  # (set num, thread name)
    loaded = threading.Condition()

    def recording_loader(self, set_num):
        array = np.load(self._path(set_num))
        with loaded:
            loads.append((str(set_num), threading.current_thread().name))
            loaded.notify_all()
        return array

    dg = DataGenerator(tmp_path, batch_size=8, data_loader=recording_loader, prefetch=2)
    dg.get()
    with loaded:  # nothing asks for a second file: only a prefetch thread can load it
        assert loaded.wait_for(lambda: len(loads) >= 2, timeout=120)
    dg.update_state()
    dg.get()
    of_second = [thread for set_num, thread in loads if set_num == str(dg.set_num)]
    assert len(of_second) == 1, loads  # loaded once, ahead of time
    assert of_second[0].startswith("deeptrain-prefetch"), loads


def test_loader_error_is_raised_in_the_main_thread_naming_the_file(tmp_path):
    d = write_dataset(tmp_path, n_files=4, labels=None)
    dg = DataGenerator(d, batch_size=8, prefetch=3)  # files 1-3 may be read already
    (d / "batch__4.npy").write_bytes(b"corrupt")  # corrupted before it is scheduled
    for _ in range(3):
        dg.get()
        dg.update_state()
    with pytest.raises(DataLoadError, match="batch__4.npy"):
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


def test_failed_background_load_is_loaded_again_not_replayed():
    calls = []

    def load(key):
        calls.append((key, threading.current_thread() is threading.main_thread()))
        if key == "b" and len(calls) <= 3:  # fails in the background and at the first retry
            raise OSError(f"disk hiccup {len(calls)}")
        return key.upper()

    p = Prefetcher(load, depth=2, inline_below=0.0)
    p.schedule(["a", "b", "c"])
    assert p.get("a") == "A"
    with pytest.raises(OSError, match="hiccup 3") as err:  # the fresh load's error, alone
        p.get("b")
    assert err.value.__context__ is None
    assert calls[2:] == [("b", True)]  # the failed background load was loaded again, here
    assert p.get("b") == "B" and p.get("c") == "C"  # the next get() tries again
    p.close()


def test_background_failure_is_not_raised_once_the_load_succeeds():
    failing = {"b"}

    def load(key):
        if key in failing:
            raise OSError("gone")
        return key.upper()

    p = Prefetcher(load, depth=2, inline_below=0.0)
    p.schedule(["a", "b"])
    future = dict(p._pending)["b"]
    assert isinstance(future.exception(), OSError)  # waits: the background load failed
    failing.clear()  # the file is back
    assert p.get("a") == "A" and p.get("b") == "B"
    p.close()


def test_ctrl_c_while_waiting_keeps_the_load_in_line():
    calls = []
    started, release = threading.Event(), threading.Event()

    def blocking(key):
        calls.append(key)
        started.set()
        assert release.wait(120)  # held until the main thread was interrupted
        return key.upper()

    def interrupt():
        started.wait(120)
        time.sleep(0.1)  # the main thread is (most likely) waiting in get() by now
        # to the main thread: a signal sent to the process may be delivered to any thread
        # that does not block it (the kernel picks one), and then the main thread's wait
        # is not interrupted; it sees the KeyboardInterrupt only once "a" has loaded
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    p = Prefetcher(blocking, depth=2)
    p.schedule(["a", "b"])
    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        p.get("a")  # a real SIGINT arrives while the main thread waits ("a" cannot finish)
    release.set()
    assert p.get("a") == "A" and p.get("b") == "B"
    assert calls == ["a", "b"]  # nothing loaded twice, nothing skipped
    p.close()


# -- adaptive mode: inline loads for a caller with no work between batches -----------------
class FakeClock:
    """``clock`` for a Prefetcher: time moves only when the test says (or at random)."""

    def __init__(self, steps=None):
        self.now = 0.0
        self.steps = steps  # an iterator of increments, one per call; None = frozen

    def __call__(self) -> float:
        if self.steps is not None:
            self.now += next(self.steps)
        return self.now


def test_adaptive_switch_goes_inline_and_back_preserving_order():
    clock = FakeClock()
    calls, on_main = [], {}

    def load(key):
        calls.append(key)
        on_main[key] = threading.current_thread() is threading.main_thread()
        return key.upper()

    keys = [f"k{i}" for i in range(12)]
    # the caller's work before each get(): 0 = back at once (quick), 5 = a train step
    work = [0, 0, 0, 0, 0, 5, 0, 0, 0, 5, 5, 0]
    p = Prefetcher(load, depth=2, inline_below=1.0, clock=clock)
    p.schedule(keys)
    out, inline = [], []
    for i, key in enumerate(keys):
        clock.now += work[i]
        out.append(p.get(key))
        inline.append(p.inline)
        p.schedule(keys[i + 1 :])  # as DataGenerator does after serving each batch
        assert len(p._pending) <= p.depth
    p.close()
    assert out == [k.upper() for k in keys]
    assert calls == keys  # each key loaded once, in order, whatever the mode
    # inline after two quick returns in a row; back to background at the first slow one
    assert inline == [False, True, True, True, True, False, False, True, True, False, False, False]
    # loads submitted before the switch are still used (k1, k2, k7, k8); a key asked for
    # right after leaving inline mode was not submitted, so it loads inline (k5, k9)
    assert [k for k in keys if on_main[k]] == ["k3", "k4", "k5", "k9"]


def test_inline_below_zero_never_goes_inline():
    p = Prefetcher(str.upper, depth=2, inline_below=0.0, clock=FakeClock())
    keys = list("abcdef")
    p.schedule(keys)
    for i, key in enumerate(keys):
        assert p.get(key) == key.upper()
        p.schedule(keys[i + 1 :])
        assert not p.inline
    p.close()


def datagen_runs(npy_dir, batch_size, inline_below, clock, epochs=3):
    """Epochs of a DataGenerator whose Prefetcher uses ``inline_below`` and ``clock``, and
    the threads that did its loads."""
    threads = []

    def loader(self, set_num):
        threads.append(threading.current_thread().name)
        return np.load(self._path(set_num))

    dg = DataGenerator(
        npy_dir,
        batch_size=batch_size,
        labels_path=npy_dir / "labels.h5",
        data_loader=loader,
        shuffle=True,
        shuffle_group_samples=True,
        seed=3,
        prefetch=2 if clock else 0,
    )
    if clock:
        dg._prefetcher.inline_below, dg._prefetcher.clock = inline_below, clock
    runs = [run_epoch(dg) for _ in range(epochs)]
    dg.close()
    return runs, threads


@pytest.mark.parametrize("batch_size", [2, 8, 24])  # 4 batches per file, 1, 3 files per batch
def test_datagen_batches_identical_in_inline_background_and_switching_modes(npy_dir, batch_size):
    reference, _ = datagen_runs(npy_dir, batch_size, 0, None)
    always_inline, t_inline = datagen_runs(npy_dir, batch_size, float("inf"), FakeClock())
    never_inline, t_background = datagen_runs(npy_dir, batch_size, 0.0, FakeClock())
    rng = np.random.default_rng(0)  # the caller: quick or slow (0 or 1 s) in random runs
    steps = [float(i % 2) for i in range(200) for _ in range(rng.integers(1, 12))]
    switching, t_switching = datagen_runs(npy_dir, batch_size, 0.5, FakeClock(iter(steps)))
    assert always_inline == never_inline == switching == reference
    main = threading.main_thread().name
    # (the first load is the constructor's, which reads a file for its size)
    # inline: after the loads scheduled before the switch, every load is the caller's
    assert set(t_inline[-6:]) == {main} and main not in t_inline[1:3]  # npy_dir: 6 files
    # background: the caller loads only what was not scheduled: the 3rd file of each
    # 24-sample batch (beyond depth=2); 2 such batches per epoch, 3 epochs
    assert t_background[1:].count(main) == (2 * 3 if batch_size == 24 else 0)
    assert main in t_switching[1:] and any(t != main for t in t_switching)


def test_loader_error_in_inline_mode_names_the_file(tmp_path):
    d = write_dataset(tmp_path, n_files=6, labels=None)
    dg = DataGenerator(d, batch_size=8, prefetch=2)
    dg._prefetcher.inline_below, dg._prefetcher.clock = float("inf"), FakeClock()
    (d / "batch__5.npy").write_bytes(b"corrupt")
    for _ in range(4):
        dg.get()
        dg.update_state()
    assert dg._prefetcher.inline
    with pytest.raises(DataLoadError, match="batch__5.npy"):
        dg.get()
    dg.close()


def test_epoch_start_is_not_timed_as_the_callers_work(npy_dir):
    """A data-only loop stays inline across epochs, whatever happens between them; a
    training loop stays in the background, epoch starts included."""

    def run(step_s, between_epochs_s):
        threads, clock = [], FakeClock()

        def loader(self, set_num):
            threads.append(threading.current_thread().name)
            return np.load(self._path(set_num))

        dg = DataGenerator(npy_dir, batch_size=8, data_loader=loader, prefetch=2)
        dg._prefetcher.inline_below, dg._prefetcher.clock = 0.5, clock
        for _ in range(3):
            for _ in dg:
                clock.now += step_s  # the train step
            clock.now += between_epochs_s  # validation, other work
        dg.close()
        return threads[1:]  # after the constructor's own read

    main = threading.main_thread().name
    data_only = run(0.0, 10.0)
    assert set(data_only[-12:]) == {main}  # the last 2 epochs: all inline
    assert main not in run(1.0, 0.0)
