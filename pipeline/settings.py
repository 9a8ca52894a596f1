"""Run settings: the model, its sampling parameters, and how much text each stage may send.

Values come from the command line, then the environment, then these defaults. Everything that
changes what the model is asked is part of the request, so it is part of the replay fingerprint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class RunSettings:
    model: str = DEFAULT_MODEL
    temperature: float = 0.0
    seed: int | None = 7
    max_completion_tokens: int = 8000
    # Characters of paper text each stage may send (about 4 characters a token).
    stage_text_budget: dict[str, int] = field(
        default_factory=lambda: {"extract": 60_000, "draft": 40_000, "grade": 40_000}
    )

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "temperature": self.temperature,
            "max_completion_tokens": self.max_completion_tokens,
        }
        if self.seed is not None:
            params["seed"] = self.seed
        return params


def default_model() -> str:
    return os.environ.get("CLAIMS_MODEL", DEFAULT_MODEL)


def default_db_path() -> Path:
    if "CLAIMS_DB" in os.environ:
        return Path(os.environ["CLAIMS_DB"]).expanduser()
    data_home = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return data_home / "claims" / "claims.db"


def default_cache_dir() -> Path:
    if "CLAIMS_CACHE" in os.environ:
        return Path(os.environ["CLAIMS_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "claims"


def contact_email() -> str | None:
    """CLAIMS_MAILTO: sent to Crossref and OpenAlex (mailto) and Unpaywall (email), as they ask."""
    return os.environ.get("CLAIMS_MAILTO") or None


def _positive_number(name: str, default: str) -> float:
    """A positive number from the environment, or a one-line error naming the variable."""
    from pipeline.errors import ConfigError

    raw = os.environ.get(name, default)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw} is not a number") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw} must be more than 0")
    return value


def max_pdf_megabytes() -> float:
    """CLAIMS_MAX_PDF_MB: the download size cap (default 50)."""
    return _positive_number("CLAIMS_MAX_PDF_MB", "50")


def request_timeout() -> float:
    """CLAIMS_TIMEOUT: seconds to wait for one model answer before retrying (default 120)."""
    return _positive_number("CLAIMS_TIMEOUT", "120")


def batch_poll_seconds() -> float:
    """CLAIMS_BATCH_POLL_SECONDS: how often `--via batch-api` asks whether a batch has ended (default 30)."""
    return _positive_number("CLAIMS_BATCH_POLL_SECONDS", "30")
