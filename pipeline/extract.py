"""Stage 2, extract: the study's bibliography and findings, each with a verbatim quote and page."""

from __future__ import annotations

from .ingest import Document
from .llm import LLMContext, StageCall, ask_structured
from .models import ExtractOutput
from .resources import load_instructions, load_prompt

PROMPT_FILE = "extract.md"
SECTIONS = ("front", "abstract", "methods", "results")


def extract(document: Document, llm: LLMContext) -> ExtractOutput:
    prompt = load_prompt(PROMPT_FILE, frozenset({"study_id", "paper_text"}))
    messages = prompt.render(
        study_id=document.study_id,
        paper_text=document.text_of(SECTIONS, llm.settings.stage_text_budget["extract"]),
    )
    call = StageCall("extract", ExtractOutput, messages, load_instructions("repair.md")[0], check_extract)
    return ask_structured(llm, call)


def check_extract(output: ExtractOutput) -> list[str]:
    problems = []
    if not output.findings:
        problems.append("findings: list at least one finding the paper reports")
    for index, finding in enumerate(output.findings):
        if not finding.quote.text.strip():
            problems.append(f"findings.{index}.quote.text: the quote is empty")
        if finding.quote.page < 1:
            problems.append(f"findings.{index}.quote.page: pages start at 1")
    return problems
