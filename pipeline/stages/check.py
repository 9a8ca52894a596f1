"""Stage 5, check: every quote, number and citation of the record verified against the source.

The checks, in the order they run (`run_checks`):
- quotes: each verbatim quote is located in the page text after normalisation (`textmatch`);
  found on another page than claimed, its page is corrected and noted; not found, it is flagged
  `ungrounded_quote` with its nearest passage and how near it is;
- citations: every study id or DOI cited anywhere must be a study of the record, else
  `foreign_citation` (the rendered page drops it);
- numbers: sample sizes, effect sizes, interval bounds and p-values of the findings must appear
  in the paper's text (outside the references), else `number_not_found`;
- causal chain: a step tagged "reported" needs a grounded quote that shares its substance;
  otherwise it is re-tagged "inferred" and noted;
- strength: each clause's strength (`claim_strength`: not a claim, correlational, conditional or
  direct causal) above what the evidence allows (the design, the certainty, the primary finding),
  or an effect claimed where the primary finding (extract lists it first) shows none, is flagged
  `overstated` with the rule and a rewording;
- directions: each finding's direction against what its own quote reports (p-values and
  intervals, then `effect_direction`), `direction_contradicts_quote`;
- free text: every free-text field is real text about the paper and the bibliography the
  paper's (`free_text`), `degenerate_text` and `bibliography_mismatch`;
- topic: the claim's words occur in its studies, else `claim_off_topic`;
- grade: the certainty must follow from the design and the domain ratings;
- plain language: Flesch-Kincaid grade <= 8 and <= 20 words a sentence; a text that misses is
  rewritten once by the model (when one is given) and flagged if it still misses;
- schema: last, the whole record against schemas/claim_record.schema.json.

Checks report and make only the small corrections named above; everything else is left for
the reviewer, and a record with flags stays a draft.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.core.errors import StageOutputError
from pipeline.core.identifiers import foreign_citations
from pipeline.core.models import (
    Certainty,
    CheckResult,
    CheckStatus,
    ClaimRecord,
    Direction,
    Finding,
    Flag,
    GroundingStatus,
    PlainLanguageRewrite,
    Quote,
    QuoteLocation,
    ReadabilityScore,
    StepBasis,
    StudyDesign,
)
from pipeline.core.schema import schema_errors
from pipeline.core.terms import stems
from pipeline.llm.base import LLMContext, StageCall, ask_structured
from pipeline.sources.pdf import Document
from pipeline.stages.claim_strength import Strength, StrengthReading, clauses, read_strength, sentences
from pipeline.stages.effect_direction import Reported, read_direction, significance_cue
from pipeline.stages.free_text import check_free_text
from pipeline.stages.grade import rate_certainty, starting_certainty
from pipeline.stages.readability import MAX_GRADE, MAX_WORDS_PER_SENTENCE, Readability, score
from pipeline.stages.textmatch import locate, numbers_in, numbers_of

Rewriter = Callable[[str, Readability], str]


# --------------------------------------------------------------------------- schema


def _result(name: str, flags: list[Flag], passed: str, flagged: str, **details: Any) -> CheckResult:
    flags = one_per_place(flags)
    return CheckResult(
        name=name,
        status=CheckStatus.flagged if flags else CheckStatus.passed,
        summary=flagged.format(n=len(flags)) if flags else passed,
        flags=flags,
        **details,
    )


def one_per_place(flags: list[Flag]) -> list[Flag]:
    """One flag per field and code: the same problem found again at the same place is counted
    ('(found 3 times)'), not listed again; different messages there are joined."""
    merged: dict[tuple[str, str], list[str]] = {}
    for flag in flags:
        merged.setdefault((flag.where, flag.code), []).append(flag.message)
    result = []
    for (where, code), messages in merged.items():
        distinct = list(dict.fromkeys(messages))
        repeats = len(messages) - len(distinct)
        message = "; ".join(distinct) + (f" (found {len(messages)} times)" if repeats else "")
        result.append(Flag(where=where, code=code, message=message))
    return result


def schema_check(record: ClaimRecord) -> CheckResult:
    problems = schema_errors(record.model_dump(mode="json"))
    return CheckResult(
        name="schema",
        status=CheckStatus.failed if problems else CheckStatus.passed,
        summary=f"{len(problems)} schema error(s)" if problems else "valid against claim_record.schema.json",
        flags=[Flag(where=p.split(":", 1)[0], code="schema", message=p) for p in problems],
    )


# --------------------------------------------------------------------------- quotes


Sources = dict[str, Document]  # the record's studies' texts, by study id


def quotes_of(record: ClaimRecord) -> list[tuple[str, Quote, list[str]]]:
    """Every verbatim quote in the record, with its path and the studies it may come from."""
    every = [study.reference.study_id for study in record.studies]
    found = [("claim.original_statement", record.claim.original_statement, every)]
    for i, study in enumerate(record.studies):
        found += [
            (f"studies[{i}].findings[{j}].quote", f.quote, [study.reference.study_id])
            for j, f in enumerate(study.findings)
        ]
        if study.stance_quote is not None:
            found.append((f"studies[{i}].stance_quote", study.stance_quote, [study.reference.study_id]))
    for k, step in enumerate(record.mechanism.steps):
        if step.quote:
            cited = [c for c in step.citations if c in every]
            found.append((f"mechanism.steps[{k}].quote", step.quote, cited + [s for s in every if s not in cited]))
    return found


def check_quotes(record: ClaimRecord, sources: Sources) -> CheckResult:
    flags, notes, locations = [], [], []
    for where, quote, candidates in quotes_of(record):
        found, study_id = _locate_in(quote, sources, candidates)
        exact = found.similarity == 100.0
        status = (
            GroundingStatus.ungrounded
            if not exact
            else GroundingStatus.grounded
            if found.page == quote.page
            else GroundingStatus.page_corrected
        )
        locations.append(
            QuoteLocation(
                where=where,
                status=status,
                study_id=study_id,
                claimed_page=quote.page,
                page=found.page,
                start=found.start,
                end=found.end,
                similarity=found.similarity,
                near_match=found.near_match,
            )
        )
        if status is GroundingStatus.page_corrected:
            notes.append(
                Flag(
                    where=where,
                    code="page_corrected",
                    message=f"quote is on page {found.page}, not {quote.page}; corrected",
                )
            )
            quote.page = found.page
        elif status is GroundingStatus.ungrounded:
            near = (
                f"; nearest passage ({found.similarity:.0f}% similar, page {found.page}): \u201c{found.near_match[:160]}\u201d"
                if found.near_match
                else "; nothing near it"
            )
            flags.append(Flag(where=where, code="ungrounded_quote", message=f"not found in the paper{near}"))
    grounded = sum(1 for location in locations if location.status is not GroundingStatus.ungrounded)
    return CheckResult(
        name="quotes",
        status=CheckStatus.flagged if flags else CheckStatus.passed,
        summary=f"{len(locations)} quotes: {grounded} grounded, {len(flags)} ungrounded"
        + (f" ({len(notes)} page(s) corrected)" if notes else ""),
        flags=flags,
        notes=notes,
        quotes=locations,
    )


def _locate_in(quote: Quote, sources: Sources, candidates: list[str]) -> tuple[Any, str | None]:
    """The quote in the first candidate study whose text holds it; else the nearest miss of all."""
    best, best_study = None, None
    for study_id in candidates:
        document = sources.get(study_id)
        if document is None:
            continue
        found = locate(quote.text, document.pages, quote.page)
        if found.similarity == 100.0:
            return found, study_id
        if best is None or found.similarity > best.similarity:
            best, best_study = found, study_id
    return (best if best is not None else locate("", [], quote.page)), best_study


# --------------------------------------------------------------------------- citations


def check_citations(record: ClaimRecord) -> CheckResult:
    flags = [
        Flag(
            where=where,
            code="foreign_citation",
            message=f"cites {cited}, which is not among the studies this record was built from",
        )
        for where, cited in foreign_citations(record)
    ]
    return _result(
        "citations", flags, "every citation is a study of this record", "{n} citation(s) to studies not given"
    )


# --------------------------------------------------------------------------- numbers


def check_numbers(record: ClaimRecord, sources: Sources) -> CheckResult:
    flags = []
    checked = 0
    for i, study in enumerate(record.studies):
        document = sources.get(study.reference.study_id)
        source: set[str] = set()
        for span in document.spans if document else []:
            if span.section != "references":
                source |= numbers_in(span.text)
        for j, finding in enumerate(study.findings):
            base = f"studies[{i}].findings[{j}]"
            stated: list[tuple[str, str]] = []
            if finding.sample_size is not None:
                stated.append((f"{base}.sample_size", str(finding.sample_size)))
            if finding.effect is not None:
                effect = finding.effect
                stated += [
                    (f"{base}.effect.{name}", str(value))
                    for name in ("value", "ci_lower", "ci_upper")
                    if (value := getattr(effect, name)) is not None
                ]
                if effect.p_value:
                    stated += [(f"{base}.effect.p_value", number) for number in numbers_of(effect.p_value)]
            for where, text in stated:
                checked += 1
                wanted = numbers_of(text)
                if wanted and wanted[0] not in source:
                    flags.append(
                        Flag(
                            where=where, code="number_not_found", message=f"{text} does not appear in the paper's text"
                        )
                    )
            flags += number_sanity(finding, base)
    return _result(
        "numbers",
        flags,
        f"all {checked} numbers appear in the paper and agree with each other",
        f"{{n}} number problem(s) in {checked} numbers",
    )


def number_sanity(finding: Finding, base: str) -> list[Flag]:
    """Numbers that cannot all be right together, whatever the paper says: an estimate outside
    its interval, an interval upside down, a p-value outside 0-1, a percentage above 100, a
    sample size that is no count, and a direction that contradicts the interval."""
    problems = []
    effect = finding.effect
    if finding.sample_size is not None and finding.sample_size < 1:
        problems.append(f"sample size {finding.sample_size} is not a number of people")
    if effect is not None:
        low, value, high = effect.ci_lower, effect.value, effect.ci_upper
        if low is not None and high is not None and low > high:
            problems.append(f"the interval's lower bound {low:g} is above its upper bound {high:g}")
        elif value is not None and low is not None and high is not None and not low <= value <= high:
            problems.append(f"the estimate {value:g} lies outside its interval {low:g} to {high:g}")
        for number in numbers_of(effect.p_value or ""):
            if not 0 <= float(number) <= 1:
                problems.append(f"p = {number} is not a probability")
        if (
            effect.unit
            and "%" in effect.unit
            and value is not None
            and abs(value) > 100
            and "change" not in (effect.measure or "")
        ):
            problems.append(f"{value:g}% is more than the whole")
        if low is not None and high is not None and low <= high:
            excludes_null = not crosses_no_effect(effect.measure, low, high)
            null_result = finding.direction is Direction.no_significant_difference
            if excludes_null and null_result:
                problems.append("the interval excludes no effect, yet the finding says no significant difference")
            if not excludes_null and finding.direction in (Direction.increased, Direction.decreased):
                problems.append(
                    f"the interval includes no effect, yet the finding says {finding.direction.value} "
                    "(report it as no significant difference, or check the interval)"
                )
    return [Flag(where=f"{base}.effect", code="number_inconsistent", message=p) for p in problems]


# --------------------------------------------------------------------------- causal chain

_STOP = set(
    [
        "that",
        "this",
        "with",
        "from",
        "were",
        "was",
        "have",
        "been",
        "their",
        "they",
        "which",
        "these",
        "those",
        "than",
        "into",
        "also",
        "after",
        "before",
        "between",
        "there",
        "would",
        "could",
        "should",
        "about",
        "more",
        "less",
        "study",
        "trial",
        "paper",
        "authors",
        "reported",
        "found",
    ]
)


def supports(step: str, quote: str) -> bool:
    """Does the quote state what the step says? A shared specific number (12.88, 450), or two shared
    content words, matched on their first five letters ('eradicating' ~ 'eradication') or as part
    of a longer word ('prophylaxis' in 'thromboprophylaxis')."""
    specific = {n for n in numbers_of(step) if "." in n or len(n.lstrip("-")) >= 3}
    if specific & set(numbers_of(quote)):
        return True
    step_words = {w for w in re.findall(r"[a-z]{4,}", step.lower()) if w not in _STOP}
    quote_words = {w for w in re.findall(r"[a-z]{4,}", quote.lower()) if w not in _STOP}

    def matches(word: str) -> bool:
        return any(
            word[:5] == other[:5] or (len(word) >= 5 and word in other) or (len(other) >= 5 and other in word)
            for other in quote_words
        )

    return sum(1 for word in step_words if matches(word)) >= 2


def check_causal_chain(record: ClaimRecord, quotes: CheckResult) -> CheckResult:
    grounded = {q.where for q in quotes.quotes if q.status is not GroundingStatus.ungrounded}
    notes = []
    for k, step in enumerate(record.mechanism.steps):
        if step.basis is not StepBasis.reported:
            continue
        where = f"mechanism.steps[{k}]"
        if step.quote is None or f"{where}.quote" not in grounded:
            reason = "has no quote" if step.quote is None else "its quote is not in the paper"
        elif not supports(step.text, step.quote.text):
            reason = "its quote does not state what the step says"
        else:
            continue
        step.basis = StepBasis.inferred
        notes.append(
            Flag(where=where, code="retagged_inferred", message=f"tagged 'reported' but {reason}; shown as inferred")
        )
    reported = sum(1 for step in record.mechanism.steps if step.basis is StepBasis.reported)
    return CheckResult(
        name="causal_chain",
        status=CheckStatus.passed,
        summary=f"{reported} step(s) reported with a grounded quote, {len(record.mechanism.steps) - reported} inferred"
        + (f" ({len(notes)} re-tagged)" if notes else ""),
        flags=[],
        notes=notes,
    )


# --------------------------------------------------------------------------- strength

_RANDOMISED = {StudyDesign.randomised_controlled_trial, StudyDesign.systematic_review_of_rcts}
_LOW = {Certainty.low, Certainty.very_low}
_SHOWS_AN_EFFECT = {Direction.increased, Direction.decreased}
# A past-tense verb reports what a trial measured ("raised haemoglobin by 12.88 g/l"), which a
# randomised design shows as its effect; it is held to the certainty of no general claim.
_PAST = re.compile(r"(?:ed|rose|fell|led to|gave|drove|grew)$", re.I)


def crosses_no_effect(measure: str | None, lower: float | None, upper: float | None) -> bool:
    if lower is None or upper is None:
        return False
    null = 1.0 if measure and "ratio" in measure.lower() else 0.0
    return min(lower, upper) <= null <= max(lower, upper)


def strongest_allowed(record: ClaimRecord) -> tuple[Strength, str]:
    """The strongest wording the record's evidence allows, and why no stronger."""
    design, certainty = record.certainty.design, record.certainty.certainty
    findings = [finding for study in record.studies for finding in study.findings]
    primary = findings[0] if findings else None
    if design not in _RANDOMISED:
        return Strength.correlational, f"the evidence is from {_DESIGN_NAMES[design]}, not randomised"
    if certainty in _LOW:
        return Strength.conditional_causal, f"the certainty of the evidence is {certainty.value.replace('_', ' ')}"
    if design is StudyDesign.randomised_controlled_trial and len(record.studies) == 1:
        return Strength.conditional_causal, "the evidence is a single randomised trial"
    effect = primary.effect if primary else None
    if (
        primary is None
        or primary.direction not in _SHOWS_AN_EFFECT
        or (effect and crosses_no_effect(effect.measure, effect.ci_lower, effect.ci_upper))
    ):
        return Strength.conditional_causal, "the primary finding shows no significant effect"
    return (
        Strength.direct_causal,
        f"randomised evidence at {certainty.value} certainty with a significant primary finding",
    )


