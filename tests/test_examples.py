"""The examples: every script runs as its own process (fast mode; forked from an interpreter
that imported Keras, ``tests/jobs.py``; the README's quickstart as a fresh ``python``
command, as written), the seed document's code
is in examples/misc/preprocessor.py unchanged, and the example datasets are built once, as
documented, even when several processes ask at the same time."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import threading
import time
from pathlib import Path

import h5py
import lz4.frame
import numpy as np
import pytest
from matplotlib.image import imread

import jobs
from deeptrain import DataGenerator
from deeptrain.callbacks import read_log
from deeptrain.util import example_data

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


# -- running examples ---------------------------------------------------------------------

# test -> the example it runs. The selected examples run in this order, at most
# os.cpu_count() at a time (a test waits for its own; the next ones start as others end),
# each writing to its own output directory, sharing one data directory (so their first use
# of the data races, as it may for users)
EXAMPLE_TESTS = {
    "test_basic": "basic.py",
    "test_preprocessor_seed_example": "misc/preprocessor.py",
    "test_flexible_batch_size": "misc/flexible_batch_size.py",
    "test_timeseries": "misc/timeseries.py",
    "test_reproducibility": "misc/reproducibility.py",
    "test_callbacks_basic": "callbacks/basic.py",
    "test_advanced": "advanced.py",
    "test_model_auto_naming": "misc/model_auto_naming.py",
    "test_model_health": "misc/model_health.py",
    "test_callbacks_advanced": "callbacks/advanced.py",
    "test_introspection_gradients": "introspection/gradients.py",
    "test_introspection_internals": "introspection/internals.py",
    "test_distributed": "distributed.py",
    "test_tracking": "tracking.py",
}


# A hang guard only: with at most one example per core, none comes near it under load.
EXAMPLE_TIMEOUT_S = 1800


class ExampleRun:
    """An example script running as its own process (forked warm: ``tests/jobs.py``),
    output to a file."""

    def __init__(self, relpath: str, root: Path, pool: ExamplePool):
        self.relpath = relpath
        self.pool = pool
        self.out = root / "out" / relpath.replace("/", "_").removesuffix(".py")
        self.out.mkdir(parents=True)
        env = dict(os.environ)
        env.update(
            DEEPTRAIN_EXAMPLES_FAST="1",
            DEEPTRAIN_EXAMPLES_DATA=str(root / "data"),
            DEEPTRAIN_EXAMPLES_OUT=str(self.out),
            KERAS_BACKEND="tensorflow",
            TF_CPP_MIN_LOG_LEVEL="2",
            MPLBACKEND="Agg",
            PYTHONUNBUFFERED="1",
        )
        env.pop("DEEPTRAIN_EXAMPLES_MNIST", None)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO / "src"), env.get("PYTHONPATH")])
        )
        self.started = time.monotonic()
        self.job = jobs.start(
            EXAMPLES / relpath, env=env, cwd=self.out, output=self.out / "output.txt"
        )

    def result(self) -> tuple[str, list[Path]]:
        """Wait for the script (starting queued ones as slots free up); return its output
        and the log directories it created."""
        while self.job.poll() is None:
            self.pool.fill()
            if time.monotonic() - self.started > EXAMPLE_TIMEOUT_S:
                self.job.kill()
                raise TimeoutError(f"{self.relpath}: still running after {EXAMPLE_TIMEOUT_S} s")
            time.sleep(0.5)
        self.pool.fill()
        code, output = self.job.returncode, self.job.stdout
        assert code == 0, f"{self.relpath} failed ({code}):\n{output[-5000:]}"
        assert "Traceback" not in output, output[-5000:]
        runs = [p for p in (self.out / "logs").iterdir() if not p.name.startswith(".")]
        return output, sorted(runs, key=lambda p: p.name)

    def close(self) -> None:
        if self.job.poll() is None:
            self.job.kill()


class ExamplePool:
    """The selected examples, started in order, at most ``slots`` running at a time."""

    def __init__(self, scripts: list[str], root: Path, slots: int):
        self.queue, self.root, self.slots = list(scripts), root, slots
        self.runs: dict[str, ExampleRun] = {}

    def fill(self) -> None:
        running = sum(run.job.poll() is None for run in self.runs.values())
        while self.queue and running < self.slots:
            script = self.queue.pop(0)
            self.runs[script] = ExampleRun(script, self.root, self)
            running += 1

    def __getitem__(self, script: str) -> ExampleRun:
        if script in self.queue:  # needed now: next in line
            self.queue.remove(script)
            self.queue.insert(0, script)
        while script not in self.runs:
            self.fill()
            if script not in self.runs:
                time.sleep(0.5)
        return self.runs[script]

    def close(self) -> None:
        self.queue.clear()
        for run in self.runs.values():
            run.close()


@pytest.fixture(scope="module")
def examples(request, tmp_path_factory):
    """``{script: ExampleRun}`` for the selected example tests, run as an
    :class:`ExamplePool` of one slot per core."""
    selected = [  # in the order the tests run
        item.originalname for item in request.session.items if item.module is request.module
    ]
    scripts = [EXAMPLE_TESTS[test] for test in dict.fromkeys(selected) if test in EXAMPLE_TESTS]
    pool = ExamplePool(scripts, tmp_path_factory.mktemp("examples"), os.cpu_count() or 1)
    pool.fill()
    yield pool
    pool.close()


def metrics_events(logdir: Path) -> list[str]:
    return [
        json.loads(line)["event"] for line in (logdir / "metrics.jsonl").read_text().splitlines()
    ]


@pytest.mark.slow
@pytest.mark.subprocess
def test_basic(examples):
    output, (logdir,) = examples["basic.py"].result()
    assert "trained 1 epoch(s), 4 batches; val accuracy" in output
    assert metrics_events(logdir) == ["train_batch"] * 4 + ["validation"]
    assert (logdir / "history.png").stat().st_size > 5_000


@pytest.mark.slow
@pytest.mark.subprocess
def test_preprocessor_seed_example(examples):
    output, (logdir,) = examples["misc/preprocessor.py"].result()
    assert metrics_events(logdir) == ["train_batch"] * 4 + ["validation"]
    for method in ("process(self, batch", "_next_window(self, batch", "update_state(self)"):
        assert f"def {method}" in output  # the printed sources of TimeseriesPreprocessor
    assert "Training has concluded." in output


def _printed_sets(output: str, batch_size: int, kind: str) -> list[list[str]]:
    """Set names the example printed per train epoch (kind 'epoch') or per validation."""
    label = r"epoch \d+ train" if kind == "epoch" else r"validation \d+"
    pattern = rf"^batch_size={batch_size} {label} sets: (.*)$"
    return [line.split() for line in re.findall(pattern, output, flags=re.M)]


@pytest.mark.slow
@pytest.mark.subprocess
def test_flexible_batch_size(examples):
    output, logdirs = examples["misc/flexible_batch_size.py"].result()
    assert len(logdirs) == 2
    halves = sorted(f"{n}-{c}" for n in "1234" for c in "ab")
    train64 = _printed_sets(output, 64, "epoch")
    assert len(train64) == 2 and all(sorted(names) == halves for names in train64)
    for names in train64:  # a split file's halves are served back to back
        assert all(a[:-1] == b[:-1] for a, b in zip(names[::2], names[1::2], strict=True))
    assert _printed_sets(output, 64, "validation") == [["1-a", "1-b", "2-a", "2-b"]] * 2

    train256 = _printed_sets(output, 256, "epoch")
    assert len(train256) == 2
    for names in train256:
        assert len(names) == 2 and all(re.fullmatch(r"\d\+\d", n) for n in names)
        assert sorted(n for name in names for n in name.split("+")) == list("1234")
    assert _printed_sets(output, 256, "validation") == [["1+2"]] * 2
    assert "Every sample was served exactly once" in output


@pytest.mark.slow
@pytest.mark.subprocess
def test_timeseries(examples):
    output, (logdir,) = examples["misc/timeseries.py"].result()
    assert "windows per batch: 3; iterations: 12 over 4 batches" in output
    assert re.search(r"class_weights=\{0: [\d.]+, 1: [\d.]+\}", output)
    for name in ("loss", "tnr", "tpr", "f1_score"):
        assert re.search(rf"^val {name}: \d\.\d{{3}}$", output, flags=re.M), name
    assert (logdir / "samples.png").is_file() and (logdir / "history.png").is_file()
    figures = sorted(p.name.split("__")[0] for p in (logdir / "figures").iterdir())
    assert figures == [
        "binary_preds_distribution",
        "binary_preds_per_iteration",
        "infer_train_hist",
    ]
    assert metrics_events(logdir) == ["train_batch"] * 4 + ["validation"]


@pytest.mark.slow
@pytest.mark.subprocess
def test_reproducibility(examples):
    output, logdirs = examples["misc/reproducibility.py"].result()
    assert len(logdirs) == 2  # the original run and the resumed one
    assert "resumed at epoch 1, seed setter at seed 1" in output
    assert "resumed weights identical to the uninterrupted run's: True" in output
    # set_seeds(0), then the seed setter after epochs 1 and 2, and after epoch 2 again
    assert re.findall(r"set_random_seed\((\d+)\)", output) == ["0", "1", "2", "2"]


@pytest.mark.slow
@pytest.mark.subprocess
def test_distributed(examples):
    output, (logdir,) = examples["distributed.py"].result()
    assert "trained on TensorFlow MirroredStrategy (4 replicas): epoch 2, val accuracy" in output
    assert metrics_events(logdir) == (["train_batch"] * 12 + ["validation"]) * 2
    assert (logdir / "checkpoints" / "latest").is_file()


@pytest.mark.slow
@pytest.mark.subprocess
def test_callbacks_basic(examples):
    output, (logdir,) = examples["callbacks/basic.py"].result()
    assert re.findall(r"^BATCHES FIT: (\d+)$", output, flags=re.M) == ["4", "8"]
    assert (logdir / "weights_v1.png").is_file() and (logdir / "weights_v2.png").is_file()


def assert_png(path: Path, min_side: int = 100) -> np.ndarray:
    """A real, non-blank PNG."""
    assert path.suffix == ".png" and path.is_file(), path
    img = imread(path)
    assert min(img.shape[:2]) >= min_side and img.shape[2] in (3, 4), (path, img.shape)
    assert img[..., :3].std() > 0.01, f"{path} looks blank"
    return img


def printed_outputs(output: str) -> dict[str, Path]:
    """advanced.py's closing table: '  <what>: <path>' lines after 'Outputs:'."""
    table = output.split("\nOutputs:\n", 1)[1]
    return {
        what: Path(path) for what, path in re.findall(r"^  (.+?):\s+(/\S.*)$", table, flags=re.M)
    }


