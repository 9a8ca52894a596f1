"""Stage 3, draft: the hedged claim, its original statement, the mechanism and each study's stance."""

from __future__ import annotations

import json

from .doi import canonical_citation
from .ingest import Document
from .llm import LLMContext, StageCall, ask_structured
from .models import DraftOutput, Finding
from .resources import load_instructions, load_prompt

PROMPT_FILE = "draft.md"
SECTIONS = ("abstract", "results", "discussion", "conclusions")


def findings_json(findings: list[Finding]) -> str:
    return json.dumps([finding.model_dump(mode="json") for finding in findings], indent=1, ensure_ascii=False)


def draft(document: Document, findings: list[Finding], llm: LLMContext) -> DraftOutput:
    prompt = load_prompt(PROMPT_FILE, frozenset({"study_id", "findings", "paper_text"}))
    messages = prompt.render(
        study_id=document.study_id,
        findings=findings_json(findings),
        paper_text=document.text_of(SECTIONS, llm.settings.stage_text_budget["draft"]),
    )

    def check(output: DraftOutput) -> list[str]:
        return check_draft(output, {document.study_id})

    call = StageCall("draft", DraftOutput, messages, load_instructions("repair.md")[0], check)
    return ask_structured(llm, call)


def check_draft(output: DraftOutput, study_ids: set[str]) -> list[str]:
    """Structural problems worth one repair request; faithfulness is the check stage's work."""
    problems = []
    if not output.causal_chain:
        problems.append("causal_chain: give at least one step")
    for index, step in enumerate(output.causal_chain):
        if not step.citations:
            problems.append(f"causal_chain.{index}.citations: cite at least one study identifier")
        if step.basis.value == "reported" and step.quote is None:
            problems.append(f"causal_chain.{index}.quote: a reported step needs the quote that reports it")
    stance_ids = [canonical_citation(stance.study_id, sorted(study_ids)) for stance in output.stances]
    for missing in sorted(study_ids - set(stance_ids)):
        problems.append(f"stances: give the stance of study {missing}")
    return problems
