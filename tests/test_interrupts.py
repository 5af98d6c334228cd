"""A second Ctrl-C ("stop now") at the three places where it used to leave a silent
inconsistency: after the optimizer step but before the counters advance, while Keras builds
the optimizer's slots, and inside a validation. Real SIGINTs, sent by the process to itself
at exactly those moments."""

from __future__ import annotations

import json
import os
import shutil
import signal

import keras
import numpy as np
import pytest
from keras.src.optimizers import base_optimizer

from deeptrain import TrainGenerator
from deeptrain.callbacks import PeriodicCallback, TraingenCallback
from deeptrain.training.interrupts import INTERRUPT, TERMINATE, InterruptGuard, Preempted
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

    class FitThenCtrlC:  # the step's other methods (JAX: read, sync, discard) stay in reach
        def __call__(self, x, y, sw):
            out = step(x, y, sw)  # the weights have changed...
            calls[0] += 1
            if calls[0] == 7:
                ctrl_c_twice()  # ...and the counters have not
            return out

        def __getattr__(self, name):
            return getattr(step, name)

    tg._fit_fn = FitThenCtrlC()
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


# -- checkpoints asked for from callbacks, and cut -------------------------------------------
def test_a_checkpoint_a_callback_asks_for_is_written_at_the_end_of_its_iteration(
    data, tmp_path, reference
):
    """From a train iteration's or a validation's callback (the state half-way updated),
    ``checkpoint()`` and ``save()`` are written at the end of it; training goes on as
    without them (no restarted validation, no refused state)."""
    asked = []

    def ask(tg):
        if tg.state.fit_iters == 3 and "unique" not in asked:
            asked.append("unique")
            assert tg.checkpoint(forced=True) is None  # written after this iteration
        if tg.state.val_iters == 1 and "manual" not in asked:  # inside the 1st validation
            asked.append("manual")
            assert tg.save(tmp_path / "manual") is None

    tg = make_tg(data, tmp_path / "logs", callbacks=[{"train:iter": ask, "val:iter": ask}])
    tg.train()
    assert asked == ["unique", "manual"]
    assert_same(outcome(tg), reference)
    checkpoints = sorted(p.name for p in (tg.logdir / "checkpoints").iterdir())
    assert any(name.endswith("_0vals_3iters") for name in checkpoints), checkpoints
    manual = json.loads((tmp_path / "manual" / "state.json").read_text())
    assert manual["train_state"]["times_validated"] == 1  # at the validation's end
    assert manual["train_state"]["val_iters"] == 2


def test_a_best_model_a_callback_asks_for_keeps_its_del_previous_best(data, tmp_path):
    """``_save_best_model(del_previous_best=True)`` from a ``'val_end'`` callback is written
    at the validation's end with its override of ``max_one_best_save=False``: one best
    model is left (the run alone keeps two or more, as the test below shows)."""
    asked = []

    def ask(tg):
        asked.append(tg._save_best_model(del_previous_best=True))

    best = tmp_path / "best"
    tg = make_tg(
        data,
        tmp_path / "logs",
        best_models_dir=best,
        max_one_best_save=False,
        callbacks=[{"val_end": ask}],
    )
    tg.train()
    assert asked and all(path is None for path in asked)  # written after each validation
    assert [p.name for p in best.iterdir()] == [tg.model_name]
    assert tg.max_one_best_save is False
    for saved in (tg.get_last_log("state"), tg.get_last_log("state", best=True)):
        state = json.loads(saved.read_text())  # the run's own setting, not the override
        assert state["traingen"]["max_one_best_save"] is False, saved


def test_stop_now_during_a_checkpoint_keeps_it_and_the_best_model_due(data, tmp_path):
    """A second Ctrl-C while the checkpoint and best model of validation 2 are being saved:
    both are written when ``train()`` goes on; the saves made, the best models kept and
    the run are those of an uninterrupted run."""
    runs = {}
    for cut in (False, True):
        saves: list[tuple[int, int]] = []
        fired: list[int] = []

        def save(tg, saves=saves, fired=fired, cut=cut):
            if cut and tg.state.times_validated == 2 and not fired:
                fired.append(1)
                ctrl_c_twice()  # in the save at validation 2's end
            saves.append((tg.state.times_validated, tg.state.fit_iters))

        logs, best = tmp_path / f"logs{cut}", tmp_path / f"best{cut}"
        tg = make_tg(
            data, logs, best_models_dir=best, max_one_best_save=False, callbacks=[{"save": save}]
        )
        if cut:
            with pytest.raises(KeyboardInterrupt):
                tg.train()
            assert tg.state.times_validated == 2 and (2, 10) not in saves
        tg.train()
        runs[cut] = (outcome(tg), saves, sorted(best.iterdir()))
    (cut_run, cut_saves, cut_best), (run, saves, best_models) = runs[True], runs[False]
    assert (2, 10) in saves and cut_saves == saves
    assert [p.name for p in cut_best] == [p.name for p in best_models] and len(best_models) >= 2
    assert_same(cut_run, run)


