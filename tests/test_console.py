"""What a plain script shows: DeepTrain's messages reach the console when the user set up no
logging (``iter_verbosity >= 1``), a user's logging configuration wins, ``iter_verbosity=0``
is quiet; the progress bar's epoch and ``metrics.jsonl``'s agree. Real subprocesses: logging
is process-wide, and pytest configures it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from deeptrain import TrainGenerator
from test_train_generator import classification_data, classifier, generators

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

SRC = str(Path(__file__).resolve().parents[1] / "src")

SCRIPT = textwrap.dedent(
    """
    import logging, sys
    from pathlib import Path
    {setup}
    import keras, numpy as np
    from deeptrain import DataGenerator, TrainGenerator
    from deeptrain.preprocessing import numpy_data_to_numpy_sets

    root = Path(sys.argv[1])
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 128)
    x, y = rng.normal(size=(128, 4)) + labels[:, None], np.eye(2)[labels]
    for name, part in (("train", slice(0, 96)), ("val", slice(96, 128))):
        numpy_data_to_numpy_sets(x[part], y[part], root / name, batch_size=32, overwrite=True)

    def run(epochs, **kw):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, "softmax")])
        model.compile("adam", "categorical_crossentropy")
        dg = DataGenerator(root / "train", batch_size=32, labels_path=root / "train/labels.h5")
        vdg = DataGenerator(root / "val", batch_size=32, labels_path=root / "val/labels.h5")
        tg = TrainGenerator(model, dg, vdg, epochs=epochs, logs_dir=root / "logs",
                            iter_verbosity={verbosity}, plot_history_freq=None, **kw)
        tg.train()
        return tg

    first = run(1)
    run(2, loadpath=first.logdir)  # resumes: "Loaded checkpoint", "Continuing run"
    """
)


def run_script(tmp_path: Path, setup: str = "", verbosity: int = 1) -> str:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(setup=setup, verbosity=verbosity))
    env = dict(os.environ, PYTHONPATH=SRC, TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def lines(output: str) -> list[str]:
    """Output lines, with the progress bars' carriage-return redraws split apart."""
    return [part.strip() for part in re.split(r"[\r\n]", output) if part.strip()]


DEEPTRAIN_INFO = (
    r"^Logging to .*M0__model",
    r"^Validation 1: Loss=",
    r"^New best loss: ",
    r"^EPOCH 1 -- COMPLETE$",
    r"^Loaded checkpoint .* \(epoch 1, 3 batches fit, 1 validations\)$",
    r"^Continuing run .*M0__model",
    r"^Validation 2: Loss=",
    r"^Training has concluded\.$",
)


def test_a_plain_script_shows_deeptrains_messages_on_their_own_lines(tmp_path):
    out = lines(run_script(tmp_path))
    for pattern in DEEPTRAIN_INFO:
        assert any(re.search(pattern, line) for line in out), (pattern, out)
    # the bar numbers epochs as metrics.jsonl does
    assert any(line.startswith("Epoch 2/2") for line in out), out
    rows = [
        json.loads(r)
        for r in (tmp_path / "logs").glob("M0__*/metrics.jsonl").__next__().read_text().splitlines()
    ]
    assert [(r["event"], r["epoch"]) for r in rows] == [
        ("train_batch", 1), ("train_batch", 1), ("train_batch", 1), ("validation", 1),
        ("train_batch", 2), ("train_batch", 2), ("train_batch", 2), ("validation", 2),
    ]  # fmt: skip


def test_a_users_logging_configuration_wins(tmp_path):
    setup = "logging.basicConfig(level=logging.WARNING, format='USER %(message)s')"
    out = lines(run_script(tmp_path, setup=setup))
    for pattern in DEEPTRAIN_INFO:
        assert not any(re.search(pattern.lstrip("^"), line) for line in out), (pattern, out)
    assert any(line.startswith("Epoch 2/2") for line in out)  # the bar is not logging

    setup = "logging.basicConfig(level=logging.INFO, format='USER %(message)s')"
    out = lines(run_script(tmp_path, setup=setup))
    validations = [line for line in out if "Validation 1: Loss=" in line]
    assert len(validations) == 1 and validations[0].startswith("USER "), out  # once, theirs


def test_iter_verbosity_0_is_quiet(tmp_path):
    out = lines(run_script(tmp_path, verbosity=0))
    for pattern in (*DEEPTRAIN_INFO, r"^Epoch \d"):
        assert not any(re.search(pattern.lstrip("^"), line) for line in out), (pattern, out)


def test_a_validation_is_numbered_by_the_epoch_it_follows_or_is_in(tmp_path):
    data = classification_data(tmp_path / "data")  # 6 batches per epoch
    dg, vdg = generators(data)
    tg = TrainGenerator(
        classifier(),
        dg,
        vdg,
        epochs=2,
        val_freq={"batch": 4},
        logs_dir=tmp_path / "logs",
        iter_verbosity=0,
        plot_history_freq=None,
    )
    tg.train()
    rows = [json.loads(r) for r in (tg.logdir / "metrics.jsonl").read_text().splitlines()]
    validations = [(r["batches_fit"], r["epoch"]) for r in rows if r["event"] == "validation"]
    assert validations == [(4, 1), (8, 2), (12, 2)]  # batch 12 ends epoch 2
    assert {r["epoch"] for r in rows if r["event"] == "train_batch" and r["batches_fit"] <= 6} == {
        1
    }
