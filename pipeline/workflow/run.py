"""The whole pipeline for one paper: ingest, extract, draft, grade, check; storing is the caller's.

`run_pipeline` takes its I/O as arguments (the model context, the text extractor, a progress
callback), so a live run, a recording run and a replay are the same code. A replay also passes
the recorded record id and time, which makes the replayed record comparable byte for byte.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.core.errors import InputError, RecordSchemaError
from pipeline.core.models import (
    Bibliography,
    CertaintyAssessment,
    Claim,
    ClaimRecord,
    DraftOutput,
    ExtractOutput,
    Flag,
    GoldStandardStudy,
    Mechanism,
    Provenance,
    SourceDocument,
    StageUsage,
    Stance,
    Study,
    StudyMetadata,
    StudyReference,
)
from pipeline.core.resources import RUN_STAGES, VERIFY_STAGES, PromptSet
from pipeline.core.settings import RunSettings
from pipeline.llm.base import LLMContext, UsageLog
from pipeline.sources.metadata import metadata_mismatches
from pipeline.sources.pdf import Document, read_pdf
from pipeline.stages.check import (
    CheckRunner,
    check_record,
    count,
    model_rewriter,
    second_opinion_result,
    with_model_output,
)
from pipeline.stages.draft import draft
from pipeline.stages.extract import extract
from pipeline.stages.grade import grade
from pipeline.stages.verify import second_opinion

STAGES = ("ingest", "extract", "draft", "grade", "check")  # and "verify" between grade and check, when asked

Progress = Callable[[str, str, str], None]  # (stage, "start" | "done", detail)


def quiet(stage: str, event: str, detail: str) -> None:
    """Progress that goes nowhere."""


@dataclass(frozen=True)
class RunResult:
    record: ClaimRecord
    document: Document
    seconds: dict[str, float]  # per stage


def run_pipeline(
    pdf: Path,
    llm: LLMContext,
    *,
    document: Document | None = None,
    metadata: StudyMetadata | None = None,
    pdf_url: str | None = None,
    strict: bool = False,
    record_id: str | None = None,
    generated_at: str | None = None,
    read: Callable[[Path], Document] = read_pdf,
    not_a_study_ok: bool = False,
    progress: Progress = quiet,
    check_runner: CheckRunner = check_record,
) -> RunResult:
    settings, usage = llm.settings, llm.usage
    seconds: dict[str, float] = {}

    def stage(name: str, work: Callable[[], Any], describe: Callable[..., str]) -> Any:
        progress(name, "start", "")
        started = time.perf_counter()
        result = work()
        seconds[name] = round(time.perf_counter() - started, 3)
        progress(name, "done", f"{describe(result)} ({seconds[name]:.1f} s)")
        return result

    document = stage(
        "ingest",
        lambda: document or read(pdf),
        lambda d: (
            f"{len(d.pages)} pages, sections: {', '.join(d.sections_found())}"
            + (f", {len(d.problems)} page(s) skipped" if d.problems else "")
        ),
    )
    require_a_study(document, metadata, not_a_study_ok)
    notes: list[str] = []
    if metadata is not None:
        mismatches = metadata_mismatches(metadata, document.doi, "\n".join(document.pages[:2]))
        if mismatches and strict:
            raise InputError(
                f"{document.file_name} does not look like {metadata.doi}: {'; '.join(mismatches)} (--strict)"
            )
        for mismatch in mismatches:
            progress("ingest", "warn", f"warning: {mismatch}")
            notes.append(f"warning: {mismatch}")
        document.doi = metadata.doi
    extracted: ExtractOutput = stage("extract", lambda: extract(document, llm), lambda e: f"{len(e.findings)} findings")
    drafted: DraftOutput = stage(
        "draft",
        lambda: draft(document, extracted.findings, llm),
        lambda d: f"{d.claim_type.value} claim, {len(d.causal_chain)} causal steps",
    )
    certainty, gold = stage(
        "grade",
        lambda: grade(document, drafted.claim, extracted.findings, llm),
        lambda g: f"{g[0].design.value}, certainty {g[0].certainty.value}",
    )
    opinion: list[Flag] | None = None
    if settings.verify_model:
        verify_model = settings.verify_model
        opinion = stage(
            "verify",
            lambda: second_opinion(extracted.findings, llm, verify_model),
            lambda flags: (
                f"{verify_model}: {len(flags)} of {len(extracted.findings)} finding(s) not borne out by their quotes"
            ),
        )
    record = assemble_record(
        document,
        extracted,
        drafted,
        certainty,
        gold,
        settings=settings,
        usage=usage,
        prompts=run_prompts(llm.prompts, settings),
        metadata=metadata,
        pdf_url=pdf_url,
        notes=notes,
        record_id=record_id or uuid.uuid4().hex[:12],
        generated_at=generated_at or datetime.now(UTC).replace(microsecond=0).isoformat(),
    )

    # carried through every check run: what the stages salvaged, and the second opinion
    record.checks = with_model_output([], llm.salvaged) + (
        [second_opinion_result(opinion)] if opinion is not None else []
    )

    def checked() -> ClaimRecord:
        result = check_runner(record, {document.study_id: document}, model_rewriter(llm))
        result.provenance.usage = stage_usage(usage)  # the plain-language rewrite may have called the model
        result.provenance.answered_by = list(usage.answered_by)
        if failed := [c for c in result.checks if c.name == "schema" and c.flags]:
            raise RecordSchemaError(f"record {result.record_id} breaks the schema: {failed[0].flags[0].message}")
        return result

    checked_record = stage("check", checked, lambda r: count(r.checks).line())
    return RunResult(checked_record, document, seconds)


def require_a_study(document: Document, metadata: StudyMetadata | None, not_a_study_ok: bool) -> None:
    """Refuse, before any model call, a document that is no research paper, unless told to go on.
    A DOI's registry metadata (a journal article) is evidence enough."""
    why = None if metadata is not None else document.not_a_study()
    if why and not not_a_study_ok:
        raise InputError(
            f"{document.file_name} does not look like a research paper ({why}); "
            "pass --not-a-study-ok to draft it anyway"
        )


