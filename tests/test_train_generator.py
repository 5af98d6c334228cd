"""TrainGenerator end to end on the TensorFlow backend: tiny real models, real files."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import keras
import numpy as np
import pytest

from deeptrain import DataGenerator, TrainGenerator
from deeptrain.preprocessing import numpy_data_to_numpy_sets
from deeptrain.util.preprocessors import GenericPreprocessor, Preprocessor

pytestmark = pytest.mark.slow


def classification_data(
    root: Path, n_train=192, n_val=64, features=8, file_size=32, seed=0, binary=False
):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n_train + n_val)
    x = (rng.normal(size=(n_train + n_val, features)) + labels[:, None]).astype("float32")
    y = labels[:, None].astype("float32") if binary else np.eye(2, dtype="float32")[labels]
    numpy_data_to_numpy_sets(
        x[:n_train], y[:n_train], root / "train", batch_size=file_size, shuffle=False
    )
    numpy_data_to_numpy_sets(
        x[n_train:], y[n_train:], root / "val", batch_size=file_size, shuffle=False
    )
    return root


def classifier(features=8, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((features,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.Adam(0.01), "categorical_crossentropy", metrics=["accuracy"])
    return model


def generators(root: Path, batch_size=32, val_batch_size=32, **kw):
    dg = DataGenerator(
        root / "train", batch_size=batch_size, labels_path=root / "train" / "labels.h5", **kw
    )
    vdg = DataGenerator(
        root / "val", batch_size=val_batch_size, labels_path=root / "val" / "labels.h5"
    )
    return dg, vdg


def quiet(**kw):
    return dict(iter_verbosity=0, plot_history_freq=None, **kw)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return classification_data(tmp_path_factory.mktemp("cls"))


def test_dense_classifier_learns_and_counts(data, tmp_path):
    dg, vdg = generators(data, batch_size=16, shuffle=True)
    tg = TrainGenerator(
        classifier(), dg, vdg, epochs=3, logs_dir=tmp_path / "logs", iter_verbosity=0
    )
    tg.train()
    per_epoch = len(dg)
    assert per_epoch == 12 and tg._fit_iters == 36 and tg._batches_fit == 36
    assert tg.epoch == 3 and tg._times_validated == 3 and tg.val_epoch == 3  # once each
    assert len(tg.history["loss"]) == 36 and len(tg.val_history["loss"]) == 3
    assert tg.val_history["loss"][-1] < tg.val_history["loss"][0]
    assert tg.history["loss"][-1] < tg.history["loss"][per_epoch - 1]  # epoch means
    assert list(tg.history) == ["loss", "accuracy"]
    assert tg.best_key_metric == min(tg.val_history["loss"])
    log = [json.loads(line) for line in (tg.logdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["event"] for r in log].count("train_batch") == 36
    assert [r["event"] for r in log].count("validation") == 3
    png = tg.logdir / "history.png"
    assert png.stat().st_size > 10_000


def test_evaluate_mode_weights_batches_by_sample_count(tmp_path):
    root = classification_data(tmp_path, n_val=80, file_size=16)  # val: 16, 16, 16, 16, 16
    dg, vdg = generators(root, batch_size=32, val_batch_size=32)  # val batches 32, 32, 16
    model = classifier()
    tg = TrainGenerator(model, dg, vdg, epochs=1, **quiet())
    tg.train()
    x = np.concatenate([np.load(root / "val" / f"batch__{i}.npy") for i in range(1, 6)])
    y = np.concatenate(
        [
            DataGenerator(root / "val", 16, labels_path=root / "val/labels.h5").all_labels[str(i)]
            for i in range(1, 6)
        ]
    )
    expected = model.evaluate(x, y, batch_size=80, verbose=0, return_dict=True)
    assert tg.val_history["loss"][0] == pytest.approx(expected["loss"], rel=1e-5)
    assert tg.val_history["accuracy"][0] == pytest.approx(expected["accuracy"], rel=1e-5)


def test_evaluate_and_predict_modes_agree(data):
    results = {}
    for mode in ("evaluate", "predict"):
        dg, vdg = generators(data)
        tg = TrainGenerator(classifier(), dg, vdg, epochs=1, eval_fn=mode, **quiet())
        tg.train()
        assert tg.val_mode == mode
        results[mode] = {k: v[0] for k, v in tg.val_history.items()}
    assert results["predict"]["loss"] == pytest.approx(results["evaluate"]["loss"], rel=1e-4)
    assert results["predict"]["accuracy"] == pytest.approx(results["evaluate"]["accuracy"])


def small_model(out=2, act="softmax"):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(out, activation=act),
        ]
    )


@pytest.mark.parametrize(
    "act, loss, metrics",
    [
        (None, keras.losses.CategoricalCrossentropy(from_logits=True), ["accuracy"]),
        ("softmax", keras.losses.CategoricalCrossentropy(label_smoothing=0.2), ["accuracy"]),
        ("softmax", "mse", ["accuracy", "cosine_similarity", "kl_divergence"]),
    ],
    ids=["from_logits", "label_smoothing", "mse"],
)
def test_predict_mode_computes_what_evaluate_computes(data, act, loss, metrics):
    """The compiled loss object's settings count; 'accuracy' is chosen by shapes as Keras
    chooses it (categorical here, whatever the loss); cosine similarity is the metric's
    (1: same direction), not the loss's; a divergence is minimized."""
    results = {}
    for mode in ("evaluate", "predict"):
        model = small_model(act=act)
        model.compile(keras.optimizers.Adam(0.0), loss, metrics=metrics)
        dg, vdg = generators(data)
        tg = TrainGenerator(
            model, dg, vdg, epochs=1, eval_fn=mode, key_metric=metrics[-1], **quiet()
        )
        results[mode] = tg.validate(record_progress=False)
        assert tg.max_is_best is (metrics[-1] != "kl_divergence")
    assert results["predict"] == pytest.approx(results["evaluate"], rel=1e-4)


