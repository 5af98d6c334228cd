"""TrainGenerator configuration: DeepTrain 0.6's keys and defaults, and their checks.

``TRAINGEN_DEFAULTS`` is both the defaults and the whitelist of keyword arguments: an
unknown key is an error that suggests the closest valid one.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["TRAINGEN_DEFAULTS", "METRIC_TO_ALIAS", "ALIAS_TO_METRIC", "defaults"]

METRIC_TO_ALIAS = {
    "loss": "Loss",
    "accuracy": "Acc",
    "acc": "Acc",
    "f1_score": "F1",
    "tnr": "0-Acc",
    "tpr": "1-Acc",
    "mean_absolute_error": "MAE",
    "mae": "MAE",
    "mean_squared_error": "MSE",
    "mse": "MSE",
    "roc_auc_score": "AUC",
}
ALIAS_TO_METRIC = {
    "acc": "accuracy",
    "mae": "mean_absolute_error",
    "mse": "mean_squared_error",
    "mape": "mean_absolute_percentage_error",
    "msle": "mean_squared_logarithmic_error",
    "kld": "kullback_leibler_divergence",
    "cosine": "cosine_similarity",
    "f1": "f1_score",
    "f1-score": "f1_score",
}

TRAINGEN_DEFAULTS: dict[str, Any] = {
    # -- explicit arguments of DeepTrain 0.6 ------------------------------------------
    "epochs": 1,
    "logs_dir": None,
    "best_models_dir": None,
    "loadpath": None,
    "callbacks": None,
    "fit_fn": "train_on_batch",
    "eval_fn": "evaluate",
    "key_metric": "loss",
    "key_metric_fn": None,
    "val_metrics": None,
    "custom_metrics": None,
    "input_as_labels": False,
    "max_is_best": None,
    "val_freq": {"epoch": 1},
    "plot_history_freq": {"epoch": 1},
    "unique_checkpoint_freq": {"epoch": 1},
    "temp_checkpoint_freq": None,
    "class_weights": None,
    "val_class_weights": None,
    "reset_statefuls": False,
    "iter_verbosity": 1,
    "logdir": None,
    "optimizer_save_configs": None,
    "optimizer_load_configs": None,
    "plot_configs": None,
    "model_configs": None,
    # -- keyword arguments (DeepTrain 0.6's kwargs table) ------------------------------
    "batch_size": None,
    "val_mode": None,  # 'evaluate' | 'predict'; None: from eval_fn's name
    "dynamic_predict_threshold_min_max": None,
    "checkpoints_overwrite_duplicates": True,
    "loss_weighted_slices_range": None,
    "pred_weighted_slices_range": None,
    "logs_use_full_model_name": True,
    "new_model_num": True,
    "dynamic_predict_threshold": 0.5,
    "plot_first_pane_max_vals": 2,
    "_val_max_set_name_chars": 2,
    "_max_set_name_chars": 3,
    "predict_threshold": 0.5,
    "best_subset_size": None,
    "check_model_health": True,
    "max_one_best_save": True,
    "max_checkpoints": 5,
    # write checkpoints in a background thread (True), the training thread only copying the
    # state to host memory; False: write them before going on (the files exist on return)
    "checkpoint_async": True,
    "report_fontpath": None,
    "model_base_name": "model",
    "final_fig_dir": None,
    "loadskip_list": ["{auto}", "model_name", "model_base_name", "model_num"],
    "saveskip_list": ["model", "metric_to_alias", "alias_to_metric"],  # "model": no .keras
    "model_save_kw": None,
    "model_save_weights_kw": None,
    "metric_to_alias": METRIC_TO_ALIAS,
    "alias_to_metric": ALIAS_TO_METRIC,
    "report_configs": None,
    "model_name_configs": {"optimizer": "", "lr": "", "best_key_metric": None},
    "name_process_key_fn": None,
    "metric_printskip_configs": {"train": [], "val": []},
    "metrics_log": "jsonl",  # machine-readable log in the log directory: 'jsonl' | 'csv' | None
    # resuming: keep writing the run whose checkpoint is loaded (False: a new model number)
    "continue_run": True,
    # take logs_dir, best_models_dir, final_fig_dir, report_fontpath from the checkpoint
    "restore_saved_paths": False,
}


def defaults() -> dict[str, Any]:
    """A deep copy of the defaults (so no run shares mutable defaults with another)."""
    return copy.deepcopy(TRAINGEN_DEFAULTS)
