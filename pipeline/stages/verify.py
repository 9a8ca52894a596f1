"""The second opinion (optional, `--verify-with MODEL`): one schema-constrained call per paper
asks a model whether each finding's population, intervention, comparator, outcome, direction
and numbers are what its own quote says. A finding it does not find borne out is flagged
`second_opinion` at the finding, with the words that differ; the review page lists those flags
first. Where two models agree extraction is mostly right, and where they disagree a reviewer
should look first (Khan et al., JAMIA 2025).

The call goes through the same model seam as every stage, so it is recorded, cached, replayed and
counted in the usage like them; only the model named in the request differs.
"""

from __future__ import annotations

import dataclasses
import json

from pipeline.core.models import Finding, Flag, SecondOpinionOutput, Verdict
from pipeline.llm.base import LLMContext, StageCall, ask_structured


def second_opinion(findings: list[Finding], llm: LLMContext, model: str, study: int = 0) -> list[Flag]:
    """Flags for the findings the second model does not find borne out by their quotes."""
    if not findings:
        return []
    payload = [
        {
            "finding": number,
            "population": f.population,
            "intervention": f.intervention,
            "comparator": f.comparator,
            "outcome": f.outcome,
            "direction": f.direction.value,
            "effect": f.effect.model_dump(mode="json") if f.effect else None,
            "sample_size": f.sample_size,
            "quote": f.quote.text,
        }
        for number, f in enumerate(findings)
    ]
    messages = llm.prompts.render("verify", findings=json.dumps(payload, ensure_ascii=False, indent=1))
    verifier = dataclasses.replace(llm, settings=dataclasses.replace(llm.settings, model=model), salvaged=[])
    answer = ask_structured(verifier, StageCall("verify", SecondOpinionOutput, messages))
    assert isinstance(answer, SecondOpinionOutput)
    flags = []
    for verdict in answer.verdicts:
        if verdict.verdict is Verdict.supported or not 0 <= verdict.finding < len(findings):
            continue
        words = f" (differs: {', '.join(verdict.differs[:8])})" if verdict.differs else ""
        judged = "partly borne out" if verdict.verdict is Verdict.partly else "not borne out"
        flags.append(
            Flag(
                where=f"studies[{study}].findings[{verdict.finding}]",
                code="second_opinion",
                message=f"a second opinion ({model}) finds this finding {judged} by its quote: {verdict.reason}{words}",
            )
        )
    return flags
