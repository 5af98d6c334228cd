"""Fixes of suspected bugs carried over from earlier reviews: a Keras callback's epoch end
redone after a cut validation, TensorBoard's purge step at a preemption, ``deeptrain
migrate`` of a custom ``set_nums`` order."""

from __future__ import annotations

import keras
import pytest

from deeptrain import TrainGenerator
from test_train_generator import classification_data, classifier, generators

pytestmark = pytest.mark.slow

NEVER_BETTER = 1e9  # min_delta: no validation after the first counts as an improvement


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return classification_data(tmp_path_factory.mktemp("cls"))  # 6 train, 2 val batches


def lr_of(model) -> float:
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class CutOnce(keras.callbacks.Callback):
    """Raises KeyboardInterrupt once, in ``on_epoch_end`` of epoch ``epoch``: after the
    callbacks before it in the list got the epoch's end (its validation's end)."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch, self.cut = epoch, False

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch and not self.cut:
            self.cut = True
            raise KeyboardInterrupt


@pytest.mark.parametrize("where", ["val:batch", "keras epoch end"])
def test_a_validation_cut_and_redone_ends_once_for_reduce_lr_on_plateau(data, where):
    """A validation cut half-way (an error, a second Ctrl-C) is redone from its start by the
    next ``train()``, Keras' callbacks' counters rewound with it; a cut after a
    ``ReduceLROnPlateau`` got its end left the rate it had cut, and the redone end cut it
    again (1/4 instead of 1/2). Rates and counters are those of a run without the cut."""
    runs = []
    for cut in (False, True):
        reduce = keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=1, cooldown=1, min_delta=NEVER_BETTER
        )
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=9, min_delta=NEVER_BETTER)
        sent = []

        def val_batch(tg, sent=sent, cut=cut):
            if cut and where == "val:batch" and tg.state.epoch == 2 and not sent:
                sent.append(1)
                raise KeyboardInterrupt

        late = CutOnce(1 if cut and where == "keras epoch end" else -1)
        dg, vdg = generators(data)
        tg = TrainGenerator(
            classifier(),
            dg,
            vdg,
            epochs=3,
            callbacks=[stop, reduce, late, {"val:batch": val_batch}],
            iter_verbosity=0,
            plot_history_freq=None,
        )
        if cut:
            with pytest.raises(KeyboardInterrupt):
                tg.train()
            assert tg.state.epoch == 2  # (inside the validation after epoch 1 or 2)
        tg.train()
        runs.append((lr_of(tg.model), reduce.wait, reduce.cooldown_counter, reduce.best, stop.wait))
        assert tg.state.times_validated == 3
    assert runs[1] == runs[0]
    assert runs[0][0] == pytest.approx(0.0025)  # cut at epochs 1 and 2 (patience 1, cooldown 1)


# -- TensorBoard: a preemption during a validation -----------------------------------------
def histogram_steps(directory) -> dict[str, list[tuple[int, float, float, float]]]:
    """Each histogram tag's ``(step, count, min, max)`` as TensorBoard shows them."""
    from test_tracking import read_events

    events = read_events(directory)
    return {
        tag: [
            (e.step, e.histogram_value.num, e.histogram_value.min, e.histogram_value.max)
            for e in events.Histograms(tag)
        ]
        for tag in events.Tags()["histograms"]
    }


