"""Plain-text tables and sections of the ``deeptrain`` commands."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["table", "runs_table", "show_text", "verify_text", "to_json_text"]


def to_json_text(data: Any) -> str:
    """Standard JSON (a strict parser's): NaN and infinities, which diverged losses are,
    as the strings ``"nan"``, ``"inf"``, ``"-inf"`` (as the metrics log writes them)."""
    return json.dumps(_finite(data), indent=2, default=str, allow_nan=False)


def _finite(data: Any) -> Any:
    if isinstance(data, float) and not math.isfinite(data):
        return str(data)
    if isinstance(data, Mapping):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(v) for v in data]
    return data


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def _best(row: Mapping[str, Any]) -> str:
    if row.get("best") is None:
        return "-"
    return f"{row['key_metric']}={row['best']:.6g}"


def _done(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "no")


def runs_table(rows: Sequence[Mapping[str, Any]]) -> str:
    header = ("RUN", "EPOCHS", "BATCHES", "VALS", "BEST", "NEWEST CHECKPOINT", "DONE")
    body = []
    for row in rows:
        epochs = (
            f"{row['epoch']}/{row['epochs']}" if row.get("epochs") is not None else row["epoch"]
        )
        checkpoint = row.get("checkpoint") or ("(unreadable)" if row.get("error") else "-")
        body.append(
            (
                row["run"],
                epochs,
                row["batches_fit"],
                row["validations"],
                _best(row),
                checkpoint,
                _done(row.get("finished")),
            )
        )
    return table(header, body)


def _scalar_items(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    out = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            summary = ", ".join(f"{k} ({len(v)})" for k, v in value.items() if isinstance(v, list))
            text = summary or json.dumps(value, default=str)
        elif isinstance(value, list):
            text = json.dumps(value) if len(value) <= 8 else f"[{len(value)} items]"
        else:
            text = str(value)
        out.append((key, text))
    return out


def _section(title: str, items: list[tuple[str, str]]) -> list[str]:
    width = max((len(k) for k, _ in items), default=0)
    return ["", title] + [f"  {k.ljust(width)}  {v}" for k, v in items]


def _position(pos: Mapping[str, Any]) -> list[tuple[str, str]]:
    items = [
        ("epoch", str(pos["epoch"])),
        ("set", str(pos["set_name"])),
        ("queued", f"{pos['queued']} of {pos['set_nums']} set nums; next {pos['next']}"),
    ]
    if pos.get("group"):
        items.append(("group", f"{pos['group']} batch {pos['group_batch']}"))
    items.append(("epoch done", str(pos["epoch_done"])))
    if pos.get("preprocessor"):
        items.append(("preprocessor", json.dumps(pos["preprocessor"], default=str)))
    return items


def _size_note(f: Mapping[str, Any]) -> str:
    if f["actual_bytes"] is None:
        return "  MISSING"
    if f["actual_bytes"] != f["bytes"]:
        return f"  SIZE DIFFERS (now {f['actual_bytes']:,})"
    return ""


def show_text(info: Mapping[str, Any]) -> str:
    head = (
        f"checkpoint {info['checkpoint']}\n  {info['kind']} #{info['seq']}, created "
        f"{info['created']}; DeepTrain {info['deeptrain_version']}, Keras "
        f"{info['keras_version']}, backend {info['backend']}"
    )
    lines = [head]
    lines += _section("train state", _scalar_items(info["train_state"]))
    lines += _section("train data (datagen)", _position(info["datagen"]))
    lines += _section("validation data (val_datagen)", _position(info["val_datagen"]))
    lines += _section("settings", _scalar_items(info["settings"]))
    callbacks = [
        (f"#{i} {cb['class']}", json.dumps(cb["state"], default=str))
        for i, cb in enumerate(info["callbacks"])
    ]
    lines += _section("callbacks", callbacks or [("(none)", "")])
    files = [
        (f["name"], f"{f['bytes']:>12,} bytes  {f['digest'][:24]}{_size_note(f)}")
        for f in info["files"]
    ]
    lines += _section("files", files)
    return "\n".join(lines)


def verify_text(verdicts: Sequence[Any], resumes: Mapping[str, str | None]) -> str:
    lines = []
    for v in verdicts:
        what = f" ({v.kind} #{v.seq})" if v.ok else ""
        backup = " [backup of an interrupted replace]" if v.backup else ""
        lines.append(f"{'OK ' if v.ok else 'BAD'}  {v.path}{what}{backup}")
        if not v.ok:
            lines.append(f"     {v.error}")
    for run, name in resumes.items():
        lines.append(
            f"resume of {run}: loads {name}" if name else f"resume of {run}: NOTHING INTACT"
        )
    bad = sum(not v.ok for v in verdicts)
    lines.append(f"{len(verdicts) - bad} intact, {bad} damaged")
    return "\n".join(lines)