def test_metric_names_as_keras_makes_them(data):
    """A function metric, a metric repeated as weighted: the names Keras reports, from the
    start (the key metric is not swapped for another at the first step)."""

    def my_mae(y, p):
        return keras.ops.mean(keras.ops.abs(y - p), axis=-1)

    model = small_model()
    model.compile(
        "adam",
        "categorical_crossentropy",
        metrics=["accuracy", my_mae],
        weighted_metrics=["accuracy"],
    )
    dg, vdg = generators(data)
    tg = TrainGenerator(
        model, dg, vdg, epochs=1, key_metric="accuracy", class_weights={0: 1.0, 1: 5.0}, **quiet()
    )
    expected = ["loss", "accuracy", "my_mae", "weighted_accuracy"]
    assert tg.train_metrics == expected
    tg.train()
    assert tg.train_metrics == list(tg.val_history) == expected and tg.key_metric == "accuracy"


def test_explicit_val_mode_for_a_custom_eval_fn(data):
    dg, vdg = generators(data)
    model = classifier()
    with pytest.raises(ValueError, match="val_mode"):
        TrainGenerator(model, dg, vdg, eval_fn=lambda x, y, sw: model(x), **quiet())
    tg = TrainGenerator(
        model,
        dg,
        vdg,
        eval_fn=lambda x, y, sw: model.predict_on_batch(x),
        val_mode="predict",
        val_metrics=["loss", "f1_score"],
        **quiet(),
    )
    tg.train()
    assert set(tg.val_history) == {"loss", "f1_score"}


@pytest.mark.parametrize(
    "val_freq, expected",
    [({"epoch": 1}, 2), ({"epoch": 2}, 1), ({"batch": 2}, 6), ({"iter": 3}, 4), (None, 0)],
)
def test_val_freq_modes(data, val_freq, expected):
    dg, vdg = generators(data)  # 6 batches per epoch, 2 epochs
    tg = TrainGenerator(classifier(), dg, vdg, epochs=2, val_freq=val_freq, **quiet())
    tg.train()
    assert tg._times_validated == expected == len(tg.key_metric_history)


