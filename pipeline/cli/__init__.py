"""The `claims` command line: one typer app (`app`), with its shared options and the one-line
error wrapper, and the commands grouped by what they serve; importing this package registers
every command on the app."""

# Each command module registers its commands on the app; `claims --help` lists them in this order.
from pipeline.cli import run  # noqa: F401, I001
from pipeline.cli import batch  # noqa: F401
from pipeline.cli import review  # noqa: F401
from pipeline.cli import evidence  # noqa: F401
from pipeline.cli import records  # noqa: F401
from pipeline.cli import team  # noqa: F401
import gc
from typing import Any

import typer

from pipeline.cli.app import app


def main() -> None:
    command = typer.main.get_command(app)
    _plain_metavars(command)
    # What the imports made lives until exit: out of the collector's way, so its full
    # collections during a long batch walk only what the batch itself makes.
    gc.freeze()
    try:
        command()
    finally:
        # Nothing is left to collect at exit but the interpreter's last full collection walks
        # every object the run made (0.3-0.4 s after a batch): skipped the same way.
        gc.freeze()


def _plain_metavars(command: Any) -> None:
    """Help that names what an option takes (PATH, N, TEXT; nothing for a flag) instead of the
    Python types typer shows by default ('<bool>', '<str>'): an option's metavar is what its help
    shows, where one is set."""
    for sub in getattr(command, "commands", {}).values():
        _plain_metavars(sub)
    for param in command.params:
        if getattr(param, "param_type_name", "") == "option" and param.metavar is None:
            descriptor = getattr(param, "type_descriptor", None)
            if descriptor is None:
                continue
            if getattr(param, "is_flag", False) or descriptor.annotation is bool:
                param.metavar = ""
            elif getattr(descriptor, "is_path", False):
                param.metavar = "PATH..." if getattr(descriptor, "is_list", False) else "PATH"
            elif descriptor.annotation in (int, float):
                param.metavar = "N"
            else:
                param.metavar = "TEXT..." if getattr(descriptor, "is_list", False) else "TEXT"


__all__ = ["app", "main"]
