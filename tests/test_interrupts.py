"""A second Ctrl-C ("stop now") at the three places where it used to leave a silent
inconsistency: after the optimizer step but before the counters advance, while Keras builds
the optimizer's slots, and inside a validation. Real SIGINTs, sent by the process to itself
at exactly those moments."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
from keras.src.optimizers import base_optimizer

from deeptrain import TrainGenerator
from deeptrain.callbacks import PeriodicCallback
from test_train_generator import classification_data, classifier, generators, quiet

pytestmark = pytest.mark.slow


def ctrl_c_twice() -> None:
    os.kill(os.getpid(), signal.SIGINT)  # "stop after this iteration"
    os.kill(os.getpid(), signal.SIGINT)  # "stop now": raises here


class Counter(PeriodicCallback):
    """A callback with state, to check that callbacks see each event exactly once."""

    def __init__(self):
        super().__init__({"val:iter": 1, "val_end": 1, "train:batch": 1})

    def on_due(self, stage):
        pass


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return classification_data(tmp_path_factory.mktemp("cls"))


def make_tg(data, logs, **kw):
    dg, vdg = generators(data, batch_size=16, shuffle=True, seed=3)
    return TrainGenerator(
        classifier(),
        dg,
        vdg,
        epochs=2,
        logs_dir=logs,
        val_freq={"batch": 5},
        temp_checkpoint_freq={"iter": 1},
        **quiet(**kw),
    )


def outcome(tg) -> dict:
    rows = [json.loads(line) for line in (tg.logdir / "metrics.jsonl").read_text().splitlines()]
    return {
        "weights": [np.asarray(w) for w in tg.model.get_weights()],
        "optimizer": [np.asarray(v.numpy()) for v in tg.model.optimizer.variables],
        "state": {k: v for k, v in tg.state.to_dict().items() if k != "save_seq"},
        "rows": [{k: v for k, v in r.items()} for r in rows],
    }


def assert_same(a: dict, b: dict) -> None:
    assert a["state"] == b["state"]
    assert a["rows"] == b["rows"]
    for x, y in zip(a["weights"] + a["optimizer"], b["weights"] + b["optimizer"], strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    tg = make_tg(data, tmp_path_factory.mktemp("ref"), callbacks=[Counter()])
    tg.train()
    return outcome(tg) | {"counter": tg.callbacks.objects[0].state_dict()}


def test_stop_now_after_the_step_refuses_then_a_loaded_checkpoint_continues_exactly(
    data, tmp_path, reference
):
    tg = make_tg(data, tmp_path, callbacks=[Counter()])
    step, calls = tg._fit_fn, [0]

    def fit_then_ctrl_c(x, y, sw):
        out = step(x, y, sw)  # the weights have changed...
        calls[0] += 1
        if calls[0] == 7:
            ctrl_c_twice()  # ...and the counters have not
        return out

    tg._fit_fn = fit_then_ctrl_c
    with pytest.raises(KeyboardInterrupt):
        tg.train()
    tg._fit_fn = step
    with pytest.raises(RuntimeError, match=r"inside a train iteration.*tg\.load\("):
        tg.train()
    with pytest.raises(RuntimeError, match="inconsistent"):
        tg.save()  # an inconsistent state is never written
    assert tg.load().name == "_temp_6iters_1vals"
    tg.train()
    assert_same(outcome(tg), reference)
    assert tg.callbacks.objects[0].state_dict() == reference["counter"]


def test_stop_now_while_keras_builds_the_optimizer_slots(data, tmp_path, reference, monkeypatch):
    build = base_optimizer.BaseOptimizer.build

    def build_then_ctrl_c(self, variables):
        build(self, variables)  # sets optimizer.built; Adam creates its slots after this
        ctrl_c_twice()

    monkeypatch.setattr(base_optimizer.BaseOptimizer, "build", build_then_ctrl_c)
    tg = make_tg(data, tmp_path, callbacks=[Counter()])
    with pytest.raises(KeyboardInterrupt):
        tg.train()  # held until the slots exist, then raised before the first step
    monkeypatch.undo()
    assert tg.state.fit_iters == 0
    tg.train()  # continues: no "'Adam' object has no attribute '_momentums'"
    assert_same(outcome(tg), reference)


@pytest.mark.parametrize("where", ["val:iter", "val_end"])
def test_stop_now_inside_a_validation_restarts_it_exactly(data, tmp_path, reference, where):
    fired = [0]

    def ctrl_c_once(tg):
        fired[0] += 1
        if fired[0] == 2:  # inside the first validation (the 2nd val batch, or its end)
            ctrl_c_twice()

    tg = make_tg(data, tmp_path, callbacks=[Counter(), {where: ctrl_c_once}])
    with pytest.raises(KeyboardInterrupt):
        tg.train()
    assert tg.state.train_loop_done  # stopped inside the validation
    tg.train()  # the validation restarts from its start: nothing counted twice or lost
    assert_same(outcome(tg), reference)
    assert tg.callbacks.objects[0].state_dict() == reference["counter"]


def test_an_error_in_a_train_callback_marks_the_state_until_a_load(data, tmp_path, reference):
    failed = []

    def fail_once(tg):
        if tg.state.fit_iters == 3 and not failed:
            failed.append(1)
            raise ValueError("callback bug")

    tg = make_tg(data, tmp_path, callbacks=[{"train:iter": fail_once}])
    with pytest.raises(ValueError, match="callback bug"):
        tg.train()
    with pytest.raises(RuntimeError, match="inside a train iteration"):
        tg.train()
    tg.load()
    tg.train()
    assert_same(outcome(tg), reference)
