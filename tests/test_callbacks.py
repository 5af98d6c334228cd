"""Built-in callbacks in real TrainGenerator runs (TensorFlow backend): what they record,
the files they write (read back and compared), and the figures (decoded PNGs)."""

from __future__ import annotations

import json
import logging
import random
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
from matplotlib.image import imread

from deeptrain import DataGenerator, TrainGenerator, visuals
from deeptrain.callbacks import (
    PeriodicCallback,
    RandomSeedSetter,
    TraingenCallback,
    TraingenLogger,
    VizAE2D,
    binary_preds_distribution_cb,
    binary_preds_per_iteration_cb,
    infer_train_hist_cb,
    make_layer_hists_cb,
    read_log,
)
from deeptrain.preprocessing import numpy_data_to_numpy_sets

BS, N_TRAIN, N_VAL, F = 8, 3, 2, 4


def write(root: Path, x: np.ndarray, y: np.ndarray, n_train: int = N_TRAIN) -> Path:
    """The first ``n_train`` batches to ``root/train``, the rest to ``root/val``."""
    cut = n_train * BS
    for name, (xs, ys) in {"train": (x[:cut], y[:cut]), "val": (x[cut:], y[cut:])}.items():
        numpy_data_to_numpy_sets(xs, ys, root / name, batch_size=BS, shuffle=False, verbose=0)
    return root


def traingen(model, root: Path, logdir: Path | None, callbacks, epochs: int = 1, **kw):
    dgs = [
        DataGenerator(root / n, batch_size=BS, labels_path=root / n / "labels.h5", seed=0)
        for n in ("train", "val")
    ]
    return TrainGenerator(
        model,
        *dgs,
        epochs=epochs,
        logdir=logdir,
        callbacks=callbacks,
        iter_verbosity=0,
        plot_history_freq=None,
        **kw,
    )


def val_batches(root: Path) -> list[np.ndarray]:
    return [np.load(root / "val" / f"batch__{k}.npy") for k in range(1, N_VAL + 1)]


def assert_image(path: Path, min_side: int = 100) -> np.ndarray:
    """A real, non-blank PNG."""
    assert path is not None and path.suffix == ".png" and path.exists(), path
    img = imread(path)
    assert min(img.shape[:2]) >= min_side and img.shape[2] in (3, 4)
    assert img[..., :3].std() > 0.01  # not one flat colour
    return img


@pytest.fixture(scope="module")
def binary_data(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=((N_TRAIN + N_VAL) * BS, F)).astype("float32")
    y = (x[:, :1] + 0.3 * x[:, 1:2] > 0).astype("float32")
    return write(tmp_path_factory.mktemp("binary"), x, y)


