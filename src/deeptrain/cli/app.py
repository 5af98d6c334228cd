"""The ``deeptrain`` command group. Commands are loaded by name when used, so ``--help``
and each command import only what they need."""

from __future__ import annotations

import importlib
import logging
from typing import Any

import click

from .. import __version__

__all__ = ["cli", "main", "COMMANDS"]

# Command name -> "module:click command". A new subcommand is a click command, named here.
COMMANDS = {
    "runs": "deeptrain.cli.commands:runs",
    "show": "deeptrain.cli.commands:show",
    "verify": "deeptrain.cli.commands:verify",
    "plot": "deeptrain.cli.commands:plot",
    "report": "deeptrain.cli.commands:report",
    "export-tensorboard": "deeptrain.cli.commands:export_tensorboard",
    "migrate": "deeptrain.cli.commands:migrate",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deeptrain")
@click.option("-v", "--verbose", is_flag=True, help="Log DeepTrain's messages (INFO) to stderr.")
def cli(verbose: bool) -> None:
    """Inspect DeepTrain runs: log directories, checkpoints, figures, TensorBoard export."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def main(argv: list[str] | None = None) -> Any:
    """The console script ``deeptrain``."""
    return cli.main(args=argv, prog_name="deeptrain")
