"""How much of the paper a stage sends: the sections it needs, cut to its budget, and, when the
model's context window is known, cut further so that the whole prompt and the answer fit in it."""

from __future__ import annotations

from pipeline.llm.base import LLMContext
from pipeline.sources.pdf import Document


def messages_with_paper(
    llm: LLMContext, stage: str, budget_key: str, document: Document, sections: tuple[str, ...], **values: str
) -> list[dict[str, str]]:
    """The stage's messages with `paper_text` as long as the budget `budget_key` allows beside
    everything else the prompt carries (its instructions, the findings, the claim)."""
    others = sum(len(message["content"]) for message in llm.prompts.render(stage, paper_text="", **values))
    budget = llm.settings.text_budget(budget_key, others)
    return llm.prompts.render(stage, paper_text=document.text_of(sections, budget), **values)
