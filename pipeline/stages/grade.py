"""Stage 4, grade: the design, GRADE certainty and the gold-standard evidence still needed.

The model rates the five downgrade domains (an object with one key each, so the schema makes
every domain rated exactly once) and any upgrades (one key per factor, null where none applies);
the certainty itself is computed here from the design's starting level, as GRADE prescribes, so
it cannot drift from the ratings. The gold-standard list is re-ordered strongest design first
whatever order the model used.
"""

from __future__ import annotations

from pipeline.core.models import (
    Certainty,
    CertaintyAssessment,
    DomainAssessment,
    DomainRating,
    Finding,
    GoldStandardStudy,
    GradeOutput,
    StudyDesign,
    UpgradeAssessment,
)
from pipeline.llm.base import LLMContext, StageCall, ask_structured
from pipeline.llm.strict_schema import RequestFacts
from pipeline.sources.pdf import Document
from pipeline.stages.draft import findings_json
from pipeline.stages.paper_text import messages_with_paper

SECTIONS = ("abstract", "methods")  # the results reach it as the extracted findings

DESIGN_ORDER = list(StudyDesign)  # the enum is declared strongest first
_RANDOMISED = {StudyDesign.systematic_review_of_rcts, StudyDesign.randomised_controlled_trial}
_LOWEST_START = {
    StudyDesign.case_series,
    StudyDesign.mechanistic_or_animal,
    StudyDesign.narrative_review,
    StudyDesign.expert_opinion,
}
_LEVELS = [Certainty.very_low, Certainty.low, Certainty.moderate, Certainty.high]
_DOWNGRADE = {DomainRating.not_serious: 0, DomainRating.serious: 1, DomainRating.very_serious: 2}


def design_rank(design: StudyDesign) -> int:
    """0 is the strongest design on the evidence hierarchy."""
    return DESIGN_ORDER.index(design)


def starting_certainty(design: StudyDesign) -> Certainty:
    if design in _RANDOMISED:
        return Certainty.high
    if design in _LOWEST_START:
        return Certainty.very_low
    return Certainty.low


def rate_certainty(
    design: StudyDesign, domains: list[DomainAssessment], upgrades: list[UpgradeAssessment]
) -> Certainty:
    """GRADE: start by design, rate down per serious domain, rate up (non-randomised only)."""
    level = _LEVELS.index(starting_certainty(design))
    level -= sum(_DOWNGRADE[domain.rating] for domain in domains)
    if design not in _RANDOMISED:
        level += sum(upgrade.levels for upgrade in upgrades)
    return _LEVELS[max(0, min(level, len(_LEVELS) - 1))]


def strongest_first(studies: list[GoldStandardStudy]) -> list[GoldStandardStudy]:
    return sorted(studies, key=lambda study: design_rank(study.design))


def grade(
    document: Document,
    claim: str,
    findings: list[Finding],
    llm: LLMContext,
) -> tuple[CertaintyAssessment, list[GoldStandardStudy]]:
    messages = messages_with_paper(
        llm, "grade", "grade", document, SECTIONS, claim=claim, findings=findings_json(findings)
    )
    # Every rule of the grade stage is in its schema: there is nothing left to check or salvage.
    call = StageCall("grade", GradeOutput, messages, facts=RequestFacts(pages=len(document.pages)))
    output: GradeOutput = ask_structured(llm, call)
    domains, upgrades = output.domains.assessments(), output.upgrades.assessments()
    assessment = CertaintyAssessment(
        design=output.design,
        design_rationale=output.design_rationale,
        starting_certainty=starting_certainty(output.design),
        certainty=rate_certainty(output.design, domains, upgrades),
        domains=domains,
        upgrades=upgrades,
    )
    return assessment, strongest_first(output.gold_standard)
