"""The data model: every stage's output and the claim record, in one place.

Two families live here. The *stage outputs* (`ExtractOutput`, `DraftOutput`, `GradeOutput`) are
what the model is asked to return; a strict JSON Schema is derived from each (see
`strict_schema.py`). The *record* (`ClaimRecord`) is what the pipeline assembles from them and
stores; `schemas/claim_record.schema.json` is generated from it and checked in.

A stage's output schema carries every rule the strict JSON Schema subset can say (enums, counts,
bounds), because what the schema does not say a constrained decoder cannot enforce. Those rules sit
under an `x-stage` key (see `stage_rule`): `strict_schema.request_schema` turns them into
keywords for each request, filling in what depends on the request (`$study_ids`: the ids of the
studies given; `$pages`: the paper's page count; `$studies`: how many studies were given). The
record schema leaves them out, so records made before a rule existed still load; the answer is
checked against the exact schema sent (`llm.ask_structured`).

Numbers the model returns are validated in pydantic's lax mode on purpose: a model that writes
`12.0` for a sample size or `"0.05"` for a number should not crash a run (a lesson from peers'
trackers), while a value of the wrong kind still fails validation and triggers one repair.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "1.5"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False)


STAGE_RULES = "x-stage"


def stage_rule(**keywords: Any) -> dict[str, Any]:
    """JSON Schema keywords for the stage output schemas only (see the module docstring)."""
    return {STAGE_RULES: keywords}


StudyId = Annotated[str, Field(json_schema_extra=stage_rule(enum="$study_ids"))]
PositiveInt = Annotated[int, Field(json_schema_extra=stage_rule(minimum=1))]
Percent = Annotated[float, Field(json_schema_extra=stage_rule(exclusiveMinimum=0, maximum=100))]


# --------------------------------------------------------------------------- vocabularies


class ClaimType(str, Enum):
    descriptive = "descriptive"
    causal = "causal"
    mechanistic = "mechanistic"
    quantitative = "quantitative"


class Direction(str, Enum):
    """Direction of the outcome in the intervention group relative to the comparator."""

    increased = "increased"
    decreased = "decreased"
    no_significant_difference = "no_significant_difference"
    mixed = "mixed"
    not_reported = "not_reported"


class StudyDesign(str, Enum):
    """Designs on the evidence hierarchy, strongest first (see `grade.DESIGN_ORDER`)."""

    systematic_review_of_rcts = "systematic_review_of_rcts"
    randomised_controlled_trial = "randomised_controlled_trial"
    systematic_review_of_observational = "systematic_review_of_observational"
    non_randomised_trial = "non_randomised_trial"
    cohort = "cohort"
    case_control = "case_control"
    cross_sectional = "cross_sectional"
    qualitative = "qualitative"
    case_series = "case_series"
    mechanistic_or_animal = "mechanistic_or_animal"
    narrative_review = "narrative_review"
    expert_opinion = "expert_opinion"


class Certainty(str, Enum):
    high = "high"
    moderate = "moderate"
    low = "low"
    very_low = "very_low"


class GradeDomain(str, Enum):
    risk_of_bias = "risk_of_bias"
    inconsistency = "inconsistency"
    indirectness = "indirectness"
    imprecision = "imprecision"
    publication_bias = "publication_bias"


class DomainRating(str, Enum):
    not_serious = "not_serious"
    serious = "serious"
    very_serious = "very_serious"


class UpgradeFactor(str, Enum):
    large_effect = "large_effect"
    dose_response = "dose_response"
    plausible_confounding = "plausible_confounding"


class Stance(str, Enum):
    supporting = "supporting"
    contradicting = "contradicting"
    no_clear_bearing = "no_clear_bearing"


class StepBasis(str, Enum):
    """Whether a causal step is what the study reports, or a link the drafter inferred."""

    reported = "reported"
    inferred = "inferred"


class ReviewStatus(str, Enum):
    draft = "draft"
    approved = "approved"
    rejected = "rejected"


class CheckStatus(str, Enum):
    passed = "passed"
    flagged = "flagged"
    failed = "failed"


# --------------------------------------------------------------------------- shared parts


class Quote(_Model):
    text: str = Field(description="Verbatim text copied from the paper, not paraphrased.")
    page: int = Field(
        description="1-based page number of the PDF where the text appears.",
        json_schema_extra=stage_rule(minimum=1, maximum="$pages"),
    )


class EffectEstimate(_Model):
    measure: str | None = Field(
        description="What the number is, e.g. 'weighted mean difference', 'odds ratio', 'mean change'."
    )
    value: float | None
    unit: str | None
    ci_level: Percent | None = Field(description="Confidence level in percent, e.g. 95.")
    ci_lower: float | None
    ci_upper: float | None
    p_value: str | None = Field(description="As reported, e.g. '<0.001' or '0.48'.")


class Finding(_Model):
    population: str
    intervention: str
    comparator: str | None
    outcome: str
    direction: Direction
    effect: EffectEstimate | None
    sample_size: PositiveInt | None = Field(description="Participants analysed for this finding.")
    design: StudyDesign
    quote: Quote


class CausalStep(_Model):
    text: str
    citations: list[StudyId] = Field(
        description="study_id values of the studies this step rests on, each once.",
        json_schema_extra=stage_rule(minItems=1, maxItems="$studies"),
    )
    basis: StepBasis
    quote: Quote | None = Field(description="For a reported step: the passage that reports it.")


class DomainAssessment(_Model):
    domain: GradeDomain
    rating: DomainRating
    explanation: str


class DomainJudgement(_Model):
    rating: DomainRating
    explanation: str


class GradeDomains(_Model):
    """The five GRADE domains, each rated once: an object with five keys, so a schema can say it."""

    risk_of_bias: DomainJudgement
    inconsistency: DomainJudgement
    indirectness: DomainJudgement
    imprecision: DomainJudgement
    publication_bias: DomainJudgement

    def assessments(self) -> list[DomainAssessment]:
        return [
            DomainAssessment(domain=domain, rating=judgement.rating, explanation=judgement.explanation)
            for domain in GradeDomain
            for judgement in [getattr(self, domain.value)]
        ]


class UpgradeJudgement(_Model):
    levels: int = Field(description="1 or 2 levels up.", json_schema_extra=stage_rule(minimum=1, maximum=2))
    explanation: str


class GradeUpgrades(_Model):
    """Each upgrade factor at most once: null where it does not apply."""

    large_effect: UpgradeJudgement | None
    dose_response: UpgradeJudgement | None
    plausible_confounding: UpgradeJudgement | None

    def assessments(self) -> list[UpgradeAssessment]:
        return [
            # clamped: an out-of-range answer is flagged by the schema check, not a crash here
            UpgradeAssessment(factor=factor, levels=min(judgement.levels, 2), explanation=judgement.explanation)
            for factor in UpgradeFactor
            if (judgement := getattr(self, factor.value)) is not None and judgement.levels > 0
        ]


class UpgradeAssessment(_Model):
    factor: UpgradeFactor
    levels: int = Field(ge=0, le=2, description="0, 1 or 2 levels up.")
    explanation: str


class GoldStandardStudy(_Model):
    design: StudyDesign
    population: str
    intervention: str
    comparator: str
    outcome: str
    outcome_measure: str = Field(description="The reference measure, e.g. MRI muscle cross-sectional area.")
    sample_size: str = Field(description="Target size and how it is justified, e.g. a power calculation.")
    duration: str
    safeguards: list[str] = Field(
        description="Randomisation, allocation concealment, blinding, pre-registration and the like.",
        json_schema_extra=stage_rule(maxItems=8),
    )
    why: str = Field(description="What this study would settle for the claim.")


# --------------------------------------------------------------------------- stage outputs


class Bibliography(_Model):
    title: str
    authors: list[str] = Field(description="The first authors, at most 30.", json_schema_extra=stage_rule(maxItems=30))
    journal: str | None
    year: int | None


class ExtractOutput(_Model):
    """What the extract stage asks the model for."""

    bibliography: Bibliography
    findings: list[Finding] = Field(json_schema_extra=stage_rule(minItems=1, maxItems=20))


class StudyStanceOutput(_Model):
    study_id: StudyId
    stance: Stance
    summary: str = Field(description="One plain-language line on what the study found.")


class DraftOutput(_Model):
    """What the draft stage asks the model for."""

    claim: str = Field(description="One sentence, hedged to the strength of the evidence.")
    claim_type: ClaimType
    original_statement: Quote
    plain_language: str = Field(description="How it works, in plain language (grade 8 or lower).")
    mechanism_summary: str = Field(description="'In simple terms' summary of the most probable mechanism.")
    causal_chain: list[CausalStep] = Field(json_schema_extra=stage_rule(minItems=1, maxItems=8))
    stances: list[StudyStanceOutput] = Field(
        description="One per study given.", json_schema_extra=stage_rule(minItems="$studies", maxItems="$studies")
    )


class PlainLanguageRewrite(_Model):
    """What the plain-language rewrite asks the model for."""

    text: str


GoldStandardList = Annotated[list[GoldStandardStudy], Field(json_schema_extra=stage_rule(minItems=1, maxItems=4))]


class StanceOutput(_Model):
    """What the stance stage asks the model for: one new study's bearing on an existing claim."""

    study_id: StudyId
    stance: Stance
    rationale: str = Field(description="Why, in one or two sentences, citing what the study found.")
    quote: Quote | None = Field(description="The passage of the study the stance rests on (null for no clear bearing).")
    summary: str = Field(description="One plain-language line on what the study found.")


