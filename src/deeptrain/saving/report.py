"""The one-image report of the train state, and the init logs of a run.

The report has four sections, ``>>HYPERPARAMETERS`` (``model_configs``), ``>>TRAINGEN
STATE``, ``>>TRAIN DATAGEN STATE`` and ``>>VAL DATAGEN STATE``, each a list of
``'attr' = value`` lines, laid out in three balanced columns and drawn with matplotlib
(no extra font or imaging library). ``report_configs`` filters what is shown::

    {'traingen': {'exclude': ['*threshold']}, ('datagen', 'val_datagen'): {'include': [...]},
     'model': {'exclude_types': [list]}}

``'*text'`` matches names containing ``text``; in ``exclude_types``, ``'#name'`` keeps one
attribute whose type is excluded.
"""

from __future__ import annotations

import inspect
import json
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "report_sections",
    "state_report_sections",
    "report_figure",
    "write_init_logs",
    "DEFAULT_EXCLUDES",
]

_SCALARS = (bool, int, float, str, type(None), np.integer, np.floating, np.bool_)

DEFAULT_EXCLUDES = {
    "traingen": [
        "callbacks",
        "key_metric_fn",
        "custom_metrics",
        "metric_to_alias",
        "alias_to_metric",
        "name_process_key_fn",
        "saveskip_list",
        "loadskip_list",
        "plot_configs",
        "report_configs",
        "model_name_configs",
        "model_configs",
        "metric_printskip_configs",
        "logs_dir",
        "best_models_dir",
        "logdir",
        "report_fontpath",
        "*history",
        "*_cache",
        "*x_ticks",
        "*vlines",
        "val_temp_sizes",
        "model_save_kw",
        "model_save_weights_kw",
    ],
    "datagen": [
        "*path",
        "*_filepaths",
        "loadskip_list",
        "saveskip_list",
        "*set_nums*",
        "*superbatch",
        "batch",
        "labels",
        "data_loader",
        "labels_loader",
    ],
}


def _short(value: Any) -> bool:
    if isinstance(value, _SCALARS):
        return True
    if isinstance(value, (list, tuple)):
        return len(value) <= 12 and all(isinstance(v, _SCALARS) for v in value)
    if isinstance(value, Mapping):
        return len(value) <= 8 and all(
            isinstance(v, _SCALARS + (list, tuple)) for v in value.values()
        )
    return False


def _matches(name: str, patterns: list[str]) -> bool:
    for p in patterns:
        if p.startswith("*") and p.endswith("*") and len(p) > 1 and p.strip("*") in name:
            return True
        if p.startswith("*") and name.endswith(p[1:]):
            return True
        if name == p:
            return True
    return False


def _filtered(items: dict[str, Any], target: str, configs: Mapping | None) -> dict[str, Any]:
    rules: dict[str, Any] = {}
    for key, value in (configs or {}).items():
        if key == target or (isinstance(key, tuple) and target in key):
            rules.update(value)
    if "include" in rules and "exclude" in rules:
        raise ValueError(f"report_configs[{target!r}] has both 'include' and 'exclude'")
    if "include" in rules:
        items = {k: v for k, v in items.items() if _matches(k, rules["include"])}
    else:
        exclude = rules.get(
            "exclude", DEFAULT_EXCLUDES.get("datagen" if target.endswith("datagen") else target, [])
        )
        items = {k: v for k, v in items.items() if not _matches(k, exclude)}
    types = tuple(t for t in rules.get("exclude_types", []) if isinstance(t, type))
    keep = {t[1:] for t in rules.get("exclude_types", []) if isinstance(t, str)}
    return {k: v for k, v in items.items() if k in keep or not isinstance(v, types)}


def _traingen_items(tg: Any) -> dict[str, Any]:
    from ..training.configs import TRAINGEN_DEFAULTS

    items = {name: getattr(tg, name) for name in TRAINGEN_DEFAULTS if hasattr(tg, name)}
    items.update(
        fit_fn=getattr(tg, "_fit_fn_name", None),
        eval_fn=getattr(tg, "_eval_fn_name", None),
        model_num=getattr(tg, "model_num", None),
        model_name=tg.model_name,
        best_subset_nums=tg.best_subset_nums,
    )
    items.update({k: v for k, v in tg.state.to_dict().items() if _short(v)})
    return items


def _datagen_items(dg: Any) -> dict[str, Any]:
    items = {k: v for k, v in vars(dg).items() if not k.startswith("_")}
    pre = dg.preprocessor
    items["preprocessor"] = type(pre).__name__
    items.update(
        {
            f"preprocessor.{k}": v
            for k, v in vars(pre).items()
            if not k.startswith("_") and _short(v)
        }
    )
    items["n_set_nums"] = len(dg.set_nums_original)
    items["n_set_nums_to_process"] = len(dg.set_nums_to_process)
    return items


def report_sections(tg: Any) -> dict[str, list[str]]:
    """The report's text: ``{section title: ["'attr' = value", ...]}``."""
    sources = {
        ">>HYPERPARAMETERS": ("model", dict(tg.model_configs or {})),
        ">>TRAINGEN STATE": ("traingen", _traingen_items(tg)),
        ">>TRAIN DATAGEN STATE": ("datagen", _datagen_items(tg.datagen)),
        ">>VAL DATAGEN STATE": ("val_datagen", _datagen_items(tg.val_datagen)),
    }
    return _sections(sources, tg.report_configs)


