"""The `claims` command line: one typer app (`app`), with its shared options and the one-line
error wrapper, and the commands grouped by what they serve; importing this package registers
every command on the app."""

from pipeline.cli import batch, evidence, review  # noqa: F401  (they register their commands)
from pipeline.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