_AS_ASSOCIATION = [
    (
        re.compile(r"^(?:reduc|lower|decreas|diminish|shorten|slow|prevent|inhibit|suppress|attenuat|alleviat)", re.I),
        "lower",
    ),
    (re.compile(r"^(?:increas|rais|boost|enhanc|elevat|prolong|promot|stimulat)", re.I), "higher"),
    (re.compile(r"^(?:improv|benefit|help|restor|protect|relie)", re.I), "better"),
    (re.compile(r"^(?:worsen|impair|damag|aggravat|exacerbat)", re.I), "worse"),
]
_IRREGULAR = {"led to": "lead to", "rose": "rise", "fell": "fall", "gave": "give", "drove": "drive", "grew": "grow"}


def _base_form(verb: str) -> str:
    """'raises' -> 'raise', 'reduced' -> 'reduce', 'led to' -> 'lead to': good enough for a hint."""
    word = verb.lower()
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    head, _, rest = word.partition(" ")
    tail = f" {rest}" if rest else ""
    for ending, replacement in (("ies", "y"), ("sses", "ss"), ("es", "e"), ("s", ""), ("ied", "y"), ("ed", "e")):
        if head.endswith(ending) and len(head) > len(ending) + 2:
            stem = head[: -len(ending)] + replacement
            if ending == "es" and re.search(r"(?:ss|sh|ch|x)e$", stem):
                stem = stem[:-1]
            if ending == "ed" and re.search(r"(?:er|ow|ain|ect|ist|ent|ort|uct|ing|ay)e$", stem):
                stem = stem[:-1]
            return stem + tail
    return head + tail