class Verdict(str, Enum):
    """A second opinion on one finding against its own quote."""

    supported = "supported"
    partly = "partly"
    not_supported = "not_supported"


class FindingVerdict(_Model):
    finding: int = Field(
        description="The finding's number as given, from 0.",
        json_schema_extra=stage_rule(minimum=0, maximum="$last_finding"),
    )
    verdict: Verdict
    differs: list[str] = Field(
        description="The finding's words or numbers the quote does not bear out (empty when supported).",
        json_schema_extra=stage_rule(maxItems=8),
    )
    reason: str = Field(description="One sentence: what the quote says.")


class SecondOpinionOutput(_Model):
    """What the second-opinion call asks the model for: a verdict on each finding."""

    verdicts: list[FindingVerdict] = Field(
        description="One verdict for each finding given, in their order.",
        json_schema_extra=stage_rule(minItems="$findings", maxItems="$findings"),
    )


class SynthesisOutput(_Model):
    """What the synthesis stage asks the model for, across all of a claim's studies."""

    plain_language: str
    mechanism_summary: str
    causal_chain: list[CausalStep] = Field(json_schema_extra=stage_rule(minItems=1, maxItems=8))
    domains: GradeDomains
    upgrades: GradeUpgrades
    gold_standard: GoldStandardList