def state_report_sections(state: Mapping[str, Any]) -> dict[str, list[str]]:
    """The report's text from a checkpoint's state alone (no model, no data): the saved
    settings and train state, and both DataGenerators' saved positions."""
    from ..util.jsonstate import from_json

    settings = {k: from_json(v) for k, v in dict(state.get("traingen", {})).items()}
    traingen = {k: v for k, v in settings.items() if k != "model_configs"}
    traingen.update({k: v for k, v in state["train_state"].items() if _short(v)})

    def datagen(saved: Mapping[str, Any]) -> dict[str, Any]:
        items = {k: v for k, v in saved.items() if k not in ("rng", "group", "preprocessor")}
        items["n_set_nums"] = len(saved.get("set_nums_original", []))
        items["n_set_nums_to_process"] = len(saved.get("set_nums_to_process", []))
        group = saved.get("group") or {}
        items.update({f"group.{k}": v for k, v in group.items() if _short(v)})
        pre = saved.get("preprocessor") or {}
        items.update({f"preprocessor.{k}": v for k, v in pre.items() if _short(v)})
        return items

    sources = {
        ">>HYPERPARAMETERS": ("model", dict(settings.get("model_configs") or {})),
        ">>TRAINGEN STATE": ("traingen", traingen),
        ">>TRAIN DATAGEN STATE": ("datagen", datagen(state["datagen"])),
        ">>VAL DATAGEN STATE": ("val_datagen", datagen(state["val_datagen"])),
    }
    return _sections(sources, settings.get("report_configs"))


def _sections(
    sources: Mapping[str, tuple[str, dict[str, Any]]], configs: Mapping | None
) -> dict[str, list[str]]:
    sections = {}
    for title, (target, items) in sources.items():
        items = _filtered(
            {k: v for k, v in items.items() if _short(v) or target == "model"}, target, configs
        )
        lines = []
        for k, v in items.items():
            text = f"'{k}' = {tuple(v) if isinstance(v, list) else v}"
            lines.extend(textwrap.wrap(text, 80, subsequent_indent="    ") or [text])
        sections[title] = lines
    return sections


def report_figure(
    sections: Mapping[str, list[str]], title: str = "", fontpath: str | Path | None = None
) -> Figure:
    """Three columns of monospace text (or the font file ``fontpath``, e.g. a ``.ttf``)."""
    from matplotlib.font_manager import FontProperties

    if fontpath is not None and not Path(fontpath).is_file():
        raise FileNotFoundError(f"report_fontpath={str(fontpath)!r} does not exist")
    font = (
        dict(fontproperties=FontProperties(fname=str(fontpath)))
        if fontpath
        else dict(family="monospace")
    )
    lines: list[str] = []
    for head, body in sections.items():
        lines += ([""] if lines else []) + [head] + list(body)
    per_col = max(1, -(-len(lines) // 3))
    columns = [lines[i : i + per_col] for i in range(0, len(lines), per_col)] or [[]]
    width = max((len(s) for s in lines), default=40)
    char_w, line_h = 0.075, 0.17  # inches at fontsize 9
    fig = Figure(
        figsize=(max(6.0, len(columns) * (width + 3) * char_w), max(2.0, (per_col + 3) * line_h))
    )
    if title:
        fig.text(0.01, 0.99, title, fontsize=10, weight="bold", va="top", **font)
    for i, col in enumerate(columns):
        fig.text(
            0.01 + i / len(columns),
            0.99 - (2.0 * line_h / fig.get_figheight()),
            "\n".join(col),
            fontsize=9,
            va="top",
            linespacing=1.15,
            **font,
        )
    return fig


def write_init_logs(tg: Any, misc_dir: Path) -> None:
    """``init_state.json`` (the settings as text) and ``init_source.txt`` (the running
    script's source), as DeepTrain 0.6 wrote them."""
    misc_dir.mkdir(parents=True, exist_ok=True)
    state = {"_passed_args": list(tg._passed_args)}
    for name, value in _traingen_items(tg).items():
        if isinstance(value, (list, tuple, dict)) and len(value) > 50:
            value = f"{type(value).__name__} of {len(value)} items"
        elif isinstance(value, Path):
            value = str(value)
        elif not isinstance(value, _SCALARS + (list, tuple, dict)):
            value = getattr(value, "__qualname__", type(value).__qualname__)
        state[name] = str(value) if not isinstance(value, str) else value
    state["model"] = f"{type(tg.model).__name__} '{tg.model.name}'"
    (misc_dir / "init_state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
    parts = []
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    if main_file and Path(main_file).is_file():
        parts.append(f"## {main_file} ####\n{Path(main_file).read_text(encoding='utf-8')}")
    for obj in (tg.datagen.preprocessor, *tg.callbacks.objects):
        cls = type(obj)
        if not cls.__module__.startswith("deeptrain"):
            try:
                parts.append(
                    f"## {inspect.getsourcefile(cls)}:{cls.__qualname__} ####\n"
                    f"{inspect.getsource(cls)}"
                )
            except (OSError, TypeError):
                pass
    (misc_dir / "init_source.txt").write_text(
        "\n\n".join(parts) or "(no source available)\n", encoding="utf-8"
    )