def rewording(reading: StrengthReading, allowed: Strength) -> str:
    """A wording within what the evidence allows, for the flag's hint."""
    verb = (reading.cue or "").split(" … ")[-1]
    if allowed is Strength.correlational:
        for pattern, comparative in _AS_ASSOCIATION:
            if pattern.match(verb):
                return f"'is associated with {comparative} …' instead of '{verb}'"
        return f"'is associated with …' or 'is linked to …' instead of '{verb}'"
    return f"'may {_base_form(verb)}' instead of '{verb}'"


def _reports_a_trial(record: ClaimRecord, reading: StrengthReading) -> bool:
    return record.certainty.design in _RANDOMISED and bool(_PAST.search((reading.cue or "").split(" … ")[-1]))


def _names(text: str, words: set[str]) -> bool:
    return bool(stems(text) & words)


# Words an intervention's description shares with any other ("prophylaxis", "a week", a dose unit).
_GENERIC = stems("prophylaxis therapy treatment weight about week weeks daily dose doses mmol group plus alone added")


def studied_words(finding: Finding) -> set[str]:
    """The words that name a finding's intervention: those its comparator lacks, or all of its own
    when the two differ only in amount ("nitrate-rich" against "nitrate-depleted" beetroot juice)."""
    own = stems(finding.intervention) - _GENERIC
    return (own - stems(finding.comparator or "")) or own


