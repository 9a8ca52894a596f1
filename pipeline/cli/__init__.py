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
import functools
import gc
from typing import Any

import typer

from pipeline.cli.app import app


@functools.cache
def click_command() -> Any:
    """The app as the click command `claims` runs, its help free of Python type names; built once
    (typer builds it from every command's signature, 12 ms), so tests invoke what a user runs."""
    command = typer.main.get_command(app)
    _plain_metavars(command)
    return command


def main() -> None:
    command = click_command()
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
    """Help that names what a parameter takes (PATH, N, TEXT; nothing for a flag) instead of the
    Python types typer shows by default ('<bool>', '<str>'): an option's metavar is what its help
    shows, where one is set; an argument's name column already shows its metavar, so its type
    column stays empty."""
    for sub in getattr(command, "commands", {}).values():
        _plain_metavars(sub)
    command.get_help_option = _flag_help_option(command.get_help_option)
    for param in command.params:
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is None:
            continue
        if param.param_type_name == "argument":
            param.display_type_rich = lambda ctx: None
        elif param.metavar is None:
            if getattr(param, "is_flag", False) or descriptor.annotation is bool:
                param.metavar = ""
            elif getattr(descriptor, "is_path", False):
                param.metavar = "PATH..." if getattr(descriptor, "is_list", False) else "PATH"
            elif descriptor.annotation in (int, float):
                param.metavar = "N"
            else:
                param.metavar = "TEXT..." if getattr(descriptor, "is_list", False) else "TEXT"


def _flag_help_option(make_option: Any) -> Any:
    """--help is a flag: shown without typer's '<bool>'."""

    def help_option(ctx: Any) -> Any:
        option = make_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    return help_option


__all__ = ["app", "click_command", "main"]
