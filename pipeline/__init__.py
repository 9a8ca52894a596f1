"""claims: turn a published study into a reviewed, cited evidence claim record."""

__version__ = "0.1.0"
