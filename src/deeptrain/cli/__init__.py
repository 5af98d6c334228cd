"""``deeptrain``, the command line: look into log directories and checkpoints without code.

::

    deeptrain runs LOGS_DIR          a table of runs (--json for scripts)
    deeptrain show PATH              a checkpoint's train state, data positions, settings
    deeptrain verify PATH            every checkpoint checked as loading checks it
    deeptrain plot PATH [PATH ...]   the history figure; several runs: one metric compared
    deeptrain report PATH            the report image, from the saved state
    deeptrain export-tensorboard LOG_DIR   event files from a run's metrics log
    deeptrain migrate LOGDIR_06 OUT_DIR    a DeepTrain 0.6 run into a checkpoint

Installed as a console script with the package (``python -m deeptrain`` does the same).
Importing ``deeptrain`` never imports this package (nor ``click``).
"""

from .app import cli, main

__all__ = ["cli", "main"]