@pytest.fixture
def sigterm_outside_a_guard_raises():
    """SIGTERM to this process where DeepTrain holds none: an error, not the end of pytest."""

    def refuse(signum, frame):
        raise RuntimeError("SIGTERM reached the process outside DeepTrain's guard")

    previous = signal.signal(signal.SIGTERM, refuse)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_a_second_sigterm_during_the_preemption_checkpoint_waits(
    data, tmp_path, reference, sigterm_outside_a_guard_raises
):
    """SIGTERM at iteration 3, then SIGTERM and Ctrl-C again while its checkpoint is being
    saved (a scheduler sending it twice): the checkpoint is complete, the exit clean (0),
    and the run resumes from it exactly."""
    sent = []

    def terminate(tg):
        if tg.state.fit_iters == 3 and not sent:
            sent.append("first")
            os.kill(os.getpid(), signal.SIGTERM)  # held until the iteration ends

    saves_at_3 = []

    def again(tg):
        if tg.state.fit_iters == 3:
            saves_at_3.append(1)
            if len(saves_at_3) == 2:  # the preemption's (after iteration 3's own checkpoint)
                sent.append("again")
                os.kill(os.getpid(), signal.SIGTERM)
                os.kill(os.getpid(), signal.SIGINT)

    tg = make_tg(data, tmp_path, callbacks=[{"train:iter": terminate, "save": again}])
    with pytest.raises(SystemExit) as stopped:
        tg.train()
    assert stopped.value.code == 0 and sent == ["first", "again"]
    assert (tg.logdir / "checkpoints" / "latest").read_text().strip() == "_temp_3iters_0vals"
    resumed = make_tg(data, tmp_path, loadpath=tg.logdir)
    resumed.train()
    assert_same(outcome(resumed), reference)


class SaveCounter(TraingenCallback):
    """Counts the saves it sees (as ``RandomSeedSetter(freq={'save': n})`` counts them)."""

    def __init__(self):
        self.saves = 0

    def on_save(self, stage):
        self.saves += 1

    def state_dict(self):
        return {"saves": self.saves}

    def load_state_dict(self, state):
        self.saves = state["saves"]


def test_the_preemption_checkpoint_holds_the_state_before_its_save_callbacks(
    data, tmp_path, sigterm_outside_a_guard_raises
):
    """SIGTERM after iteration 3 (whose own checkpoint was written): the preemption
    checkpoint, which the uninterrupted run never takes, holds what iteration 3's holds;
    its ``'save'`` callbacks still run, after the state is copied."""
    counter = SaveCounter()

    def terminate(tg):
        if tg.state.fit_iters == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # held until the iteration ends

    tg = make_tg(data, tmp_path, callbacks=[counter, {"train:iter": terminate}])
    with pytest.raises(SystemExit):
        tg.train()
    assert counter.saves == 4  # iterations 1-3's checkpoints, and the preemption's
    saved = json.loads(
        (tg.logdir / "checkpoints" / "_temp_3iters_0vals" / "state.json").read_text()
    )
    assert saved["callbacks"][0]["state"] == {"saves": 3}


def test_sigterm_during_a_validation_of_its_own_saves_and_exits_cleanly(
    data, tmp_path, sigterm_outside_a_guard_raises
):
    """``tg.validate()`` called alone, SIGTERM at its 2nd batch: rewound to its start, one
    checkpoint, exit status 0 (as ``train()`` does)."""

    def terminate(tg):
        if tg.state.val_iters == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    tg = make_tg(data, tmp_path, callbacks=[{"val:iter": terminate}])
    with pytest.raises(SystemExit) as stopped:
        tg.validate()
    assert stopped.value.code == 0
    assert tg.state.val_iters == 0 and tg.state.times_validated == 0  # rewound
    saved = json.loads((tg.get_last_log("checkpoint") / "state.json").read_text())
    assert saved["train_state"]["val_iters"] == 0


