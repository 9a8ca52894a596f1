"""The `claims` command line: one typer app (`app`), with its shared options and the one-line
error wrapper, and the commands grouped by what they serve; importing this package registers
every command on the app."""

# Each command module registers its commands on the app; `claims --help` lists them in this order.
from pipeline.cli import run  # noqa: F401, I001
from pipeline.cli import batch  # noqa: F401
from pipeline.cli import review  # noqa: F401
from pipeline.cli import evidence  # noqa: F401
from pipeline.cli import records  # noqa: F401
from pipeline.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
