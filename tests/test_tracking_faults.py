"""TensorBoard event files under faults, for real: writes that fail part-way (the file size
limit, ``RLIMIT_FSIZE``, in a real child process: ``EFBIG``, as a full disk's ``ENOSPC``)
leave the file readable by TensorBoard's own reader and later writes continue it; settings
TensorBoard cannot take as numbers are recorded as text; an event file that fails while
opening is closed.

Run as a script, this module is the child process: ``python test_tracking_faults.py
<job> <args>``."""

from __future__ import annotations

import errno
import json
import logging
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

BATCH, N_TRAIN, N_VAL = 8, 40, 2
EPOCHS = 20  # of the training job, 800 batches: the event file may grow by SLACK bytes
LIMIT_AT, RESTORE_AT = 300, 520  # from batch LIMIT_AT (after a flush) to RESTORE_AT
SLACK = 500
HANDOVER_EVERY = 256  # rows, ~13 KB: more than the write buffer (as the real 1024, ~50 KB)


# -- helpers -------------------------------------------------------------------------------
def make_data(root: Path) -> Path:
    from test_tracking import make_data as tracking_data

    return tracking_data(root, n_train=N_TRAIN, n_val=N_VAL)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp("tracking_faults_data"))


def make_traingen(data: Path, callbacks: list, **kw: Any) -> Any:
    import keras

    from deeptrain import DataGenerator, TrainGenerator

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.Adam(0.01), "categorical_crossentropy")
    dgs = [
        DataGenerator(data / n, batch_size=BATCH, labels_path=data / n / "labels.h5", seed=0)
        for n in ("train", "val")
    ]
    return TrainGenerator(model, *dgs, callbacks=callbacks, iter_verbosity=0, **kw)


def read_file(path: Path) -> list:
    """Every event of one event file, with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return list(EventFileLoader(str(path)).Load())


def steps_of(events: list, tag: str) -> list[int]:
    return [e.step for e in events for v in e.summary.value if v.tag == tag]


def limit_file_size(size: int | None) -> None:
    """Files this process writes may grow to ``size`` bytes (None: the hard limit); past
    it, a write fails with EFBIG (SIGXFSZ, which would kill the process, is ignored)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard if size is None else size, hard))


# -- jobs (in the child process) -----------------------------------------------------------
def handover(first: int) -> bytes:
    """A hand-over of train scalars as the logger makes them: 1024 steps (~50 KB)."""
    from deeptrain.tracking.records import scalar_records

    return scalar_records(
        ("train/loss",), [(s, 1.7e9 + s, s / 7) for s in range(first, first + 1024)]
    )


def write_past_the_limit(directory: str) -> None:
    """Every kind of write, failing part-way under the size limit, then again without it."""
    from deeptrain.tracking.events import EventFile

    arrays = {f"weights/w{i}": np.arange(100.0) * i for i in range(200)}  # ~100 KB of events
    png = b"\x89PNG\r\n\x1a\n" + b"\0\0\0\rIHDR" + b"\0\0\0\x10" * 2 + b"\0" * 100_000
    events = EventFile(directory)
    events.write_records(handover(1))
    size = events.path.stat().st_size
    limit_file_size(size + 10_000)
    failed = []
    for write in (
        lambda: events.write_records(handover(1025)),
        lambda: events.histograms(arrays, 1024, 1.7e9),
        lambda: events.image("figures/big", png, 1024, 1.7e9),
    ):
        try:
            write()
        except OSError as e:
            failed.append(errno.errorcode[e.errno or 0])
        failed.append(events.path.stat().st_size - size)  # (0: as it was)
    limit_file_size(None)
    events.write_records(handover(2049))
    events.histograms(arrays, 3072, 1.7e9)
    events.image("figures/big", png, 3072, 1.7e9)
    events.close()
    print(json.dumps({"path": str(events.path), "failed": failed}))


