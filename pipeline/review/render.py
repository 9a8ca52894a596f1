"""A record laid out like the claim pages we model, as Markdown, HTML or JSON.

`page_blocks` builds the page once as plain blocks (headings, paragraphs, lists, tables) from the
record; `to_markdown` and `to_html` only emit them. Every piece of text from a record is data
(it may come from a PDF that contains `<script>`), so HTML output escapes all of it, and Markdown
output escapes what a CommonMark renderer would turn into HTML or a link: `<`, `>`, `&`, the
`](` of an inline link or image and the `]:` of a link definition; line breaks inside a text
become spaces, so no text can open a block of its own.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field

from pipeline.core.identifiers import foreign_citations
from pipeline.core.models import (
    CausalStep,
    CheckResult,
    CheckStatus,
    ClaimRecord,
    Finding,
    Flag,
    GoldStandardStudy,
    Quote,
    Stance,
    StepBasis,
    Study,
)

FORMATS = ("md", "html", "json")


@dataclass
class Block:
    kind: str  # h1 h2 h3 p quote ol ul table
    text: str = ""
    items: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


_WORDS = {"rcts": "RCTs"}


def _label(value: str) -> str:
    """'systematic_review_of_rcts' -> 'systematic review of RCTs'."""
    return " ".join(_WORDS.get(word, word) for word in value.split("_"))


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word.replace('study', 'studie')}s"


def _quote(quote: Quote) -> str:
    return f"\u201c{quote.text}\u201d (p. {quote.page})"


class _Marks:
    """What the checks flagged, to show beside the item; foreign citations to leave out."""

    def __init__(self, record: ClaimRecord, public: bool = False):
        self.by_where: dict[str, list[Flag]] = {}
        for check in record.checks if not public else []:  # readers get the reviewer's decision instead
            for flag in check.flags:
                self.by_where.setdefault(flag.where, []).append(flag)
        self.foreign = {cited for _, cited in foreign_citations(record)}

    def at(self, where: str) -> str:
        # A foreign citation is not marked but removed (see `clean`); the Checks section names it.
        return "".join(
            f" [FLAG {f.code}: {f.message}]" for f in self.by_where.get(where, []) if f.code != "foreign_citation"
        )

    def under(self, prefix: str) -> str:
        return "".join(self.at(where) for where in sorted(self.by_where) if where.startswith(prefix))

    def clean(self, text: str) -> str:
        for cited in self.foreign:
            text = re.sub(re.escape(cited), "[citation removed]", text, flags=re.IGNORECASE)
        return text

    def quote(self, quote: Quote, where: str) -> str:
        return _quote(quote) + self.at(where)


def _study_line(study: Study) -> str:
    ref = study.reference
    where = ", ".join(part for part in (ref.journal, str(ref.year) if ref.year else None) if part)
    cite = f"doi:{ref.doi}" if ref.doi else ref.study_id
    line = (
        f"{ref.title} ({where}; {cite}) \u2014 {study.summary}"
        if where
        else f"{ref.title} ({cite}) \u2014 {study.summary}"
    )
    return line + (f" Why: {study.stance_rationale}" if study.stance_rationale else "")


def _reference(study: Study) -> str:
    ref = study.reference
    authors = ", ".join(ref.authors[:3]) + (" et al." if len(ref.authors) > 3 else "")
    parts = [
        f"{ref.title}.",
        authors if authors.endswith(".") else f"{authors}." if authors else "",
        ", ".join(str(p) for p in (ref.journal, ref.year) if p) + ("." if ref.journal or ref.year else ""),
        f"doi:{ref.doi}" if ref.doi else f"No DOI known (study id {ref.study_id})",
        f"\u00b7 Type: {ref.publication_type}" if ref.publication_type else "",
        f"\u00b7 Licence: {licence_name(ref.licence)}" if ref.licence else "",
        f"\u00b7 PDF: {ref.pdf_url}" if ref.pdf_url else "",
        f"\u00b7 Metadata: {', '.join(ref.metadata_sources)}" if ref.metadata_sources else "",
        "\u00b7 RETRACTED" if ref.retracted else "",
    ]
    return " ".join(part for part in parts if part)


def _effect(finding: Finding) -> str:
    effect = finding.effect
    if effect is None:
        return "not reported"
    parts = []
    if effect.value is not None:
        parts.append(f"{effect.measure or 'effect'} {effect.value:g}{' ' + effect.unit if effect.unit else ''}")
    if effect.ci_lower is not None and effect.ci_upper is not None:
        parts.append(f"{effect.ci_level or 95:g}% CI {effect.ci_lower:g} to {effect.ci_upper:g}")
    if effect.p_value:
        parts.append(f"p {effect.p_value}" if effect.p_value[0] in "<>=\u2264\u2265" else f"p = {effect.p_value}")
    return "; ".join(parts) or "not reported"


def _answered_by(record: ClaimRecord) -> str:
    """What the server said answered, where that differs from the name asked for or adds to it."""
    asked, said = record.provenance.model, record.provenance.answered_by
    if not said:
        return f"with model {asked}"
    return f"with model {asked} (answered by {', '.join(said)})"


def _step(step: CausalStep, index: int, marks: _Marks) -> str:
    shown = [cited for cited in step.citations if cited not in marks.foreign]
    # removed here, or already when the model's answer was salvaged (flagged where the step stands)
    salvaged = [
        f for f in marks.by_where.get(f"mechanism.steps[{index}].citations", []) if f.code == "foreign_citation"
    ]
    removed = len(step.citations) - len(shown) + sum(1 for f in salvaged if f.message.startswith("the model cited"))
    basis = "reported by the study" if step.basis is StepBasis.reported else "inferred"
    return (
        f"{marks.clean(step.text)} ({', '.join(shown) or 'no citation'}) [{basis}]"
        + (f" [{removed} citation(s) removed: not studies of this record]" if removed else "")
        + marks.at(f"mechanism.steps[{index}].quote")
    )


def _gold(study: GoldStandardStudy) -> str:
    """One ideal study, as sentences a reader can follow rather than fields run together."""
    return (
        f"A {_label(study.design.value)}. Who: {study.population}. What is compared: {study.intervention}, "
        f"against {study.comparator}. What is measured: {study.outcome} (by {study.outcome_measure}). "
        f"How many: {study.sample_size}. For how long: {study.duration}. "
        + (f"Safeguards: {', '.join(study.safeguards)}. " if study.safeguards else "")
        + f"What it would settle: {study.why}"
    )


_CC = re.compile(r"creativecommons\.org/(licenses|publicdomain)/([a-z-]+)/(\d\.\d)", re.I)


def licence_name(licence: str) -> str:
    """'https://creativecommons.org/licenses/by/4.0/' -> 'CC BY 4.0'; other licences as given."""
    match = _CC.search(licence)
    if not match:
        return licence
    kind, terms, version = match.groups()
    return "CC0 " + version if kind.lower() == "publicdomain" else f"CC {terms.upper()} {version}"


# What each GRADE word means, for readers who have not met GRADE.
GRADE_MEANING = {
    "risk_of_bias": "could the way the studies were run have skewed their results?",
    "inconsistency": "do the studies disagree with each other?",
    "indirectness": "do the studies look at other people, treatments or outcomes than the claim?",
    "imprecision": "are the results too uncertain (few people, wide ranges)?",
    "publication_bias": "might studies with other results be missing from view?",
}
RATING_MEANING = {"not_serious": "no concern", "serious": "a concern", "very_serious": "a large concern"}
CERTAINTY_MEANING = {
    "high": "further research is very unlikely to change this",
    "moderate": "further research may change this",
    "low": "further research is likely to change this",
    "very_low": "this is very uncertain",
}


@dataclass(frozen=True)
class Approval:
    """The decision that published a record: who approved it, when, and their note (which holds
    the override reason when flags were left standing)."""

    reviewer: str
    at: str
    note: str


def page_blocks(record: ClaimRecord, approval: Approval | None = None) -> list[Block]:
    """The page, section by section, in the order of the claim pages we model. With the
    `approval` that published it, the page is the public one: no [FLAG] markers, and the review
    decision in plain words where the reviewer's page lists the checks."""
    marks = _Marks(record, public=approval is not None)
    return [
        *_header(record, marks),
        *_mechanism(record, marks),
        *_evidence(record, marks),
        *_findings(record, marks),
        *_grade(record),
        *_gold_standard(record, marks),
        *(_review(record, approval) if approval else _checks_and_provenance(record)),
    ]


