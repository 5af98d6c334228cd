"""The one-image report of the train state, and the init logs of a run.

The report has four sections, ``>>HYPERPARAMETERS`` (``model_configs``), ``>>TRAINGEN
STATE``, ``>>TRAIN DATAGEN STATE`` and ``>>VAL DATAGEN STATE``, each a list of
``'attr' = value`` lines, laid out in three balanced columns in a monospace font (drawn
with Pillow, matplotlib's own imaging library; :func:`report_figure` gives the same as a
matplotlib figure). ``report_configs`` filters what is shown::

    {'traingen': {'exclude': ['*threshold']}, ('datagen', 'val_datagen'): {'include': [...]},
     'model': {'exclude_types': [list]}}

``'*text'`` matches names containing ``text``; in ``exclude_types``, ``'#name'`` keeps one
attribute whose type is excluded.
"""

from __future__ import annotations

import functools
import inspect
import io
import json
import sys
import textwrap
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..training.contract import Traingen

__all__ = [
    "report_sections",
    "report_entries",
    "state_report_sections",
    "format_sections",
    "check_report_configs",
    "report_figure",
    "report_png",
    "traingen_report_png",
    "write_init_logs",
    "DEFAULT_EXCLUDES",
    "REPORT_CFG",
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


# The report_configs of a TrainGenerator given none (DeepTrain 0.6's ``configs.REPORT_CFG``):
# e.g. ``REPORT_CFG['traingen'] = {'exclude': ['*threshold']}`` applies to every report.
REPORT_CFG: dict[Any, Any] = {}


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


@functools.lru_cache(maxsize=128)
def _compiled(patterns: tuple[str, ...]) -> tuple[frozenset, tuple[str, ...], tuple[str, ...]]:
    """``patterns`` as (exact names, ``'*suffix'`` suffixes, ``'*text*'`` texts)."""
    stars = [p for p in patterns if p.startswith("*")]
    contains = tuple(p.strip("*") for p in stars if p.endswith("*") and len(p) > 1)
    return frozenset(patterns), tuple(p[1:] for p in stars), contains


def _matches(name: str, patterns: list[str]) -> bool:
    exact, suffixes, contains = _compiled(tuple(patterns))
    return name in exact or name.endswith(suffixes) or any(c in name for c in contains)


Entry = tuple[str, type, str]  # (attribute, type of its value, "'attr' = value")


def _filtered(entries: list[Entry], target: str, configs: Mapping | None) -> list[Entry]:
    rules: dict[str, Any] = {}
    for key, value in (configs or {}).items():
        if key == target or (isinstance(key, tuple) and target in key):
            rules.update(value)
    if "include" in rules and "exclude" in rules:
        raise ValueError(f"report_configs[{target!r}] has both 'include' and 'exclude'")
    if "include" in rules:
        entries = [e for e in entries if _matches(e[0], rules["include"])]
    else:
        exclude = rules.get(
            "exclude", DEFAULT_EXCLUDES.get("datagen" if target.endswith("datagen") else target, [])
        )
        entries = [e for e in entries if not _matches(e[0], exclude)]
    types = tuple(t for t in rules.get("exclude_types", []) if isinstance(t, type))
    keep = {t[1:] for t in rules.get("exclude_types", []) if isinstance(t, str)}
    return [e for e in entries if e[0] in keep or not issubclass(e[1], types)]


def _traingen_items(tg: Traingen) -> dict[str, Any]:
    from ..training.configs import TRAINGEN_DEFAULTS

    items = {name: getattr(tg, name) for name in TRAINGEN_DEFAULTS if hasattr(tg, name)}
    items.update(
        fit_fn=getattr(tg, "_fit_fn_name", None),
        eval_fn=getattr(tg, "_eval_fn_name", None),
        model_num=getattr(tg, "model_num", None),
        model_name=tg.model_name,
        best_subset_nums=tg.best_subset_nums,
    )
    items.update({f.name: getattr(tg.state, f.name) for f in fields(tg.state)})
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


def _model_items(model_configs: Any) -> dict[str, Any]:
    """``model_configs`` as the report's hyperparameters."""
    return dict(model_configs or {})


_TARGETS = ("model", "traingen", "datagen", "val_datagen")


def check_report_configs(configs: Any, model_configs: Any) -> None:
    """Raise, naming the setting, for ``report_configs`` or ``model_configs`` that drawing
    the report would refuse: the report's own filtering, run on one entry per section."""
    try:
        _model_items(model_configs)
    except (TypeError, ValueError):
        raise TypeError(
            f"model_configs must be None or a dict {{name: value}}, got {model_configs!r}"
        ) from None
    probe: dict[str, tuple[str, list[Entry]]] = {
        target: (target, [("probe", int, "'probe' = 1")]) for target in _TARGETS
    }
    try:
        format_sections(probe, configs)
    except (AttributeError, TypeError, ValueError) as e:
        if str(e).startswith("report_configs"):  # (its own message names it)
            raise
        raise TypeError(
            "report_configs must be None or a dict {section: {'include' or 'exclude': "
            f"[names], 'exclude_types': [types]}}, got {configs!r} ({e})"
        ) from None


def report_entries(tg: Traingen) -> dict[str, tuple[str, list[Entry]]]:
    """What the report shows, as text, before ``report_configs`` filters it: ``{section
    title: (target, [(attribute, type, "'attr' = value"), ...])}``. Cheap (the text of the
    short values only), and independent of ``tg`` afterwards."""
    sources = {
        ">>HYPERPARAMETERS": ("model", _model_items(tg.model_configs)),
        ">>TRAINGEN STATE": ("traingen", _traingen_items(tg)),
        ">>TRAIN DATAGEN STATE": ("datagen", _datagen_items(tg.datagen)),
        ">>VAL DATAGEN STATE": ("val_datagen", _datagen_items(tg.val_datagen)),
    }
    return _entries(sources)


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
    configs = settings.get("report_configs")
    return format_sections(_entries(sources), configs if configs is not None else REPORT_CFG)


def _entries(
    sources: Mapping[str, tuple[str, dict[str, Any]]],
) -> dict[str, tuple[str, list[Entry]]]:
    return {
        title: (
            target,
            [
                (k, type(v), f"'{k}' = {tuple(v) if isinstance(v, list) else v}")
                for k, v in items.items()
                if _short(v) or target == "model"
            ],
        )
        for title, (target, items) in sources.items()
    }


def format_sections(
    entries: Mapping[str, tuple[str, list[Entry]]], configs: Mapping | None
) -> dict[str, list[str]]:
    """The report's lines from :func:`report_entries`, filtered by ``report_configs`` and
    wrapped at 80 characters."""
    sections = {}
    for title, (target, items) in entries.items():
        lines = []
        for _, _, text in _filtered(items, target, configs):
            if len(text) <= 80 and text.isprintable() and text == text.strip():
                lines.append(text)  # what textwrap.wrap would return, without its cost
            else:
                lines.extend(textwrap.wrap(text, 80, subsequent_indent="    ") or [text])
        sections[title] = lines
    return sections


def report_configs(tg: Traingen) -> Any:
    """``tg.report_configs``, or :data:`REPORT_CFG` when it is None."""
    return tg.report_configs if tg.report_configs is not None else REPORT_CFG


def report_sections(tg: Traingen) -> dict[str, list[str]]:
    """The report's text: ``{section title: ["'attr' = value", ...]}``."""
    return format_sections(report_entries(tg), report_configs(tg))


REPORT_DPI = 80  # as every figure DeepTrain writes
_CHAR_W, _LINE_H = 0.075, 0.17  # inches per character and per line at fontsize 9


def _report_layout(
    sections: Mapping[str, list[str]],
) -> tuple[list[list[str]], tuple[float, float]]:
    """The lines of each of the (up to) three columns, and the image size in inches."""
    lines: list[str] = []
    for head, body in sections.items():
        lines += ([""] if lines else []) + [head] + list(body)
    per_col = max(1, -(-len(lines) // 3))
    columns = [lines[i : i + per_col] for i in range(0, len(lines), per_col)] or [[]]
    width = max((len(s) for s in lines), default=40)
    size = (max(6.0, len(columns) * (width + 3) * _CHAR_W), max(2.0, (per_col + 3) * _LINE_H))
    return columns, size


def _check_fontpath(fontpath: str | Path | None) -> None:
    if fontpath is not None and not Path(fontpath).is_file():
        raise FileNotFoundError(f"report_fontpath={str(fontpath)!r} does not exist")


def report_figure(
    sections: Mapping[str, list[str]], title: str = "", fontpath: str | Path | None = None
) -> Figure:
    """Three columns of monospace text (or the font file ``fontpath``, e.g. a ``.ttf``), as a
    matplotlib figure (:func:`report_png` draws the same image ~20x faster)."""
    from matplotlib.font_manager import FontProperties

    _check_fontpath(fontpath)
    font = (
        dict(fontproperties=FontProperties(fname=str(fontpath)))
        if fontpath
        else dict(family="monospace")
    )
    columns, figsize = _report_layout(sections)
    fig = Figure(figsize=figsize)
    if title:
        fig.text(0.01, 0.99, title, fontsize=10, weight="bold", va="top", **font)
    for i, col in enumerate(columns):
        fig.text(
            0.01 + i / len(columns),
            0.99 - (2.0 * _LINE_H / fig.get_figheight()),
            "\n".join(col),
            fontsize=9,
            va="top",
            linespacing=1.15,
            **font,
        )
    return fig


def report_png(
    sections: Mapping[str, list[str]], title: str = "", fontpath: str | Path | None = None
) -> bytes:
    """The report image of :func:`report_figure` as PNG bytes (scaled by ``SCALEFIG`` like
    every figure), drawn with Pillow: matplotlib lays out and renders text glyph by glyph,
    ~0.6 s for a report, which every checkpoint draws; this takes ~30 ms."""
    from matplotlib.font_manager import FontProperties, findfont
    from PIL import Image, ImageDraw, ImageFont

    from ..visuals import scale_factors

    _check_fontpath(fontpath)
    columns, (width, height) = _report_layout(sections)
    sx, sy = scale_factors()
    image = Image.new(
        "RGB", (round(width * sx * REPORT_DPI), round(height * sy * REPORT_DPI)), "white"
    )
    draw = ImageDraw.Draw(image)

    def font(points: int, weight: str = "normal") -> Any:
        path = fontpath or findfont(FontProperties(family="monospace", weight=weight))
        return ImageFont.truetype(str(path), round(points * REPORT_DPI / 72))

    margin_x, margin_y = 0.01 * image.width, 0.01 * height * REPORT_DPI
    if title:
        draw.text((margin_x, margin_y), title, fill="black", font=font(10, "bold"))
    body, line = font(9), _LINE_H * REPORT_DPI
    top = margin_y + 2 * line
    for i, col in enumerate(columns):
        x = margin_x + i * image.width / len(columns)
        for j, text in enumerate(col):
            draw.text((x, top + j * line), text, fill="black", font=body)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def traingen_report_png(tg: Traingen) -> bytes:
    """``tg``'s report image (its sections, model name and ``report_fontpath``) as PNG."""
    return report_png(report_sections(tg), title=tg.model_name, fontpath=tg.report_fontpath)


def write_init_logs(tg: Traingen, misc_dir: Path) -> None:
    """``init_state.json`` (the settings as text) and ``init_source.txt`` (the running
    script's source), as DeepTrain 0.6 wrote them."""
    misc_dir.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {"_passed_args": tg.passed_args}
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
                pass  # defined in an interpreter session, or built in: no source file
            except Exception as e:  # (best effort: a log never stops the run's set-up;
                # CPython 3.11 parses for it, which can fail: gh-106905, threads)
                parts.append(f"## {cls.__qualname__}: source not read ({type(e).__name__}: {e})")
    (misc_dir / "init_source.txt").write_text(
        "\n\n".join(parts) or "(no source available)\n", encoding="utf-8"
    )
