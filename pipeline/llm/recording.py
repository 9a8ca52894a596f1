"""Recorded runs: writing them, replaying them offline, and saying why a replay no longer matches.

A recording is a folder with two files:
- `recording.json`: where the run was made (`made_against`), the input PDF (path relative to
  the folder, and sha256), the run settings, the prompt hashes, and every model exchange: the
  request's content (model, messages, output schema, parameters), its fingerprint, the response;
- `record.json`: the record the run produced; a failed run has none, and its recording says
  how it failed (`failure`) and holds every exchange up to the failure, the server's error
  messages included, so the model's raw answers can be read.

Replay matches each request on its fingerprint, never on call order, so an edited prompt misses
instead of returning a stale answer. No header of any kind is kept, so no key can be.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import shutil
import tempfile
from collections import defaultdict, deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field

from pipeline import __version__
from pipeline.core.errors import LLMError, ReplayError, ReplayMissError
from pipeline.core.files import write_json_atomic
from pipeline.core.models import ClaimRecord, StudyMetadata
from pipeline.core.resources import INSTRUCTIONS, STAGE_PROMPTS, PromptSet, prompt_sha256
from pipeline.core.settings import RunSettings
from pipeline.core.settings import current as current_settings
from pipeline.llm.base import ChatRequest, ChatResponse, Interaction

RECORDING_FORMAT = "claims-recording/1"
RECORDING_FILE = "recording.json"
RECORD_FILE = "record.json"
SCRIPTED_ENDPOINT_ID = "claims-scripted-endpoint"
# Fields a replay does not compare: they change with the code's version, not with what it wrote.
UNCOMPARED_FIELDS = (("provenance", "pipeline_version"),)


class RecordedInput(BaseModel):
    file_name: str
    path: str = Field(description="The PDF, relative to the recording folder.")
    sha256: str
    metadata: StudyMetadata | None = Field(description="For a DOI run: the metadata the run used.")
    pdf_url: str | None


class RecordedSource(BaseModel):
    file_name: str
    sha256: str
    pages: list[str]


class RecordedEval(BaseModel):
    corpus: str | None
    limit: int | None
    result: dict[str, Any]


class Recording(BaseModel):
    format: str = RECORDING_FORMAT
    kind: str = Field(default="run", description="run, add-evidence or eval: the command that was recorded.")
    made_against: str
    created_at: str
    pipeline_version: str
    input: RecordedInput
    settings: dict[str, Any]
    prompts: dict[str, str]
    interactions: list[dict[str, Any]]
    base_record: dict[str, Any] | None = Field(default=None, description="add-evidence: the record before.")
    base_sources: dict[str, RecordedSource] = Field(
        default_factory=dict, description="add-evidence: its studies' texts."
    )
    evaluation: RecordedEval | None = Field(default=None, description="eval: the options and the figures obtained.")
    failure: str | None = Field(default=None, description="A failed run: the error it ended with (no record.json).")

    def run_settings(self) -> RunSettings:
        return RunSettings(**self.settings)


def describe_endpoint(interactions: list[Interaction], base_url: str | None, details: tuple[str, ...] = ()) -> str:
    """Say honestly what answered: the scripted endpoint identifies itself in every response.
    `details`: what the client changed for the endpoint (an answer format or parameter it refused)."""
    served = {i.response.get("served_by") for i in interactions}
    changes = "".join(f"; {detail}" for detail in details)
    if served == {SCRIPTED_ENDPOINT_ID}:
        return (
            "the scripted local endpoint (tests/scripted_endpoint.py) answering from hand-written "
            "scripts in fixtures/scripts/; not a real model's output" + changes
        )
    names = ", ".join(sorted(str(s) for s in served if s)) or "unknown"
    models = ", ".join(sorted({str(i.response["model"]) for i in interactions if i.response.get("model")})) or "unknown"
    note = current_settings().endpoint_note  # CLAIMS_ENDPOINT_NOTE: the server, its version, the model file
    return (
        f"the endpoint at {public_url(base_url) or 'the OpenAI default'} (model: {models}; system_fingerprint: {names})"
        + changes
        + (f"; {note}" if note else "")
    )


def public_url(url: str | None) -> str | None:
    """The URL without what could be a secret: user name, password, query and fragment."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def build_recording(
    pdf: Path,
    directory: Path,
    sha256: str,
    metadata: StudyMetadata | None,
    pdf_url: str | None,
    settings: RunSettings,
    prompts: dict[str, str],
    interactions: list[Interaction],
    base_url: str | None,
    failure: str | None = None,
    details: tuple[str, ...] = (),
) -> Recording:
    """`details`: what else the recording should say of the endpoint (an answer format it refused).

    A downloaded PDF (`pdf_url` set) is kept inside the recording; a local one is pointed at.
    """
    return Recording(
        failure=failure,
        made_against=describe_endpoint(interactions, base_url, details),
        created_at=datetime.now(UTC).replace(microsecond=0).isoformat(),
        pipeline_version=__version__,
        input=RecordedInput(
            file_name=pdf.name,
            path=pdf.name if pdf_url else os.path.relpath(pdf.resolve(), directory.resolve()),
            sha256=sha256,
            metadata=metadata,
            pdf_url=pdf_url,
        ),
        settings=dataclasses.asdict(settings),
        prompts=prompts,
        interactions=[dataclasses.asdict(interaction) for interaction in interactions],
    )