_DESIGN_NAMES = {
    StudyDesign.systematic_review_of_observational: "a systematic review of observational studies",
    StudyDesign.non_randomised_trial: "a non-randomised trial",
    StudyDesign.cohort: "a cohort study",
    StudyDesign.case_control: "a case-control study",
    StudyDesign.cross_sectional: "a cross-sectional study",
    StudyDesign.qualitative: "a qualitative study",
    StudyDesign.case_series: "a case series",
    StudyDesign.mechanistic_or_animal: "mechanistic or animal studies",
    StudyDesign.narrative_review: "a narrative review",
    StudyDesign.expert_opinion: "expert opinion",
}


def strength_rules(record: ClaimRecord, text: str, where: str) -> list[str]:
    """The strength rules a text breaks, each naming the clause's strength, the strongest its
    evidence allows and why, and a rewording.

    Every clause of the claim, a study's summary or a stance rationale is held to what the
    evidence allows. The mechanism's texts (plain language, summary, causal steps) describe how
    an effect would come about, so causal wording is their form ("blood thinners slow clotting"):
    they are held to the evidence where they state the studied intervention's effect on the
    primary outcome."""
    findings = [finding for study in record.studies for finding in study.findings]
    primary = findings[0] if findings else None
    intervention = studied_words(primary) if primary else set()
    outcome = stems(primary.outcome) if primary else set()
    allowed, why = strongest_allowed(record)
    mechanism = where.startswith("mechanism.")
    no_effect = (
        primary is not None
        and primary.direction is Direction.no_significant_difference
        and not where.startswith("mechanism.steps")
    )
    rules = []
    for clause in (c for sentence in sentences(text) for c in clauses(sentence)):
        reading = read_strength(clause)
        if reading.strength is Strength.not_a_claim or reading.negated:
            continue
        about_the_finding = _names(clause, intervention) and _names(clause, outcome)
        if (
            reading.strength > allowed
            and not _reports_a_trial(record, reading)
            and (not mechanism or about_the_finding)
        ):
            rules.append(
                f"'{_short(clause)}' is {reading.strength.label} ('{reading.cue}'), but the evidence allows at most "
                f"{allowed.label}: {why}; say {rewording(reading, allowed)}"
            )
        elif no_effect and about_the_finding:
            rules.append(
                f"effect_without_support: '{_short(clause)}' claims an effect ('{reading.cue}') where the primary "
                "finding shows no significant difference; say what the study found (no significant difference)"
            )
    return rules


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def reader_sentences(record: ClaimRecord) -> list[tuple[str, str]]:
    """(where, text) for every text a reader sees."""
    texts = [
        ("claim.text", record.claim.text),
        ("mechanism.plain_language", record.mechanism.plain_language),
        ("mechanism.summary", record.mechanism.summary),
    ]
    texts += [(f"mechanism.steps[{k}].text", step.text) for k, step in enumerate(record.mechanism.steps)]
    for i, study in enumerate(record.studies):
        texts.append((f"studies[{i}].summary", study.summary))
        if study.stance_rationale:
            texts.append((f"studies[{i}].stance_rationale", study.stance_rationale))
    return texts