def test_histograms_at_a_checkpoint_taken_during_a_validation_are_kept(tmp_path):
    """SIGTERM during the validation after epoch 1 (step 4): the checkpoint is taken at the
    validation's start, and the resumed event file hides step 4 on (its validation is
    recorded again). The epoch's histograms at step 4 were hidden with it and never
    written again; now they are, with the same values as in a run without the SIGTERM."""
    import os
    import signal

    from deeptrain.tracking import TensorBoardLogger
    from deeptrain.training.interrupts import TrainingPreempted
    from test_tracking import make_data, make_traingen, read_events, scalars

    data = make_data(tmp_path / "data")  # 4 train batches per epoch, 2 validation batches
    kw = dict(histogram_freq={"epoch": 1}, histograms=("weights", "gradients"))
    runs = []
    for preempt in (False, True):
        sent: list[int] = []

        def sigterm(tg, sent=sent, preempt=preempt):
            if preempt and tg.state.times_validated == 0 and not sent:
                sent.append(1)
                os.kill(os.getpid(), signal.SIGTERM)  # a checkpoint after this iteration

        logs = tmp_path / f"logs{preempt}"
        keras.backend.clear_session()  # (the same layer names, so the same tags, in each)
        tg = make_traingen(data, logs, [TensorBoardLogger(**kw), {"val:batch": sigterm}])
        if preempt:
            with pytest.raises(TrainingPreempted):
                tg.train()
            logdir = tg.logdir
            keras.backend.clear_session()
            tg = make_traingen(data, logs, [TensorBoardLogger(**kw)], loadpath=logdir)
        tg.train()
        directory = tg.logdir / "tensorboard"
        runs.append(histogram_steps(directory))
        val = [s for s, _ in scalars(read_events(directory), "val/loss")]
        assert val == [4, 8]
    plain, resumed = runs
    assert len(plain) == 8 and all([e[0] for e in v] == [4, 8] for v in plain.values())
    assert resumed == plain


# -- deeptrain migrate: a custom set_nums order ---------------------------------------------
@pytest.fixture(scope="module")
def data_06(tmp_path_factory):
    from test_compat_06 import classification_data

    return classification_data(tmp_path_factory.mktemp("cls06"))  # 6 train, 2 val files


@pytest.mark.parametrize("order", [["3", "1", "2"], ["6", "4"]])
def test_migrate_keeps_a_custom_set_nums_order_of_0_6(data_06, tmp_path, order):
    """A 0.6 run whose DataGenerator had ``set_nums`` in an order of its own (or a subset
    out of order), unshuffled: 0.6 served them in that order every epoch. Migrated, they
    were put in numeric order, so the same ``set_nums`` were refused at load, and sorted
    ones served another order. Now the order is kept: loaded with the same ``set_nums``,
    the next epoch serves them as 0.6 did."""
    from deeptrain import DataGenerator
    from deeptrain.migrate import migrate
    from test_compat_06 import FILE_SIZE, datagens, write_logdir_06
    from test_compat_06 import classifier as classifier_06

    data = data_06
    old = write_logdir_06(
        tmp_path / "logs06",
        data,
        classifier_06().get_weights(),
        datagen=datagen_06(data / "train", order),
    )
    ckpt = migrate(old, tmp_path / "logs" / "M3__model-adam")

    dg = DataGenerator(
        data / "train",
        batch_size=FILE_SIZE,
        labels_path=data / "train" / "labels.h5",
        set_nums=order,
    )
    _, vdg = datagens(data)
    tg = TrainGenerator(classifier_06(), dg, vdg, loadpath=ckpt, epochs=3, iter_verbosity=0)
    tg.train()  # epoch 2, as 0.6 would have served it
    assert tg.epoch == 3 and tg._set_name_cache[-len(order) :] == order


def datagen_06(directory, order: list[str]):
    """0.6's DataGenerator as pickled, at epoch 2 with ``set_nums=order``, unshuffled."""
    from test_compat_06 import DataGenerator06, DataLoader06

    dg, loader = DataGenerator06(), DataLoader06()
    loader._load_fn = loader.numpy_loader
    dg.__dict__.update(
        data_path=str(directory),
        epoch=2,
        set_nums_original=list(order),
        set_nums_to_process=list(order[1:]),
        data_loader=loader,
        shuffle=False,
    )
    return dg


def test_set_nums_0_6_inferred_from_one_hdf5_file_are_put_in_numeric_order():
    """0.6 inferred the set nums of one HDF5 file in its key order, this version in numeric
    order: those are reordered (else the load would refuse the same data), a given order
    is not, nor one of files in a directory (0.6 inferred those in numeric order)."""
    from deeptrain.migrate import _set_nums_06
    from deeptrain.util.unpickle import LegacyRecord

    keys = sorted(map(str, range(12)))  # '0', '1', '10', '11', '2', ...
    assert _set_nums_06(keys, None) == [str(k) for k in range(12)]
    assert _set_nums_06(["3", "1", "2"], None) == ["3", "1", "2"]
    directory = LegacyRecord.__new__(LegacyRecord)
    directory.__setstate__({"_is_dataset": False})  # files: the key order was given
    assert _set_nums_06(keys, directory) == keys