def save_recording(directory: Path, recording: Recording, record: ClaimRecord | None, pdf: Path) -> None:
    """Write the files into a fresh folder, then swap it in: a reader never sees half a recording.

    A downloaded `pdf` (whose cache path is no place to point at) is copied inside it.
    A failed run (`record` None) has no record.json.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        if recording.input.pdf_url:
            shutil.copyfile(pdf, staging / recording.input.path)
        write_json_atomic(staging / RECORDING_FILE, recording.model_dump(mode="json"))
        if record is not None:
            write_json_atomic(staging / RECORD_FILE, record.model_dump(mode="json"))
        if directory.exists():
            retired = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(retired, ignore_errors=True)
            directory.rename(retired)
            staging.rename(directory)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_recording(directory: Path) -> tuple[Recording, ClaimRecord | None]:
    """The recording and the record it produced (None for an eval recording, which has none)."""
    try:
        recording = Recording.model_validate_json((directory / RECORDING_FILE).read_text())
        has_record = recording.kind != "eval" and recording.failure is None
        record = ClaimRecord.model_validate_json((directory / RECORD_FILE).read_text()) if has_record else None
    except FileNotFoundError as exc:
        raise ReplayError(f"{directory}: not a recording (missing {Path(exc.filename).name})") from exc
    except ValueError as exc:
        raise ReplayError(f"{directory}: the recording is damaged ({str(exc).splitlines()[0]})") from exc
    if recording.format != RECORDING_FORMAT:
        raise ReplayError(f"{directory}: recording format {recording.format}, this version reads {RECORDING_FORMAT}")
    return recording, record


def recorded_pdf(directory: Path, recording: Recording, override: Path | None = None) -> Path:
    """The recorded input (a PDF, or an eval's dataset), checked against its recorded sha256."""
    pdf = override or (directory / recording.input.path)
    if not pdf.is_file():
        raise ReplayError(
            f"the recorded input {recording.input.path} is missing (looked for {pdf}); pass it with --pdf"
        )
    if hashlib.sha256(pdf.read_bytes()).hexdigest() != recording.input.sha256:
        raise ReplayError(f"input changed: {pdf} is not the file that was recorded (sha256 differs)")
    return pdf


class ReplayChatModel:
    """Answers each request with the recorded response whose request had the same content."""

    def __init__(self, recording: Recording):
        self._recording = recording
        self._answers: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
        for interaction in recording.interactions:
            self._answers[interaction["fingerprint"]].append(interaction["response"])

    def complete(self, request: ChatRequest) -> ChatResponse:
        answers = self._answers.get(request.fingerprint())
        if not answers:
            raise ReplayMissError(request.stage, explain_miss(request, self._recording))
        response = answers.popleft() if len(answers) > 1 else answers[0]
        if "error" in response:  # a failed exchange of a failed run: it fails the same way again
            raise LLMError(response["error"])
        return ChatResponse.model_validate(response)


def explain_miss(request: ChatRequest, recording: Recording) -> list[str]:
    """Why no recorded request matches: prompt file, model, parameters, schema or input."""
    same_stage = [i["request"] for i in recording.interactions if i["stage"] == request.stage]
    if not same_stage:
        return [f"the recording has no request for stage {request.stage}"]
    recorded = same_stage[0]
    reasons = []
    if recorded["model"] != request.model:
        reasons.append(f"model changed ({recorded['model']} -> {request.model})")
    if recorded["params"] != request.params:
        changed = sorted(
            key
            for key in set(recorded["params"]) | set(request.params)
            if recorded["params"].get(key) != request.params.get(key)
        )
        reasons.append(f"parameters changed ({', '.join(changed)})")
    if recorded["output_schema"] != request.output_schema:
        reasons.append("the output schema changed (the stage's pydantic model was edited)")
    if recorded["messages"] != request.messages:
        stage_file = STAGE_PROMPTS[request.stage].file if request.stage in STAGE_PROMPTS else None
        edited = [
            f"prompt file {name} changed (sha256 {old[:12]} -> {prompt_sha256(name)[:12]})"
            for name, old in recording.prompts.items()
            if name in (stage_file, *INSTRUCTIONS.values()) and prompt_sha256(name) != old
        ]
        reasons.extend(edited or [f"the input changed: {_first_difference(recorded['messages'], request.messages)}"])
    return reasons or ["the request differs from every recorded one for this stage"]


def _first_difference(old: list[dict[str, str]], new: list[dict[str, str]]) -> str:
    old_lines = "\n".join(m["content"] for m in old).splitlines()
    new_lines = "\n".join(m["content"] for m in new).splitlines()
    for before, after in zip(old_lines, new_lines):
        if before != after:
            return f"recorded {before[:80]!r}, now {after[:80]!r}"
    return f"the text is {len(old_lines)} lines in the recording and {len(new_lines)} now"


def record_diff(recorded: ClaimRecord, replayed: ClaimRecord) -> list[str]:
    """A unified diff of the two records as sorted JSON; empty when they are the same."""

    def comparable(record: ClaimRecord) -> list[str]:
        data = record.model_dump(mode="json")
        for path in UNCOMPARED_FIELDS:
            parent = data
            for key in path[:-1]:
                parent = parent[key]
            parent.pop(path[-1], None)
        return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False).splitlines()

    return list(
        difflib.unified_diff(
            comparable(recorded), comparable(replayed), "recorded record", "replayed record", lineterm=""
        )
    )


