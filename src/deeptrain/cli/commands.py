"""The ``deeptrain`` commands. Exit codes: 0 done; 1 an error, or (``verify``) a damaged
checkpoint; 2 a wrong invocation (a missing path, an unknown option)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..saving.errors import CorruptCheckpointError
from . import formatting
from .runinfo import PathError, describe_checkpoint, find_runs, read_run_state, run_summary

__all__ = ["runs", "show", "verify", "plot", "report", "export_tensorboard", "migrate"]

EXISTING_DIR = click.Path(exists=True, file_okay=False, path_type=Path)
EXISTING = click.Path(exists=True, path_type=Path)
JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
OUTPUT = click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="The PNG to write."
)


def _state(path: Path) -> tuple[Path, dict]:
    try:
        return read_run_state(path)
    except (PathError, CorruptCheckpointError, ValueError) as e:
        raise click.ClickException(str(e)) from None


def _save(image: Any, path: Path) -> None:
    """Write ``image`` (a matplotlib figure, or PNG bytes) to ``path``; print the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(image, bytes):
        path.write_bytes(image)
    else:
        image.savefig(path, dpi=80)
    click.echo(str(path))


@click.command()
@click.argument("logs_dir", type=EXISTING_DIR)
@JSON
def runs(logs_dir: Path, as_json: bool) -> None:
    """The runs in LOGS_DIR, newest first: epochs, batches fit, validations, best key
    metric, newest checkpoint and whether training finished (from the checkpoint a resume
    would load; runs without checkpoints from their metrics log)."""
    rows = sorted((run_summary(r) for r in find_runs(logs_dir)), key=lambda r: -r["modified"])
    if as_json:
        click.echo(formatting.to_json_text(rows))
    elif not rows:
        click.echo(f"no runs in {logs_dir}")
    else:
        click.echo(formatting.runs_table(rows))


@click.command()
@click.argument("path", type=EXISTING)
@JSON
def show(path: Path, as_json: bool) -> None:
    """A checkpoint: the train state, both DataGenerators' positions, the settings, the
    callbacks' state, the files with their sizes and digests. PATH: a log directory (its newest
    checkpoint whose state reads back), a checkpoint directory, or a state.json."""
    checkpoint, state = _state(path)
    info = describe_checkpoint(checkpoint, state)
    click.echo(formatting.to_json_text(info) if as_json else formatting.show_text(info))


@click.command()
@click.argument("path", type=EXISTING_DIR)
@JSON
def verify(path: Path, as_json: bool) -> None:
    """Check every checkpoint under PATH (a checkpoint, a log directory, a best models
    directory or a logs directory) as loading checks it: each file's size and digest,
    state.json's digest and schema, a self-contained weights file, arrays readable without
    pickle; and each run's `latest` pointer. Exit code 0 if all are intact, 1 if any is
    damaged (listed), so it can gate a resume."""
    from .runinfo import verify_tree

    verdicts, resumes = verify_tree(path)
    if not verdicts:
        raise click.ClickException(f"no checkpoints under {path}")
    ok = all(v.ok for v in verdicts)
    if as_json:
        data = {"ok": ok, "checkpoints": [v.to_dict() for v in verdicts], "resume": resumes}
        click.echo(formatting.to_json_text(data))
    else:
        click.echo(formatting.verify_text(verdicts, resumes))
    if not ok:
        raise SystemExit(1)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=EXISTING)
