"""DeepTrain's messages on the console when the user configured no logging.

Keras' ``fit`` and Lightning show what happened (metrics, checkpoints) without any setup;
DeepTrain logs through :mod:`logging`, which by default shows only warnings. So a
TrainGenerator with ``iter_verbosity >= 1`` calls :func:`use_console`, which, if and only
if nobody configured logging (the root logger and the ``"deeptrain"`` logger have no
handlers and the ``"deeptrain"`` logger no level), gives the ``"deeptrain"`` logger a handler
that prints INFO and above to stderr through ``tqdm.write``, so that lines never break a
progress bar. A configuration made by the user always wins: made before, nothing is added;
made after, the handler steps aside at its next message. ``sys.stdout`` is never replaced.
"""

from __future__ import annotations

import logging
import sys

from tqdm.auto import tqdm

__all__ = ["ConsoleHandler", "use_console"]

LOGGER_NAME = "deeptrain"
LEVEL = logging.INFO  # the "deeptrain" logger's level while the handler is in place


class ConsoleHandler(logging.Handler):
    """Writes records above progress bars with ``tqdm.write`` (stderr): ``message`` for
    INFO, ``LEVEL: message`` above."""

    def __init__(self) -> None:
        super().__init__(LEVEL)

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        if record.levelno > logging.INFO:
            return f"{record.levelname}: {message}"
        return message

    def emit(self, record: logging.LogRecord) -> None:
        if _configured_by_user():  # configured since: step aside, the user's setup shows it
            _remove()
            return
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def _ours() -> ConsoleHandler | None:
    logger = logging.getLogger(LOGGER_NAME)
    return next((h for h in logger.handlers if isinstance(h, ConsoleHandler)), None)


def _configured_by_user() -> bool:
    logger = logging.getLogger(LOGGER_NAME)
    mine = _ours()
    if logging.getLogger().handlers or any(h is not mine for h in logger.handlers):
        return True
    return logger.level not in (logging.NOTSET, LEVEL if mine is not None else logging.NOTSET)


def _remove() -> None:
    logger = logging.getLogger(LOGGER_NAME)
    mine = _ours()
    if mine is None:
        return
    logger.removeHandler(mine)
    if logger.level == LEVEL:
        logger.setLevel(logging.NOTSET)


def use_console(verbosity: int) -> bool:
    """Show DeepTrain's INFO messages on the console (``verbosity >= 1``) unless logging is
    configured by the user; ``verbosity == 0`` removes DeepTrain's own handler. Returns
    whether the handler is in place."""
    if verbosity < 1 or _configured_by_user():
        _remove()
        return False
    if _ours() is None:
        logger = logging.getLogger(LOGGER_NAME)
        logger.addHandler(ConsoleHandler())
        logger.setLevel(LEVEL)
    return True