def _review(record: ClaimRecord, approval: Approval) -> list[Block]:
    """For readers: who approved the claim, and any concern the automatic checks raised that the
    reviewer decided to accept, with their reason."""
    concerns = [flag.message for check in record.checks for flag in check.flags]
    reason = approval.note.split("override:", 1)[1].strip() if "override:" in approval.note else ""
    text = f"Reviewed and approved by {approval.reviewer} on {approval.at[:10]}."
    if concerns:
        text += f" The automatic checks raised {len(concerns)} concern(s) that the reviewer accepted" + (
            f", saying: \u201c{reason}\u201d." if reason else "."
        )
    provenance = record.provenance
    return [
        Block("h2", "Review"),
        Block("p", text),
        *([Block("ul", items=[_capitalised(c) for c in concerns])] if concerns else []),
        Block(
            "p",
            f"Drafted {provenance.generated_at[:10]} by claims {provenance.pipeline_version} "
            f"{_answered_by(record)} from {provenance.source.file_name}.",
        ),
    ]


def _flagged(record: ClaimRecord) -> list[CheckResult]:
    return [c for c in record.checks if c.status is not CheckStatus.passed]


def _header(record: ClaimRecord, marks: _Marks) -> list[Block]:
    """The claim, its flags, the status line, any retraction notice and the original statement."""
    flagged = _flagged(record)
    status = (
        f"Claim type: {_label(record.claim.type.value)} \u00b7 Certainty (GRADE): "
        f"{_label(record.certainty.certainty.value)} \u00b7 Status: {record.status.value}"
        + (f" \u00b7 Pro {record.scores.pro:g} / Against {record.scores.against:g}" if record.scores else "")
        + (f" \u00b7 {sum(len(c.flags) for c in flagged)} flag(s)" if flagged else "")
        + f" \u00b7 Record {record.record_id}"
    )
    return [
        Block("h1", marks.clean(record.claim.text)),
        *[Block("p", f"FLAG {f.code}: {f.message}") for f in marks.by_where.get("claim.text", [])],
        Block("p", status),
        *[
            Block("p", f"RETRACTED: \u201c{s.reference.title}\u201d has been retracted. Do not rely on this claim.")
            for s in record.studies
            if s.reference.retracted
        ],
        Block(
            "quote", "Original statement: " + marks.quote(record.claim.original_statement, "claim.original_statement")
        ),
    ]


