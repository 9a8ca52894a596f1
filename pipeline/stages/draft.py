"""Stage 3, draft: the hedged claim, its original statement, the mechanism and each study's stance."""

from __future__ import annotations

import json

from pipeline.core.identifiers import canonical_citation
from pipeline.core.models import CausalStep, DraftOutput, Finding, Flag, Stance, StepBasis, StudyStanceOutput
from pipeline.llm.base import LLMContext, StageCall, ask_structured
from pipeline.llm.strict_schema import RequestFacts
from pipeline.sources.pdf import Document
from pipeline.stages.paper_text import messages_with_paper

SECTIONS = ("abstract", "results", "discussion", "conclusions")


def findings_json(findings: list[Finding]) -> str:
    return json.dumps([finding.model_dump(mode="json") for finding in findings], indent=1, ensure_ascii=False)


def draft(document: Document, findings: list[Finding], llm: LLMContext) -> DraftOutput:
    messages = messages_with_paper(
        llm, "draft", "draft", document, SECTIONS, study_id=document.study_id, findings=findings_json(findings)
    )
    ids = [document.study_id]

    def check(output: DraftOutput) -> list[str]:
        return check_draft(output, ids)

    def salvage(output: DraftOutput) -> list[Flag] | None:
        flags = salvage_steps(output.causal_chain, ids)
        output.stances, stance_flags = salvage_stances(output.stances, ids)
        return flags + stance_flags

    facts = RequestFacts(study_ids=tuple(ids), pages=len(document.pages))
    return ask_structured(llm, StageCall("draft", DraftOutput, messages, check, facts, salvage))


def check_draft(output: DraftOutput, study_ids: list[str]) -> list[str]:
    """What the schema cannot say; faithfulness is the check stage's work. Citations written in
    another spelling of a given id (doi:, https://doi.org/, case) are mapped to it first."""
    texts = {
        "claim": output.claim,
        "original_statement.text": output.original_statement.text,
        "plain_language": output.plain_language,
        "mechanism_summary": output.mechanism_summary,
    }
    problems = [f"{where}: the text is empty" for where, text in texts.items() if not text.strip()]
    problems += check_steps(output.causal_chain, study_ids)
    for stance in output.stances:
        stance.study_id = canonical_citation(stance.study_id, study_ids)
    given = [stance.study_id for stance in output.stances]
    problems += [
        f"stances: give the stance of study {missing} once" for missing in study_ids if given.count(missing) != 1
    ]
    return problems


def check_steps(steps: list[CausalStep], study_ids: list[str]) -> list[str]:
    problems = []
    for index, step in enumerate(steps):
        if not step.text.strip():
            problems.append(f"causal_chain.{index}.text: the text is empty")
        step.citations = [canonical_citation(cited, study_ids) for cited in step.citations]
        problems += [
            f"causal_chain.{index}.citations: {cited} is not one of the studies given"
            for cited in step.citations
            if cited not in study_ids
        ]
        if step.basis is StepBasis.reported and step.quote is None:
            problems.append(f"causal_chain.{index}.quote: a reported step needs the quote that reports it")
    return problems


def salvage_steps(steps: list[CausalStep], study_ids: list[str]) -> list[Flag]:
    """Unknown citations removed (a step left citing nothing is dropped), a reported step without
    its quote re-tagged as inferred; each change flagged or noted at its place in the record."""
    flags = []
    kept: list[CausalStep] = []
    for index, step in enumerate(steps):
        where = f"mechanism.steps[{len(kept)}]"
        unknown = [cited for cited in step.citations if cited not in study_ids]
        step.citations = [cited for cited in step.citations if cited in study_ids]
        if unknown and not step.citations:
            flags.append(
                Flag(
                    where="mechanism.steps",
                    code="step_dropped",
                    message=f"step {index + 1} of the model's chain cited only studies not given ({', '.join(unknown)}); dropped",
                )
            )
            continue
        flags += [
            Flag(
                where=f"{where}.citations",
                code="foreign_citation",
                message=f"the model cited {cited}, not among the studies given; removed",
            )
            for cited in unknown
        ]
        if step.basis is StepBasis.reported and step.quote is None:
            step.basis = StepBasis.inferred
            flags.append(
                Flag(
                    where=f"{where}.basis",
                    code="retagged_inferred",
                    message="the model called this step reported but gave no quote; shown as inferred",
                )
            )
        kept.append(step)
    steps[:] = kept
    if not kept:
        flags.append(
            Flag(
                where="mechanism.steps",
                code="no_causal_steps",
                message="no usable causal step came back from the model",
            )
        )
    return flags


def salvage_stances(
    stances: list[StudyStanceOutput], study_ids: list[str]
) -> tuple[list[StudyStanceOutput], list[Flag]]:
    """One stance per study given: a lone stance under another id is taken as the only study's
    (with a note); duplicates keep the first; a missing one becomes 'no clear bearing', flagged."""
    flags = []
    if len(study_ids) == 1 and len(stances) == 1 and stances[0].study_id != study_ids[0]:
        flags.append(
            Flag(
                where="studies[0].stance",
                code="stance_id_mapped",
                message=f"the model gave the stance under {stances[0].study_id}; taken as the only study's",
            )
        )
        stances[0].study_id = study_ids[0]
    kept: dict[str, StudyStanceOutput] = {}
    for stance in stances:
        if stance.study_id in study_ids:
            kept.setdefault(stance.study_id, stance)
    for index, study_id in enumerate(study_ids):
        if study_id not in kept:
            kept[study_id] = StudyStanceOutput(study_id=study_id, stance=Stance.no_clear_bearing, summary="")
            flags.append(
                Flag(
                    where=f"studies[{index}].stance",
                    code="stance_missing",
                    message="the model gave no stance for this study; set to no clear bearing",
                )
            )
    return [kept[study_id] for study_id in study_ids], flags
