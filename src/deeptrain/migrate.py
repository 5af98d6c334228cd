"""Convert DeepTrain 0.6's saved state into a checkpoint of this version, without running it.

DeepTrain 0.6 saved a run as loose files: ``<name>__state.h5`` (a pickle of the
TrainGenerator's attributes, despite the name) beside ``<name>__weights.h5`` (Keras 2 HDF5
weights). This version never unpickles a checkpoint, so such files are converted once::

    from deeptrain.migrate import migrate
    ckpt = migrate('old_logs/M0__model-adam__min.081', 'logs/M0__model-adam')
    tg = TrainGenerator(model, dg, vdg, loadpath=ckpt)    # or loadpath='logs/M0__model-adam'

or ``python -m deeptrain.migrate OLD_LOGDIR OUT_DIR``. The pickle is read by
:mod:`deeptrain.util.unpickle`, which builds data only (containers, numbers, strings, NumPy
arrays, inert records of 0.6's objects) and refuses to call anything else.

Carried over: the counters (epochs, iterations, batches, validations), histories, the best
key metric, the plot bookkeeping, set-name caches, the prediction threshold, the
DataGenerators' epochs and set nums (in 0.6's order: a custom ``set_nums`` order or subset
is kept, so pass the same ``set_nums`` again; checked against your data at load), the
settings of 0.6 that keep their meaning here, and the model's weights (written in Keras 3's
layout: layers are placed by the class their Keras 2 names say, ``dense_1`` -> ``Dense``;
pass ``model=`` if names do not say it). Not carried (a log line says so): the optimizer's
state (Keras 2 slot variables do not map to Keras 3 optimizers; the optimizer starts
fresh), the random generators (0.6 did not save them), callbacks' state, and the position
inside an epoch (as 0.6's own load, the run continues from the start of its current epoch).
0.6 counted each validation twice in ``val_epoch``; the checkpoint counts it once.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .saving.checkpoint import (
    ARRAYS_FILE,
    CHECKPOINTS_DIR,
    WEIGHTS_FILE,
    arrays_bytes,
    update_pointer,
    write_checkpoint,
)
from .training.frequency import check_freq
from .training.state import TrainState
from .util.jsonstate import UNSUPPORTED, to_json
from .util.keras2_weights import read_keras2_weights, write_keras3_weights
from .util.unpickle import LegacyRecord, load_legacy_pickle

__all__ = ["migrate", "find_legacy_state", "main"]

log = logging.getLogger("deeptrain")

# 0.6 attribute -> TrainState field
_COUNTERS = {
    "_epoch": "epoch",
    "_fit_iters": "fit_iters",
    "_batches_fit": "batches_fit",
    "_val_iters": "val_iters",
    "_batches_validated": "batches_validated",
    "_times_validated": "times_validated",
}
_LISTS = {
    "key_metric_history": "key_metric_history",
    "_train_x_ticks": "train_x_ticks",
    "_train_val_x_ticks": "train_val_x_ticks",
    "_val_x_ticks": "val_x_ticks",
    "_val_train_x_ticks": "val_train_x_ticks",
    "_hist_vlines": "hist_vlines",
    "_val_hist_vlines": "val_hist_vlines",
    "_set_name_cache": "set_name_cache",
    "_val_set_name_cache": "val_set_name_cache",
}
# 0.6 settings that mean the same here (others, such as save/load skip lists, save kwargs,
# paths and plot configs, follow different rules now and are left to the new run's own)
_SETTINGS = (
    "epochs",
    "key_metric",
    "max_is_best",
    "val_freq",
    "plot_history_freq",
    "unique_checkpoint_freq",
    "temp_checkpoint_freq",
    "class_weights",
    "val_class_weights",
    "reset_statefuls",
    "iter_verbosity",
    "input_as_labels",
    "val_metrics",
    "dynamic_predict_threshold",
    "dynamic_predict_threshold_min_max",
    "loss_weighted_slices_range",
    "pred_weighted_slices_range",
    "best_subset_size",
    "max_checkpoints",
    "model_base_name",
    "model_name_configs",
    "model_configs",
    "new_model_num",
    "logs_use_full_model_name",
    "checkpoints_overwrite_duplicates",
    "check_model_health",
    "max_one_best_save",
    "plot_first_pane_max_vals",
    "metric_printskip_configs",
    "model_num",
    "model_name",
    "best_subset_nums",
)
_FREQS = ("val_freq", "plot_history_freq", "unique_checkpoint_freq", "temp_checkpoint_freq")
_WEIGHTS_FILES = ("weights.h5", "model.h5", "model_noopt.h5")  # after 0.6's '<prefix>'
_NOT_CARRIED = (
    "the optimizer's state (Keras 2 slots; the optimizer starts fresh), random generator "
    "states (0.6 saved none), callbacks' state, the position inside the epoch"
)


def find_legacy_state(path: str | Path) -> tuple[Path, Path | None]:
    """``(state file, weights file or None)`` for a 0.6 state file, or for the newest
    ``*state.h5`` in a 0.6 log directory (or ``best_models_dir``). The weights are
    ``<prefix>weights.h5``, else the full model ``<prefix>model.h5`` / ``model_noopt.h5``
    (its ``model_weights``)."""
    path = Path(path)
    if path.is_file():
        state = path
    elif path.is_dir():
        found = sorted(path.glob("*state.h5"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise FileNotFoundError(f"{path} holds no DeepTrain 0.6 state file (*__state.h5)")
        state = found[-1]
    else:
        raise FileNotFoundError(f"{path} does not exist")
    if not state.name.endswith("state.h5"):
        raise ValueError(f"{state} is not a DeepTrain 0.6 state file (*__state.h5)")
    prefix = state.name[: -len("state.h5")]
    candidates = [state.with_name(prefix + f) for f in _WEIGHTS_FILES]
    return state, next((p for p in candidates if p.is_file()), None)


def migrate(logdir_06: str | Path, out_dir: str | Path, model: Any = None) -> Path:
    """Convert the newest 0.6 state in ``logdir_06`` (or the state file it names) and its
    weights into the checkpoint ``<out_dir>/checkpoints/<name>``, made ``latest``; returns
    its path. ``out_dir`` becomes a log directory: ``TrainGenerator(..., loadpath=out_dir)``
    continues the run there. ``model``: a Keras 3 model of the same architecture, into which
    the Keras 2 weights are loaded by layer order (needed when layer names do not say their
    class). Nothing of the 0.6 files is executed (see the module docstring)."""
    state_file, weights_file = find_legacy_state(logdir_06)
    saved = load_legacy_pickle(state_file)
    if not isinstance(saved, dict):
        raise ValueError(
            f"{state_file} holds a {type(saved).__name__}, not DeepTrain 0.6's TrainGenerator "
            "state (a dict of its attributes)"
        )
    train_state = _train_state(saved)
    settings, dropped = _settings(saved)
    payload = {
        "kind": "manual",
        "seq": train_state.save_seq,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "deeptrain_version": __version__,
        "train_state": train_state.to_dict(),
        "traingen": settings,
        "datagen": _datagen_state(saved.get("datagen"), train_state.epoch),
        "val_datagen": _datagen_state(saved.get("val_datagen"), train_state.val_epoch),
        "callbacks": [],
    }
    out_dir = Path(out_dir)
    directory = out_dir / CHECKPOINTS_DIR
    path = directory / _checkpoint_name(state_file)
    # before converting the weights (which loads Keras): nothing is replaced, and a run's
    # log directory is not made to resume from the 0.6 state ('latest' would point at it)
    if path.exists():
        raise FileExistsError(f"checkpoint {path} exists (not replaced)")
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(
            f"{directory} is not empty (a run's checkpoints: its 'latest' would point at the "
            "0.6 state); migrate into a new directory"
        )
    made = [d for d in (out_dir, directory) if not d.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            writers, payload["model"], keras_version = _weights(weights_file, model, Path(tmp))
            payload["keras_version"] = f"{keras_version} (DeepTrain 0.6 files)"
            payload["backend"] = "tensorflow"
            write_checkpoint(path, payload, {**writers, ARRAYS_FILE: arrays_bytes({})})
        update_pointer(directory, path.name)
    except BaseException:
        if path.exists():  # (the pointer failed): nothing of a failed migration is left
            shutil.rmtree(path, ignore_errors=True)
        for made_dir in reversed(made):
            with contextlib.suppress(OSError):
                made_dir.rmdir()
        raise
    log.info(
        "Migrated %s to %s: epoch %d, %d batches fit, %d validations, best %s=%s; settings "
        "carried: %s%s. Not carried: %s.",
        state_file,
        path,
        train_state.epoch,
        train_state.batches_fit,
        train_state.times_validated,
        settings.get("key_metric", "key metric"),
        train_state.best_key_metric,
        ", ".join(sorted(settings)) or "none",
        f" (not representable, left out: {', '.join(dropped)})" if dropped else "",
        _NOT_CARRIED,
    )
    return path


def _checkpoint_name(state_file: Path) -> str:
    stem = state_file.name[: -len("state.h5")].rstrip("_") or "migrated"
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", stem).lstrip(".")
    return f"{name or 'migrated'}__from_0.6"


def _number(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _train_state(saved: dict[str, Any]) -> TrainState:
    state = TrainState()
    for old, new in _COUNTERS.items():
        value = _number(saved.get(old, 0))
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"0.6 state {old!r} must be an int >= 0, got {value!r}")
        setattr(state, new, value)
    state.val_epoch = state.times_validated  # 0.6 counted each validation twice
    for old, new in _LISTS.items():
        values = to_json(list(saved.get(old) or []))
        setattr(state, new, [] if values is UNSUPPORTED else values)
    for name in ("history", "val_history"):
        table = to_json(dict(saved.get(name) or {}))
        setattr(state, name, {} if table is UNSUPPORTED else table)
    best = _number(saved.get("best_key_metric"))
    if state.key_metric_history and isinstance(best, (int, float)):  # else 0.6's sentinel
        state.best_key_metric = float(best)
    threshold = _number(saved.get("predict_threshold", 0.5))
    state.predict_threshold = float(threshold) if threshold is not None else 0.5
    for name in ("set_name", "val_set_name"):
        value = saved.get(f"_{name}")
        setattr(state, name, None if value is None else str(value))
    state.save_seq = 1
    return state


def _settings(saved: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The 0.6 settings carried over (JSON), and the names left out for having no JSON
    form or no valid value here."""
    settings, dropped = {}, []
    for name in _SETTINGS:
        if name not in saved:
            continue
        value = to_json(saved[name])
        if value is UNSUPPORTED or not _valid_setting(name, saved[name]):
            dropped.append(name)
        else:
            settings[name] = value
    return settings, dropped


