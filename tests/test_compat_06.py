"""DeepTrain 0.6 users' code, called the way 0.6's scripts, docs and tests call it.

Each test is named after an item of the promise that 0.6 code runs with Keras-3-only
edits: (1) behaviour 0.6 scripts rely on, (2) the import paths and keyword arguments they
use, (3) 0.6 checkpoints migrated without running their code. The data, models and 0.6's
files (Keras 2 HDF5 weights, pickled ``*__state.h5``) are built here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pickle
import struct
import subprocess
import sys
import types
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import h5py  # noqa: E402
import lz4.frame  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import imread  # noqa: E402

import deeptrain  # noqa: E402
from deeptrain import DataGenerator, TrainGenerator  # noqa: E402
from deeptrain.preprocessing import numpy_data_to_numpy_sets  # noqa: E402

SRC = Path(deeptrain.__file__).parents[1]
N_TRAIN, N_VAL, FEATURES, FILE_SIZE = 96, 32, 6, 16


# -- data, models, sessions -----------------------------------------------------------------
def classification_data(root: Path, binary: bool = False) -> Path:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, N_TRAIN + N_VAL)
    x = (rng.normal(size=(N_TRAIN + N_VAL, FEATURES)) + labels[:, None]).astype("float32")
    y = labels[:, None].astype("float32") if binary else np.eye(2, dtype="float32")[labels]
    for name, part in (("train", slice(0, N_TRAIN)), ("val", slice(N_TRAIN, None))):
        numpy_data_to_numpy_sets(
            x[part], y[part], root / name, batch_size=FILE_SIZE, shuffle=False, verbose=0
        )
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return classification_data(tmp_path_factory.mktemp("cls"))


@pytest.fixture(scope="module")
def binary_data(tmp_path_factory) -> Path:
    return classification_data(tmp_path_factory.mktemp("bin"), binary=True)


def classifier(seed: int = 0, binary: bool = False, names: tuple = (None, None)) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(8, activation="relu", name=names[0]),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(
                1 if binary else 2, activation="sigmoid" if binary else "softmax", name=names[1]
            ),
        ]
    )
    loss = "binary_crossentropy" if binary else "categorical_crossentropy"
    model.compile(keras.optimizers.Adam(0.01), loss, metrics=["accuracy"])
    return model


def datagens(root: Path, batch_size: int = FILE_SIZE, **kw) -> tuple:
    dg = DataGenerator(
        root / "train", batch_size=batch_size, labels_path=root / "train" / "labels.h5", **kw
    )
    vdg = DataGenerator(root / "val", batch_size=batch_size, labels_path=root / "val" / "labels.h5")
    return dg, vdg


def session(root: Path, binary: bool = False, dg_kw: dict | None = None, **kw) -> TrainGenerator:
    dg, vdg = datagens(root, **(dg_kw or {}))
    kw = {"iter_verbosity": 0, "plot_history_freq": None, **kw}
    return TrainGenerator(classifier(binary=binary), dg, vdg, **kw)


# == 1. Behaviour 0.6 scripts rely on ======================================================
def test_1_datagens_hold_their_first_batch_after_construction(data, tmp_path):
    seen = []

    def hists(tg):  # 0.6's callbacks example: gradients of outputs at every epoch end
        seen.append(deeptrain.callbacks.make_layer_hists_cb(mode="gradients:outputs")(tg))

    tg = session(data, callbacks={"train:epoch": hists}, logs_dir=tmp_path / "logs")
    first_x = np.load(data / "train" / "batch__1.npy")
    first_val_x = np.load(data / "val" / "batch__1.npy")
    np.testing.assert_array_equal(tg.datagen.batch, first_x)
    np.testing.assert_array_equal(tg.val_datagen.batch, first_val_x)
    with h5py.File(data / "val" / "labels.h5") as f:
        np.testing.assert_array_equal(tg.val_datagen.labels, f["1"][()])
    assert tg.datagen.set_name == "1" and not tg.datagen.batch_exhausted
    state = tg.datagen.state_dict()  # the first file is taken off the queue, being served
    assert state["group"]["set_nums"] == ["1"] and "1" not in state["set_nums_to_process"]
    tg.train()
    # 'train:epoch' fires at the epoch's end, before any validation, and again with 'val_end'
    assert [p.name for p in seen] == [
        f"layer_hists_gradients-outputs__e1_b6_v{v}.png" for v in (0, 1)
    ]
    assert imread(seen[0]).std() > 0.01


def _served(tg: TrainGenerator) -> tuple:
    return tg.state.set_name_cache, tg.state.val_set_name_cache, tg.model.get_weights()


@pytest.mark.backends
def test_1_holding_the_first_batch_leaves_the_run_and_its_resume_unchanged(data, tmp_path):
    """Split, shuffled files: served set names and final weights equal those of a run whose
    DataGenerators start without a batch (as before), and of a run resumed from a
    checkpoint written right after construction."""
    kw = dict(
        dg_kw={"batch_size": 8, "shuffle": True, "shuffle_group_samples": True, "seed": 3},
        epochs=2,
    )
    reference = session(data, **kw)
    assert not reference.datagen.batch_exhausted and reference.val_datagen.batch_loaded
    path = reference.save(tmp_path / "at_start")  # with the first batches held
    reference.train()

    old_way = session(data, **kw)  # its DataGenerators put back to their state before
    fresh_dg, fresh_vdg = datagens(data, **kw["dg_kw"])
    old_way.datagen.load_state_dict(fresh_dg.state_dict())
    old_way.val_datagen.load_state_dict(fresh_vdg.state_dict())
    assert old_way.datagen.batch_exhausted
    old_way.train()

    dg, vdg = datagens(data, **kw["dg_kw"])
    resumed = TrainGenerator(
        classifier(seed=1), dg, vdg, loadpath=path, iter_verbosity=0, plot_history_freq=None
    )
    resumed.train()

    want_names, want_val_names, want_weights = _served(reference)
    assert len(set(want_names[:12])) == 12  # '1-a', '1-b', ... in a shuffled order
    for run in (old_way, resumed):
        names, val_names, weights = _served(run)
        assert names == want_names and val_names == want_val_names
        for w, v in zip(weights, want_weights, strict=True):
            np.testing.assert_array_equal(w, v)


def test_1_random_seed_setter_save_and_load_stages_and_seeds_alias(data, tmp_path):
    setter = deeptrain.callbacks.RandomSeedSetter(
        freq={
            "train:iter": 1,
            "train:batch": 1,
            "train:epoch": 1,
            "val:iter": 1,
            "val:batch": 1,
            "val:epoch": 1,
            "val_end": 1,
            "save": 1,
            "load": 1,
        }
    )
    setter.init_with_traingen(types.SimpleNamespace())
    for stage in ("train:iter", "train:batch", "train:epoch", "val:iter", "val:batch"):
        getattr(setter, f"on_{stage.replace(':', '_')}_end")(stage)
    setter.on_val_epoch_end("val:epoch")
    setter.on_val_end("val_end")
    setter.on_save("save")
    setter.on_load("load")  # sets the saved seed again, no increment
    assert setter.seeds == {"random": 8, "numpy": 8, "tf-graph": 8, "tf-global": 8}

    assert deeptrain.callbacks.RandomSeedSetter(seeds=5).seed == 5
    same = {"random": 4, "numpy": 4, "tf-graph": 4, "tf-global": 4}
    assert deeptrain.callbacks.RandomSeedSetter(same).seed == 4
    with pytest.raises(ValueError, match="one value; pass seed=<int>"):
        deeptrain.callbacks.RandomSeedSetter(
            {"random": 1, "numpy": 2, "tf-graph": 3, "tf-global": 4}
        )
    with pytest.raises(TypeError, match="seed must be an int"):
        deeptrain.callbacks.RandomSeedSetter(seeds=1.0)
    deeptrain.set_seeds(seeds=same, reset_graph=False, verbose=0)  # 0.6's signature
    assert np.random.get_state()[1][0] == _numpy_key_after_seed(4)
    deeptrain.set_seeds(None, False, 0)  # 0.6's first argument, seeds=None: all 0
    assert np.random.get_state()[1][0] == _numpy_key_after_seed(0)
    assert deeptrain.callbacks.RandomSeedSetter(None, {"train:epoch": 1}).seed == 0

    # 0.6's reproducibility example: re-seed at every save, and on load
    setter = deeptrain.callbacks.RandomSeedSetter(freq={"save": 1, "load": 1})
    tg = session(data, callbacks=[setter], epochs=2, logs_dir=tmp_path / "logs")
    tg.train()
    assert setter.seed == 2 and setter.reseed_on_load  # one checkpoint per epoch
    again = deeptrain.callbacks.RandomSeedSetter(freq={"save": 1, "load": 1})
    dg, vdg = datagens(data)
    TrainGenerator(classifier(), dg, vdg, loadpath=tg.logdir, callbacks=[again], iter_verbosity=0)
    assert again.seed == 2 and np.random.get_state()[1][0] == _numpy_key_after_seed(2)


def _numpy_key_after_seed(seed: int) -> int:
    keras.utils.set_random_seed(seed)
    return int(np.random.get_state()[1][0])


def test_1_validation_caches_under_0_6_names_and_binary_visuals(binary_data, tmp_path):
    caches = {}

    def keep(tg):
        caches.update(labels=tg._labels_cache, preds=tg._preds_cache, sw=tg._sw_cache)
        caches["per_iteration"] = deeptrain.callbacks.binary_preds_per_iteration_cb(tg)
        caches["distribution"] = deeptrain.callbacks.binary_preds_distribution_cb(tg)

    tg = session(
        binary_data,
        binary=True,
        eval_fn="predict",
        key_metric="f1_score",
        callbacks={"val_end": keep},
        logs_dir=tmp_path / "logs",
    )
    tg.train()
    assert len(caches["preds"]) == N_VAL // FILE_SIZE  # [batch][window] -> array
    assert caches["preds"][0][0].shape == (FILE_SIZE, 1)
    with h5py.File(binary_data / "val" / "labels.h5") as f:
        np.testing.assert_array_equal(caches["labels"][1][0], f["2"][()])
    np.testing.assert_array_equal(caches["sw"][0][0], np.ones(FILE_SIZE))
    assert caches["per_iteration"].is_file() and caches["distribution"].is_file()
    assert tg._preds_cache == []  # cleared at the validation's end, as in 0.6

    # the ndarray layout 0.6 documented: (batches, slices, samples, 1)
    rng = np.random.default_rng(0)
    labels = np.repeat(rng.integers(0, 2, (3, 1, 16, 1)), 4, axis=1)
    preds = rng.uniform(0, 1, (3, 4, 16, 1))
    vis = deeptrain.visuals
    for fig in (
        vis.binary_preds_per_iteration(labels, preds),
        vis.binary_preds_distribution(labels, preds, 0.5),
    ):
        assert isinstance(fig, Figure)
    nested = vis.binary_preds_per_iteration([list(b) for b in labels], [list(b) for b in preds])
    image = vis.binary_preds_per_iteration(labels, preds).axes[0].images[0].get_array()
    np.testing.assert_array_equal(image, nested.axes[0].images[0].get_array())
    assert image.shape == (2 + 4, 16)  # labels twice, then a row per window
    tg._preds_cache = preds  # assignable in that layout too
    assert len(tg._preds_cache) == 3 and len(tg._preds_cache[0]) == 4


def test_1_traingen_logger_data_indexable_as_in_0_6(data, tmp_path):
    logger = deeptrain.callbacks.TraingenLogger(
        tmp_path / "tlog", {"weights": ["hidden"], "outputs": ["hidden", "out"]}
    )
    model = classifier(names=("hidden", "out"))
    TrainGenerator(model, *datagens(data), callbacks=[logger], iter_verbosity=0)
    logger.log()
    outs = list(logger.outputs[0][0].values())[0]  # 0.6: list(lg.outputs[id][0].values())[0]
    assert outs.shape == (FILE_SIZE, 8)
    assert list(logger.outputs[0][1]) == ["out"] and set(logger.outputs[0]) == {"hidden", "out"}
    kernel = model.get_layer("hidden").kernel
    np.testing.assert_array_equal(logger.weights[0][0][kernel.path], kernel.numpy())
    logger.save(verbose=0)
    logger.clear(verbose=0)
    assert logger.outputs == {}
    logger.load(verbose=0)  # 0.6: load(verbose)
    np.testing.assert_array_equal(list(logger.outputs[0][0].values())[0], outs)


def test_1_layer_hists_accepts_0_6_plot_configs(data):
    model = classifier()
    configs = {"plot": {"annot_kw": None, "peaks_to_clip": 1}, "title": {"fontsize": 13}}
    fig = deeptrain.visuals.layer_hists(model, "*", mode="weights", configs=configs)
    axes = [ax for ax in fig.axes if ax.patches]
    assert axes and all(ax.get_title() == "" for ax in axes)  # annot_kw=None: no names
    (bars,) = axes[0].patches  # one StepPatch: the bin counts
    heights = sorted(bars.get_data().values)
    assert axes[0].get_ylim()[1] == pytest.approx(1.05 * heights[-2])  # the top peak clipped
    assert fig._suptitle.get_fontsize() == 13
    fig = deeptrain.visuals.layer_hists(model, mode="weights", configs={"plot": {"annot_kw": {}}})
    assert all(ax.get_title() for ax in fig.axes if ax.patches)
    deeptrain.callbacks.make_layer_hists_cb(mode="outputs", configs={"plot": {"annot_kw": None}})
    with pytest.raises(ValueError, match="configs keys \\['colour'\\]"):
        deeptrain.callbacks.make_layer_hists_cb(mode="weights", configs={"colour": {}})


def test_1_a_directory_with_one_data_file_is_that_dataset(tmp_path):
    train = tmp_path / "train"
    train.mkdir()
    with h5py.File(train / "data.h5", "w") as f, h5py.File(train / "labels.h5", "w") as g:
        for k in range(3):
            f[str(k)] = np.full((4, 2), k, dtype="float32")
            g[str(k)] = np.full((4, 1), k, dtype="float32")
    dg = DataGenerator(train, batch_size=4, labels_path=train / "labels.h5")
    assert dg.set_nums_original == ["0", "1", "2"] and dg.data_loader._is_dataset
    served = [(x[0, 0], y[0, 0]) for x, y in dg]
    assert served == [(0, 0), (1, 1), (2, 2)]


def test_1_numpy_lz4f_without_dtype_decodes_float64(tmp_path):
    batches = [np.random.default_rng(k).normal(size=(4, 3)) for k in range(2)]
    for k, b in enumerate(batches, 1):
        np.save(tmp_path / f"batch__{k}.npy", np.array(lz4.frame.compress(b.tobytes())))
    dg = DataGenerator(tmp_path, batch_size=4, data_loader="numpy-lz4f", data_batch_shape=(4, 3))
    served = [x for x, _ in dg]
    assert served[0].dtype == np.float64
    np.testing.assert_array_equal(np.stack(served), np.stack(batches))


def test_1_gradient_results_unpack_like_0_6_tuples(data):
    tg = session(data)
    grad_norms, batches_processed, iters_processed = tg.gradient_norm_over_dataset(
        n_iters=3, prog_freq=3, plot=False
    )
    assert batches_processed == iters_processed == 3 and grad_norms.shape == (3,)
    result = tg.gradient_norm_over_dataset(n_iters=3, plot=False)
    np.testing.assert_array_equal(result[0], result.stat)
    grads_sum, batches_processed, iters_processed = tg.gradient_sum_over_dataset(
        n_iters=2, plot=False
    )
    assert iters_processed == 2 and list(grads_sum) == [w.path for w in tg.model.trainable_weights]


# == 2. Import paths and keyword arguments of 0.6 code ========================================
def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(SRC), **env}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=900
    )


def test_2_submodules_are_attributes_of_deeptrain_imported_lazily():
    proc = _python(
        "import sys, deeptrain\n"
        "assert 'keras' not in sys.modules and 'matplotlib' not in sys.modules\n"
        "import deeptrain.util\n"
        "assert 'keras' not in sys.modules\n"
        "from deeptrain.util import Preprocessor, GenericPreprocessor, TimeseriesPreprocessor\n"
        "assert issubclass(TimeseriesPreprocessor, Preprocessor)\n"
        "names = ('metrics', 'callbacks', 'visuals', 'introspection', 'preprocessing')\n"
        "mods = [getattr(deeptrain, n) for n in names] + [deeptrain.util.searching]\n"
        "assert deeptrain.util.searching.find_best_predict_threshold\n"
        "assert callable(deeptrain.scalefig) and callable(deeptrain.set_seeds)\n"
        "print(' '.join(m.__name__ for m in mods))\n"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-1] == "deeptrain.util.searching"


def test_2_modules_that_0_6_tests_import_exist():
    """What 0.6's 16 test files import when collected (their backend.py binds
    ``util.training`` functions onto a dummy; util_test.py imports its modules)."""
    from deeptrain import introspection, metrics, preprocessing, set_seeds, util  # noqa: F401
    from deeptrain.callbacks import (  # noqa: F401
        RandomSeedSetter,
        TraingenCallback,
        TraingenLogger,
        VizAE2D,
        binary_preds_distribution_cb,
        binary_preds_per_iteration_cb,
        infer_train_hist_cb,
        make_layer_hists_cb,
    )
    from deeptrain.metrics import (  # noqa: F401
        _standardize,
        _weighted_loss,
        binary_informedness,
        f1_score,
        f1_score_multi_th,
        roc_auc_score,
        tnr,
        tnr_tpr,
        tpr,
    )
    from deeptrain.util import (  # noqa: F401
        TimeseriesPreprocessor,
        _default_configs,
        configs,
        logging,
        misc,
        searching,
        training,
    )
    from deeptrain.util.algorithms import deeplen, deepmap, nCk, obj_to_str, ordered_shuffle  # noqa: F401
    from deeptrain.util.data_loaders import DataLoader  # noqa: F401
    from deeptrain.util.experimental import deepcopy_v2  # noqa: F401
    from deeptrain.util.logging import _log_init_state  # noqa: F401
    from deeptrain.util.misc import _validate_traingen_configs, argspec, pass_on_error  # noqa: F401
    from deeptrain.util.preprocessors import Preprocessor  # noqa: F401
    from deeptrain.util.training import _get_val_history, _weighted_normalize_preds  # noqa: F401
    from deeptrain.visuals import layer_hists, viz_roc_auc  # noqa: F401

    for name in (
        "_transform_eval_data",
        "_validate_data_shapes",
        "_validate_class_data_shapes",
        "_compute_metric",
        "_compute_metrics",
        "_set_predict_threshold",
        "_weighted_normalize_preds",
    ):
        assert callable(getattr(util.training, name))
    assert callable(util.configs.NAME_PROCESS_KEY_FN)
    assert util._default_configs._DEFAULT_ALIAS_TO_METRIC["acc"] == "accuracy"
    assert util.misc.argspec(lambda monkeypatch, x=1: 0) == ["monkeypatch", "x"]


def test_2_configs_are_the_live_defaults(data, tmp_path, monkeypatch):
    from deeptrain.data.generator import DATAGEN_KWARGS
    from deeptrain.training.configs import TRAINGEN_DEFAULTS
    from deeptrain.util import _default_configs, configs

    assert configs._TRAINGEN_CFG is _default_configs._DEFAULT_TRAINGEN_CFG is TRAINGEN_DEFAULTS
    assert configs._DATAGEN_CFG is _default_configs._DEFAULT_DATAGEN_CFG is DATAGEN_KWARGS
    assert configs.MODEL_NAME_CFG is TRAINGEN_DEFAULTS["model_name_configs"]
    for name in (
        "PLOT_CFG",
        "MODEL_NAME_CFG",
        "REPORT_CFG",
        "TRAINGEN_SAVESKIP_LIST",
        "TRAINGEN_LOADSKIP_LIST",
        "DATAGEN_SAVESKIP_LIST",
        "DATAGEN_LOADSKIP_LIST",
        "MODEL_SAVE_KW",
        "MODEL_SAVE_WEIGHTS_KW",
        "METRIC_PRINTSKIP_CFG",
        "METRIC_TO_ALIAS",
        "ALIAS_TO_METRIC",
        "NAME_PROCESS_KEY_FN",
    ):
        assert getattr(configs, name) is getattr(_default_configs, f"_DEFAULT_{name}")

    monkeypatch.setitem(configs._TRAINGEN_CFG, "max_checkpoints", 2)
    monkeypatch.setitem(configs._TRAINGEN_CFG, "epochs", 3)  # an explicit argument too
    monkeypatch.setitem(configs._DATAGEN_CFG, "shuffle_group_batches", True)
    monkeypatch.setitem(configs.MODEL_NAME_CFG, "units", "u")
    monkeypatch.setitem(configs.PLOT_CFG["0"], "ylims", (0, 7))
    monkeypatch.setitem(configs.REPORT_CFG, "traingen", {"include": ["epochs"]})
    tg = session(data, logs_dir=tmp_path / "logs", model_configs={"units": 8}, max_is_best=False)
    assert tg.max_checkpoints == 2 and tg.epochs == 3 and tg.datagen.shuffle_group_batches
    assert tg.model_name.startswith("M0__model-u8")
    assert tg.plot_history().axes[0].get_ylim() == (0, 7)
    assert "'epochs' = 3" in tg.generate_report() and "'key_metric'" not in tg.generate_report()
    assert session(data, epochs=1).epochs == 1  # passed arguments win


def test_2_name_encoder_keeps_0_6_names():
    from deeptrain.util import _default_configs, configs

    class Adam:
        pass

    cfg = dict(
        init_lr=[2e-4, 2e-4, 2e-4, 1e-4],
        eta_t=(0.9, 1.1, 2),
        timesteps=13500,
        name="leaf",
        optimizer=Adam,
        opt=Adam(),
        a=0.5,
        best_key_metric=0.91,
    )
    for fn in (configs.NAME_PROCESS_KEY_FN, _default_configs._DEFAULT_NAME_PROCESS_KEY_FN):
        assert [
            fn("a", "a", cfg),
            fn("init_lr", "lr", cfg),
            fn("eta_t", "et", cfg),
            fn("timesteps", "", cfg),
            fn("name", "name", cfg),
            fn("optimizer", "", cfg),
            fn("opt", "", cfg),
            fn("best_key_metric", "__max", cfg),
        ] == [
            "-a.5",
            "-lr2e-4x3_1e-4",
            "-et.9_1.1_2",
            "-13.5k",
            "-name",
            "-Adam",
            "-Adam",
            "__max.910",
        ]


def test_2_custom_name_process_key_fn_gets_attrs(data):
    def fn(key, alias, attrs):  # 0.6's signature: attrs = model_configs over tg's attributes
        return f"-{alias}{attrs[key]}{attrs['model_base_name']}"

    tg = session(
        data,
        model_configs={"units": 8},
        model_name_configs={"units": "u"},
        name_process_key_fn=fn,
    )
    assert tg.model_name == "M0__model-u8model"


def test_2_misc_and_algorithm_helpers():
    from deeptrain.util import algorithms as alg
    from deeptrain.util import experimental, misc

    assert misc.pass_on_error(lambda: 1 / 0) is None
    assert misc.try_except(lambda: 1 / 0, lambda: "fallback") == "fallback"
    assert misc.argspec(lambda a, *b, c=1, **d: 0) == ["a", "b", "c", "d"]
    assert set(misc.get_module_methods(alg)) >= {"nCk", "deeplen", "deepmap"}
    assert alg.nCk(10, 2) == 45 and alg.nCk(4, 5) == 0
    ls, arr, dc = alg.ordered_shuffle([1, 2, 3, 4], np.arange(4), {"a": 1, "b": 2, "c": 3, "d": 4})
    assert isinstance(ls, list) and isinstance(arr, np.ndarray) and isinstance(dc, dict)
    assert ls == [v + 1 for v in arr] == list(dc.values())
    nest = {"x": [1, (2, "three")], "y": np.zeros((2, 3))}
    assert alg.deeplen(nest) == 9 and alg.deepget(nest, ["x", 1, 1]) == "three"
    assert alg.deepget(nest, ["x", 1, 1], drop_keys=1) == (2, "three")
    mapped = alg.deepmap([1, (2, [3])], lambda x, key: x * 10 if isinstance(x, int) else x)
    assert mapped == [10, (20, [30])]
    with pytest.raises(ValueError, match="non-empty"):
        alg.deepmap([], lambda x, key: x)
    assert alg.deep_isinstance([1, "a", [2.0]], int) == [True, False, False]
    assert alg.obj_to_str(Figure, drop_absname=True) == "Figure"
    assert alg.builtin_or_npscalar(np.float32(1)) and not alg.builtin_or_npscalar(Figure)
    copied = experimental.deepcopy_v2((1, {"a": np.ones(2)}), lambda x: str(x))
    assert copied == ("1", {"a": "[1. 1.]"})
    with pytest.raises(NotImplementedError, match="never pickled"):
        experimental.exclude_unpickleable({})


def test_2_metrics_standardize_and_weighted_loss_make_numpy_twins(data):
    from deeptrain.metrics import _standardize, _weighted_loss

    def mean_L_error(y_true, y_pred, sample_weight=1):  # 0.6's custom loss twin
        y_true, y_pred, sample_weight = _standardize(y_true, y_pred, sample_weight)
        return _weighted_loss(np.mean(np.abs(y_true - y_pred) ** 1.5, axis=-1), sample_weight)

    def mLe(y_true, y_pred):
        return keras.ops.mean(keras.ops.abs(y_true - y_pred) ** 1.5, axis=-1)

    model = classifier()
    model.compile("adam", mLe)
    dg, vdg = datagens(data)
    tg = TrainGenerator(
        model,
        dg,
        vdg,
        eval_fn="predict",
        custom_metrics={"mLe": mean_L_error},
        iter_verbosity=0,
        plot_history_freq=None,
    )
    x = np.concatenate([np.load(data / "val" / f"batch__{k}.npy") for k in (1, 2)])
    with h5py.File(data / "val" / "labels.h5") as f:
        y = np.concatenate([f["1"][()], f["2"][()]])
    expected = float(np.mean(keras.ops.convert_to_numpy(mLe(y, tg.model.predict_on_batch(x)))))
    assert tg.validate()["loss"] == pytest.approx(expected, rel=1e-5)
    w = np.array([1.0, 0.0, 2.0])
    yt, yp = np.ones((3, 2)), np.zeros((3, 2))
    assert mean_L_error(yt, yp, w) == pytest.approx(1.0) and mean_L_error(yt, yp) == 1.0


def test_2_traingen_methods_take_0_6_keywords(data, tmp_path, monkeypatch):
    tg = session(data, logs_dir=tmp_path / "logs", class_weights={0: 1, 1: 5})
    labels = np.array([[1, 0], [0, 1], [0, 1]])  # one-hot, as a 0.6 script passes them
    np.testing.assert_array_equal(tg.get_sample_weight(labels), [1, 5, 5])
    np.testing.assert_array_equal(tg.get_sample_weight(labels, force_unweighted=True), [1, 1, 1])
    np.testing.assert_array_equal(tg.get_sample_weight(labels, val=True, slice_idx=0), [1, 1, 1])
    tg.train()
    assert isinstance(tg.get_history_fig(), Figure)
    first = tg.checkpoint(forced=True, overwrite=False)  # the epoch's end took the name
    second = tg.checkpoint(forced=True, overwrite=False)
    base = first.name.removesuffix("_v2")
    assert first.name == f"{base}_v2" and second.name == f"{base}_v3"
    assert tg.checkpoint(forced=True, overwrite=True).name == base
    with pytest.raises(ValueError, match="overwrite must be None, True or False"):
        tg.checkpoint(overwrite="underwrite")
    kept = tg._history_fig
    assert isinstance(tg.plot_history(update_fig=False, w=1, h=1), Figure)
    assert tg._history_fig is kept
    assert tg.get_unique_model_name(set_model_num=False) == tg.model_name
    tg.datagen.advance_batch(forced=True, is_recursive=False)
    tg._train_loop_done = True
    tg.clear_cache(reset_val_flags=True)
    assert not tg._train_loop_done and not tg._val_loop_done
    tg.destroy(confirm=True, verbose=0)
    assert not hasattr(tg, "model")


def test_2_scalefig_and_the_scalefig_setting(data, tmp_path, monkeypatch):
    fig = Figure(figsize=(4, 2))
    monkeypatch.setenv("SCALEFIG", "(2, 1.5)")
    assert tuple(deeptrain.scalefig(fig).get_size_inches()) == (8, 3)
    assert tuple(deeptrain.scalefig(fig).get_size_inches()) == (8, 3)  # once per figure
    tg = session(data, logs_dir=tmp_path / "logs")
    wide = imread(tg.save_report(tmp_path / "wide.png")).shape
    monkeypatch.setenv("SCALEFIG", "1")
    plain = imread(tg.save_report(tmp_path / "plain.png")).shape
    assert wide[1] == pytest.approx(2 * plain[1], abs=2)
    monkeypatch.setenv("SCALEFIG", "big")
    with pytest.raises(ValueError, match="SCALEFIG='big'"):
        deeptrain.scalefig(Figure())


def test_2_util_modules_call_the_traingen(data, tmp_path):
    from deeptrain.util import logging as util_logging
    from deeptrain.util import misc, saving, training

    tg = session(data, logs_dir=tmp_path / "logs", class_weights={0: 1, 1: 3})
    assert util_logging.get_unique_model_name(tg) == tg.model_name
    misc_dir = util_logging._log_init_state(tg, savedir=tmp_path / "init", verbose=1)
    assert (misc_dir / "init_state.json").is_file() and (misc_dir / "init_source.txt").is_file()
    np.testing.assert_array_equal(training.get_sample_weight(tg, np.array([0, 1])), [1, 3])
    assert training._get_api_metric_name("acc", "sparse_categorical_crossentropy") == (
        "sparse_categorical_accuracy"
    )
    tg.pred_weighted_slices_range = (0.5, 1.5)
    merged = training._weighted_normalize_preds(tg, np.full((2, 3, 4, 1), 0.75))
    np.testing.assert_allclose(merged, np.full((2, 4, 1), 0.75))
    tg.pred_weighted_slices_range = None
    assert saving.checkpoint(tg, forced=True).is_dir()
    misc._validate_traingen_configs(tg)
    tg.val_freq = {"val": 1}
    with pytest.raises(ValueError, match="val_freq"):
        misc._validate_traingen_configs(tg)
    with pytest.raises(NotImplementedError, match="TrainGenerator.validate"):
        training._get_val_history(tg)
    with pytest.raises(NotImplementedError, match="optimizer_save_configs"):
        saving._get_optimizer_state(tg)


@pytest.mark.subprocess
def test_2_deliberate_gaps_name_their_replacement(data, tmp_path):
    old = tmp_path / "logs06"
    old.mkdir()
    (old / "M0__model__state.h5").write_bytes(pickle.dumps({"_epoch": 1}))
    with pytest.raises(ValueError, match="deeptrain.migrate.migrate"):
        session(data, loadpath=old / "M0__model__state.h5")
    with pytest.raises(ValueError, match="deeptrain.migrate.migrate"):
        session(data, loadpath=old)
    proc = _python("import deeptrain.util._backend", TF_KERAS="0")
    assert proc.returncode != 0 and "KERAS_BACKEND" in proc.stderr
    if importlib.util.find_spec("tensorflow") is not None:  # (the other backends' jobs lack it)
        proc = _python(
            "import os; os.environ['KERAS_BACKEND'] = 'tensorflow'\n"
            "import tensorflow as tf; tf.compat.v1.disable_eager_execution()\n"
            "from deeptrain.training.checks import refuse_tf_graph_mode\n"
            "refuse_tf_graph_mode()\n"
        )
        assert proc.returncode != 0 and "disable_eager_execution" in proc.stderr
    from deeptrain.util import _backend

    with pytest.raises(NotImplementedError, match="logging"):
        _backend.Unbuffered(sys.stdout)


# == 3. 0.6 checkpoints migrated without running their code ================================
def write_keras2_weights(path: Path, layers: list, full_model: bool = False) -> None:
    """Keras 2's ``save_weights`` HDF5 layout: root attribute ``layer_names`` (model.layers
    order), one group per layer with attribute ``weight_names`` ('<layer>/<weight>:0');
    ``model.save`` put the same under ``model_weights``."""
    with h5py.File(path, "w") as file:
        f = file.create_group("model_weights") if full_model else file
        f.attrs["layer_names"] = np.array([name.encode() for name, _ in layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.3.1"
        for name, weights in layers:
            group = f.create_group(name)
            names = [f"{name}/{w}:0" for w, _ in weights]
            group.attrs["weight_names"] = np.array([n.encode() for n in names], dtype="S")
            for full, (_, value) in zip(names, weights, strict=True):
                group[full] = value


def keras2_layers(weights: list, names: tuple = ("dense", "dense_1")) -> list:
    """``classifier``'s layers as a fresh Keras 2 session named them."""
    kernel, bias, gamma, beta, mean, var, kernel2, bias2 = weights
    return [
        (names[0], [("kernel", kernel), ("bias", bias)]),
        (
            "batch_normalization",
            [("gamma", gamma), ("beta", beta), ("moving_mean", mean), ("moving_variance", var)],
        ),
        ("dropout", []),
        (names[1], [("kernel", kernel2), ("bias", bias2)]),
    ]