def check_strength(record: ClaimRecord) -> CheckResult:
    """The strength rules over every sentence a reader sees, one flag a field naming every rule."""
    flags = []
    for where, text in reader_sentences(record):
        rules = strength_rules(record, text, where)
        if rules:
            flags.append(Flag(where=where, code="overstated", message=f"overstated: {'; '.join(rules)}"))
    allowed, why = strongest_allowed(record)
    return _result(
        "strength",
        flags,
        f"the wording fits its evidence (at most {allowed.label}: {why})",
        "overstated in {n} place(s)",
    )


# --------------------------------------------------------------------------- findings against their quotes

# How sure the direction reader must be before its reading stands against the finding's own.
# Out of fold on Evidence Inference's train and validation splits, readings this sure were right
# 92 % (decreased), 93 % (increased) and 98 % (no difference) of the time; at 0.8, 88-97 %.
SURE = 0.9


def _said(direction: Direction) -> str:
    return direction.value.replace("_", " ")


def quote_disagreement(finding: Finding) -> str | None:
    """Why the finding's direction is not what its own quote reports, or None."""
    said = finding.direction
    if said not in _SHOWS_AN_EFFECT and said is not Direction.no_significant_difference:
        return None
    reading = read_direction(finding.intervention, finding.comparator, finding.outcome, finding.quote.text)
    significant, evidence = significance_cue(finding.quote.text)
    sure = reading.probability >= SURE
    if said is Direction.no_significant_difference:
        if significant:
            return (
                f"the finding says no significant difference, but its quote reports a significant result ({evidence})"
            )
        if sure and reading.reported is not Reported.no_difference and significant is None:
            return f"the finding says no significant difference, but its quote reads as a significant {reading.reported.value[:-1]}e ('{reading.cue}')"
        return None
    if significant is False:
        return f"the finding says {_said(said)}, but its quote reports no significant difference ({evidence})"
    if sure and reading.reported is Reported.no_difference and significant is None:
        return f"the finding says {_said(said)}, but its quote reads as no significant difference ('{reading.cue}')"
    opposite = Reported.decreased if said is Direction.increased else Reported.increased
    if sure and reading.reported is opposite:
        return f"the finding says {_said(said)}, but its quote reads as {opposite.value} for {_short(finding.intervention, 40)} ('{reading.cue}')"
    return None