def _valid_setting(name: str, value: Any) -> bool:
    if name in _FREQS:
        try:
            freq = check_freq(value, name)
        except (TypeError, ValueError):
            return False
        return not (name == "val_freq" and freq and "val" in freq)
    return True


def _datagen_state(record: Any, epoch: int) -> dict[str, Any]:
    """A DataGenerator state at the start of epoch ``epoch``, over the set nums 0.6 used, in
    its order (:func:`_set_nums_06`): the queue of an epoch's start without shuffling, as
    0.6 restarted it."""
    state: dict[str, Any] = {
        "format": 1,
        "epoch": epoch,
        "group": None,
        "set_num": None,
        "set_name": None,
        "all_data_exhausted": False,
        "preprocessor": {"batch_exhausted": True, "batch_loaded": False},
    }
    attrs = record.attrs if isinstance(record, LegacyRecord) else {}
    nums = attrs.get("set_nums_original")
    if isinstance(nums, (list, tuple)) and nums:
        nums = _set_nums_06([str(_number(n)) for n in nums], attrs.get("data_loader"))
        state["set_nums_original"] = nums
        state["set_nums_to_process"] = list(nums)
    return state


def _set_nums_06(nums: list[str], loader: Any) -> list[str]:
    """0.6's ``set_nums_original`` in the order this version's DataGenerator has them. The
    order is 0.6's (an epoch's queue without shuffling; a custom ``set_nums=`` order, or a
    subset, stays as given, to be passed again), but for set nums 0.6 inferred from one
    HDF5 file: in its key order (``'1', '10', '2'``), where this version infers numeric
    order; those are put in numeric order."""
    numeric = sorted(nums, key=_numeric)
    one_file = not isinstance(loader, LegacyRecord) or loader.attrs.get("_is_dataset", True)
    if nums != numeric and nums == sorted(nums) and one_file:
        log.info(
            "Set nums %s in HDF5 key order (as 0.6 inferred them from one file) are put in "
            "numeric order, as this version infers them",
            nums[:8],
        )
        return numeric
    return nums


