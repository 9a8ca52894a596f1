"""`python -m pipeline` is the `claims` command."""

from .cli import main

main()