def check_directions(record: ClaimRecord) -> CheckResult:
    """Each finding's direction against what its own quote reports, read with the finding's
    intervention and comparator to tell which arm a sentence speaks of."""
    flags = []
    for i, study in enumerate(record.studies):
        for j, finding in enumerate(study.findings):
            problem = quote_disagreement(finding)
            if problem:
                flags.append(
                    Flag(
                        where=f"studies[{i}].findings[{j}].direction",
                        code="direction_contradicts_quote",
                        message=problem,
                    )
                )
    return _result(
        "directions",
        flags,
        "every finding's direction agrees with its quote",
        "{n} finding(s) whose direction its quote contradicts",
    )


# The share of the claim's content words its studies use (titles, findings' population,
# intervention, comparator, outcome and quotes). Calibrated on the bundled runs: every faithful
# claim scores 0.42 or more, claims about another topic 0 (a training claim on the DVT review, a
# nitrate claim on it); a threshold of 0.25 sits between.
MIN_TOPIC_SHARE = 0.25


def topic_share(record: ClaimRecord) -> tuple[float, list[str]]:
    """How much of the claim its studies are about, and the claim's words they never use."""
    studied = " ".join(
        [s.reference.title for s in record.studies]
        + [
            f"{f.population} {f.intervention} {f.comparator or ''} {f.outcome} {f.quote.text}"
            for s in record.studies
            for f in s.findings
        ]
    )
    claim, known = stems(record.claim.text), stems(studied)
    if not claim:
        return 0.0, []
    return len(claim & known) / len(claim), sorted(claim - known)


def check_text(record: ClaimRecord, sources: Sources) -> CheckResult:
    """Every free-text field is real text about the paper, and the bibliography is the paper's."""
    flags = check_free_text(record, sources)
    return _result(
        "free_text",
        flags,
        "every free-text field is real text about the paper",
        "{n} field(s) that are not real text about the paper",
    )