@pytest.mark.slow
@pytest.mark.subprocess
def test_advanced(examples):
    output, logdirs = examples["advanced.py"].result()
    out = examples["advanced.py"].out
    assert [p.name for p in logdirs][0] == "M0__model-idp.5-pdp.4-nadam"
    assert len(logdirs) == 2 and logdirs[1].name.startswith("M1__model-idp.5-pdp.7-nadam__min.")
    assert "Phase 1: M0__model-idp.5-pdp.4-nadam, epochs 0 -> 2, loss mse" in output
    assert "Phase 2: epochs 2 -> 4, loss mae" in output
    # phase 3 resumed from the best model of phase 2, with its counters and best score
    resumed = re.search(
        r"^Phase 3: (M1__model-idp\.5-pdp\.7-nadam__min\.\d{3}) resumed at epoch "
        r"4 \(16 batches fit, 2 validations, best mae (\d\.\d{4})\), epochs "
        r"4 -> 6, loss mae$",
        output,
        flags=re.M,
    )
    assert resumed, output[-3000:]
    assert resumed[1] == logdirs[1].name
    final = re.search(
        r"^final: epoch 6, 24 batches fit, 3 validations, best mae (\d\.\d{4})$", output, flags=re.M
    )
    assert final, output[-3000:]
    assert (
        len(re.findall(r"^val mae per validation: (\d\.\d{4}(, )?){3}$", output, flags=re.M)) == 1
    )

    paths = printed_outputs(output)
    for what, path in paths.items():
        assert path.exists(), (what, path)
        assert out in path.parents, (what, path)  # everything under DEEPTRAIN_EXAMPLES_OUT
    m0, m1 = logdirs
    assert paths["log dir (phases 1-2)"] == m0 and paths["log dir (phase 3)"] == m1
    assert paths["checkpoints dir"] == m1 / "checkpoints"
    latest = paths["latest checkpoint"]
    assert latest.parent == m1 / "checkpoints" and latest.name.endswith("_3vals_24iters")
    assert (m1 / "checkpoints" / "latest").read_text().strip() == latest.name
    for name in ("state.json", "model.weights.h5", "history.png", "report.png"):
        assert (latest / name).is_file(), name
    best = paths["best model dir"]
    assert best.parent == out / "models"
    assert best.name.startswith("M1__model-idp.5-pdp.7-nadam__min.")
    assert (best / "state.json").is_file() and (best / "model.weights.h5").is_file()
    best_state = json.loads((best / "state.json").read_text())["train_state"]
    assert best_state["best_key_metric"] == pytest.approx(float(final[1]), abs=1e-4)
    assert best.name.endswith(f"__min{best_state['best_key_metric']:.3f}".replace("0.", ".", 1))
    assert (best_state["epoch"], best_state["batches_fit"]) == (6, 24)
    # one best model per model number: phase 2's (M0) and phase 3's (M1)
    assert sorted(p.name[:2] for p in (out / "models").iterdir()) == ["M0", "M1"]

    assert paths["history PNG"] == m1 / "history.png"
    assert_png(paths["history PNG"], min_side=200)
    assert paths["report PNG"] == m1 / "report.png"
    assert_png(paths["report PNG"], min_side=200)
    recon = {what: path for what, path in paths.items() if what.startswith("reconstructions")}
    assert list(recon) == ["reconstructions v1", "reconstructions v2", "reconstructions v3"]
    assert [p.parent.parent for p in recon.values()] == [m0, m0, m1]
    assert [p.name for p in recon.values()] == [
        "VizAE2D__e2_b8_v1.png",
        "VizAE2D__e4_b16_v2.png",
        "VizAE2D__e6_b24_v3.png",
    ]
    for path in recon.values():
        assert_png(path)

    assert paths["metrics.jsonl"] == m1 / "metrics.jsonl"
    assert metrics_events(m0) == (["train_batch"] * 8 + ["validation"]) * 2
    events = [json.loads(line) for line in (m1 / "metrics.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["train_batch"] * 8 + ["validation"]
    assert events[0]["batches_fit"] == 17 and events[-1]["times_validated"] == 3
    init_state = json.loads(paths["init_state.json"].read_text())
    assert paths["init_state.json"] == m1 / "misc" / "init_state.json"
    assert "'preout_dropout': 0.7" in init_state["model_configs"]
    assert "'loss': 'mae'" in init_state["model_configs"]
    assert init_state["new_model_num"] == "False"


@pytest.mark.slow
@pytest.mark.subprocess
def test_model_auto_naming(examples):
    output, (logdir,) = examples["misc/model_auto_naming.py"].result()
    name = "M0__AE-BS128-filt6_12_2_6_12-Adam-1e-4"  # dotted key 'datagen.batch_size' encoded
    assert re.search(rf"^model name before training: {name}$", output, flags=re.M)
    after = re.search(rf"^model name after training:  ({name}__max\.\d{{3}})$", output, flags=re.M)
    assert after, output[-3000:]
    assert logdir.name == name
    report = Path(re.search(r"^get_last_log\('report', best=True\): (.+)$", output, flags=re.M)[1])
    assert report == logdir.parents[1] / "models" / after[1] / "report.png"
    assert_png(report, min_side=200)
    for log_name in ("history", "weights", "state"):
        line = re.search(rf"^get_last_log\('{log_name}', best=True\): (.+)$", output, flags=re.M)
        assert Path(line[1]).is_file() and Path(line[1]).parent.name == after[1]
    error = re.search(r"^get_last_log\('best'\) -> ValueError: (.+)$", output, flags=re.M)
    assert error and "got 'best'" in error[1]
    for valid in ("state", "weights", "model", "report", "history", "checkpoint", "init_state"):
        assert f"'{valid}'" in error[1]


@pytest.mark.slow
@pytest.mark.subprocess
def test_model_health(examples):
    output, logdirs = examples["misc/model_health.py"].result()
    assert len(logdirs) == 2
    case1 = output.split("Case 1, tg.last_health after validation: ok=False\n", 1)[1]
    case1 = case1.split("Logging to", 1)[0]
    large = re.findall(r"^  large +(\d+\.\d)% of (\S+)$", case1, flags=re.M)
    assert len(large) >= 4 and any(path.endswith("/kernel") for _, path in large), case1
    assert re.search(r"large \(\|w\| > 3\) -- 'conv2d\S*/kernel'", output)  # the warnings
    assert "Case 2, after a normal epoch: ok=True" in output  # a healthy model passes

    case2 = output.split("Case 2, tg.check_health() after planting: ok=False\n", 1)[1]
    assert re.search(r"^  dead   50\.0% of conv2d_\d+/kernel$", case2, flags=re.M), case2
    assert re.search(r"^  nan   0 NaN, 1 Inf in dense_\d+/kernel$", case2, flags=re.M)
    assert re.search(r"^  nan   3 NaN, 0 Inf in dense_\d+/bias$", case2, flags=re.M)
    assert not re.search(r"^  large", case2, flags=re.M)
    assert "No large weights detected" in output  # notify_detected_only=False


@pytest.mark.slow
@pytest.mark.subprocess
def test_callbacks_advanced(examples):
    output, (logdir,) = examples["callbacks/advanced.py"].result()
    figures = sorted(p.name for p in (logdir / "figures").iterdir())
    per_epoch = [
        "conv_weights_heatmap",
        "layer_hists_gradients-outputs",
        "layer_hists_gradients-weights",
        "layer_hists_outputs",
        "layer_hists_weights",
    ]
    expected = [f"{name}__e{e}_b{4 * e}_v{e}.png" for e in (1, 2) for name in per_epoch]
    expected.append("outputs_heatmap__e2_b8_v2.png")  # every second epoch
    assert figures == sorted(expected)
    for name in figures:
        assert_png(logdir / "figures" / name)
    assert sorted(p.name for p in (logdir / "logger").iterdir()) == ["datalog_0.h5", "datalog_1.h5"]
    record = read_log(logdir / "logger" / "datalog_1.h5")
    assert list(record["outputs"]) == list(record["gradients"]) == [1]
    (outputs,) = record["outputs"][1].values()
    (gradients,) = record["gradients"][1].values()
    assert outputs.shape == gradients.shape == (128, 28, 28, 8)
    assert np.abs(gradients).max() > 0 and outputs.min() >= 0  # ReLU outputs
    assert sorted(k.rsplit("/", 1)[1] for k in record["weights"][1]) == ["bias", "kernel"]
    assert re.findall(r"set_random_seed\((\d+)\)", output) == ["1"]  # after epoch 2
    assert "seed setter's last seed: 1" in output


@pytest.mark.slow
@pytest.mark.subprocess
def test_tracking(examples):
    """Event files and an MLflow run in the logs directory's default store, and the printed
    commands that open them."""
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from deeptrain.tracking import default_tracking_uri

    output, entries = examples["tracking.py"].result()
    logs = entries[0].parent
    assert sorted(p.name for p in entries) == ["M0__model-adam", "mlartifacts", "mlflow.db"]
    logdir = logs / "M0__model-adam"
    guidance = {"scalars": 0, "histograms": 0}  # keep every event (default: a sample)
    events = EventAccumulator(str(logdir / "tensorboard"), size_guidance=guidance)
    events.Reload()
    rows = [json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines()]
    batches = [r["batches_fit"] for r in rows if r["event"] == "train_batch"]
    assert [e.step for e in events.Scalars("train/accuracy")] == batches == list(range(1, 25))
    assert [e.step for e in events.Histograms("weights/sequential/dense/kernel")] == [12, 24]
    client = MlflowClient(default_tracking_uri(logs))
    (run,) = client.search_runs([client.get_experiment_by_name("deeptrain-examples").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["model.units"] == "16"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert sorted(steps) == [4, 8, 12, 16, 20, 24]  # the example's train_freq
    assert f"tensorboard --logdir {logdir / 'tensorboard'}" in output
    assert f"mlflow ui --backend-store-uri {default_tracking_uri(logs)}" in output
    assert f"deeptrain runs {logs}" in output


@pytest.mark.slow
@pytest.mark.subprocess
def test_introspection_gradients(examples):
    output, (logdir,) = examples["introspection/gradients.py"].result()
    assert "gradient norms: 4 iterations x 22 tensors, over 4 batches" in output
    norms = re.search(
        r"^per-tensor L2 norms: median (\S+), mean (\S+), max (\S+)$", output, flags=re.M
    )
    median, mean, largest = map(float, norms.groups())
    assert 0 < median <= largest and mean <= largest
    clipnorm = float(re.search(r"^clipnorm = 1\.5 x median = (\S+) ", output, flags=re.M)[1])
    assert clipnorm == pytest.approx(1.5 * median, rel=1e-3)
    assert f"trained 1 epoch with Adam(clipnorm={clipnorm:.4g}); val loss" in output
    assert "gradient sums over 4 iterations, 22 tensors:" in output
    sums = re.findall(
        r"^  (\S+/(?:kernel|bias|gamma|beta)) +shape (\(.*?\)) +mean \|grad\| "
        r"(\S+)$",
        output,
        flags=re.M,
    )
    assert len(sums) == 22 and all(float(v) > 0 for *_, v in sums)
    assert ("conv2d/kernel", "(3, 3, 1, 6)") in [(n, s) for n, s, _ in sums]
    assert_png(logdir / "figures" / "gradient_norms.png")
    assert_png(logdir / "figures" / "gradient_sums.png", min_side=500)


@pytest.mark.slow
@pytest.mark.subprocess
def test_introspection_internals(examples):
    output, (logdir,) = examples["introspection/internals.py"].result()
    passed = re.search(r"^tg\._passed_args:\n(\[.*?\])$", output, flags=re.M | re.S)[1]
    assert {"callbacks", "iter_verbosity", "logs_dir"} <= set(re.findall(r"'(\w+)'", passed))
    assert re.search(r"^init_state\.json \(\d+ attributes\), some of them:$", output, flags=re.M)
    assert (logdir / "misc" / "init_state.json").is_file()
    assert (
        f"init_source.txt starts with: ## {EXAMPLES / 'introspection' / 'internals.py'}" in output
    )
    assert f"Log directory:      {logdir}" in output
    assert "Interrupted: train[no], validation[yes]." in output
    assert "KeyboardInterrupt during validation; interrupt_status() = (False, True)" in output
    assert "validation batches left: ['2']" in output
    assert (
        "after tg.train(): interrupt_status() = (False, False), 1 validation(s) of 2 batches"
        in output
    )
    skipped = re.search(r"^skipping set '(\d)' in epoch 2$", output, flags=re.M)[1]
    line = re.search(
        r"^epoch 2 trained on 3 of 4 files: (\[.*\]); skipped '(\d)': True$", output, flags=re.M
    )
    assert line and line[2] == skipped and skipped not in re.findall(r"'(\d)'", line[1])
    assert metrics_events(logdir) == ["train_batch"] * 4 + ["validation"] + ["train_batch"] * 3 + [
        "validation"
    ]


# -- the seed document's code -------------------------------------------------------------

# The code of the seed document ("Preprocessor & batching logic"), as printed there (its
# rendering lost the line "crop_same=False):" and the calls that print the first two sources).
SEED_CODE = '''
import deeptrain
from utils import make_autoencoder, init_session, AE_CONFIGS as C
from deeptrain.util.preprocessors import Preprocessor
import numpy as np
class RandCropPreprocessor(Preprocessor):
    """2D random crop. MNIST is 28x28, we try 25x25 crops,
    e.g. batch[2:27, 3:28]."""
    def __init__(self, size, crop_batch=True, crop_labels=False,
        # length          -> (length, length)
        # (width, height) -> (width, height)
        assert isinstance(size, (tuple, int))
        self.size = size if isinstance(size, tuple) else (size, size)
        self.crop_batch = crop_batch
        self.crop_labels = crop_labels
        self.crop_same = crop_same
    def process(self, batch, labels):
        if self.crop_batch:
            (x_start, x_end), (y_start, y_end) = self._make_crop_mask(batch)
            batch = batch[:, x_start:x_end, y_start:y_end]
        if self.crop_labels:
            if not self.crop_same or not self.crop_batch:
                (x_start, x_end), (y_start, y_end
                                   ) = self._make_crop_mask(labels)
            labels = labels[:, x_start:x_end, y_start:y_end]
        return batch, labels
    def _make_crop_mask(self, data):
        _, w, h, *_ = data.shape  # (samples, width, height, channels)
        x_offset = np.random.randint(0, w - self.size[0])
        y_offset = np.random.randint(0, h - self.size[1])
        x_start, x_end = x_offset, x_offset + self.size[0]
        y_start, y_end = y_offset, y_offset + self.size[1]
        return (x_start, x_end), (y_start, y_end)
C['datagen'    ]['preprocessor'] = RandCropPreprocessor(size=24)
C['val_datagen']['preprocessor'] = RandCropPreprocessor(size=24)
C['datagen'    ]['batch_size'] = 128
C['val_datagen']['batch_size'] = 128
C['model']['batch_shape'] = (128, 24, 24, 1)
C['traingen']['iter_verbosity'] = 0
C['traingen']['epochs'] = 1
tg = init_session(C, make_autoencoder)
from deeptrain.util.preprocessors import TimeseriesPreprocessor
from inspect import getsource
print(getsource(TimeseriesPreprocessor.update_state))  # called within DataGenerator.update_state
'''
SEED_FILE = REPO.parent / "shared" / "spec" / "seed-preprocessor-example.txt"


def _code_lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def test_seed_code_is_in_the_preprocessor_example_unchanged():
    example = _code_lines((EXAMPLES / "misc" / "preprocessor.py").read_text())
    position = 0
    for line in _code_lines(SEED_CODE):  # every line, in order, indentation included
        assert line in example[position:], f"seed line missing or out of order: {line!r}"
        position = example.index(line, position) + 1


@pytest.mark.skipif(not SEED_FILE.is_file(), reason="shared/spec is not beside the repo")
def test_seed_code_copy_matches_the_seed_document():
    seed = set(_code_lines(SEED_FILE.read_text()))
    assert [line for line in _code_lines(SEED_CODE) if line not in seed] == []


# -- utils ----------------------------------------------------------------------------------


def load_utils(monkeypatch, tmp_path, **env):
    """Import examples/utils.py as a fresh module with the given environment."""
    monkeypatch.setenv("DEEPTRAIN_EXAMPLES_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("DEEPTRAIN_EXAMPLES_OUT", str(tmp_path / "out"))
    for name in ("DEEPTRAIN_EXAMPLES_FAST", "DEEPTRAIN_EXAMPLES_MNIST"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location(
        "examples_utils_under_test", EXAMPLES / "utils.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_utils_configs_and_models(monkeypatch, tmp_path):
    utils = load_utils(monkeypatch, tmp_path, DEEPTRAIN_EXAMPLES_FAST="1")
    for configs in (utils.AE_CONFIGS, utils.CL_CONFIGS, utils.TS_CONFIGS):
        assert set(configs) == {"model", "datagen", "val_datagen", "traingen"}
        assert configs["traingen"]["epochs"] == 1  # fast mode
        assert configs["traingen"]["model_configs"] is configs["model"]
    fresh = utils.ae_configs()
    fresh["model"]["batch_shape"] = (64, 28, 28, 1)
    assert utils.AE_CONFIGS["model"]["batch_shape"] == (128, 28, 28, 1)

    ae = utils.make_autoencoder(**{**utils.AE_CONFIGS["model"], "batch_shape": (8, 24, 24, 1)})
    assert ae.output_shape == (8, 24, 24, 1) and ae.loss == "mse"
    cl = utils.make_classifier(**{**utils.CL_CONFIGS["model"], "batch_shape": (8, 28, 28, 1)})
    assert cl.output_shape == (8, 10)
    assert np.isclose(float(cl.optimizer.learning_rate), 4e-4)
    ts = utils.make_timeseries_classifier(**utils.TS_CONFIGS["model"])
    assert ts.input_shape == (64, 8, 1) and ts.output_shape == (64, 1)
    assert [layer.stateful for layer in ts.layers if "lstm" in layer.name] == [True, True]

    tg = utils.init_session(utils.CL_CONFIGS, utils.make_classifier)  # builds the data
    assert tg.datagen.data_path == tmp_path / "data" / "image_small" / "train"
    assert len(tg.datagen) == 4 and len(tg.val_datagen) == 2
    assert tg.logdir.parent == tmp_path / "out" / "logs"


def test_utils_mnist_falls_back_to_digits_without_network(monkeypatch, tmp_path, caplog):
    import keras

    def no_network():
        raise OSError("no network")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", no_network)
    utils = load_utils(
        monkeypatch, tmp_path, DEEPTRAIN_EXAMPLES_FAST="1", DEEPTRAIN_EXAMPLES_MNIST="1"
    )
    assert utils.dataset("image") == tmp_path / "data" / "image_small"
    assert "MNIST unavailable" in caplog.text
    assert utils.AE_CONFIGS["datagen"]["data_path"] == tmp_path / "data" / "image_small" / "train"


# -- example datasets -------------------------------------------------------------------------


def _h5(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k][:] for k in f}


def test_image_data_as_documented(tmp_path):
    root = example_data.build("image", tmp_path)
    assert root == tmp_path / "image"
    for split, n in (("train", 10), ("val", 4)):
        files = sorted((root / split).glob("128batch__*.npy"))
        assert len(files) == n
        labels = _h5(root / split / "labels.h5")
        assert sorted(labels, key=int) == [str(k) for k in range(1, n + 1)]
        for k in (1, n):
            x = np.load(root / split / f"128batch__{k}.npy")
            assert x.shape == (128, 28, 28, 1) and x.dtype == np.float32
            assert x.min() == 0 and 0.99 <= x.max() <= 1
            y = labels[str(k)]
            assert y.shape == (128, 10) and y.dtype == np.float32
            assert np.array_equal(y.sum(1), np.ones(128)) and set(np.unique(y)) == {0, 1}
    info = json.loads((root / "dataset.json").read_text())
    assert info["batches"] == {"train": 10, "val": 4}
    # train and val hold different digits
    train = np.concatenate([np.load(p) for p in (root / "train").glob("*.npy")])
    val = np.concatenate([np.load(p) for p in (root / "val").glob("*.npy")])
    assert len(
        np.unique(np.concatenate([train, val]).reshape(len(train) + len(val), -1), axis=0)
    ) > 0.95 * (len(train) + len(val))


def test_build_is_idempotent(tmp_path):
    first = example_data.build("image", tmp_path, small=True)
    stamps = {p: p.stat().st_mtime_ns for p in first.rglob("*")}
    assert example_data.build("image", tmp_path, small=True) == first
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*")} == stamps
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image_small"]  # no temp leftovers


def test_build_refuses_incomplete_dirs_and_unknown_names(tmp_path):
    (tmp_path / "image").mkdir()
    with pytest.raises(FileExistsError, match="not a complete example dataset"):
        example_data.build("image", tmp_path)
    with pytest.raises(ValueError, match="unknown example dataset"):
        example_data.build("cifar", tmp_path)


def test_failed_build_leaves_nothing(tmp_path, monkeypatch):
    def broken(tmp, small):
        (tmp / "train").mkdir()
        raise RuntimeError("disk full")

    monkeypatch.setitem(example_data._BUILDERS, "image", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        example_data.build("image", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_concurrent_first_use_builds_once(tmp_path, monkeypatch):
    """Several builders finish at the same moment: one rename wins, the others discard their
    copy, and everyone gets the complete dataset."""
    n = 4
    barrier = threading.Barrier(n)
    original = example_data._BUILDERS["image"]

    def build_then_wait(tmp, small):
        original(tmp, small)
        barrier.wait(timeout=60)  # all copies complete before any rename

    monkeypatch.setitem(example_data._BUILDERS, "image", build_then_wait)
    results, errors = [], []

    def worker():
        try:
            results.append(example_data.build("image", tmp_path, small=True))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results == [tmp_path / "image_small"] * n
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image_small"]
    assert len(list((tmp_path / "image_small" / "train").glob("*.npy"))) == 4


def test_lz4f_variant_matches_and_loads(tmp_path):
    plain = example_data.build("image", tmp_path, small=True)
    packed = example_data.build("image_lz4f", tmp_path, small=True)
    raw = np.load(packed / "train" / "128batch__2.npy")
    assert raw.dtype == np.uint8 and raw.nbytes < 0.5 * 128 * 28 * 28 * 4
    x = np.frombuffer(lz4.frame.decompress(raw.tobytes()), np.float32).reshape(128, 28, 28, 1)
    assert np.array_equal(x, np.load(plain / "train" / "128batch__2.npy"))
    dg = DataGenerator(
        packed / "train",
        batch_size=128,
        data_loader="numpy-lz4f",
        data_dtype="float32",
        data_batch_shape=(128, 28, 28, 1),
        labels_path=packed / "train" / "labels.h5",
        prefetch=0,
    )
    batch, labels = dg.get()
    assert batch.shape == (128, 28, 28, 1) and labels.shape == (128, 10)


def test_timeseries_data_as_documented(tmp_path):
    pytest.importorskip("sktime")
    root = example_data.build("timeseries", tmp_path, small=True)
    for split, n in (("train", 4), ("val", 2)):
        data, labels = _h5(root / split / "data.h5"), _h5(root / split / "labels.h5")
        assert sorted(data, key=int) == sorted(labels, key=int) == [str(i) for i in range(n)]
        for key in data:
            assert data[key].shape == (64, 24, 1) and data[key].dtype == np.float32
            assert labels[key].shape == (64, 1) and labels[key].dtype == np.float32
            assert set(np.unique(labels[key])) <= {0.0, 1.0}
            # each day is z-normalised in the UCR archive
            assert np.allclose(data[key].mean(1), 0, atol=1e-3)
    x, y = example_data.italy_power_demand()
    assert x.shape == (1096, 24, 1) and y.shape == (1096,) and 0.45 < y.mean() < 0.55


def test_resize_bilinear_matches_keras():
    import keras

    rng = np.random.default_rng(0)
    images = rng.random((3, 8, 8))
    ours = example_data.resize_bilinear(images, (28, 28))
    theirs = keras.ops.convert_to_numpy(
        keras.ops.image.resize(
            images[..., None], (28, 28), interpolation="bilinear", antialias=False
        )
    )[..., 0]
    assert np.allclose(ours, theirs, atol=1e-5)
    assert np.allclose(example_data.resize_bilinear(np.full((1, 8, 8), 0.3), (28, 28)), 0.3)


def test_mnist_layout_without_downloading(tmp_path, monkeypatch):
    import keras

    rng = np.random.default_rng(0)
    fake = (
        (rng.integers(0, 256, (600, 28, 28), dtype=np.uint8), rng.integers(0, 10, 600)),
        (rng.integers(0, 256, (300, 28, 28), dtype=np.uint8), rng.integers(0, 10, 300)),
    )
    monkeypatch.setattr(keras.datasets.mnist, "load_data", lambda: fake)
    root = example_data.build("mnist", tmp_path, small=True)
    for split, n in (("train", 4), ("val", 2)):
        files = sorted((root / split).glob("128batch__*.npy"))
        assert len(files) == n
        x = np.load(files[0])
        assert x.shape == (128, 28, 28, 1) and x.dtype == np.float32 and x.max() <= 1
        assert sorted(_h5(root / split / "labels.h5"), key=int) == [str(k) for k in range(1, n + 1)]


@pytest.mark.subprocess
def test_readme_quickstart_runs_as_written(tmp_path):
    """The README's quickstart snippet, pasted into a file, runs in an empty directory (and
    again, over its own data)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Quickstart") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    script = tmp_path / "quickstart_snippet.py"
    script.write_text(code)
    src = Path(__file__).resolve().parents[1] / "src"  # (installed in CI; a checkout here)
    env = dict(
        os.environ,
        TF_CPP_MIN_LOG_LEVEL="2",
        MPLBACKEND="Agg",
        PYTHONPATH=os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
    )
    for fresh in (True, False):  # a new interpreter as written, then again (forked)
        proc = jobs.run(script, cwd=tmp_path, env=env, timeout=900, fresh=fresh)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert "'accuracy': [" in proc.stdout
    assert len(list((tmp_path / "logs").glob("M*__*"))) == 2  # M0__..., M1__...
    assert len(list((tmp_path / "data" / "train").glob("batch__*.npy"))) == 6


@pytest.mark.subprocess
def test_quickstart_example_runs(tmp_path):
    env = dict(
        os.environ,
        TF_CPP_MIN_LOG_LEVEL="2",
        MPLBACKEND="Agg",
        DEEPTRAIN_EXAMPLES_DATA=str(tmp_path / "data"),
        DEEPTRAIN_EXAMPLES_OUT=str(tmp_path),
    )
    script = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"
    proc = jobs.run(script, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "36 iterations over 3 epochs" in proc.stdout  # 384 samples / 32 x 3
    history = Path(proc.stdout.split("history figure:")[1].split()[0])
    assert history.is_file() and tmp_path in history.parents
