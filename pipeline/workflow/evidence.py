"""Multi-study claims: a new study's stance, the re-synthesis across studies, the Pro / Against
scores, and matching a paper to the claims it bears on.

Adding a study extracts its findings, asks for its stance toward the claim as worded (with a
rationale and a grounded quote), then re-synthesises the mechanism, the GRADE domains for the
body of evidence and the gold-standard studies still missing. Every check then runs on the whole
record, against every study's text. The stance of a study that is not the one given is refused.

Scores (shown on the page): each side's strength is the sum, over its studies, of
    design weight x (1 + log10(1 + n / 10)) x 10, rounded to one decimal,
with n the largest sample size the study reports (no size: factor 1) and design weights
    systematic review of RCTs 4, RCT 3, systematic review of observational studies 2,
    non-randomised trial or cohort 1.5, case-control 1.2, cross-sectional 1, qualitative,
    case series, mechanistic or narrative review 0.5, expert opinion 0.25.
Every term is positive, so a further supporting study never lowers Pro (and likewise Against);
studies of no clear bearing count on neither side.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from rapidfuzz import fuzz, process

from pipeline.core.identifiers import canonical_citation
from pipeline.core.models import (
    CertaintyAssessment,
    ClaimRecord,
    EvidenceScores,
    Finding,
    Flag,
    Mechanism,
    ReviewStatus,
    Stance,
    StanceOutput,
    Study,
    StudyDesign,
    StudyMetadata,
    SynthesisOutput,
)
from pipeline.core.resources import EVIDENCE_STAGES
from pipeline.core.terms import content_words
from pipeline.llm.base import LLMContext, StageCall, ask_structured
from pipeline.llm.strict_schema import RequestFacts
from pipeline.sources.pdf import Document
from pipeline.stages.check import (
    SECOND_OPINION,
    Rewriter,
    Sources,
    run_checks,
    second_opinion_result,
    with_model_output,
)
from pipeline.stages.draft import check_steps, findings_json, salvage_steps
from pipeline.stages.extract import extract
from pipeline.stages.grade import design_rank, rate_certainty, starting_certainty, strongest_first
from pipeline.stages.paper_text import messages_with_paper
from pipeline.stages.verify import second_opinion
from pipeline.workflow.run import run_prompts, stage_usage, study_reference

STANCE_SECTIONS = ("abstract", "results", "discussion", "conclusions")

DESIGN_WEIGHT = {
    StudyDesign.systematic_review_of_rcts: 4.0,
    StudyDesign.randomised_controlled_trial: 3.0,
    StudyDesign.systematic_review_of_observational: 2.0,
    StudyDesign.non_randomised_trial: 1.5,
    StudyDesign.cohort: 1.5,
    StudyDesign.case_control: 1.2,
    StudyDesign.cross_sectional: 1.0,
    StudyDesign.qualitative: 0.5,
    StudyDesign.case_series: 0.5,
    StudyDesign.mechanistic_or_animal: 0.5,
    StudyDesign.narrative_review: 0.5,
    StudyDesign.expert_opinion: 0.25,
}
SCORE_FORMULA = "sum over the side's studies of design weight x (1 + log10(1 + n/10)) x 10"


# --------------------------------------------------------------------------- scores


def study_weight(study: Study) -> float:
    sizes = [f.sample_size for f in study.findings if f.sample_size and f.sample_size > 0]
    size_factor = 1 + math.log10(1 + max(sizes) / 10) if sizes else 1.0
    return DESIGN_WEIGHT[study.design] * size_factor * 10


def evidence_scores(studies: list[Study]) -> EvidenceScores:
    def side(stance: Stance) -> float:
        return round(sum(study_weight(s) for s in studies if s.stance is stance), 1)

    return EvidenceScores(pro=side(Stance.supporting), against=side(Stance.contradicting), formula=SCORE_FORMULA)


# --------------------------------------------------------------------------- stance and synthesis


def classify_stance(
    claim: str, document: Document, findings: list[Finding], llm: LLMContext, study_index: int = 0
) -> StanceOutput:
    """`study_index`: where the study will stand in the record, for the paths of salvage flags."""
    messages = messages_with_paper(
        llm,
        "stance",
        "draft",
        document,
        STANCE_SECTIONS,
        claim=claim,
        study_id=document.study_id,
        findings=findings_json(findings),
    )

    def check(output: StanceOutput) -> list[str]:
        problems = []
        output.study_id = canonical_citation(output.study_id, [document.study_id])
        if output.study_id != document.study_id:
            problems.append(f"study_id: {output.study_id} is not the study given; use {document.study_id}")
        if output.stance is not Stance.no_clear_bearing and output.quote is None:
            problems.append("quote: a supporting or contradicting stance needs the passage it rests on")
        return problems

    def salvage(output: StanceOutput) -> list[Flag]:
        """Only one study was given, so a stance under another id can only be its stance."""
        flags = []
        if output.study_id != document.study_id:
            flags.append(
                Flag(
                    where=f"studies[{study_index}].stance",
                    code="stance_id_mapped",
                    message=f"the model gave the stance under {output.study_id}; taken as this study's",
                )
            )
            output.study_id = document.study_id
        if output.stance is not Stance.no_clear_bearing and output.quote is None:
            flags.append(
                Flag(
                    where=f"studies[{study_index}].stance_quote",
                    code="stance_without_quote",
                    message=f"the model called the study {output.stance.value} without the passage it rests on",
                )
            )
        return flags

    facts = RequestFacts(study_ids=(document.study_id,), pages=len(document.pages))
    return ask_structured(llm, StageCall("stance", StanceOutput, messages, check, facts, salvage))


def _studies_json(studies: list[Study]) -> str:
    return json.dumps(
        [
            {
                "study_id": s.reference.study_id,
                "title": s.reference.title,
                "design": s.design.value,
                "stance": s.stance.value,
                "summary": s.summary,
                "findings": [f.model_dump(mode="json") for f in s.findings],
            }
            for s in studies
        ],
        indent=1,
        ensure_ascii=False,
    )


def synthesise(claim: str, studies: list[Study], llm: LLMContext) -> SynthesisOutput:
    messages = llm.prompts.render("synthesis", claim=claim, studies=_studies_json(studies))
    known = [s.reference.study_id for s in studies]

    def check(output: SynthesisOutput) -> list[str]:
        return check_steps(output.causal_chain, known)

    def salvage(output: SynthesisOutput) -> list[Flag]:
        return salvage_steps(output.causal_chain, known)

    call = StageCall("synthesis", SynthesisOutput, messages, check, RequestFacts(study_ids=tuple(known)), salvage)
    return ask_structured(llm, call)


def body_design(studies: list[Study]) -> StudyDesign:
    """The body of evidence starts from its strongest design among the studies that bear on it."""
    bearing = [s for s in studies if s.stance is not Stance.no_clear_bearing] or studies
    return min((s.design for s in bearing), key=design_rank)


def study_design(findings: list[Finding]) -> StudyDesign:
    designs = Counter(f.design for f in findings)
    return designs.most_common(1)[0][0] if designs else StudyDesign.expert_opinion


# --------------------------------------------------------------------------- adding a study


def add_study(
    record: ClaimRecord,
    document: Document,
    sources: Sources,
    llm: LLMContext,
    *,
    metadata: StudyMetadata | None = None,
    pdf_url: str | None = None,
    rewrite: Rewriter | None = None,
    generated_at: str | None = None,
) -> tuple[ClaimRecord, StanceOutput]:
    """The record with the study added and everything re-synthesised, as a new draft."""
    index = len(record.studies)
    extracted = extract(document, llm, study_index=index)
    stance = classify_stance(record.claim.text, document, extracted.findings, llm, index)
    verify_model = llm.settings.verify_model
    opinion = second_opinion(extracted.findings, llm, verify_model, study=index) if verify_model else None
    study = Study(
        reference=study_reference(document, extracted.bibliography, metadata, pdf_url),
        design=study_design(extracted.findings),
        findings=extracted.findings,
        stance=stance.stance,
        summary=stance.summary,
        stance_rationale=stance.rationale,
        stance_quote=stance.quote,
        source_sha256=document.sha256,
    )
    studies = [*record.studies, study]
    synthesis = synthesise(record.claim.text, studies, llm)
    design = body_design(studies)
    domains, upgrades = synthesis.domains.assessments(), synthesis.upgrades.assessments()
    provenance = record.provenance.model_copy(deep=True)
    provenance.prompts.update(run_prompts(llm.prompts, llm.settings, EVIDENCE_STAGES))
    provenance.generated_at = generated_at or datetime.now(UTC).replace(microsecond=0).isoformat()
    provenance.usage = stage_usage(llm.usage)
    provenance.notes = [*provenance.notes, f"evidence added: {study.reference.study_id} ({stance.stance.value})"]
    updated = record.model_copy(
        deep=True,
        update={
            "status": ReviewStatus.draft,
            "studies": studies,
            "mechanism": Mechanism(
                plain_language=synthesis.plain_language,
                summary=synthesis.mechanism_summary,
                steps=synthesis.causal_chain,
            ),
            "certainty": CertaintyAssessment(
                design=design,
                design_rationale=f"Body of evidence of {len(studies)} studies; its strongest design bearing on the claim.",
                starting_certainty=starting_certainty(design),
                certainty=rate_certainty(design, domains, upgrades),
                domains=domains,
                upgrades=upgrades,
            ),
            "gold_standard": strongest_first(synthesis.gold_standard),
            "scores": evidence_scores(studies),
            "provenance": provenance,
        },
    )
    updated.checks = with_model_output(updated.checks, llm.salvaged)
    if opinion is not None:  # the new study's verdicts beside those of the studies before it
        earlier = [f for c in updated.checks if c.name == SECOND_OPINION for f in c.flags]
        updated.checks = [c for c in updated.checks if c.name != SECOND_OPINION] + [
            second_opinion_result(earlier + opinion)
        ]
    updated.checks = run_checks(updated, {**sources, document.study_id: document}, rewrite)
    updated.provenance.usage = stage_usage(llm.usage)
    updated.provenance.answered_by = list(dict.fromkeys([*record.provenance.answered_by, *llm.usage.answered_by]))
    return updated, stance


# --------------------------------------------------------------------------- matching


def _pico_terms(record: ClaimRecord) -> dict[str, str]:
    findings = [f for s in record.studies for f in s.findings]
    return {
        "population": " ".join(dict.fromkeys(f.population for f in findings)),
        "intervention": " ".join(dict.fromkeys(f"{f.intervention} {f.comparator or ''}" for f in findings)),
        "outcome": " ".join(dict.fromkeys(f.outcome for f in findings)),
        "claim": record.claim.text,
    }


@dataclass(frozen=True)
class Match:
    """How well a paper bears on a stored claim (0-100), and the terms they share."""

    score: float
    claim: ClaimRecord
    shared: dict[str, list[str]]


def rank_matches(claims: Iterable[ClaimRecord], opening: str) -> list[Match]:
    """The claims a paper's opening text (title, abstract) bears on, best first: 0-100, from how
    much of the claim's population, intervention and outcome terms the text holds, with the
    terms they share."""
    text, words = opening.lower(), content_words(opening)  # once a paper, not once a claim
    claims = list(claims)
    terms = [_pico_terms(claim) for claim in claims]
    parts = {name: _similarities(text, [t[name].lower() for t in terms]) for name in _PICO}
    matches = []
    for n, claim in enumerate(claims):
        score = round(0.3 * parts["population"][n] + 0.4 * parts["intervention"][n] + 0.3 * parts["outcome"][n], 1)
        shared = {name: sorted(content_words(terms[n][name]) & words)[:6] for name in _PICO}
        matches.append(Match(score, claim, shared))
    return sorted(matches, key=lambda match: -match.score)


_PICO = ("population", "intervention", "outcome")


def _similarities(text: str, choices: list[str]) -> list[float]:
    """`fuzz.token_set_ratio` of each choice against `text`, with the text split and sorted once
    (rapidfuzz's `process.extract`) rather than once a choice: the same scores, 15 times faster
    over a store of 10,000 claims."""
    scores = [0.0] * len(choices)
    for _, score, index in process.extract(text, choices, scorer=fuzz.token_set_ratio, limit=None):
        scores[index] = score
    return scores


def already_a_study(claim: ClaimRecord, document: Document) -> bool:
    """Whether the paper is one of the claim's studies (the same DOI or PDF)."""
    present = {s.reference.study_id for s in claim.studies} | {s.source_sha256 for s in claim.studies}
    return document.study_id in present or document.sha256 in present
