"""Replaying a recording offline: the same code as the live run, with the model answered from
the recording, and the outcome compared with what was recorded.

A run's (or add-evidence's) replayed record must equal the recorded one field by field; an eval's
figures must equal the recorded figures; a failed run must fail again with the same error. A
request the recording cannot answer raises `ReplayMissError`, naming the stage and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.errors import ClaimsError, ReplayError, ReplayMissError
from pipeline.core.models import ClaimRecord
from pipeline.llm.base import LLMContext
from pipeline.llm.recording import Recording, ReplayChatModel, load_recording, record_diff, recorded_pdf
from pipeline.sources.pdf import document_from_pages, read_pdf
from pipeline.stages.check import model_rewriter
from pipeline.workflow.evaluation import evaluate, read_dataset
from pipeline.workflow.evidence import add_study
from pipeline.workflow.run import run_pipeline


@dataclass
class ReplayOutcome:
    recording: Recording
    recorded: ClaimRecord | None
    replayed: ClaimRecord | None = None
    diff: list[str] = field(default_factory=list)  # empty: identical
    evaluation: dict[str, Any] | None = None  # an eval's figures, equal to the recorded ones
    failed_as_recorded: str | None = None  # a failed run's error, repeated


def replay(directory: Path, pdf_override: Path | None = None) -> ReplayOutcome:
    recording, recorded = load_recording(directory)
    if recording.kind == "eval":
        return ReplayOutcome(recording, None, evaluation=_replay_eval(directory, recording))
    pdf = recorded_pdf(directory, recording, pdf_override)
    llm = LLMContext(ReplayChatModel(recording), recording.run_settings())
    if recording.failure is not None:
        return ReplayOutcome(recording, None, failed_as_recorded=_replay_failure(recording, pdf, llm))
    assert recorded is not None
    if recording.kind == "add-evidence":
        replayed = _replay_add_evidence(recording, recorded, pdf, llm)
    else:
        replayed = run_pipeline(
            pdf,
            llm,
            metadata=recording.input.metadata,
            pdf_url=recording.input.pdf_url,
            record_id=recorded.record_id,
            generated_at=recorded.provenance.generated_at,
        ).record
    return ReplayOutcome(recording, recorded, replayed, record_diff(recorded, replayed))


def _replay_failure(recording: Recording, pdf: Path, llm: LLMContext) -> str:
    try:
        run_pipeline(pdf, llm, metadata=recording.input.metadata, pdf_url=recording.input.pdf_url)
    except ReplayMissError:
        raise
    except ClaimsError as exc:
        if str(exc) != recording.failure:
            raise ReplayError(f"the run failed differently: recorded {recording.failure!r}, now {str(exc)!r}") from exc
        return str(exc)
    raise ReplayError(f"the recorded run failed ({recording.failure}); the replay did not")


def _replay_eval(directory: Path, recording: Recording) -> dict[str, Any]:
    assert recording.evaluation is not None
    dataset = recorded_pdf(directory, recording)  # the dataset stands where the paper would, checked by hash
    corpus = directory / recording.evaluation.corpus if recording.evaluation.corpus else None
    rows = read_dataset(dataset, corpus, recording.evaluation.limit)
    result = evaluate(rows, LLMContext(ReplayChatModel(recording), recording.run_settings())).summary()
    if result != recording.evaluation.result:
        raise ReplayError(
            f"the evaluation differs from the recorded one: accuracy {result['accuracy']} now, "
            f"{recording.evaluation.result['accuracy']} recorded"
        )
    return result


def _replay_add_evidence(recording: Recording, recorded: ClaimRecord, pdf: Path, llm: LLMContext) -> ClaimRecord:
    if recording.base_record is None:
        raise ReplayError("the add-evidence recording has no base record")
    base = ClaimRecord.model_validate(recording.base_record)
    dois = {s.reference.study_id: s.reference.doi for s in base.studies}
    sources = {
        study_id: document_from_pages(src.file_name, src.sha256, src.pages, dois.get(study_id))
        for study_id, src in recording.base_sources.items()
    }
    document = read_pdf(pdf)
    if recording.input.metadata is not None:
        document.doi = recording.input.metadata.doi
    replayed, _ = add_study(
        base,
        document,
        sources,
        llm,
        metadata=recording.input.metadata,
        pdf_url=recording.input.pdf_url,
        rewrite=model_rewriter(llm),
        generated_at=recorded.provenance.generated_at,
    )
    return replayed
