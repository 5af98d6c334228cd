"""state_dict(): the exact position in an epoch, restored in a new process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from datafactory import ids_of, write_dataset
from deeptrain import DataGenerator

# A child process builds a DataGenerator, optionally loads a state file, serves `n` batches
# (printing set name, slice index and sample ids as JSON lines) and optionally saves state.
CHILD = r"""
import json, sys
import numpy as np
sys.path[:0] = [{tests!r}, {src!r}]
from deeptrain import DataGenerator
from datafactory import ids_of
cfg = json.loads(sys.argv[1])
np.random.seed(0)
dg = DataGenerator(**cfg["dg"])
if cfg.get("load"):
    dg.load_state_dict(json.load(open(cfg["load"])))
for _ in range(cfg["n"]):
    x, y = dg.get()
    print(json.dumps([dg.epoch, dg.set_name, dg.slice_idx, ids_of(x), x.shape[1]]))
    dg.update_state()
    if dg.all_data_exhausted:
        dg.on_epoch_end()
if cfg.get("save"):
    json.dump(dg.state_dict(), open(cfg["save"], "w"))
"""


def run_child(tmp_path: Path, **cfg) -> list[list]:
    script = tmp_path / "child.py"
    script.write_text(
        CHILD.format(tests=str(Path(__file__).parent), src=str(Path(__file__).parents[1] / "src"))
    )
    out = subprocess.run(
        [sys.executable, str(script), json.dumps(cfg)], capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


CONFIGS = {
    "split+shuffle+samples": dict(batch_size=4, shuffle=True, shuffle_group_samples=True),
    "split+group-batches": dict(batch_size=2, shuffle=True, shuffle_group_batches=True),
    "combine+superbatch": dict(batch_size=16, shuffle=True, superbatch_set_nums=[2, 3]),
    "windows": dict(
        batch_size=8,
        shuffle=True,
        preprocessor="timeseries",
        preprocessor_configs={"window_size": 4, "start_increments": [0, 1]},
    ),
}


@pytest.mark.subprocess
@pytest.mark.parametrize("name", list(CONFIGS))
def test_mid_epoch_state_round_trip_in_a_new_process(tmp_path, name):
    data = write_dataset(tmp_path / "data", n_files=5, file_size=8, timesteps=12)
    dg_cfg = dict(data_path=str(data), labels_path=str(data / "labels.h5"), **CONFIGS[name])
    total, cut = 40, 13  # crosses epoch boundaries; the cut lands mid-group / mid-window
    uninterrupted = run_child(tmp_path, dg=dg_cfg, n=total)
    state = tmp_path / "state.json"
    first = run_child(tmp_path, dg=dg_cfg, n=cut, save=str(state))
    second = run_child(tmp_path, dg=dg_cfg, n=total - cut, load=str(state))
    assert first + second == uninterrupted
    assert json.loads(state.read_text())["set_nums_to_process"] is not None


def test_state_is_plain_json_and_rejects_other_data(npy_dir, tmp_path):
    dg = DataGenerator(npy_dir, batch_size=4, shuffle=True, labels_path=npy_dir / "labels.h5")
    dg.get()
    state = json.loads(json.dumps(dg.state_dict()))  # survives a JSON round trip
    other = DataGenerator(npy_dir, batch_size=4, set_nums=[1, 2])
    with pytest.raises(ValueError, match="set nums"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="format"):
        dg.load_state_dict({**state, "format": 99})


def test_loadskip_list_leaves_keys_alone(npy_dir):
    dg = DataGenerator(npy_dir, batch_size=8, loadskip_list=["epoch"])
    state = dg.state_dict()
    state["epoch"] = 7
    dg.load_state_dict(state)
    assert dg.epoch == 0


def test_loading_without_the_preprocessors_state_serves_the_next_batch(npy_dir):
    """With the preprocessor's state skipped (``loadskip_list``), a state saved between
    batches resumes at the next batch, also into a generator that holds a batch already
    (as a TrainGenerator's has: it loads one before the checkpoint): the position is the
    saved one, not the live preprocessor's."""
    dg = DataGenerator(npy_dir, batch_size=4, seed=1)
    for _ in range(3):
        dg.get()
        dg.update_state()
    state = json.loads(json.dumps(dg.state_dict()))
    expected = []
    for _ in range(3):
        expected.append(ids_of(dg.get()[0]))
        dg.update_state()
    fresh = DataGenerator(npy_dir, batch_size=4, seed=1, loadskip_list=["preprocessor"])
    assert fresh.hold_next_batch()
    fresh.load_state_dict(state)
    served = []
    for _ in range(3):
        served.append(ids_of(fresh.get()[0]))
        fresh.update_state()
    assert served == expected


def test_restored_mid_batch_serves_the_same_batch(npy_dir):
    dg = DataGenerator(npy_dir, batch_size=4, shuffle=True, shuffle_group_samples=True, seed=4)
    for _ in range(3):
        dg.get()
        dg.update_state()
    x, _ = dg.get()  # a batch is loaded, not yet used up
    fresh = DataGenerator(npy_dir, batch_size=4, shuffle=True, shuffle_group_samples=True, seed=9)
    fresh.load_state_dict(dg.state_dict())
    assert fresh.set_name == dg.set_name
    assert ids_of(fresh.get()[0]) == ids_of(x)


def test_restored_at_epoch_end_still_reports_the_epoch_as_exhausted(npy_dir):
    """State saved between the last batch of an epoch and the next epoch (where checkpoints
    after an epoch's validation are taken) comes back with ``all_data_exhausted`` set."""
    dg = DataGenerator(npy_dir, batch_size=4, shuffle=True, seed=4)
    while not dg.all_data_exhausted:
        dg.get()
        dg.update_state()
    fresh = DataGenerator(npy_dir, batch_size=4, shuffle=True, seed=9)
    fresh.load_state_dict(dg.state_dict())
    assert fresh.all_data_exhausted and fresh.batch_exhausted
    assert fresh.on_epoch_end() == dg.on_epoch_end() == 1
    assert ids_of(fresh.get()[0]) == ids_of(dg.get()[0])