def binary_model(dropout: float = 0.3) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((F,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dropout(dropout),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    return model


# -- frequencies and seeds ---------------------------------------------------------------------
def test_periodic_callback_counts_and_state(binary_data):
    class Every(PeriodicCallback):
        def __init__(self, freq):
            super().__init__(freq)
            self.due = []

        def on_due(self, stage):
            self.due.append((stage, self.tg._batches_fit))

    cb = Every({"train:batch": 2, "val_end": 1})
    tg = traingen(binary_model(), binary_data, None, cb, epochs=2)
    tg.train()
    # 6 batches fit: due after batches 2, 4, 6; two validations, each right after an epoch
    assert cb.due == [
        ("train:batch", 2),
        (("val_end", "train:epoch"), 3),
        ("train:batch", 4),
        ("train:batch", 6),
        (("val_end", "train:epoch"), 6),
    ]
    state = json.loads(json.dumps(cb.state_dict()))
    assert state == {"counters": {"train:batch": 6, "val_end": 2}}
    fresh = Every({"train:batch": 2, "val_end": 1})
    fresh.load_state_dict(state)
    assert fresh._counters == cb._counters
    with pytest.raises(ValueError, match="freq stage 'load'"):  # 'save' counts saves
        Every({"load": 1})
    with pytest.raises(ValueError, match="int >= 1"):
        Every({"train:epoch": 0})


class EveryOtherValidation(TraingenCallback):
    """A DeepTrain 0.6 callback: counts its calls in the base class's ``_counters``."""

    def __init__(self):
        super().__init__()
        self.acted = []

    def on_val_end(self, stage):
        self._counters["val_end"] += 1
        if self._counters["val_end"] % 2 == 0:
            self.acted.append(self.tg.state.epoch)


def test_a_06_callback_counting_its_calls_runs_and_resumes(binary_data, tmp_path):
    whole = EveryOtherValidation()
    traingen(binary_model(), binary_data, None, whole, epochs=4).train()
    assert whole.acted == [2, 4] and whole._counters["val_end"] == 4
    first = EveryOtherValidation()
    tg = traingen(binary_model(), binary_data, None, first, epochs=1, logs_dir=tmp_path)
    tg.train()
    resumed = EveryOtherValidation()
    traingen(
        binary_model(),
        binary_data,
        None,
        resumed,
        epochs=4,
        logs_dir=tmp_path,
        loadpath=tg.logdir,
    ).train()
    assert resumed.acted == [2, 4] and resumed._counters == whole._counters


def test_train_start_and_end_fire_once_per_train_call_also_when_it_raises(binary_data, caplog):
    """'train_end' also fires when train() stops on an error; an error of a 'train_end'
    callback then is logged, and the first error is the one raised."""

    class Boom(Exception):
        pass

    fired = []

    def fail_at_batch_2(tg):
        if tg.state.batches_fit == 2:
            raise Boom

    def end(tg):
        fired.append(("train_end", tg.state.batches_fit))
        raise RuntimeError("a failing train_end callback")

    callbacks = {
        "train_start": lambda tg: fired.append(("train_start", tg.state.batches_fit)),
        "train:batch": fail_at_batch_2,
        "train_end": end,
    }
    tg = traingen(binary_model(), binary_data, None, callbacks, epochs=2)
    with caplog.at_level(logging.ERROR, logger="deeptrain"), pytest.raises(Boom):
        tg.train()
    assert fired == [("train_start", 0), ("train_end", 2)]
    assert "A 'train_end' callback failed while train() was stopping" in caplog.text
    with pytest.raises(ValueError, match="freq stage 'train_end'"):
        PeriodicCallback({"train_end": 1})


def _draws() -> tuple[float, float, float]:
    return (
        random.random(),
        float(np.random.random()),
        float(keras.ops.convert_to_numpy(keras.random.uniform(()))),
    )


def _draws_after_seed(seed: int) -> tuple[float, float, float]:
    keras.utils.set_random_seed(seed)
    return _draws()


@pytest.mark.backends
def test_random_seed_setter_reseeds_and_round_trips(binary_data):
    seen = []
    setter = RandomSeedSetter(seed=5, freq={"train:epoch": 1})
    tg = traingen(
        binary_model(),
        binary_data,
        None,
        [setter, {"train:epoch": lambda tg: seen.append(_draws())}],
        epochs=2,
    )
    tg.train()
    # the seed setter runs first at each epoch end: the draws follow seeds 6 and then 7
    # ('train:epoch' also fires at the compound stage after each validation: 2 draws/epoch)
    expected = [_draws_after_seed(6), _draws_after_seed(7)]
    assert seen[0] == expected[0] and seen[2] == expected[1]
    assert setter.seed == 7

    state = json.loads(json.dumps(setter.state_dict()))
    assert state == {"counters": {"train:epoch": 2}, "seed": 7}
    resumed = RandomSeedSetter(seed=0, freq={"train:epoch": 1}, reseed_on_load=True)
    resumed.load_state_dict(state)
    resumed.init_with_traingen(tg)
    random.random(), np.random.random()  # move the generators on
    resumed.on_load("load")
    assert _draws() == _draws_after_seed(7)
    keep = RandomSeedSetter(seed=0, freq={"train:epoch": 1})  # default: exact RNG restore
    keep.load_state_dict(state)
    keras.utils.set_random_seed(123)
    keep.on_load("load")
    assert keep.seed == 7 and _draws() == _draws_after_seed(123)


def test_random_seed_setter_resumes_from_a_checkpoint(binary_data, tmp_path):
    """Train 2 epochs at once, or 1 epoch, checkpoint, and 1 more in a new TrainGenerator:
    the re-seed at the second epoch's end uses the same seed (its state came back)."""

    def run(epochs, logs_dir, **kw):
        seen = []
        setter = RandomSeedSetter(seed=5, freq={"train:epoch": 1})
        tg = traingen(
            binary_model(),
            binary_data,
            None,
            epochs=epochs,
            logs_dir=logs_dir,
            callbacks=[setter, {"train:epoch": lambda tg: seen.append(_draws())}],
            **kw,
        )
        tg.train()
        return tg, setter, seen

    _, whole, seen_whole = run(2, tmp_path / "whole")
    first, _, _ = run(1, tmp_path / "parts")
    _, resumed, seen_resumed = run(2, tmp_path / "parts", loadpath=first.logdir)
    assert resumed.seed == whole.seed == 7
    assert resumed._counters == whole._counters == {"train:epoch": 2}
    assert seen_resumed[0] == seen_whole[2] == _draws_after_seed(7)


# -- figures -----------------------------------------------------------------------------------
@pytest.mark.backends
def test_figure_callbacks_write_images(binary_data, tmp_path):
    cbs = [
        binary_preds_per_iteration_cb,
        binary_preds_distribution_cb,
        infer_train_hist_cb,
        make_layer_hists_cb(mode="weights"),
        make_layer_hists_cb(mode="outputs"),
        make_layer_hists_cb(_id=[0, 2], mode="gradients:weights", omit_names=None),
        make_layer_hists_cb(mode="gradients:outputs"),
    ]
    paths = []
    tg = traingen(
        binary_model(),
        binary_data,
        tmp_path / "logs",
        {"val_end": [lambda tg, cb=cb: paths.append(cb(tg)) for cb in cbs]},
        eval_fn="predict",
    )
    tg.train()
    names = [
        "binary_preds_per_iteration",
        "binary_preds_distribution",
        "infer_train_hist",
        "layer_hists_weights",
        "layer_hists_outputs",
        "layer_hists_gradients-weights_0-2",
        "layer_hists_gradients-outputs",
    ]
    assert [p.name for p in paths] == [f"{n}__e1_b3_v1.png" for n in names]
    for path in paths:
        assert path.parent == tg.logdir / "figures"
        assert_image(path)


def test_prediction_figures_need_predict_mode(binary_data, tmp_path, caplog):
    tg = traingen(binary_model(), binary_data, tmp_path / "logs", None)
    tg.train()  # evaluate mode: nothing cached
    with caplog.at_level(logging.WARNING):
        assert binary_preds_distribution_cb(tg) is None
    assert "predict mode" in caplog.text
    assert not (tg.logdir / "figures").exists()


def test_binary_preds_per_iteration_draws_labels_over_windows():
    labels = [[np.array([[1.0], [0.0], [1.0]])] * 2, [np.array([[0.0], [0.0], [1.0]])] * 2]
    preds = [
        [np.array([[0.9], [0.2], [0.6]]), np.array([[0.8], [0.1], [0.4]])],
        [np.array([[0.3], [0.7], [0.5]]), np.array([[0.2], [0.6], [0.9]])],
    ]
    fig = visuals.binary_preds_per_iteration(labels, preds)
    assert len(fig.axes) == 2
    np.testing.assert_array_equal(
        fig.axes[1].images[0].get_array(), [[0, 0, 1], [0, 0, 1], [0.3, 0.7, 0.5], [0.2, 0.6, 0.9]]
    )


def test_infer_train_hist_titles_and_counts():
    """Inference-mode values on top, titled 'Train mode OFF' (0.6 had the titles swapped)."""
    model = binary_model(dropout=0.5)
    x = np.random.default_rng(1).normal(size=(64, F)).astype("float32")
    fig = visuals.infer_train_hist(model, x, layer=model.layers[1], bins=20)
    top, bottom = fig.axes
    assert (top.get_title(), bottom.get_title()) == ("Train mode OFF", "Train mode ON")
    hidden = np.maximum(x @ model.layers[0].kernel.numpy() + model.layers[0].bias.numpy(), 0)
    counts = [p.get_height() for p in top.patches]
    np.testing.assert_array_equal(counts, np.histogram(hidden.ravel(), bins=20)[0])
    zeros_top = (hidden == 0).sum()
    assert sum(counts) == hidden.size
    # dropout zeroes about half of the units in train mode: the first bin (0) grows
    assert bottom.patches[0].get_height() > zeros_top + 0.3 * (hidden.size - zeros_top)


def test_infer_train_hist_of_a_model_gone_nan_is_drawn_with_the_count_in_the_title():
    """A model whose outputs are NaN (a diverged run) gets its figure, not a crash: the
    finite values are drawn and the title says how many were not."""
    model = binary_model(dropout=0.5)
    kernel = model.layers[0].kernel
    kernel.assign(np.where(np.arange(F)[:, None] == 0, np.nan, kernel.numpy()))
    x = np.random.default_rng(1).normal(size=(16, F)).astype("float32")
    fig = visuals.infer_train_hist(model, x, layer=model.layers[1], bins=20)
    top, _ = fig.axes
    assert top.get_title() == "Train mode OFF (128 of 128 values not finite)"
    model = binary_model(dropout=0.5)  # finite: the plain titles
    fig = visuals.infer_train_hist(model, x, layer=model.layers[1], bins=20)
    assert fig.axes[0].get_title() == "Train mode OFF"


def test_layer_hists_take_ax_hist_keywords_and_refuse_unknown_ones_at_once():
    """DeepTrain 0.6's ``configs['plot']`` were ``ax.hist`` keywords: ``bins``, ``log`` and
    ``histtype='step'`` are honoured by the stairs drawn instead; a keyword neither knows is
    refused when the callback is made, naming it, not at its first call mid-training."""
    model = binary_model()
    configs = {"plot": {"bins": 5, "log": True, "histtype": "step", "color": "r"}}
    fig = visuals.layer_hists(model, 0, "weights", configs=configs)
    ax = fig.axes[0]
    (bars,) = ax.patches
    assert len(bars.get_data().values) == 5
    assert ax.get_yscale() == "log"
    assert not bars.get_fill()
    with pytest.raises(ValueError, match="colour"):
        make_layer_hists_cb(mode="weights", configs={"plot": {"colour": "r"}})
    with pytest.raises(ValueError, match="histtype"):
        make_layer_hists_cb(mode="weights", configs={"plot": {"histtype": "steps"}})
    with pytest.raises(ValueError, match="histogram keywords .*'bins': 'many'"):
        make_layer_hists_cb(mode="weights", configs={"plot": {"bins": "many"}})
    # peaks clipped on a log axis: the top at the clipped peak, the bottom above 0
    configs = {"plot": {"bins": 5, "log": True, "peaks_to_clip": 1}}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # (matplotlib: non-positive log limit)
        ax = visuals.layer_hists(model, 0, "weights", configs=configs).axes[0]
    counts = np.sort(ax.patches[0].get_data().values)
    bottom, top = ax.get_ylim()
    assert 0 < bottom < counts[-2] and top == pytest.approx(counts[-2] * 1.05)


def test_figures_of_every_window_and_validation_iteration_have_their_own_files(tmp_path):
    """With windows, a figure per train iteration (``_i``) and per validation iteration
    (``_vi``): none overwrites another; layer histograms of other layers write other
    files."""
    from deeptrain.callbacks.figures import figure_path

    rng = np.random.default_rng(4)
    n, T, WIN = (N_TRAIN + N_VAL) * BS, 4, 2
    root = write(
        tmp_path / "data",
        rng.normal(size=(n, T, F)).astype("float32"),
        rng.normal(size=(n, 1)).astype("float32"),
    )
    keras.utils.set_random_seed(0)
    inp = keras.Input(batch_shape=(BS, WIN, F))
    out = keras.layers.Dense(1)(keras.layers.LSTM(3, stateful=True)(inp))
    model = keras.Model(inp, out)
    model.compile("sgd", "mse")
    dgs = [
        DataGenerator(
            root / d,
            batch_size=BS,
            labels_path=root / d / "labels.h5",
            preprocessor="timeseries",
            preprocessor_configs={"window_size": WIN},
        )
        for d in ("train", "val")
    ]
    names = []
    cb = lambda tg: names.append(figure_path(tg, "fig").name)  # noqa: E731
    tg = TrainGenerator(
        model,
        *dgs,
        epochs=1,
        logdir=tmp_path / "logs",
        iter_verbosity=0,
        plot_history_freq=None,
        callbacks={"train:iter": cb, "val:iter": cb},
    )
    tg.train()
    assert names == [
        *(f"fig__e0_b{i // 2}_v0_i{i + 1}.png" for i in range(N_TRAIN * 2)),
        *(f"fig__e1_b{N_TRAIN}_v0_i6_vi{i + 1}.png" for i in range(N_VAL * 2)),
    ]
    assert make_layer_hists_cb(_id="dense")(tg).name == "layer_hists_weights_dense__e1_b3_v1_i6.png"
    many = [layer.name for layer in model.layers[1:]] * 40  # a tag over a file name's bytes
    path = make_layer_hists_cb(_id=many)(tg)
    assert path.exists() and len(path.name) < 255
    assert path.name.startswith(f"layer_hists_weights_{many[0]}-{many[1]}-{many[0]}")


@pytest.mark.parametrize("eval_fn", ["predict", "evaluate"])
def test_viz_ae2d(tmp_path, eval_fn):
    rng = np.random.default_rng(2)
    n = (N_TRAIN + N_VAL) * BS
    images = np.zeros((n, 8, 8, 1), "float32")  # bright squares at random places
    for img, (r, c) in zip(images, rng.integers(0, 5, size=(n, 2)), strict=True):
        img[r : r + 3, c : c + 3] = 1
    root = write(tmp_path / "data", images, np.zeros((n, 1), "float32"))
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(64, activation="sigmoid"),
            keras.layers.Reshape((8, 8, 1)),
        ]
    )
    model.compile(keras.optimizers.Adam(0.01), "mse")
    viz = VizAE2D(n_images=4)
    tg = traingen(
        model, root, tmp_path / "logs", viz, epochs=2, input_as_labels=True, eval_fn=eval_fn
    )
    tg.train()
    assert viz.savepath == tg.logdir / "figures" / "VizAE2D__e2_b6_v2.png"
    assert len(list((tg.logdir / "figures").glob("VizAE2D__*.png"))) == 2
    assert_image(viz.savepath)
    originals, reconstructions = viz.get_data()
    last = val_batches(root)[-1][:4]
    np.testing.assert_array_equal(originals, last)
    np.testing.assert_allclose(reconstructions, model.predict_on_batch(last), atol=1e-5)
    shown = [ax.images[0].get_array() for ax in viz.figure.axes if ax.images]
    np.testing.assert_array_equal(shown[0], last[0, ..., 0])