@pytest.fixture
def sigterm_recorded():
    """SIGTERM to this process where DeepTrain holds none is recorded (the process's own
    handler, which by default would end it)."""
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    yield received
    signal.signal(signal.SIGTERM, previous)


def test_a_sigterm_behind_an_agreed_ctrl_c_reaches_the_process_after_the_loop(
    sigterm_recorded,
):
    """The processes of a distributed run agreed on Ctrl-C, and this one received a SIGTERM
    after its vote: the ``KeyboardInterrupt`` is raised, and the SIGTERM is not lost: once
    the loop's guard exits, it goes to the handler the process had before."""
    with pytest.raises(KeyboardInterrupt), InterruptGuard():
        os.kill(os.getpid(), signal.SIGTERM)
        assert InterruptGuard.pending() == TERMINATE and not sigterm_recorded
        InterruptGuard.check(INTERRUPT)
    assert sigterm_recorded == [signal.SIGTERM]


def test_a_sigterm_while_the_loop_leaves_for_preemption_is_not_passed_on(sigterm_recorded):
    """SIGTERM acted on (``Preempted``, on its way to the preemption checkpoint), and a
    second one as the loop leaves: neither reaches the process's handler, which would end
    the process before its checkpoint."""
    with pytest.raises(Preempted), InterruptGuard():
        os.kill(os.getpid(), signal.SIGTERM)
        try:
            InterruptGuard.check()
        finally:
            os.kill(os.getpid(), signal.SIGTERM)
    assert sigterm_recorded == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl_c"])
def test_a_signal_as_training_ends_reaches_the_process_after_the_last_write(
    data, tmp_path, reference, signum
):
    """A SIGTERM or Ctrl-C sent as training ends (a Keras callback's ``on_train_end``: in
    the loop, after its last boundary) is not dropped: once the last checkpoint (written in
    the background) is complete, it goes to the process's handler (by default: SIGTERM
    ends the process, Ctrl-C raises ``KeyboardInterrupt``). The training is complete."""
    latest_seen = []

    def handler(received, frame):
        latest_seen.append((tg.logdir / "checkpoints" / "latest").read_text())
        if received == signal.SIGINT:
            raise KeyboardInterrupt

    def send(logs):
        if not latest_seen:
            os.kill(os.getpid(), signum)

    tg = make_tg(data, tmp_path, callbacks=[keras.callbacks.LambdaCallback(on_train_end=send)])
    previous = signal.signal(signum, handler)
    try:
        if signum == signal.SIGINT:
            with pytest.raises(KeyboardInterrupt):
                tg.train()
        else:
            tg.train()
    finally:
        signal.signal(signum, previous)
    assert latest_seen == [(tg.logdir / "checkpoints" / "latest").read_text()]
    assert_same(outcome(tg), reference)
    tg.train()  # done: nothing held, nothing raised


def test_signals_the_process_ignores_stay_ignored(data, tmp_path, reference):
    """A process that ignores SIGINT and SIGTERM (a job a shell started in the background
    ignores SIGINT) keeps ignoring them while it trains: DeepTrain does not take them over,
    as Python does not. Training runs to its end, as if nothing were sent."""
    sent = []

    def send(batch, logs):
        if not sent:
            sent.append(batch)
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)

    tg = make_tg(
        data, tmp_path, callbacks=[keras.callbacks.LambdaCallback(on_train_batch_end=send)]
    )
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        tg.train()
        handlers = {s: signal.getsignal(s) for s in previous}
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    assert sent == [0]
    assert handlers == {signal.SIGINT: signal.SIG_IGN, signal.SIGTERM: signal.SIG_IGN}
    assert_same(outcome(tg), reference)


def test_a_validation_stopped_half_way_is_finished_as_it_began(data, tmp_path):
    """The run's validation stopped by a Ctrl-C is not taken over by an evaluation of one's
    own (``record_progress=False``, refused: it would end it unrecorded), and ``train()``
    then records it whole; an evaluation of one's own stopped half-way is undone, not
    continued by ``train()`` as the run's (its first batches uncounted)."""
    stops: list[str] = []

    def ctrl_c_once(tg) -> None:
        if stops and stops[-1] == "pending":
            stops[-1] = "sent"
            os.kill(os.getpid(), signal.SIGINT)  # "stop after this iteration"

    reference = make_tg(data, None)
    reference.train()
    tg = make_tg(data, tmp_path / "cut", callbacks=[{"val:iter": ctrl_c_once}])
    stops.append("pending")
    with pytest.raises(KeyboardInterrupt):
        tg.train()
    assert tg._validation.start is not None and tg._validation.recording
    with pytest.raises(RuntimeError, match="A validation of the run is in progress"):
        tg.validate(record_progress=False)
    tg.train()
    stops.append("pending")  # now an evaluation of one's own, stopped half-way
    with pytest.raises(KeyboardInterrupt):
        tg.validate(record_progress=False)
    tg.train()  # (no epochs left: nothing to continue as the run's)
    for name in ("times_validated", "val_iters", "batches_fit"):
        assert getattr(tg.state, name) == getattr(reference.state, name), name
    assert tg.state.key_metric_history == reference.state.key_metric_history