def _mechanism(record: ClaimRecord, marks: _Marks) -> list[Block]:
    mechanism = record.mechanism
    return [
        # one study is not a synthesis: the heading says so only when there is more than one
        Block(
            "h2",
            f"Mechanism \u2014 Synthesis from {_plural(len(record.studies), 'study')}"
            if len(record.studies) > 1
            else "Mechanism \u2014 from one study",
        ),
        Block("h3", "How it works"),
        Block("p", marks.clean(mechanism.plain_language) + marks.at("mechanism.plain_language")),
        Block("h3", "Most probable mechanism"),
        Block("p", "In simple terms: " + marks.clean(mechanism.summary) + marks.at("mechanism.summary")),
        Block("ol", items=[_step(step, k, marks) for k, step in enumerate(mechanism.steps)]),
    ]


def _evidence(record: ClaimRecord, marks: _Marks) -> list[Block]:
    """Supporting and contradicting studies (and those of no clear bearing), the scores, the references."""
    blocks = [Block("h2", "Evidence from studies")]
    for title, stance in (("Supporting", Stance.supporting), ("Contradicting", Stance.contradicting)):
        side = [s for s in record.studies if s.stance is stance]
        blocks.append(Block("h3", f"{title} ({len(side)})"))
        blocks.append(
            Block("ul", items=[marks.clean(_study_line(s)) for s in side])
            if side
            else Block("p", "Community contributions welcome")
        )
    unrelated = [s for s in record.studies if s.stance is Stance.no_clear_bearing]
    if unrelated:
        blocks.append(Block("h3", f"No clear bearing ({len(unrelated)})"))
        blocks.append(Block("ul", items=[marks.clean(_study_line(s)) for s in unrelated]))
    if record.scores:
        blocks.append(
            Block(
                "p",
                f"Scores: Pro {record.scores.pro:g} / Against {record.scores.against:g} "
                f"(each side: {record.scores.formula}; see the README).",
            )
        )
    return [*blocks, Block("h3", "Studies"), Block("ul", items=[_reference(study) for study in record.studies])]


def _findings(record: ClaimRecord, marks: _Marks) -> list[Block]:
    """One table a study: each finding with its effect, size and quote, flags marked in place."""
    blocks = []
    for i, study in enumerate(record.studies):
        rows = [
            [
                f.outcome,
                f.population,
                f"{f.intervention} vs {f.comparator or 'none'}",
                _label(f.direction.value),
                _effect(f) + marks.under(f"studies[{i}].findings[{j}].effect"),
                (str(f.sample_size) if f.sample_size is not None else "not reported")
                + marks.at(f"studies[{i}].findings[{j}].sample_size"),
                marks.quote(f.quote, f"studies[{i}].findings[{j}].quote"),
            ]
            for j, f in enumerate(study.findings)
        ]
        header = ["Outcome", "Population", "Intervention vs comparator", "Direction", "Effect", "n", "Quote"]
        blocks += [Block("h3", f"Findings: {study.reference.title}"), Block("table", header=header, rows=rows)]
    return blocks