def check_topic(record: ClaimRecord) -> CheckResult:
    share, missing = topic_share(record)
    flags = []
    if share < MIN_TOPIC_SHARE:
        flags.append(
            Flag(
                where="claim.text",
                code="claim_off_topic",
                message=f"only {share:.0%} of the claim's words occur in its studies' titles and findings "
                f"(unknown to them: {', '.join(missing[:8]) or 'every word'}); is the claim about these studies?",
            )
        )
    return _result(
        "topic",
        flags,
        f"the claim is about its studies ({share:.0%} of its words occur in them)",
        "the claim may be off topic",
    )


def check_grade(record: ClaimRecord) -> CheckResult:
    assessment = record.certainty
    flags = []
    expected_start = starting_certainty(assessment.design)
    if assessment.starting_certainty is not expected_start:
        flags.append(
            Flag(
                where="certainty.starting_certainty",
                code="grade_inconsistent",
                message=f"a {assessment.design.value.replace('_', ' ')} starts at {expected_start.value}, not {assessment.starting_certainty.value}",
            )
        )
    expected = rate_certainty(assessment.design, assessment.domains, assessment.upgrades)
    if assessment.certainty is not expected:
        flags.append(
            Flag(
                where="certainty.certainty",
                code="grade_inconsistent",
                message=f"the design and domain ratings give {expected.value}, not {assessment.certainty.value}",
            )
        )
    for i, study in enumerate(record.studies):
        if len(record.studies) == 1 and study.design is not assessment.design:
            flags.append(
                Flag(
                    where=f"studies[{i}].design",
                    code="grade_inconsistent",
                    message=f"the study is a {study.design.value}, the assessment a {assessment.design.value}",
                )
            )
    return _result(
        "grade",
        flags,
        f"certainty {assessment.certainty.value} follows from the design and ratings",
        "{n} inconsistency(ies)",
    )


# --------------------------------------------------------------------------- plain language


def model_rewriter(llm: LLMContext) -> Rewriter:
    def rewrite(text: str, readability: Readability) -> str:
        messages = llm.prompts.render(
            "rewrite",
            text=text,
            grade=f"{readability.grade:g}",
            words_per_sentence=f"{readability.words_per_sentence:g}",
        )
        try:
            return ask_structured(llm, StageCall("rewrite", PlainLanguageRewrite, messages)).text
        except StageOutputError:
            return text  # no usable rewrite: the text stays as it was, and flagged if above target

    return rewrite


def check_plain_language(record: ClaimRecord, rewrite: Rewriter | None) -> CheckResult:
    flags, notes, scores = [], [], []
    mechanism = record.mechanism
    for field in ("plain_language", "summary"):
        where = f"mechanism.{field}"
        text = getattr(mechanism, field)
        before = after = score(text)
        rewritten = False
        if not before.meets_target and rewrite is not None:
            candidate = rewrite(text, before)
            after = score(candidate)
            if after.grade < before.grade or after.meets_target:
                setattr(mechanism, field, candidate)
                rewritten = True
                notes.append(
                    Flag(
                        where=where,
                        code="rewritten",
                        message=(
                            f"rewritten by the model: grade {before.grade:g} -> {after.grade:g}, "
                            f"{before.words_per_sentence:g} -> {after.words_per_sentence:g} words a sentence"
                        ),
                    )
                )
            else:
                after = before
        scores.append(
            ReadabilityScore(
                where=where,
                grade=after.grade,
                words_per_sentence=after.words_per_sentence,
                meets_target=after.meets_target,
                rewritten=rewritten,
            )
        )
        if not after.meets_target:
            flags.append(
                Flag(
                    where=where,
                    code="plain_language",
                    message=(
                        f"grade {after.grade:g} and {after.words_per_sentence:g} words a sentence; "
                        f"target grade <= {MAX_GRADE:g} and <= {MAX_WORDS_PER_SENTENCE:g} words"
                        + (" (after one rewrite)" if rewrite is not None else "")
                    ),
                )
            )
    worst = max(scores, key=lambda s: s.grade)
    return CheckResult(
        name="plain_language",
        status=CheckStatus.flagged if flags else CheckStatus.passed,
        summary=f"grade {worst.grade:g} at most, {max(s.words_per_sentence for s in scores):g} words a sentence at most"
        + (f"; {len(flags)} above target" if flags else ""),
        flags=flags,
        notes=notes,
        readability=scores,
    )


# --------------------------------------------------------------------------- the model's answers