class DataGenerator06:  # stand-ins pickled under 0.6's class names
    pass


class DataLoader06:
    def numpy_loader(self, set_num):
        return None


class Evil:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@contextlib.contextmanager
def classes_named_as_in_0_6():
    """Make pickle write the stand-ins as ``deeptrain.data_generator.DataGenerator`` and
    ``deeptrain.util.data_loaders.DataLoader``, the globals of 0.6's state files."""
    saved = {
        m: sys.modules.get(m) for m in ("deeptrain.data_generator", "deeptrain.util.data_loaders")
    }
    try:
        for module, cls, name in (
            ("deeptrain.data_generator", DataGenerator06, "DataGenerator"),
            ("deeptrain.util.data_loaders", DataLoader06, "DataLoader"),
        ):
            stand_in = types.ModuleType(module)
            cls.__module__, cls.__qualname__, cls.__name__ = module, name, name
            setattr(stand_in, name, cls)
            sys.modules[module] = stand_in
        yield
    finally:
        for module, previous in saved.items():
            sys.modules[module] = previous


def state_06(data: Path, **extra) -> dict:
    """What 0.6 pickled: ``vars(tg)`` minus its saveskip_list, the DataGenerators whole."""

    def datagen(directory: Path, n_files: int, epoch: int) -> DataGenerator06:
        dg = DataGenerator06()
        loader = DataLoader06()
        loader._load_fn = loader.numpy_loader  # a bound method: pickled as getattr(...)
        dg.__dict__.update(
            data_path=str(directory),
            epoch=epoch,
            set_nums_original=[str(k) for k in range(1, n_files + 1)],
            set_nums_to_process=["3", "4"],
            data_loader=loader,
            shuffle=True,
        )
        return dg

    return {
        "_epoch": 2,
        "_val_epoch": 4,  # 0.6 counted each validation twice
        "_fit_iters": 12,
        "_batches_fit": 12,
        "_val_iters": 4,
        "_batches_validated": 4,
        "_times_validated": 2,
        "_train_loop_done": False,
        "history": {"loss": [np.float32(0.9), 0.7] * 6, "accuracy": [0.5] * 12},
        "val_history": {"loss": [0.6, 0.5], "accuracy": [np.float64(0.6), 0.7]},
        "key_metric_history": [0.6, 0.5],
        "best_key_metric": np.float64(0.5),
        "_train_x_ticks": list(range(1, 13)),
        "_val_train_x_ticks": [6, 12],
        "_hist_vlines": [6, 12],
        "_set_name_cache": [str(k) for k in range(1, 7)] * 2,
        "epochs": 2,
        "key_metric": "loss",
        "val_freq": {"epoch": 1},
        "max_checkpoints": 3,
        "model_configs": {"units": np.int64(8), "optimizer": "adam"},
        "saveskip_list": ["model", "optimizer_state"],  # 0.6's meaning: not carried
        "report_fontpath": "C:\\fonts\\consola.ttf",
        "model_num": 3,
        "datagen": datagen(data / "train", N_TRAIN // FILE_SIZE, 2),
        "val_datagen": datagen(data / "val", N_VAL // FILE_SIZE, 4),
        **extra,
    }


def write_logdir_06(
    root: Path, data: Path, weights: list, names=("dense", "dense_1"), full_model=False, **extra
):
    logdir = root / "M3__model-adam__min.500"
    logdir.mkdir(parents=True)
    prefix = logdir / "M3__model-adam__min.500_2vals__"
    layers = keras2_layers(weights, names)
    write_keras2_weights(
        Path(f"{prefix}{'model' if full_model else 'weights'}.h5"), layers, full_model
    )
    with classes_named_as_in_0_6():
        blob = pickle.dumps(state_06(data, **extra))
    Path(f"{prefix}state.h5").write_bytes(blob)
    return logdir


@pytest.mark.backends
def test_3_migrate_a_0_6_logdir_then_load_and_continue(data, tmp_path, caplog):
    from deeptrain.migrate import migrate

    weights = [np.asarray(w) + 0.5 for w in classifier(seed=7).get_weights()]  # trained, in 0.6
    old = write_logdir_06(tmp_path / "logs06", data, weights)
    with caplog.at_level(logging.INFO, logger="deeptrain"):
        ckpt = migrate(old, tmp_path / "logs" / "M3__model-adam")
    assert "Not carried: the optimizer's state" in caplog.text and "random generator" in caplog.text
    assert ckpt.parent.name == "checkpoints" and (ckpt / "model.weights.h5").is_file()

    dg, vdg = datagens(data, shuffle=True)
    tg = TrainGenerator(classifier(), dg, vdg, loadpath=ckpt, epochs=3, iter_verbosity=0)
    for live, saved in zip(tg.model.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(live, saved)
    assert (tg.epoch, tg._fit_iters, tg._batches_fit, tg._times_validated) == (2, 12, 12, 2)
    assert tg.val_epoch == tg.val_datagen.epoch == 2 and tg.datagen.epoch == 2
    assert tg.history["loss"][:2] == [pytest.approx(0.9), 0.7] and tg.val_history["loss"] == [
        0.6,
        0.5,
    ]
    assert tg.best_key_metric == 0.5 and tg.key_metric_history == [0.6, 0.5]
    assert tg._hist_vlines == [6, 12] and tg._set_name_cache[-1] == "6"
    assert tg.max_checkpoints == 3 and tg.model_configs == {"units": 8, "optimizer": "adam"}
    assert "optimizer_state" not in tg.saveskip_list and tg.report_fontpath is None
    assert tg.logdir == tmp_path / "logs" / "M3__model-adam"  # the migrated run continues
    served = tg.datagen.state_dict()  # the epoch restarts (0.6's load did too)
    assert served["group"]["set_nums"] == ["1"] and served["set_nums_to_process"] == [
        "2",
        "3",
        "4",
        "5",
        "6",
    ]
    tg.train()
    assert tg.epoch == 3 and tg._fit_iters == 18 and tg._times_validated == 3
    assert TrainGenerator(classifier(), *datagens(data), loadpath=tg.logdir).epoch == 3


@pytest.mark.subprocess
def test_3_migrate_command_and_a_model_for_layers_named_by_the_user(data, tmp_path, caplog):
    from deeptrain.migrate import main, migrate

    names = ("hidden", "out")
    model = classifier(names=names)
    weights = [np.asarray(w) - 0.25 for w in model.get_weights()]
    old = write_logdir_06(tmp_path / "logs06", data, weights, names=names)
    with pytest.raises(ValueError, match="layer 'hidden'.*pass model="):
        migrate(old, tmp_path / "nomodel")
    assert not (tmp_path / "nomodel").exists()  # a failed migration leaves nothing
    ckpt = migrate(old, tmp_path / "withmodel", model=model)
    tg = TrainGenerator(classifier(names=names), *datagens(data), loadpath=ckpt, iter_verbosity=0)
    for live, saved in zip(tg.model.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(live, saved)

    plain = write_logdir_06(tmp_path / "plain06", data, weights)
    state_file = next(plain.glob("*__state.h5"))
    with caplog.at_level(logging.INFO, logger="deeptrain"):
        path = main([str(state_file), str(tmp_path / "cli")])  # python -m deeptrain.migrate
    assert path.is_dir() and "loadpath" in caplog.text
    with pytest.raises(FileExistsError):
        migrate(state_file, tmp_path / "cli")  # an existing checkpoint is not overwritten
    run = tmp_path / "run"  # a run's log directory: its 'latest' is not pointed elsewhere
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "latest").write_text("M0__model_1vals_6iters\n")
    with pytest.raises(FileExistsError, match="is not empty"):
        migrate(state_file, run)
    assert (run / "checkpoints" / "latest").read_text() == "M0__model_1vals_6iters\n"
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["latest"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    for out, code in ((tmp_path / "command", 0), (tmp_path / "cli", 1)):  # deeptrain migrate
        proc = subprocess.run(
            [sys.executable, "-m", "deeptrain", "migrate", str(plain), str(out)],
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
        )
        assert proc.returncode == code, proc.stderr[-3000:]
        if code == 0:
            made = Path(proc.stdout.strip())
            assert made.parent == out / "checkpoints" and (made / "state.json").is_file()
            assert (out / "checkpoints" / "latest").read_text().strip() == made.name
        else:  # the checkpoint is there already: an error naming it, nothing overwritten
            assert "Error:" in proc.stderr and "exists" in proc.stderr

    full = write_logdir_06(tmp_path / "full06", data, weights, full_model=True)  # model.save
    tg = TrainGenerator(classifier(), *datagens(data), loadpath=migrate(full, tmp_path / "full"))
    for live, saved in zip(tg.model.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(live, saved)


def test_3_a_malicious_pickle_is_refused_without_running(data, tmp_path):
    from deeptrain.migrate import migrate
    from deeptrain.util.unpickle import RefusedGlobal, loads_legacy_pickle

    marker = tmp_path / "pwned"
    weights = [np.asarray(w) for w in classifier().get_weights()]
    old = write_logdir_06(tmp_path / "logs06", data, weights, model_configs=Evil(f"touch {marker}"))
    with pytest.raises(RefusedGlobal, match=r"calls (posix|os|nt)\.system"):
        migrate(old, tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(RefusedGlobal):
            loads_legacy_pickle(pickle.dumps([Evil(f"touch {marker}")], protocol=protocol))
    assert not marker.exists()

    class Tofile:  # getattr on a real object would hand out its methods: refused
        def __reduce__(self):
            return (getattr, (np.arange(3), "tofile"))

    with pytest.raises(RefusedGlobal, match="getattr"):
        loads_legacy_pickle(pickle.dumps(Tofile()))
    plain = {"a": np.arange(4.0), "b": (1, "x", None), "c": {np.float32(2.5)}}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        back = loads_legacy_pickle(pickle.dumps(plain, protocol=protocol))
        np.testing.assert_array_equal(back["a"], plain["a"])
        assert back["b"] == plain["b"] and back["c"] == plain["c"]


class _Reduced:
    """Pickled as ``fn(*args)`` then BUILD ``state``: what a crafted file can hold."""

    def __init__(self, fn, args, state=None):
        self.reduced = (fn, args) if state is None else (fn, args, state)

    def __reduce__(self):
        return self.reduced


def test_a_pickle_cannot_crash_numpy_nor_ask_for_gigabytes():
    """NumPy trusts its own pickles: an object array's state with fewer items than its
    shape crashes the interpreter (checked in a child process), a dtype state can cut an
    object field short. Those, and sizes a few bytes ask for (``bytes(2**30)``, an empty
    array of a huge shape), are refused before NumPy or the allocator sees them."""
    import subprocess
    import sys

    from deeptrain.util.unpickle import RefusedGlobal, loads_legacy_pickle

    core = getattr(np, "_core", None) or np.core
    empty = core.multiarray._reconstruct
    short = _Reduced(empty, (np.ndarray, (0,), b"b"), (1, (10**6,), np.dtype("O"), False, [1]))
    script = (
        "import pickle, sys; from deeptrain.util.unpickle import loads_legacy_pickle; "
        "loads_legacy_pickle(sys.stdin.buffer.read())"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        input=pickle.dumps(short, protocol=2),
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")},
    )
    assert out.returncode == 1 and b"RefusedGlobal" in out.stderr, (out.returncode, out.stderr)
    assert b"object array of shape (1000000,) 1 items" in out.stderr

    def glob(module, name):  # (hand-written opcodes, protocol 3)
        return b"c" + module.encode() + b"\n" + name.encode() + b"\n"

    def text(value):
        return b"X" + struct.pack("<I", len(value)) + value.encode()

    def num(value):
        return b"J" + struct.pack("<i", value)

    def void_state(size):  # a dtype's state: a void of ``size`` bytes
        return b"(" + num(3) + text("|") + b"NNN" + num(size) + num(1) + num(0) + b"t"

    array_of_memo_0 = (  # _reconstruct(ndarray, (0,), 'b'), BUILD (1, (1,), memo 0, 8 bytes)
        glob("numpy.core.multiarray", "_reconstruct") + glob("numpy", "ndarray")
        + b"(" + num(0) + b"t" + text("b") + b"\x87R" + b"(" + num(1) + b"(" + num(1) + b"t"
        + b"h\x00\x89B" + struct.pack("<I", 8) + b"\0" * 8 + b"tb"
    )  # fmt: skip
    hand_written = {  # (bytes: what they ask for)
        # a dtype laid out under an array, then its state set again: 16 MiB read through
        # the array's 8 bytes (segfault)
        "a dtype whose state is set again under an array": (
            b"\x80\x03" + glob("numpy", "dtype") + text("V8") + b"\x89\x88\x87Rq\x00"
            + void_state(8) + b"b0" + array_of_memo_0 + b"0h\x00" + void_state(1 << 24) + b"b."
        ),
        "numpy.void(n)": b"\x80\x03" + glob("numpy", "void") + b"(" + num(1 << 28) + b"tR.",
        "numpy.ndarray(shape)": (
            b"\x80\x03" + glob("numpy", "ndarray") + b"((" + num(1 << 25) + b"t" + text("O")
            + b"tR."
        ),
    }  # fmt: skip
    for what, data in hand_written.items():
        with pytest.raises(RefusedGlobal, match="refused|in use"):
            loads_legacy_pickle(data)
            pytest.fail(f"{what}: read")
    # NumPy's own float64 (copy=False): a state set on it would change every float64 of
    # the process; the pickle gets a dtype of its own
    shared = glob("numpy", "dtype") + text("f8") + b"\x89\x89\x87R" + void_state(16) + b"b."
    loads_legacy_pickle(b"\x80\x03" + shared)
    assert np.dtype("f8").itemsize == 8 and np.zeros(2).nbytes == 16

    cut_short = (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 1, 1, 63)
    crafted = {
        "an object field cut short": _Reduced(np.dtype, ([("a", "O")], False, True), cut_short),
        "a size": _Reduced(bytes, (2**30,)),
        "a huge empty array": _Reduced(empty, (np.ndarray, (2**40,), b"b")),
        "raw data of another size": _Reduced(
            empty, (np.ndarray, (0,), b"b"), (1, (4,), np.dtype("f8"), False, b"\0" * 8)
        ),
    }
    for what, obj in crafted.items():
        with pytest.raises(RefusedGlobal, match="refuse|refused|another size"):
            loads_legacy_pickle(pickle.dumps(obj, protocol=2))
            pytest.fail(f"{what}: read")
    plain = {
        "objects": np.array([1, "x", None], dtype=object),
        "fields": np.zeros(2, [("a", "f4"), ("b", "O"), ("c", "i2", (3,))]),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "dates": np.array(["2020-01-01"], "M8[D]"),
        "buffers": (bytearray(b"xy"), b"", np.dtype(">f4")),
    }
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        back = loads_legacy_pickle(pickle.dumps(plain, protocol=protocol))
        assert back["buffers"] == plain["buffers"]
        for key in ("objects", "fields", "fortran", "dates"):
            assert repr(back[key]) == repr(plain[key]) and back[key].flags.f_contiguous == (
                key == "fortran" or back[key].ndim == 1
            )


def test_a_pickle_cannot_change_the_unpicklers_helpers_nor_import_modules(tmp_path):
    """A pickle's BUILD on a callable the unpickler hands out (``_codecs.encode`` for the
    bytes of protocols 0-2) is refused, and later loads read as before; a NumPy name the
    pickle gives imports nothing (NumPy loads some subpackages on first attribute access)."""
    import subprocess
    import sys

    from deeptrain.util.unpickle import RefusedGlobal, loads_legacy_pickle

    # GLOBAL _codecs.encode; BUILD (None, {'__defaults__': ('utf8',)}); STOP
    evil = (
        b"\x80\x02c_codecs\nencode\nN}X\x0c\x00\x00\x00__defaults__X\x04\x00\x00\x00utf8\x85s\x86b."
    )
    with pytest.raises(RefusedGlobal, match="refused"):
        loads_legacy_pickle(evil)
    assert loads_legacy_pickle(pickle.dumps(b"\xff\x00", protocol=2)) == b"\xff\x00"

    script = (
        "import sys; from deeptrain.util.unpickle import loads_legacy_pickle as load; "
        "before = set(sys.modules); "
        "[load(b'c' + m + b'\\n' + n + b'\\n.') for m, n in "
        "((b'numpy', b'f2py'), (b'numpy', b'testing'), (b'numpy', b'ctypeslib'))]; "
        "print(sorted(m for m in set(sys.modules) - before if m.startswith('numpy')))"
    )
    src = str(Path(__file__).parents[1] / "src")
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": src},
        check=True,
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