@click.option("--metric", help="Several runs: the validation metric (default: the first's key).")
@OUTPUT
def plot(paths: tuple[Path, ...], metric: str | None, output: Path | None) -> None:
    """The history figure of a run, drawn from its saved state (no model code); with several
    PATHs, one validation metric of each against batches fit, in one figure. Writes a PNG
    (default: <run>__history.png or runs__<metric>.png here) and prints its path."""
    from ..training.plotting import runs_figure, saved_history_figure

    states = [_state(p) for p in paths]
    names = [_run_name(checkpoint) for checkpoint, _ in states]
    if len(states) == 1:
        if metric is not None:
            raise click.UsageError("--metric compares several runs; give two PATHs or more")
        fig = saved_history_figure(states[0][1])
        _save(fig, output or Path(f"{names[0]}__history.png"))
        return
    metric = metric or states[0][1].get("traingen", {}).get("key_metric", "loss")
    missing = [n for n, (_, s) in zip(names, states, strict=True) if metric not in _vals(s)]
    if len(missing) == len(states):
        raise click.ClickException(f"no run has validation metric {metric!r}")
    if missing:
        click.echo(f"warning: no {metric!r} in {', '.join(missing)}", err=True)
    fig = runs_figure([(n, s) for n, (_, s) in zip(names, states, strict=True)], metric)
    _save(fig, output or Path(f"runs__{metric}.png"))


def _vals(state: dict) -> dict:
    return state["train_state"]["val_history"]


def _run_name(checkpoint: Path) -> str:
    """The run's directory name (a checkpoint of ``<run>/checkpoints/``), else the
    checkpoint's."""
    checkpoint = checkpoint.resolve()  # ('.' has no name)
    parent = checkpoint.parent
    return parent.parent.name if parent.name == "checkpoints" else checkpoint.name


@click.command()
@click.argument("path", type=EXISTING)
@OUTPUT
def report(path: Path, output: Path | None) -> None:
    """The report image (settings, train state, data positions) of a checkpoint, drawn from
    its saved state. Writes a PNG (default: <run>__report.png here) and prints its path."""
    from ..saving.report import report_png, state_report_sections

    checkpoint, state = _state(path)
    title = state.get("traingen", {}).get("model_name", _run_name(checkpoint))
    png = report_png(state_report_sections(state), title=str(title))
    _save(png, output or Path(f"{_run_name(checkpoint)}__report.png"))


@click.command("export-tensorboard")
@click.argument("log_dir", type=EXISTING_DIR)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output directory (default: LOG_DIR/tensorboard).",
)
def export_tensorboard(log_dir: Path, out: Path | None) -> None:
    """TensorBoard event files from a run's metrics.jsonl and newest checkpoint (settings,
    figures): the same tags and steps as TensorBoardLogger, for runs made without it."""
    import importlib.util

    if importlib.util.find_spec("tensorboardX") is None:
        raise click.ClickException(
            "export-tensorboard writes with tensorboardX: pip install 'deeptrain[tensorboard]'"
        )
    from .export import ExportError
    from .export import export_tensorboard as export

    try:
        done = export(log_dir, out)
    except (PathError, ExportError, OSError) as e:  # (OSError: FileExistsError, disk full)
        raise click.ClickException(str(e)) from None
    click.echo(
        f"wrote {done['scalars']} scalars and {done['images']} images to {done['directory']}\n"
        f"open with: tensorboard --logdir {done['directory']}"
    )
    if done["skipped_rows"] or done["skipped_values"]:
        click.echo(
            f"warning: {done['metrics_file']}: skipped {done['skipped_rows']} rows (a step "
            f"that is not an integer 0 <= step < 2**53) and {done['skipped_values']} values "
            f"(not numbers); the first at {done['first_bad']}",
            err=True,
        )


@click.command()
@click.argument("logdir_06", type=EXISTING)
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
def migrate(logdir_06: Path, out_dir: Path) -> None:
    """Convert a DeepTrain 0.6 log directory (its newest *__state.h5 and *__weights.h5), or
    one *__state.h5 file, into a checkpoint of the log directory OUT_DIR; prints its path.
    Nothing of the 0.6 files is executed (the pickles are read as data). A model whose layer
    names do not say their class needs deeptrain.migrate.migrate(..., model=model)."""
    from ..migrate import migrate as convert
    from ..util.unpickle import RefusedGlobal

    try:
        path = convert(logdir_06, out_dir)
    except (OSError, ValueError, RefusedGlobal) as e:  # (a pickle that would run code)
        raise click.ClickException(str(e)) from None
    click.echo(str(path))
    click.echo(f"continue with TrainGenerator(..., loadpath={str(out_dir)!r})", err=True)