def assemble_record(
    document: Document,
    extracted: ExtractOutput,
    drafted: DraftOutput,
    certainty: CertaintyAssessment,
    gold_standard: list[GoldStandardStudy],
    *,
    settings: RunSettings,
    usage: UsageLog,
    prompts: dict[str, str],
    metadata: StudyMetadata | None,
    pdf_url: str | None,
    notes: list[str],
    record_id: str,
    generated_at: str,
) -> ClaimRecord:
    # The draft stage's check already spelled every study id as given.
    own = next((stance for stance in drafted.stances if stance.study_id == document.study_id), None)
    study = Study(
        reference=study_reference(document, extracted.bibliography, metadata, pdf_url),
        design=certainty.design,
        findings=extracted.findings,
        stance=own.stance if own else Stance.no_clear_bearing,
        summary=own.summary if own else "",
        source_sha256=document.sha256,
    )
    return ClaimRecord(
        record_id=record_id,
        claim=Claim(text=drafted.claim, type=drafted.claim_type, original_statement=drafted.original_statement),
        studies=[study],
        mechanism=Mechanism(
            plain_language=drafted.plain_language, summary=drafted.mechanism_summary, steps=drafted.causal_chain
        ),
        certainty=certainty,
        gold_standard=gold_standard,
        checks=[],
        provenance=Provenance(
            pipeline_version=__version__,
            model=settings.model,
            answered_by=list(usage.answered_by),
            prompts=prompts,
            source=SourceDocument(
                file_name=document.file_name,
                sha256=document.sha256,
                pages=len(document.pages),
                pages_skipped=document.problems,
            ),
            generated_at=generated_at,
            usage=stage_usage(usage),
            notes=notes,
        ),
    )


def stage_usage(usage: UsageLog) -> list[StageUsage]:
    return [
        StageUsage(
            stage=name,
            calls=tally.calls,
            cached_calls=tally.cached_calls,
            prompt_tokens=tally.prompt_tokens,
            completion_tokens=tally.completion_tokens,
        )
        for name, tally in usage.by_stage.items()
    ]


def study_reference(
    document: Document, bibliography: Bibliography, metadata: StudyMetadata | None, pdf_url: str | None
) -> StudyReference:
    """Registry metadata first, then what the PDF itself says, then what the model read from it."""

    def first(*values: Any) -> Any:
        return next((value for value in values if value), None)

    return StudyReference(
        study_id=document.study_id,
        doi=document.doi,
        title=first(metadata and metadata.title, document.title, bibliography.title, document.file_name),
        authors=first(metadata and metadata.authors, bibliography.authors) or [],
        journal=first(metadata and metadata.journal, bibliography.journal),
        year=first(metadata and metadata.year, bibliography.year),
        licence=metadata.licence if metadata else None,
        publication_type=metadata.publication_type if metadata else None,
        retracted=metadata.retracted if metadata else None,
        pdf_url=pdf_url,
        metadata_sources=metadata.sources if metadata else [],
        source_file=document.file_name,
    )


def run_prompts(prompts: PromptSet, settings: RunSettings, stages: tuple[str, ...] = RUN_STAGES) -> dict[str, str]:
    """The hashes of the prompt files a run (or adding evidence: its `stages`) may send: the
    stages', and the second opinion's when one is asked for."""
    return prompts.hashes(stages + (VERIFY_STAGES if settings.verify_model else ()))


def run_key(pdf_sha256: str, settings: RunSettings, metadata: StudyMetadata | None, prompts: dict[str, str]) -> str:
    """What makes two runs the same run: the PDF, its DOI metadata, the settings, the prompts and
    the pipeline version. The store keeps it with each record: a batch resumes by it, and `claims
    run` says a paper is already stored instead of storing it twice."""
    shape = {
        "pdf": pdf_sha256,
        "metadata": metadata.model_dump(mode="json") if metadata else None,
        # no second opinion leaves the key as it was before there could be one
        "settings": {k: v for k, v in dataclasses.asdict(settings).items() if not (k == "verify_model" and v is None)},
        "prompts": prompts,
        "pipeline": __version__,
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()