def stop_once(stage_check):
    """A callback that sends one Ctrl-C ("stop after this iteration") where ``stage_check``
    says, the first time only."""
    sent: list[int] = []

    def callback(tg) -> None:
        if not sent and stage_check(tg):
            sent.append(1)
            os.kill(os.getpid(), signal.SIGINT)

    return callback


RUN_RECORD = ("times_validated", "batches_validated", "val_iters", "batches_fit")


def assert_same_record(tg, reference) -> None:
    for name in RUN_RECORD:
        assert getattr(tg.state, name) == getattr(reference.state, name), name
    assert tg.state.val_history == reference.state.val_history


@pytest.mark.parametrize("eval_fn", ["evaluate", "predict"])
def test_a_checkpoint_of_a_validation_stopped_half_way_holds_its_start(data, tmp_path, eval_fn):
    """``tg.save()`` after a Ctrl-C inside a validation: the checkpoint (and the run) take
    the validation back to its start, so that it is redone whole (resumed, it covered its
    last batches alone: the cached predictions are not saved)."""
    reference = make_tg(data, None, eval_fn=eval_fn)
    reference.train()
    half_way = stop_once(lambda tg: tg.state.val_iters == 1)
    tg = make_tg(data, tmp_path / "cut", eval_fn=eval_fn, callbacks=[{"val:iter": half_way}])
    with pytest.raises(KeyboardInterrupt):
        tg.train()
    assert tg._validation.start is not None
    saved = shutil.copytree(tg.save(), tmp_path / "saved")  # (the run goes on over it)
    tg.train()  # the run that saved goes on alike
    assert_same_record(tg, reference)
    resumed = make_tg(data, tmp_path / "resumed", eval_fn=eval_fn, loadpath=saved)
    resumed.train()
    assert_same_record(resumed, reference)


def test_restarts_and_evaluations_of_ones_own_leave_the_runs_validations(data, tmp_path):
    """``validate(restart=True)`` on a validation stopped half-way starts it again from
    where it began (it kept the stopped one's counters); an evaluation of one's own after
    a Ctrl-C that left a validation due leaves it due (``train()`` skipped it)."""
    reference = make_tg(data, None)
    reference.train()
    half_way = stop_once(lambda tg: tg.state.val_iters == 1)
    tg = make_tg(data, tmp_path / "restart", callbacks=[{"val:iter": half_way}])
    with pytest.raises(KeyboardInterrupt):
        tg.train()
    tg.validate(restart=True)
    tg.train()
    assert_same_record(tg, reference)

    due = stop_once(lambda tg: tg.state.batches_fit == 5)  # val_freq={'batch': 5}
    tg = make_tg(data, tmp_path / "due", callbacks=[{"train:batch": due}])
    with pytest.raises(KeyboardInterrupt):
        tg.train()
    assert tg.state.train_loop_done and tg.state.times_validated == 0
    tg.validate(record_progress=False)
    assert tg.state.train_loop_done  # still due
    tg.train()
    assert_same_record(tg, reference)


def test_a_validation_asked_for_and_stopped_half_way_stays_the_runs_after_a_save(data, tmp_path):
    """``tg.validate()`` stopped by a Ctrl-C, then ``tg.save()``: the checkpoint holds its
    start and the run redoes it whole at ``train()`` (it was dropped: one validation less),
    with the TrainGenerator's threshold setting back as it was."""
    reference = make_tg(data, None)
    reference.train()
    reference.validate()
    armed: list[int] = []
    half_way = stop_once(lambda tg: bool(armed) and tg.state.val_iters % 2 == 1)
    tg = make_tg(data, tmp_path / "cut", callbacks=[{"val:iter": half_way}])
    tg.train()
    armed.append(1)
    with pytest.raises(KeyboardInterrupt):
        tg.validate()
    tg.save()
    assert tg._validation.start is None and tg.state.train_loop_done  # still the run's
    tg.train()
    assert_same_record(tg, reference)
