"""Prompts and schemas shipped with the package, and their hashes.

In a source checkout they live in the top-level `prompts/` and `schemas/`; an installed wheel
carries them inside the package (`pipeline/prompts`, `pipeline/schemas`, mapped in
pyproject.toml). Both places are looked up here, so the rest of the code never cares which.

A prompt file has a system part and a user part, each opened by a marker line
(`=== system ===`, `=== user ===`), and `$placeholders` filled by the stage. Placeholders are
checked when the file is loaded: a prompt edited to use an unknown or to drop a required one
fails at once with the file's name, not halfway through a batch.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from pipeline.errors import ConfigError
from pipeline.settings import current as current_settings

_PACKAGE_DIR = Path(__file__).resolve().parent
_MARKER = re.compile(r"^=== (system|user) ===[ \t]*$", re.MULTILINE)

RECORD_SCHEMA_FILE = "claim_record.schema.json"


def data_dir(name: str) -> Path:
    """The folder of shipped files; `CLAIMS_PROMPTS` points prompts at a folder of edited copies."""
    override = current_settings().prompts_dir if name == "prompts" else None
    if override is not None:
        if not override.is_dir():
            raise ConfigError(f"CLAIMS_PROMPTS={override} is not a folder")
        return override
    for candidate in (_PACKAGE_DIR / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"the package is incomplete: no '{name}' folder next to {_PACKAGE_DIR}")


def record_schema_path() -> Path:
    return data_dir("schemas") / RECORD_SCHEMA_FILE


@dataclass(frozen=True)
class Prompt:
    name: str
    sha256: str
    system: Template
    user: Template

    def render(self, **values: str) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": self.system.substitute(values).strip()},
            {"role": "user", "content": self.user.substitute(values).strip()},
        ]


def parse_prompt(name: str, text: str, placeholders: set[str]) -> Prompt:
    parts = _MARKER.split(text)
    # split() gives [preamble, "system", body, "user", body]
    sections = dict(zip(parts[1::2], parts[2::2]))
    if set(sections) != {"system", "user"} or len(parts) != 5:
        raise ConfigError(f"prompt {name}: needs one '=== system ===' and one '=== user ===' part")
    system, user = Template(sections["system"]), Template(sections["user"])
    used = {identifier for template in (system, user) for identifier in template.get_identifiers()}
    if used != placeholders:
        missing, unknown = placeholders - used, used - placeholders
        detail = ", ".join(
            [f"missing ${p}" for p in sorted(missing)] + [f"unknown ${p}" for p in sorted(unknown)]
        )
        raise ConfigError(f"prompt {name}: placeholders do not match the stage ({detail})")
    return Prompt(name, hashlib.sha256(text.encode()).hexdigest(), system, user)


def load_prompt(file_name: str, placeholders: frozenset[str]) -> Prompt:
    """Read on every call, never cached: an edited prompt must take effect (and miss a replay) at once."""
    path = data_dir("prompts") / file_name
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"prompt file missing: {path}") from exc
    prompt = parse_prompt(file_name, raw.decode("utf-8"), set(placeholders))
    return Prompt(file_name, hashlib.sha256(raw).hexdigest(), prompt.system, prompt.user)


def load_instructions(file_name: str) -> tuple[str, str]:
    """A prompt file used as is (no parts, no placeholders): its text and sha256."""
    path = data_dir("prompts") / file_name
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"prompt file missing: {path}") from exc
    return raw.decode("utf-8").strip(), hashlib.sha256(raw).hexdigest()


def prompt_sha256(file_name: str) -> str:
    path = data_dir("prompts") / file_name
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ConfigError(f"prompt file missing: {path}") from exc
