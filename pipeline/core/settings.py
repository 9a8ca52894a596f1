"""Settings: every environment variable the tool reads is read here, and nowhere else.

`Settings` is built once per command from the environment (`Settings.from_environment`, which the
CLI installs with `use` so that lower layers find it with `current`); command-line flags override
its values where a command has one. `VARIABLES` documents each variable; a test checks the
README's configuration table against it, and that no other module reads the environment.

`RunSettings` are the settings of one run that change what the model is asked (the model, its
sampling parameters, how much text each stage may send): they are part of every request, so of
the replay fingerprint.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pipeline.core.errors import ConfigError

DEFAULT_MODEL = "gpt-4o-mini"


CHARS_PER_TOKEN = 3  # cautious: small models' tokenizers cut scientific text finely
TEMPLATE_TOKENS = 256  # the chat template's own tokens, around the messages
REPAIR_TOKENS = 512  # a repair request's instructions and its list of problems (capped to fit)
# The least of the paper a stage may send (about an abstract): a context window that leaves less
# is refused, since a model shown less would draft from what it was not shown.
MIN_PAPER_CHARS = 2_000
# The memory of each process that reads a PDF (MB): a paper needs well under 0.5 GB (351 pages:
# 175 MB); a PDF whose streams decompress to hundreds of MB (a decompression bomb) needs gigabytes.
PDF_MEMORY_MB = 2048
MIN_PDF_MEMORY_MB = 256
# Context windows servers are commonly started with, from the least the stages after extract
# need for a typical paper (their prompts carry the findings too).
CONTEXT_SIZES = (8192, 16384, 32768, 65536, 131072)


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
    # The model's context window in tokens, where known: then a quarter of it at most goes to the
    # answer, and each stage's paper text is cut so that the prompt, the answer and a repair
    # request (which carries the answer back, and asks for another) all fit.
    context_tokens: int | None = None
    # The model asked for a second opinion on each finding against its quote (--verify-with); None: none.
    verify_model: str | None = None

    def completion_limit(self) -> int:
        if self.context_tokens is None:
            return self.max_completion_tokens
        return min(self.max_completion_tokens, self.context_tokens // 4)

    def text_budget(self, stage: str, other_chars: int) -> int:
        """Characters of paper text `stage` may send beside `other_chars` of prompt."""
        budget = self.stage_text_budget[stage]
        if self.context_tokens is None:
            return budget
        reserved = 2 * self.completion_limit() + TEMPLATE_TOKENS + REPAIR_TOKENS
        room = (self.context_tokens - reserved) * CHARS_PER_TOKEN - other_chars
        return max(0, min(budget, room))

    def context_needed(self, stage: str, other_chars: int, paper_chars: int) -> int | None:
        """The smallest common context window in which `stage` could send `paper_chars` of the
        paper beside `other_chars` of prompt; None if none of them would do."""
        return next(
            (
                size
                for size in CONTEXT_SIZES
                if dataclasses.replace(self, context_tokens=size).text_budget(stage, other_chars) >= paper_chars
            ),
            None,
        )

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "temperature": self.temperature,
            "max_completion_tokens": self.completion_limit(),
        }
        if self.seed is not None:
            params["seed"] = self.seed
        return params


# Each variable, what it sets and its default, as the README's configuration table shows them.
VARIABLES: dict[str, str] = {
    "OPENAI_API_KEY": "the API key of the model endpoint (required by the commands that call the model)",
    "OPENAI_BASE_URL": "an OpenAI-compatible endpoint instead of OpenAI's",
    "CLAIMS_MODEL": f"the model, where --model is not given (default {DEFAULT_MODEL})",
    "CLAIMS_PROVIDER": "which client talks to the model (default openai: any OpenAI-compatible endpoint)",
    "CLAIMS_VERIFY_MODEL": "a model for a second opinion on each finding against its quote, where --verify-with is not given (default none)",
    "CLAIMS_DB": "the record store: a SQLite file (default $XDG_DATA_HOME/claims/claims.db) or postgresql://USER@HOST/DATABASE",
    "CLAIMS_CACHE": "the download and response cache folder (default $XDG_CACHE_HOME/claims)",
    "CLAIMS_PROMPTS": "a folder of edited prompt files to use instead of the shipped ones",
    "CLAIMS_MAILTO": "the contact e-mail sent to Crossref, OpenAlex and Unpaywall",
    "CLAIMS_MAX_PDF_MB": "the PDF size cap in MB, downloads and local files (default 50)",
    "CLAIMS_PDF_MEMORY_MB": "the memory each process reading a PDF may take, in MB: a file that needs more (a decompression bomb) fails alone (default 2048; at least 256)",
    "CLAIMS_TIMEOUT": "seconds to wait for one model answer (default 120)",
    "CLAIMS_REVIEWER": "the default reviewer name (default $USER)",
    "CLAIMS_TOKEN": "a personal token (claims user token NAME) that proves your account to a store with accounts",
    "CLAIMS_PRICES": "a JSON price table instead of the shipped one",
    "CLAIMS_BATCH_POLL_SECONDS": "how often --via batch-api asks whether a batch has ended (default 30)",
    "CLAIMS_LEASE_SECONDS": "how long a batch worker's claim on a paper lasts unless renewed, e.g. after a crash (default 120)",
    "CLAIMS_HTTP_CASSETTE": "answer metadata and PDF requests from a cassette file (tests, offline demos)",
    "CLAIMS_DEBUG": "show the traceback of an unexpected internal error",
    "CLAIMS_RESPONSE_FORMAT": "how answers are constrained: auto, json_schema, json_object or prompt (default auto)",
    "CLAIMS_CONTEXT_TOKENS": "the model's context window in tokens, where the server does not say (default: ask it)",
    "CLAIMS_TIMEOUT_RETRIES": "how often a timed-out request is sent again (default 2; 0 for a server on this machine)",
    "CLAIMS_ENDPOINT_NOTE": "what a recording should also say about the endpoint (server, version, model file)",
    "CLAIMS_PASSWORD_HASHING": "the cost of hashing a new password: rfc9106 (argon2id, 64 MiB, 3 passes; the default) or owasp-minimum (19 MiB, 2 passes: a small machine)",
}
# argon2id parameters (time cost, memory in KiB, parallelism) of each hashing profile: RFC 9106's
# second recommended option, argon2-cffi's default; and the least OWASP's cheat sheet allows.
PASSWORD_HASHING = {"rfc9106": (3, 65536, 4), "owasp-minimum": (2, 19456, 1)}
RESPONSE_FORMATS = ("auto", "json_schema", "json_object", "prompt")
_ALSO_READ = ("HOME", "USER", "XDG_DATA_HOME", "XDG_CACHE_HOME", "VISUAL", "EDITOR")


class Settings:
    """The environment's settings, read once; numbers are checked when first used, so a bad
    CLAIMS_TIMEOUT stops the commands that wait on the model, not `claims show`."""

    def __init__(self, environ: Mapping[str, str]):
        self._env = {name: environ[name] for name in (*VARIABLES, *_ALSO_READ) if environ.get(name)}

    @classmethod
    def from_environment(cls) -> Settings:
        return cls(os.environ)

    def _get(self, name: str) -> str | None:
        return self._env.get(name)

    def _positive(self, name: str, default: float) -> float:
        raw = self._get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw} is not a number") from None
        if value <= 0:
            raise ConfigError(f"{name}={raw} must be more than 0")
        return value

    def _path(self, name: str) -> Path | None:
        raw = self._get(name)
        return Path(raw).expanduser() if raw else None

    @property
    def api_key(self) -> str:
        return self._get("OPENAI_API_KEY") or ""

    @property
    def base_url(self) -> str | None:
        return self._get("OPENAI_BASE_URL")

    @property
    def model(self) -> str:
        return self._get("CLAIMS_MODEL") or DEFAULT_MODEL

    @property
    def verify_model(self) -> str | None:
        return (self._get("CLAIMS_VERIFY_MODEL") or "").strip() or None

    @property
    def provider(self) -> str:
        return (self._get("CLAIMS_PROVIDER") or "openai").strip().lower()

    @property
    def home(self) -> Path:
        return Path(self._get("HOME") or Path.home())

    @property
    def db(self) -> str:
        """The record store: a SQLite file, or a postgresql:// URL (a team's shared store)."""
        value = self._get("CLAIMS_DB")
        if value and "://" in value:
            return value
        data_home = Path(self._get("XDG_DATA_HOME") or self.home / ".local" / "share")
        return str(self._path("CLAIMS_DB") or data_home / "claims" / "claims.db")

    @property
    def cache_dir(self) -> Path:
        cache_home = Path(self._get("XDG_CACHE_HOME") or self.home / ".cache")
        return self._path("CLAIMS_CACHE") or cache_home / "claims"

    @property
    def prompts_dir(self) -> Path | None:
        return self._path("CLAIMS_PROMPTS")

    @property
    def mailto(self) -> str | None:
        return self._get("CLAIMS_MAILTO")

    @property
    def max_pdf_megabytes(self) -> float:
        return self._positive("CLAIMS_MAX_PDF_MB", 50)

    @property
    def pdf_memory_bytes(self) -> int:
        """The address space of each process that reads a PDF (`pipeline.core.worker`). Below
        256 MB real papers fail as if hostile (the reader's process alone takes about 150 MB)."""
        megabytes = self._positive("CLAIMS_PDF_MEMORY_MB", PDF_MEMORY_MB)
        if megabytes < MIN_PDF_MEMORY_MB:
            raise ConfigError(
                f"CLAIMS_PDF_MEMORY_MB={megabytes:g} is too little to read a paper: give it {MIN_PDF_MEMORY_MB} or more"
            )
        return int(megabytes * 1024 * 1024)

    @property
    def timeout(self) -> float:
        return self._positive("CLAIMS_TIMEOUT", 120)

    @property
    def reviewer(self) -> str:
        return self._get("CLAIMS_REVIEWER") or self._get("USER") or ""

    @property
    def token(self) -> str | None:
        return self._get("CLAIMS_TOKEN") or None

    @property
    def prices_file(self) -> Path | None:
        return self._path("CLAIMS_PRICES")

    @property
    def batch_poll_seconds(self) -> float:
        return self._positive("CLAIMS_BATCH_POLL_SECONDS", 30)

    @property
    def lease_seconds(self) -> float:
        return self._positive("CLAIMS_LEASE_SECONDS", 120)

    @property
    def http_cassette(self) -> Path | None:
        return self._path("CLAIMS_HTTP_CASSETTE")

    @property
    def debug(self) -> bool:
        return bool(self._get("CLAIMS_DEBUG"))

    @property
    def password_hashing(self) -> tuple[int, int, int]:
        value = (self._get("CLAIMS_PASSWORD_HASHING") or "rfc9106").strip().lower()
        if value not in PASSWORD_HASHING:
            raise ConfigError(f"CLAIMS_PASSWORD_HASHING={value}: choose one of {', '.join(PASSWORD_HASHING)}")
        return PASSWORD_HASHING[value]

    @property
    def response_format(self) -> str:
        value = (self._get("CLAIMS_RESPONSE_FORMAT") or "auto").lower()
        if value not in RESPONSE_FORMATS:
            raise ConfigError(f"CLAIMS_RESPONSE_FORMAT={value}: choose one of {', '.join(RESPONSE_FORMATS)}")
        return value

    @property
    def context_tokens(self) -> int | None:
        return int(self._positive("CLAIMS_CONTEXT_TOKENS", 1)) if self._get("CLAIMS_CONTEXT_TOKENS") else None

    @property
    def local_endpoint(self) -> bool:
        """True when OPENAI_BASE_URL names this machine: a server that keeps computing a request
        whose client has given up, so a timed-out request must not be sent again by default."""
        host = urlsplit(self.base_url).hostname if self.base_url else None
        return host in ("127.0.0.1", "localhost", "::1") or bool(host and host.startswith("127."))

    @property
    def timeout_retries(self) -> int:
        raw = self._get("CLAIMS_TIMEOUT_RETRIES")
        if raw is None:
            return 0 if self.local_endpoint else 2
        if not raw.isdigit():
            raise ConfigError(f"CLAIMS_TIMEOUT_RETRIES={raw} is not a whole number of retries")
        return int(raw)

    @property
    def endpoint_note(self) -> str | None:
        return self._get("CLAIMS_ENDPOINT_NOTE")

    @property
    def editor(self) -> str:
        return self._get("VISUAL") or self._get("EDITOR") or "vi"


_CURRENT: ContextVar[Settings | None] = ContextVar("claims_settings", default=None)


def current() -> Settings:
    """The settings the running command installed, else the environment's as they are now."""
    return _CURRENT.get() or Settings.from_environment()


@contextmanager
def use(settings: Settings) -> Iterator[Settings]:
    token = _CURRENT.set(settings)
    try:
        yield settings
    finally:
        _CURRENT.reset(token)