def test_val_freq_val_is_rejected_and_unknown_keys_suggest(data):
    dg, vdg = generators(data)
    with pytest.raises(ValueError, match="val_freq"):
        TrainGenerator(classifier(), dg, vdg, val_freq={"val": 2})
    with pytest.raises(TypeError, match="did you mean 'best_subset_size'"):
        TrainGenerator(classifier(), dg, vdg, best_subset_sise=3)
    for typo, meant in (("epocs", "epochs"), ("val_freqs", "val_freq"), ("callback", "callbacks")):
        with pytest.raises(TypeError, match=f"'{typo}'; did you mean '{meant}'"):
            TrainGenerator(classifier(), dg, vdg, **{typo: 1})
    with pytest.raises(ValueError, match="key_metric='f1_score'"):
        TrainGenerator(classifier(), dg, vdg, key_metric="f1_score")


def test_shared_datagen_or_preprocessor_is_refused_before_training(data):
    """One DataGenerator, or one preprocessor instance, for both training and validation
    would move one data position from both loops: refused, naming what is shared."""
    dg, _ = generators(data)
    model = classifier()
    with pytest.raises(ValueError, match="datagen and val_datagen are the same DataGenerator"):
        TrainGenerator(model, dg, dg)
    shared = GenericPreprocessor()  # nothing but the position: still not shareable
    dg = DataGenerator(data / "train", batch_size=32, preprocessor=shared)
    vdg = DataGenerator(data / "val", batch_size=32, preprocessor=shared)
    with pytest.raises(ValueError, match="share one GenericPreprocessor instance"):
        TrainGenerator(model, dg, vdg)
    assert model.optimizer.iterations.numpy() == 0


