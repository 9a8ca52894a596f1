"""How much of the paper a stage sends: the sections it needs, cut to its budget, and, when the
model's context window is known, cut further so that the whole prompt and the answer fit in it."""

from __future__ import annotations

from pipeline.core.errors import ConfigError
from pipeline.core.settings import MIN_PAPER_CHARS
from pipeline.llm.base import LLMContext
from pipeline.sources.pdf import Document


def messages_with_paper(
    llm: LLMContext, stage: str, budget_key: str, document: Document, sections: tuple[str, ...], **values: str
) -> list[dict[str, str]]:
    """The stage's messages with `paper_text` as long as the budget `budget_key` allows beside
    everything else the prompt carries (its instructions, the findings, the claim). A context
    window too small to show the model even an abstract's worth of a longer paper is an error:
    the model would otherwise answer, and be checked, on text it never saw."""
    others = sum(len(message["content"]) for message in llm.prompts.render(stage, paper_text="", **values))
    budget = llm.settings.text_budget(budget_key, others)
    if budget < MIN_PAPER_CHARS and len(document.text_of(sections, MIN_PAPER_CHARS)) > budget:
        needed = llm.settings.context_needed(budget_key, others, MIN_PAPER_CHARS)
        raise ConfigError(
            f"stage {stage}: the model's context window of {llm.settings.context_tokens:,} tokens leaves room for "
            f"{budget:,} characters of the paper beside the prompt and the answer, under the {MIN_PAPER_CHARS:,} "
            "needed: "
            + (
                f"start the server with a context of {needed:,} tokens or more (llama.cpp: -c {needed}; vLLM: "
                f"--max-model-len {needed}; Ollama: OLLAMA_CONTEXT_LENGTH={needed}) or use a model that has one"
                if needed
                else "use a model with a larger context"
            )
            + "; if the server's figure is wrong, set CLAIMS_CONTEXT_TOKENS"
        )
    return llm.prompts.render(stage, paper_text=document.text_of(sections, budget), **values)
