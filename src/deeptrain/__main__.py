"""``python -m deeptrain``: the command line (see :mod:`deeptrain.cli`)."""

from .cli import main

main()