def test_fit_fn_fit_returns_metrics_and_trains_as_train_on_batch(data):
    """``fit_fn='fit'`` keeps a batch's rows in order (fit shuffles by default: row i of a
    stateful RNN's windows continues sequence i), so it trains as the default step does."""
    weights = {}
    for fit_fn in ("fit", "train_on_batch"):
        dg, vdg = generators(data)
        tg = TrainGenerator(classifier(), dg, vdg, fit_fn=fit_fn, **quiet())
        tg.train()
        assert len(tg.history["loss"]) == 6 and all(np.isfinite(tg.history["loss"]))
        weights[fit_fn] = tg.model.get_weights()
    for a, b in zip(weights["fit"], weights["train_on_batch"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_fit_fn_returning_nothing_is_named(data):
    dg, vdg = generators(data)
    model = classifier()

    def fit(x, y, sw):
        model.train_on_batch(x, y, sample_weight=sw)  # (forgot to return its metrics)

    tg = TrainGenerator(model, dg, vdg, fit_fn=fit, **quiet())
    with pytest.raises(TypeError, match="the fit/eval function returned None"):
        tg.train()


def recording_fit_fn(model, seen):
    """A fit_fn that records what reaches the model and the loss computed by hand."""

    def fit(x, y, sw):
        preds = np.asarray(model.predict_on_batch(x), dtype="float64")
        ce = -(y * np.log(np.clip(preds, 1e-7, 1 - 1e-7))).sum(axis=1)
        out = model.train_on_batch(x, y, sample_weight=sw, return_dict=True)
        seen.append(
            (
                None if sw is None else np.asarray(sw),
                y,
                float(out["loss"]),
                float(np.mean(ce * (1 if sw is None else sw))),
            )
        )
        return out

    return fit


def test_class_weights_reach_the_model_and_change_the_loss_as_by_hand(data):
    dg, vdg = generators(data)
    model = classifier()
    seen = []
    tg = TrainGenerator(
        model,
        dg,
        vdg,
        class_weights={0: 3, 1: 1},
        fit_fn=recording_fit_fn(model, seen),
        val_freq=None,
        **quiet(),
    )
    tg.train()
    assert len(seen) == 6
    for sw, y, keras_loss, hand_loss in seen:
        assert np.array_equal(sw, np.where(y.argmax(1) == 0, 3.0, 1.0))
        assert keras_loss == pytest.approx(hand_loss, rel=1e-4)
    unweighted = []
    dg, vdg = generators(data)
    TrainGenerator(
        model, dg, vdg, fit_fn=recording_fit_fn(model, unweighted), val_freq=None, **quiet()
    ).train()
    assert all(sw is None for sw, *_ in unweighted)


def test_class_weights_refuse_labels_with_a_class_per_timestep():
    """Labels of shape (samples, timesteps, classes) have no one class per sample: refused,
    as Keras' class_weight refuses them (the argmax over all of them was a position)."""
    from deeptrain.training.weights import sample_weights

    per_step = np.eye(3, dtype="float32")[np.random.default_rng(0).integers(0, 3, (4, 5))]
    with pytest.raises(ValueError, match=r"one class per sample.*\(4, 5, 3\)"):
        sample_weights(per_step, 4, {0: 1.0, 2: 4.0}, None, None, None)
    one_hot = per_step[:, 0]
    weights = sample_weights(one_hot, 4, {0: 1.0, 2: 4.0}, None, None, None)
    np.testing.assert_array_equal(weights, np.where(one_hot.argmax(1) == 2, 4.0, 1.0))


def test_no_best_metric_sentinel_and_negative_maximised_metric(data):
    dg, vdg = generators(data)
    tg = TrainGenerator(
        classifier(),
        dg,
        vdg,
        epochs=2,
        eval_fn="predict",
        key_metric="neg_loss",
        max_is_best=True,
        custom_metrics={"neg_loss": lambda t, p: -float(np.mean((t - p) ** 2))},
        **quiet(),
    )
    assert tg.best_key_metric is None
    tg.train()
    assert tg.best_key_metric == max(tg.key_metric_history) < 0


def threshold_searching_traingen(data):
    """A binary classifier's TrainGenerator searching the threshold that maximises F1."""
    dg, vdg = generators(data)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy")
    tg = TrainGenerator(
        model,
        dg,
        vdg,
        eval_fn="predict",
        key_metric="f1_score",
        dynamic_predict_threshold_min_max=(0.05, 0.95),
        **quiet(),
    )
    return tg, model, vdg


def test_threshold_search_maximises_the_key_metric(tmp_path):
    data = classification_data(tmp_path, binary=True)
    tg, model, vdg = threshold_searching_traingen(data)
    tg.train()
    from deeptrain import metrics

    x = np.concatenate([np.load(data / "val" / f"batch__{i}.npy") for i in (1, 2)])
    y = np.concatenate([vdg.all_labels[s] for s in ("1", "2")])
    preds = model.predict(x, verbose=0)
    f1s = {
        th: metrics.f1_score(y, preds, pred_threshold=th)
        for th in np.round(np.arange(0.05, 0.951, 0.01), 2)
    }
    assert tg.val_history["f1_score"][0] == pytest.approx(max(f1s.values()))
    assert f1s[round(tg.predict_threshold, 2)] == pytest.approx(max(f1s.values()))


def test_an_evaluation_of_ones_own_leaves_the_run_as_it_was(tmp_path):
    """``validate(record_progress=False)`` touches no counter of the run: the threshold the
    run searched, the validation data's position (its epoch, the next validation's batches,
    its random state whatever its ``saveskip_list``), also with ``restart=True``."""
    from deeptrain.saving.rollback import whole_datagen_state as whole

    data = classification_data(tmp_path, binary=True, n_val=192)  # 6 val sets
    tg, model, vdg = threshold_searching_traingen(data)
    vdg.shuffle, vdg.saveskip_list = True, ["rng"]  # (its random state kept all the same)
    tg.train()
    assert vdg.set_nums_to_process != sorted(vdg.set_nums_to_process, key=int)  # shuffled
    before = (tg.predict_threshold, tg.state.val_epoch, whole(vdg), tg.state.to_dict())
    kernel, bias = model.layers[0].get_weights()
    model.layers[0].set_weights([kernel, bias - 3])  # another model: another best threshold
    summary = tg.validate(record_progress=False, restart=True)  # (nothing to restart)
    assert summary["f1_score"] >= 0  # it evaluated, with a threshold of its own
    after = (tg.predict_threshold, tg.state.val_epoch, whole(vdg), tg.state.to_dict())
    assert after[:3] == before[:3]
    assert {k: v for k, v in after[3].items() if not k.startswith("val_temp")} == {
        k: v for k, v in before[3].items() if not k.startswith("val_temp")
    }


class Crop24(Preprocessor):
    """The seed example's random crop (28x28 -> 24x24)."""

    def process(self, batch, labels):
        x0, y0 = np.random.randint(0, 4, 2)
        return batch[:, x0 : x0 + 24, y0 : y0 + 24], labels


def test_seed_autoencoder_with_crops_in_training_and_validation(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        (tmp_path / split).mkdir()
        for i in range(1, n + 1):
            np.save(tmp_path / split / f"batch__{i}.npy", rng.random((8, 28, 28, 1), "float32"))
    seen = {"train": set(), "val": set()}
    keras.utils.set_random_seed(0)
    ipt = keras.Input(batch_shape=(8, 24, 24, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(ipt)
    out = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    model = keras.Model(ipt, out)
    model.compile("nadam", "mse")

    def fit(x, y, sw):
        seen["train"].add(x.shape)
        assert y is x  # input_as_labels
        return model.train_on_batch(x, y, return_dict=True)

    def evaluate(x, y, sw):
        seen["val"].add(x.shape)
        return model.test_on_batch(x, y, return_dict=True)

    dg = DataGenerator(tmp_path / "train", batch_size=8, preprocessor=Crop24())
    vdg = DataGenerator(tmp_path / "val", batch_size=8, preprocessor=Crop24)
    tg = TrainGenerator(
        model, dg, vdg, epochs=2, input_as_labels=True, fit_fn=fit, eval_fn=evaluate, **quiet()
    )
    tg.train()
    assert seen == {"train": {(8, 24, 24, 1)}, "val": {(8, 24, 24, 1)}}
    assert tg.val_history["loss"][1] < tg.val_history["loss"][0]


def windowed_data(root: Path, n_files=2, file_size=4, timesteps=12):
    rng = np.random.default_rng(1)
    for split in ("train", "val"):
        x = rng.normal(size=(n_files * file_size, timesteps, 2)).astype("float32")
        y = (x[:, :, 0].sum(1) > 0).astype("float32")[:, None]
        numpy_data_to_numpy_sets(x, y, root / split, batch_size=file_size, shuffle=False)
    return root


def stateful_lstm(batch=4):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(batch_shape=(batch, 4, 2)),
            keras.layers.LSTM(6, stateful=True),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    return model


def test_stateful_lstm_on_windows(tmp_path):
    root = windowed_data(tmp_path)
    ts = dict(preprocessor="timeseries", preprocessor_configs={"window_size": 4})
    dg = DataGenerator(root / "train", batch_size=4, labels_path=root / "train/labels.h5", **ts)
    vdg = DataGenerator(root / "val", batch_size=4, labels_path=root / "val/labels.h5", **ts)
    weights = []
    model = stateful_lstm()

    def fit(x, y, sw):
        weights.append(sw)
        return model.train_on_batch(x, y, sample_weight=sw, return_dict=True)

    tg = TrainGenerator(
        model,
        dg,
        vdg,
        epochs=2,
        reset_statefuls=True,
        fit_fn=fit,
        loss_weighted_slices_range=(0.5, 1.5),
        **quiet(),
    )
    tg.train()
    assert tg._fit_iters == 3 * 2 * 2  # windows x batches x epochs
    assert tg._batches_fit == 4 and len(tg.history["loss"]) == 4
    assert tg._val_iters == 3 * 2 * 2
    # slice weights reach the model (0.6 dropped them without class_weights)
    assert [float(w[0]) for w in weights[:3]] == [0.5, 1.0, 1.5]
    from deeptrain.backend.stateful import get_states

    assert all(not np.any(s) for states in get_states(model).values() for s in states)


def test_keyboard_interrupt_resumes_without_skipping_or_repeating(data):
    def run(interrupt_at=None, val_interrupt_at=None):
        dg, vdg = generators(data, batch_size=16, shuffle=True, seed=3)
        calls = {"train": 0, "val": 0}

        def on_iter(tg):
            calls["train"] += 1
            if calls["train"] == interrupt_at:
                os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, mid-iteration

        def on_val_iter(tg):
            calls["val"] += 1
            if calls["val"] == val_interrupt_at:
                os.kill(os.getpid(), signal.SIGINT)

        tg = TrainGenerator(
            classifier(),
            dg,
            vdg,
            epochs=2,
            **quiet(callbacks={"train:iter": on_iter, "val:iter": on_val_iter}),
        )
        interrupts = 0
        while True:
            try:
                tg.train()
                break
            except KeyboardInterrupt:
                interrupts += 1
                status = tg.interrupt_status()
                if val_interrupt_at:
                    assert status == (False, True)
        return tg, interrupts

    reference, _ = run()
    for kwargs in ({"interrupt_at": 5}, {"interrupt_at": 12}, {"val_interrupt_at": 1}):
        tg, interrupts = run(**kwargs)
        assert interrupts == 1
        assert tg.set_name_cache == reference.set_name_cache
        assert tg._fit_iters == reference._fit_iters == 24
        assert tg.val_history == reference.val_history
        assert tg.history == reference.history


def test_callback_objects_and_functions_in_order(data):
    from deeptrain.callbacks import TraingenCallback

    events = []

    class Recorder(TraingenCallback):
        def on_train_epoch_end(self, stage):
            events.append(("obj", stage))

        def on_val_end(self, stage):
            events.append(("obj", stage))

    dg, vdg = generators(data)
    tg = TrainGenerator(
        classifier(),
        dg,
        vdg,
        epochs=1,
        **quiet(
            callbacks=[
                {"train:epoch": lambda tg: events.append(("fn", "train:epoch"))},
                Recorder(),
                {("val_end", "train:epoch"): lambda tg: events.append(("fn", "tuple"))},
            ]
        ),
    )
    assert tg.callbacks.objects[0].tg is tg
    tg.train()
    assert events == [
        ("fn", "train:epoch"),
        ("obj", "train:epoch"),
        ("fn", "train:epoch"),
        ("obj", ("val_end", "train:epoch")),
        ("fn", "tuple"),
    ]
    with pytest.raises(ValueError, match="stage 'train:step'"):
        TrainGenerator(classifier(), dg, vdg, callbacks={"train:step": print})


def test_plot_configs_shape_the_history_figure(data, tmp_path):
    dg, vdg = generators(data, batch_size=32)
    tg = TrainGenerator(
        classifier(),
        dg,
        vdg,
        epochs=2,
        iter_verbosity=0,
        logs_dir=tmp_path / "logs",
        plot_first_pane_max_vals=1,
        plot_configs={
            "fig_kw": {"figsize": (8, 6)},
            "0": {"ylims": (0, 3), "color": ["r"], "vhlines": {"v": "_hist_vlines", "h": 1}},
        },
    )
    tg.train()
    fig = tg._history_fig
    assert tuple(fig.get_size_inches()) == (8, 6)
    top, bottom = fig.axes  # accuracy (val) gets the second pane
    assert top.get_ylim() == (0, 3)
    labels = [line.get_label() for line in top.lines if not line.get_label().startswith("_")]
    assert labels == ["Loss (train)", "Acc (train)", "Loss (val)"]
    assert all(line.get_color() == "r" for line in top.lines[:3])  # extended to every line
    train_loss = top.lines[0]
    np.testing.assert_array_equal(train_loss.get_xdata(), tg._train_x_ticks)
    np.testing.assert_allclose(train_loss.get_ydata(), tg.history["loss"])
    assert [lab.get_label() for lab in bottom.lines][:1] == ["Acc (val)"]
    np.testing.assert_array_equal(bottom.lines[0].get_xdata(), [1, 2])  # vs validations
    with pytest.raises(ValueError, match="plot_configs key 'panes'"):
        TrainGenerator(classifier(), dg, vdg, plot_configs={"panes": {}})


def test_best_subset_is_this_validations_best_batch(tmp_path):
    root = classification_data(tmp_path, n_val=96, file_size=16)
    dg, vdg = generators(root, batch_size=16)
    vdg.shuffle = True  # the batch order differs between validations
    seen = []

    def check(tg):
        names = tg._val_set_name_cache[-len(tg.state.val_temp_sizes) :]
        losses = tg.state.val_temp_history["loss"]
        seen.append((tg.best_subset_nums, [names[int(np.argmin(losses))]]))

    tg = TrainGenerator(
        classifier(),
        dg,
        vdg,
        epochs=3,
        best_subset_size=1,
        callbacks={"val:epoch": check},
        **quiet(),
    )
    tg.train()
    assert len(seen) == 3 and all(got == want for got, want in seen), seen


def test_predict_mode_loss_follows_a_recompile(data, tmp_path):
    dg, vdg = generators(data, batch_size=32)
    tg = TrainGenerator(classifier(), dg, vdg, epochs=1, eval_fn="predict", **quiet())
    tg.train()
    tg.model.compile("adam", "mae")  # multi-phase training: a new loss
    summary = tg.validate(record_progress=False)
    x = np.concatenate([np.load(p) for p in sorted((data / "val").glob("*.npy"))])
    import h5py

    with h5py.File(data / "val" / "labels.h5") as f:
        y = np.concatenate([f[k][()] for k in sorted(f, key=int)])
    mae = float(np.mean(np.abs(tg.model.predict_on_batch(x) - y)))
    assert summary["loss"] == pytest.approx(mae, rel=1e-5)


def test_a_model_of_two_inputs_gets_a_weight_per_sample(tmp_path):
    """A batch of several inputs (a list of arrays, from a preprocessor) has as many
    samples as each array has rows, not as many as it has inputs: class weights and the
    predict-mode validation weigh every sample (they had ``len(x)``: 2 weights)."""
    from deeptrain.util.preprocessors import Preprocessor

    class TwoInputs(Preprocessor):
        def process(self, batch, labels):
            return [batch[:, :4], batch[:, 4:]], labels

    data = classification_data(tmp_path, n_train=64, n_val=64)
    keras.utils.set_random_seed(0)
    halves = [keras.Input((4,)) for _ in range(2)]
    out = keras.layers.Dense(2, "softmax")(keras.layers.Concatenate()(halves))
    model = keras.Model(halves, out)
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    dg, vdg = generators(data)
    dg.preprocessor, vdg.preprocessor = TwoInputs(), TwoInputs()
    tg = TrainGenerator(
        model, dg, vdg, epochs=1, eval_fn="predict", class_weights={0: 1, 1: 3}, **quiet()
    )
    x, _, sw = tg.get_data()
    assert sw is not None and sw.shape == (len(x[0]),)
    tg.train()
    assert tg.state.times_validated == 1 and np.isfinite(tg.val_history["loss"][-1])


@pytest.mark.backends
def test_a_metric_of_one_value_per_class_is_named_in_the_error(data):
    """``keras.metrics.F1Score()`` gives a value per class: the error names the metric and
    what to set, on every backend (on TF and JAX it was 'only 0-dimensional arrays can be
    converted to Python scalars')."""
    model = classifier()
    model.compile("adam", "categorical_crossentropy", metrics=[keras.metrics.F1Score()])
    dg, vdg = generators(data)
    tg = TrainGenerator(model, dg, vdg, epochs=1, **quiet())
    with pytest.raises(TypeError, match=r"metric 'f1_score' must be a scalar.*average="):
        tg.train()