def save_eval_recording(
    directory: Path,
    dataset: Path,
    corpus: Path | None,
    limit: int | None,
    settings: RunSettings,
    chat: Any,
    result: Any,
    base_url: str | None,
    prompts: PromptSet,
    details: tuple[str, ...] = (),
) -> None:
    """An eval run: the dataset (by path and hash) stands where a paper would; record.json is not
    written, the figures are kept in the recording itself."""
    directory.mkdir(parents=True, exist_ok=True)
    recording = Recording(
        kind="eval",
        made_against=describe_endpoint(chat.interactions, base_url, details),
        created_at=datetime.now(UTC).replace(microsecond=0).isoformat(),
        pipeline_version=__version__,
        input=RecordedInput(
            file_name=dataset.name,
            path=os.path.relpath(dataset.resolve(), directory.resolve()),
            sha256=hashlib.sha256(dataset.read_bytes()).hexdigest(),
            metadata=None,
            pdf_url=None,
        ),
        settings=dataclasses.asdict(settings),
        prompts=prompts.hashes(("stance",)),
        interactions=[dataclasses.asdict(i) for i in chat.interactions],
        evaluation=RecordedEval(
            corpus=os.path.relpath(corpus.resolve(), directory.resolve()) if corpus else None,
            limit=limit,
            result=result.summary(),
        ),
    )
    write_json_atomic(directory / RECORDING_FILE, recording.model_dump(mode="json"))
