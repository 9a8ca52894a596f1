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

from pipeline.core.errors import ConfigError
from pipeline.core.settings import current as current_settings

_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the pipeline package
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


@dataclass(frozen=True)
class Instruction:
    """A prompt file sent as it is (no parts, no placeholders)."""

    name: str
    sha256: str
    text: str


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
        detail = ", ".join([f"missing ${p}" for p in sorted(missing)] + [f"unknown ${p}" for p in sorted(unknown)])
        raise ConfigError(f"prompt {name}: placeholders do not match the stage ({detail})")
    return Prompt(name, hashlib.sha256(text.encode()).hexdigest(), system, user)


# --------------------------------------------------------------------------- the prompt registry


@dataclass(frozen=True)
class StagePrompt:
    """A stage's prompt file and the placeholders the stage fills in."""

    file: str
    placeholders: frozenset[str]


STAGE_PROMPTS: dict[str, StagePrompt] = {
    "extract": StagePrompt("extract.md", frozenset({"study_id", "paper_text"})),
    "draft": StagePrompt("draft.md", frozenset({"study_id", "findings", "paper_text"})),
    "grade": StagePrompt("grade.md", frozenset({"claim", "findings", "paper_text"})),
    "rewrite": StagePrompt("plain_language.md", frozenset({"text", "grade", "words_per_sentence"})),
    "stance": StagePrompt("stance.md", frozenset({"claim", "study_id", "findings", "paper_text"})),
    "synthesis": StagePrompt("synthesis.md", frozenset({"claim", "studies"})),
    "verify": StagePrompt("verify.md", frozenset({"findings"})),
}
# Sent as they are, after an answer: the repair request, and the retry of an answer cut off.
INSTRUCTIONS: dict[str, str] = {"repair": "repair.md", "retry_shorter": "retry_shorter.md"}
RUN_STAGES = ("extract", "draft", "grade", "rewrite")  # the prompts a run of one paper can send
EVIDENCE_STAGES = ("stance", "synthesis")  # and those adding a study to a claim adds
VERIFY_STAGES = ("verify",)  # and the second opinion's, when one is asked for


@dataclass(frozen=True)
class PromptSet:
    """Every prompt file, read and checked once (a run, or a whole batch), so the hashes in a
    record's provenance are those of the very bytes its requests were built from."""

    stages: dict[str, Prompt]
    instructions: dict[str, Instruction]

    def render(self, stage: str, **values: str) -> list[dict[str, str]]:
        return self.stages[stage].render(**values)

    def instruction(self, name: str) -> str:
        return self.instructions[name].text

    def hashes(self, stages: tuple[str, ...] = RUN_STAGES) -> dict[str, str]:
        """File name -> sha256, for the given stages' prompts and every instruction."""
        chosen = [self.stages[stage] for stage in stages] + list(self.instructions.values())
        return {item.name: item.sha256 for item in chosen}


def load_prompt_set() -> PromptSet:
    """Read from the shipped folder, or CLAIMS_PROMPTS: an edited prompt takes effect (and misses
    a replay) in the next run that loads it."""
    return PromptSet(
        stages={stage: load_prompt(spec.file, spec.placeholders) for stage, spec in STAGE_PROMPTS.items()},
        instructions={name: _load_instruction(file) for name, file in INSTRUCTIONS.items()},
    )


def _read_prompt_file(file_name: str) -> bytes:
    path = data_dir("prompts") / file_name
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"prompt file missing: {path}") from exc


def load_prompt(file_name: str, placeholders: frozenset[str]) -> Prompt:
    raw = _read_prompt_file(file_name)
    prompt = parse_prompt(file_name, raw.decode("utf-8"), set(placeholders))
    return Prompt(file_name, hashlib.sha256(raw).hexdigest(), prompt.system, prompt.user)


def _load_instruction(file_name: str) -> Instruction:
    raw = _read_prompt_file(file_name)
    return Instruction(file_name, hashlib.sha256(raw).hexdigest(), raw.decode("utf-8").strip())


def prompt_sha256(file_name: str) -> str:
    return hashlib.sha256(_read_prompt_file(file_name)).hexdigest()