# -- TraingenLogger --------------------------------------------------------------------------
@pytest.mark.backends
@pytest.mark.parametrize("fmt", ["h5", "npz"])
def test_traingen_logger_files_hold_weights_outputs_gradients(tmp_path, fmt):
    rng = np.random.default_rng(3)
    x = rng.normal(size=((N_TRAIN + N_VAL) * BS, F)).astype("float32")
    y = (x[:, :2] * [1.5, -2]).astype("float32")
    root = write(tmp_path / "data", x, y)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((F,)), keras.layers.Dense(2, name="lin")])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    kernel, bias = model.layers[0].kernel.path, model.layers[0].bias.path
    weights_seen = []  # the weights when the logger logged (it runs first)
    logger = TraingenLogger(
        tmp_path / "tlog",
        {
            "weights": "lin",
            "outputs": ["lin"],
            "gradients": "lin",
            "gradients-kw": {"mode": "weights"},
        },
        freq={"train:epoch": 1},
        fmt=fmt,
    )  # and as 0.6 configured it: gradients w.r.t. the layer's outputs by default
    logger_06 = TraingenLogger(
        tmp_path / "tlog06", {"gradients": "lin"}, freq={"train:epoch": 1}, fmt=fmt
    )
    tg = traingen(
        model,
        root,
        None,
        [
            logger,
            logger_06,
            {
                "train:epoch": lambda tg: weights_seen.append(
                    [np.array(w) for w in tg.model.get_weights()]
                )
            },
        ],
        epochs=2,
    )
    tg.train()

    files = sorted((tmp_path / "tlog").glob(f"datalog_*.{fmt}"))
    assert [f.name for f in files] == [f"datalog_0.{fmt}", f"datalog_1.{fmt}"]
    x_val, y_val = val_batches(root)[0], np.asarray(tg.val_datagen.load_labels("1"))
    for log_id, (path, (w, b)) in enumerate(zip(files, weights_seen[::2], strict=True)):
        data = read_log(path)
        assert set(data["weights"]) == {log_id}
        np.testing.assert_array_equal(data["weights"][log_id][kernel], w)
        np.testing.assert_array_equal(data["weights"][log_id][bias], b)
        out = x_val @ w + b  # default data: the first validation batch
        np.testing.assert_allclose(data["outputs"][log_id]["lin"], out, rtol=1e-5, atol=1e-6)
        d_out = 2 * (out - y_val) / out.size  # mse, mean over all elements
        np.testing.assert_allclose(
            data["gradients"][log_id][kernel], x_val.T @ d_out, rtol=1e-4, atol=1e-6
        )
        np.testing.assert_allclose(
            data["gradients"][log_id][bias], d_out.sum(0), rtol=1e-4, atol=1e-6
        )
        gradients_06 = read_log(tmp_path / "tlog06" / path.name)["gradients"][log_id]
        assert list(gradients_06) == ["lin"]
        np.testing.assert_allclose(gradients_06["lin"], d_out, rtol=1e-4, atol=1e-6)
    assert logger.weights == {} and logger.state_dict()["log_id"] == 1  # cleared after save
    assert tg.val_datagen.state_dict()["set_nums_to_process"] == ["1", "2"]  # not moved
    loaded = logger.load()
    np.testing.assert_array_equal(logger.weights[1][kernel], weights_seen[2][0])
    assert set(loaded) == {"weights", "outputs", "gradients"}


def test_traingen_logger_rejects_bad_configs(tmp_path):
    with pytest.raises(ValueError, match="not supported"):
        TraingenLogger(tmp_path, {"activations": "dense"})
    with pytest.raises(TypeError, match="layer ids"):
        TraingenLogger(tmp_path, {"weights": [1.5]})
    with pytest.raises(ValueError, match="fmt"):
        TraingenLogger(tmp_path, {"weights": "d"}, fmt="pkl")