class GradeOutput(_Model):
    """What the grade stage asks the model for. The certainty itself is computed, not asked."""

    design: StudyDesign
    design_rationale: str
    domains: GradeDomains
    upgrades: GradeUpgrades
    gold_standard: GoldStandardList


# --------------------------------------------------------------------------- the record


class StudyMetadata(_Model):
    """Bibliographic facts about a DOI, merged from Crossref, OpenAlex and Unpaywall."""

    doi: str
    title: str | None
    authors: list[str]
    journal: str | None
    year: int | None
    licence: str | None
    publication_type: str | None
    abstract: str | None
    retracted: bool | None = Field(description="True when OpenAlex or Crossref marks the work as retracted.")
    pdf_urls: list[str] = Field(description="Open-access PDF locations, best first.")
    sources: list[str] = Field(description="The services that answered, e.g. ['crossref', 'openalex'].")


class StudyReference(_Model):
    study_id: str = Field(description="The DOI when known, else 'sha256:' and the PDF's hash prefix.")
    doi: str | None
    title: str
    authors: list[str]
    journal: str | None
    year: int | None
    licence: str | None = None
    publication_type: str | None = None
    retracted: bool | None = None
    pdf_url: str | None = Field(default=None, description="Where the PDF was downloaded from, for a DOI run.")
    metadata_sources: list[str] = Field(default_factory=list)
    source_file: str | None


class Study(_Model):
    reference: StudyReference
    design: StudyDesign
    findings: list[Finding]
    stance: Stance
    summary: str
    stance_rationale: str | None = Field(default=None, description="Why the study supports or contradicts the claim.")
    stance_quote: Quote | None = Field(default=None, description="The passage of the study the stance rests on.")
    source_sha256: str | None = Field(default=None, description="sha256 of the study's PDF, to re-check against it.")