def _numeric(set_num: str) -> tuple[int, str]:
    return (int(set_num), set_num) if set_num.isdigit() else (2**63, set_num)


def _weights(
    weights_file: Path | None, model: Any, tmp: Path
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """``(writers, model specs, Keras version)`` of the checkpoint's weights."""
    if weights_file is None:
        log.warning("No 0.6 weights file beside the state: the checkpoint holds no weights")
        return {}, {"weights": [], "optimizer": []}, "?"
    layers, version = read_keras2_weights(weights_file)  # also checks it is self-contained
    converted = tmp / WEIGHTS_FILE
    if model is None:
        specs = write_keras3_weights(layers, converted)
    else:
        legacy = tmp / "keras2_weights.h5"  # Keras 3 reads Keras 2 HDF5 by layer order
        shutil.copyfile(weights_file, legacy)
        model.load_weights(legacy)
        model.save_weights(converted)
        specs = [[v.path, [int(d) for d in v.shape], str(v.dtype)] for v in model.weights]
    writers = {WEIGHTS_FILE: lambda p: shutil.copyfile(converted, p)}
    return writers, {"weights": specs, "optimizer": []}, version


def main(argv: list[str] | None = None) -> Path:
    """``python -m deeptrain.migrate OLD_LOGDIR OUT_DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m deeptrain.migrate",
        description="Convert DeepTrain 0.6's *__state.h5 + *__weights.h5 into a checkpoint "
        "(nothing of the old files is executed).",
    )
    parser.add_argument("logdir_06", help="a 0.6 log directory, or one *__state.h5 file")
    parser.add_argument("out_dir", help="the log directory to create the checkpoint in")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = migrate(args.logdir_06, args.out_dir)
    log.info("Load it with TrainGenerator(..., loadpath=%r)", str(path))
    return path


if __name__ == "__main__":
    main()