def _grade(record: ClaimRecord) -> list[Block]:
    certainty = record.certainty
    return [
        Block("h2", "Evidence quality (GRADE)"),
        Block(
            "p",
            f"Design: {_label(certainty.design.value)} \u2014 {certainty.design_rationale} "
            f"Starts at {_label(certainty.starting_certainty.value)}; rated {_label(certainty.certainty.value)}: "
            f"{CERTAINTY_MEANING[certainty.certainty.value]}.",
        ),
        Block(
            "table",
            header=["What is rated", "Rating", "Why"],
            rows=[
                [
                    f"{_capitalised(_label(d.domain.value))}: {GRADE_MEANING[d.domain.value]}",
                    f"{_label(d.rating.value)} ({RATING_MEANING[d.rating.value]})",
                    d.explanation,
                ]
                for d in certainty.domains
            ]
            + [[f"upgrade: {_label(u.factor.value)}", f"+{u.levels}", u.explanation] for u in certainty.upgrades],
        ),
    ]


def _gold_standard(record: ClaimRecord, marks: _Marks) -> list[Block]:
    return [
        Block("h2", "Gold Standard Evidence Needed"),
        Block(
            "p",
            "According to GRADE and EBM methodology, this is what ideal evidence would look like to prove "
            "or disprove this claim, ordered from strongest to weakest design.",
        ),
        Block("ol", items=[marks.clean(_gold(study)) for study in record.gold_standard]),
    ]


def _checks_and_provenance(record: ClaimRecord) -> list[Block]:
    provenance = record.provenance
    return [
        Block("h2", "Checks"),
        Block(
            "ul",
            items=[f"{c.name}: {c.status.value} \u2014 {c.summary}" for c in record.checks]
            + [f"FLAG {flag.code} at {flag.where}: {flag.message}" for c in _flagged(record) for flag in c.flags]
            + [f"corrected {note.code} at {note.where}: {note.message}" for c in record.checks for note in c.notes],
        ),
        *([Block("h3", "Notes"), Block("ul", items=provenance.notes)] if provenance.notes else []),
        Block(
            "p",
            f"Generated {provenance.generated_at} by claims {provenance.pipeline_version} "
            f"{_answered_by(record)} from {provenance.source.file_name} "
            f"(sha256 {provenance.source.sha256[:12]}).",
        ),
    ]


_MD_SPECIAL = re.compile(r"[\\<>&]|\](?=[(:])")


def md_text(text: str) -> str:
    """Record text made inert for Markdown: shown as written, never as HTML, a link or a block."""
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), " ".join(text.splitlines()))


def to_markdown(blocks: list[Block]) -> str:
    def cell(text: str) -> str:
        return md_text(text).replace("|", "\\|")

    out: list[str] = []
    for block in blocks:
        if block.kind in ("h1", "h2", "h3"):
            out.append("#" * int(block.kind[1]) + " " + md_text(block.text))
        elif block.kind == "p":
            out.append(md_text(block.text))
        elif block.kind == "quote":
            out.append("> " + md_text(block.text))
        elif block.kind == "ol":
            out.append("\n".join(f"{n}. {md_text(item)}" for n, item in enumerate(block.items, start=1)))
        elif block.kind == "ul":
            out.append("\n".join(f"- {md_text(item)}" for item in block.items))
        elif block.kind == "table":
            lines = ["| " + " | ".join(map(cell, block.header)) + " |", "|" + "---|" * len(block.header)]
            lines += ["| " + " | ".join(map(cell, row)) + " |" for row in block.rows]
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;line-height:1.5;padding:0 1rem}"
    "blockquote{border-left:4px solid #999;margin:0;padding-left:1rem;color:#333}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem;vertical-align:top}"
)


def to_html(blocks: list[Block], title: str) -> str:
    e = html.escape
    body: list[str] = []
    for block in blocks:
        if block.kind in ("h1", "h2", "h3", "p"):
            body.append(f"<{block.kind}>{e(block.text)}</{block.kind}>")
        elif block.kind == "quote":
            body.append(f"<blockquote>{e(block.text)}</blockquote>")
        elif block.kind in ("ol", "ul"):
            body.append(f"<{block.kind}>" + "".join(f"<li>{e(i)}</li>" for i in block.items) + f"</{block.kind}>")
        elif block.kind == "table":
            head = "".join(f"<th>{e(h)}</th>" for h in block.header)
            rows = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in block.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
        f"<style>{_STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def render(record: ClaimRecord, fmt: str, approval: Approval | None = None) -> str:
    """The page as Markdown, HTML or JSON; with `approval`, the public page (see `page_blocks`)."""
    if fmt == "json":
        return json.dumps(record.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    blocks = page_blocks(record, approval)
    return to_html(blocks, record.claim.text) if fmt == "html" else to_markdown(blocks)