class Claim(_Model):
    text: str
    type: ClaimType
    original_statement: Quote


class Mechanism(_Model):
    plain_language: str
    summary: str
    steps: list[CausalStep]


class CertaintyAssessment(_Model):
    design: StudyDesign
    design_rationale: str
    starting_certainty: Certainty
    certainty: Certainty
    domains: list[DomainAssessment]
    upgrades: list[UpgradeAssessment]


class Flag(_Model):
    where: str = Field(description="Path of the item in the record, e.g. 'studies[0].findings[2].quote'.")
    code: str = Field(description="What kind of problem, e.g. 'ungrounded_quote', 'overstated'.")
    message: str


class GroundingStatus(str, Enum):
    grounded = "grounded"
    page_corrected = "page_corrected"
    ungrounded = "ungrounded"


class QuoteLocation(_Model):
    """Where a quote was found in the source's extracted text, or how near it came."""

    where: str
    status: GroundingStatus
    study_id: str | None = Field(default=None, description="The study whose text holds it (or its nearest match).")
    claimed_page: int
    page: int | None = Field(description="The page it was found on (for an ungrounded quote: its nearest match's).")
    start: int | None = Field(description="Character offset in that page's extracted text.")
    end: int | None
    similarity: float = Field(description="0-100: 100 is an exact match after normalisation.")
    near_match: str | None = Field(description="For an ungrounded quote: the nearest passage in the paper.")


class ReadabilityScore(_Model):
    where: str
    grade: float = Field(description="Flesch-Kincaid grade, DOIs and parentheses stripped.")
    words_per_sentence: float
    meets_target: bool
    rewritten: bool


class CheckResult(_Model):
    name: str
    status: CheckStatus
    summary: str
    flags: list[Flag] = Field(description="Problems a reviewer must resolve; a flagged record stays a draft.")
    notes: list[Flag] = Field(
        default_factory=list, description="Corrections the check made itself (a page number, a step re-tagged)."
    )
    quotes: list[QuoteLocation] = Field(default_factory=list)
    readability: list[ReadabilityScore] = Field(default_factory=list)


class PageProblem(_Model):
    page: int
    problem: str


class SourceDocument(_Model):
    file_name: str
    sha256: str
    pages: int
    pages_skipped: list[PageProblem]


class StageUsage(_Model):
    stage: str
    calls: int = Field(description="Requests sent to the model, repairs included.")
    cached_calls: int = Field(default=0, description="Answers taken from the response cache instead.")
    prompt_tokens: int
    completion_tokens: int


class Provenance(_Model):
    pipeline_version: str
    model: str = Field(description="The model name the run asked for.")
    answered_by: list[str] = Field(
        default_factory=list,
        description="What the server said answered: each distinct response model, with its system_fingerprint.",
    )
    prompts: dict[str, str] = Field(description="Prompt file name -> sha256 of its bytes.")
    source: SourceDocument
    generated_at: str = Field(description="UTC time, ISO 8601.")
    usage: list[StageUsage]
    notes: list[str] = Field(
        default_factory=list, description="What a reviewer should know about how the record was made."
    )


class EvidenceScores(_Model):
    """Each side's strength, from its studies' designs and sizes (formula in `evidence.py`)."""

    pro: float
    against: float
    formula: str


class ClaimRecord(_Model):
    schema_version: str = SCHEMA_VERSION
    record_id: str = Field(pattern=r"^[0-9a-f]{12}$", description="12 hexadecimal digits; also the record's file name.")
    status: ReviewStatus = ReviewStatus.draft
    claim: Claim
    studies: list[Study]
    mechanism: Mechanism
    certainty: CertaintyAssessment
    gold_standard: list[GoldStandardStudy]
    scores: EvidenceScores | None = None
    checks: list[CheckResult]
    provenance: Provenance

    def pdf_sha256(self, study_id: str | None) -> str | None:
        """The sha256 of the PDF a study was read from: its own, or for the record's first study
        the record's source; None for a study whose PDF is not known."""
        for index, study in enumerate(self.studies):
            if study.reference.study_id == study_id:
                return study.source_sha256 or (self.provenance.source.sha256 if index == 0 else None)
        return None
