"""Stage 2, extract: the study's bibliography and findings, each with a verbatim quote and page."""

from __future__ import annotations

from pipeline.core.models import ExtractOutput, Flag
from pipeline.llm.base import LLMContext, StageCall, ask_structured
from pipeline.llm.strict_schema import RequestFacts
from pipeline.sources.pdf import Document
from pipeline.stages.paper_text import messages_with_paper

SECTIONS = ("front", "abstract", "methods", "results")


def extract(document: Document, llm: LLMContext, study_index: int = 0) -> ExtractOutput:
    """`study_index`: where the study will stand in the record, for the paths of salvage flags."""
    messages = messages_with_paper(llm, "extract", "extract", document, SECTIONS, study_id=document.study_id)

    def salvage(output: ExtractOutput) -> list[Flag] | None:
        return salvage_extract(output, study_index)

    facts = RequestFacts(study_ids=(document.study_id,), pages=len(document.pages))
    return ask_structured(llm, StageCall("extract", ExtractOutput, messages, check_extract, facts, salvage))


def check_extract(output: ExtractOutput) -> list[str]:
    """What the schema cannot say: a quote must hold some text."""
    return [
        f"findings.{index}.quote.text: the quote is empty"
        for index, finding in enumerate(output.findings)
        if not finding.quote.text.strip()
    ]


def salvage_extract(output: ExtractOutput, study_index: int) -> list[Flag] | None:
    """Findings without a quote are dropped (and flagged); with none left, nothing is usable.
    A page beyond the paper is left to the quote check, which finds the right one or flags it."""
    kept = [finding for finding in output.findings if finding.quote.text.strip()]
    if not kept:
        return None
    dropped = len(output.findings) - len(kept)
    output.findings = kept
    if not dropped:
        return []
    return [
        Flag(
            where=f"studies[{study_index}].findings",
            code="finding_dropped",
            message=f"the model gave {dropped} finding(s) without a quote; dropped: check the paper for what is missing",
        )
    ]