MODEL_OUTPUT = "model_output"
PUBLICATION_STATUS = "publication_status"  # notices found after publication (see notices.py)
# Results no re-check can redo (they come from the model's answers, or from a registry since):
# run_checks carries them over as they stand.
SECOND_OPINION = "second_opinion"
CARRIED = (MODEL_OUTPUT, PUBLICATION_STATUS, SECOND_OPINION)


def second_opinion_result(flags: list[Flag]) -> CheckResult:
    """The second opinion's verdicts (`stages/verify.py`): made once by the run, kept by every
    re-check, since no re-check calls the model again."""
    return _result(
        SECOND_OPINION,
        flags,
        "the second opinion finds every finding borne out by its quote",
        "the second opinion doubts {n} finding(s)",
    )


# Salvage changes that a reviewer need not act on: the record says what was done, as a note.
_SALVAGE_NOTES = {"stance_id_mapped", "retagged_inferred"}


def with_model_output(checks: list[CheckResult], salvaged: list[Flag]) -> list[CheckResult]:
    """The checks with the salvage of the model's answers added to the `model_output` result.

    Salvage happens while the model answers, so no re-check can repeat it: `run_checks` carries
    this result over as it stands."""
    earlier = next((c for c in checks if c.name == MODEL_OUTPUT), None)
    found = (earlier.flags + earlier.notes if earlier else []) + salvaged
    others = [c for c in checks if c.name != MODEL_OUTPUT]
    if not found:
        return others
    flags = [f for f in found if f.code not in _SALVAGE_NOTES]
    notes = [f for f in found if f.code in _SALVAGE_NOTES]
    result = CheckResult(
        name=MODEL_OUTPUT,
        status=CheckStatus.flagged if flags else CheckStatus.passed,
        summary=(
            f"{len(flags)} problem(s) in the model's answers kept and flagged"
            if flags
            else "the model's answers were mended"
        )
        + (f"; {len(notes)} correction(s) noted" if notes else ""),
        flags=flags,
        notes=notes,
    )
    return [*others, result]


# --------------------------------------------------------------------------- all of them


def run_checks(record: ClaimRecord, sources: Sources, rewrite: Rewriter | None = None) -> list[CheckResult]:
    """Every check afresh; the `model_output` result, which no re-check can redo, is kept."""
    carried = [c for c in record.checks if c.name in CARRIED]
    quotes = check_quotes(record, sources)
    results = [
        quotes,
        check_citations(record),
        check_numbers(record, sources),
        check_causal_chain(record, quotes),
        check_strength(record),
        check_directions(record),
        check_text(record, sources),
        check_topic(record),
        check_grade(record),
        check_plain_language(record, rewrite),
    ]
    return results + carried + [schema_check(record)]


CheckRunner = Callable[[ClaimRecord, Sources, "Rewriter | None"], ClaimRecord]


def check_record(record: ClaimRecord, sources: Sources, rewrite: Rewriter | None = None) -> ClaimRecord:
    """The record with its checks run and their corrections made (a CheckRunner, in this process)."""
    record.checks = run_checks(record, sources, rewrite)
    return record


@dataclass(frozen=True)
class CheckCounts:
    quotes: int
    ungrounded: int
    pages_corrected: int
    foreign_citations: int
    numbers_not_found: int
    overstated: int
    directions: int
    plain_language: int
    retagged: int

    def line(self) -> str:
        return (
            f"{self.quotes} quotes: {self.quotes - self.ungrounded} grounded, {self.ungrounded} ungrounded"
            + (f" ({self.pages_corrected} page(s) corrected)" if self.pages_corrected else "")
            + f"; {self.foreign_citations} foreign citations; {self.numbers_not_found} numbers not found; "
            f"{self.overstated} overstated; {self.directions} finding direction(s) against their quotes; "
            f"{self.plain_language} plain-language text(s) above target"
            + (f"; {self.retagged} step(s) re-tagged inferred" if self.retagged else "")
        )


def count(results: list[CheckResult]) -> CheckCounts:
    codes = [flag.code for result in results for flag in result.flags + result.notes]
    quotes = next((len(r.quotes) for r in results if r.name == "quotes"), 0)
    return CheckCounts(
        quotes=quotes,
        ungrounded=codes.count("ungrounded_quote"),
        pages_corrected=codes.count("page_corrected"),
        foreign_citations=codes.count("foreign_citation"),
        numbers_not_found=codes.count("number_not_found"),
        overstated=1 if "overstated" in codes else 0,
        directions=codes.count("direction_contradicts_quote"),
        plain_language=codes.count("plain_language"),
        retagged=codes.count("retagged_inferred"),
    )
