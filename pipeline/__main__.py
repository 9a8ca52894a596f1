"""`python -m pipeline` and the `claims` command.

The command line is imported inside `main`, not at the top: a batch's parse processes import
the main module again, and they need the PDF reader, not the whole command line (about 0.5 s
each, on the cores the batch is using)."""


def main() -> None:
    from pipeline.cli import main as command_line

    command_line()


if __name__ == "__main__":
    main()
