"""DeepTrain 0.6's ``deeptrain.util.logging``: model naming, the report, the init logs and
the newest saved files, as functions of the TrainGenerator (``self``). Each calls the
TrainGenerator method of the same name (DeepTrain logs through the standard ``logging``
module, logger ``"deeptrain"``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["get_unique_model_name", "get_last_log", "generate_report", "save_report"]


def get_unique_model_name(self: Any, set_model_num: bool = True) -> str:
    """:meth:`TrainGenerator.get_unique_model_name`."""
    return self.get_unique_model_name(set_model_num=set_model_num)


def get_last_log(self: Any, name: str, best: bool = False) -> Path | None:
    """:meth:`TrainGenerator.get_last_log`."""
    return self.get_last_log(name, best=best)


def generate_report(self: Any) -> str:
    """:meth:`TrainGenerator.generate_report`."""
    return self.generate_report()


def save_report(self: Any, savepath: str | Path | None = None) -> Path:
    """:meth:`TrainGenerator.save_report`."""
    return self.save_report(savepath)


def _log_init_state(
    self: Any,
    kwargs: Mapping[str, Any] | None = None,
    source_lognames: str | Sequence[str] | None = "__main__",
    savedir: str | Path | None = None,
    to_exclude: Sequence[str] = (),
    verbose: int = 0,
) -> Path:
    """Write ``init_state.json`` and ``init_source.txt`` to ``savedir`` (default
    ``<logdir>/misc``); returns the directory. The other arguments are accepted for
    DeepTrain 0.6's callers; the files hold what the TrainGenerator writes at construction."""
    from ..saving.report import write_init_logs

    if savedir is None:
        if getattr(self, "logdir", None) is None:
            raise ValueError("_log_init_state needs savedir= or a TrainGenerator with a logdir")
        savedir = Path(self.logdir) / "misc"
    write_init_logs(self, Path(savedir))
    return Path(savedir)