def train_past_the_limit(data: str, logdir: str) -> None:
    """A training job whose event file may not grow (bar a little) from batch LIMIT_AT to
    RESTORE_AT: the hand-over there (steps 257-512) fails part-way, and the run goes on."""
    from deeptrain.tracking import TensorBoardLogger, tensorboard_logger

    tensorboard_logger.HANDOVER_EVERY = HANDOVER_EVERY  # and by count only (not by time)
    tensorboard_logger.HANDOVER_S = float("inf")
    warnings: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            warnings.append(record.getMessage())

    logging.getLogger("deeptrain").addHandler(Collect(logging.WARNING))
    logger = TensorBoardLogger(logdir=logdir, lr_freq=None, images_freq=None)

    def limit(tg: Any) -> None:
        if tg.state.batches_fit in (LIMIT_AT, RESTORE_AT):
            logger._worker.flush()  # (what was handed over is written)
            size = next(Path(logdir).glob("events.*")).stat().st_size
            limit_file_size(size + SLACK if tg.state.batches_fit == LIMIT_AT else None)

    tg = make_traingen(Path(data), [logger, {"train:batch": limit}], epochs=EPOCHS, val_freq=None)
    tg.train()
    logger.close()
    failures = logger._worker.failures
    print(json.dumps({"batches": tg.state.batches_fit, "failures": failures, "warnings": warnings}))


def run_child(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


# -- tests ---------------------------------------------------------------------------------
@pytest.mark.subprocess
def test_a_write_failing_part_way_leaves_the_event_file_as_it_was(tmp_path):
    """A hand-over of scalars, histograms and an image, each larger than the size limit
    lets the file grow: each raises EFBIG and leaves the file as it was; once the limit is
    lifted, writes continue a file TensorBoard reads to its end, every record whole."""
    result = run_child("write_past_the_limit", str(tmp_path))
    assert result["failed"] == ["EFBIG", 0] * 3
    events = read_file(Path(result["path"]))
    assert steps_of(events, "train/loss") == [*range(1, 1025), *range(2049, 3073)]
    assert steps_of(events, "weights/w1") == steps_of(events, "weights/w199") == [3072]
    assert steps_of(events, "figures/big") == [3072]
    assert events[0].file_version == "brain.Event:2"
    assert len(events) == 1 + 2048 + 200 + 1


@pytest.mark.subprocess
def test_training_goes_on_past_failed_writes_and_the_event_file_stays_whole(data, tmp_path):
    """TensorBoardLogger in a real training job whose event file hits the size limit for a
    while: the hand-over that fails is logged as a warning, training goes on, and every
    step of the ones before and after it is in the file, read to its end."""
    result = run_child("train_past_the_limit", str(data), str(tmp_path / "tb"))
    n = result["batches"]
    assert n == EPOCHS * N_TRAIN
    assert result["failures"] == 1
    assert any("_write_scalars failed" in w and "File too large" in w for w in result["warnings"])
    (path,) = (tmp_path / "tb").glob("events.*")
    steps = steps_of(read_file(path), "train/loss")
    assert steps == [*range(1, 257), *range(513, n + 1)]


def test_settings_tensorboard_cannot_take_as_numbers_are_text(data, tmp_path):
    """Integers past what TensorBoard's hyperparameters take (int64 and uint64) are
    recorded as text; the ones it takes, as numbers."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    from deeptrain.tracking import TensorBoardLogger

    configs = {"seed": 2**64, "low": -(2**63) - 1, "top": 2**64 - 1, "bottom": -(2**63)}
    logger = TensorBoardLogger(logdir=tmp_path / "tb", images_freq=None)
    tg = make_traingen(data, [logger], epochs=1, model_configs=configs)
    tg.train()
    (path,) = (tmp_path / "tb").glob("events.*")
    (event,) = [e for e in read_file(path) for v in e.summary.value if "session_start" in v.tag]
    content = event.summary.value[0].metadata.plugin_data.content
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["model.seed"].string_value == str(2**64)
    assert hparams["model.low"].string_value == str(-(2**63) - 1)
    assert hparams["model.top"].number_value == float(2**64 - 1)
    assert hparams["model.bottom"].number_value == float(-(2**63))
    assert steps_of(read_file(path), "train/loss") == list(range(1, N_TRAIN + 1))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_an_event_file_failing_while_opening_is_closed(tmp_path):
    """Hyperparameters tensorboardX refuses (a raw integer past uint64): opening raises,
    and the event file it began is closed, not left open."""
    from deeptrain.tracking import TensorBoardLogger

    logger = TensorBoardLogger(logdir=tmp_path)
    with pytest.raises(TypeError):
        logger._open_file(tmp_path, None, {"seed": 2**64}, [])
    assert logger._file is None
    fds = Path("/proc/self/fd")
    opened = []
    for fd in fds.iterdir():
        try:
            opened.append(os.readlink(fd))
        except OSError:  # (the directory's own, closed by now)
            pass
    assert not [p for p in opened if p.startswith(str(tmp_path))]


JOBS = {"write_past_the_limit": write_past_the_limit, "train_past_the_limit": train_past_the_limit}

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    JOBS[sys.argv[1]](*sys.argv[2:])
