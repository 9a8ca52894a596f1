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
from pipeline.llm.strict_schema import RequestFacts


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
    # the same context (usage, cache, what the stages salvaged) with the second model named
    verifier = dataclasses.replace(llm, settings=dataclasses.replace(llm.settings, model=model))
    call = StageCall(
        "verify",
        SecondOpinionOutput,
        messages,
        check=lambda answer: _each_finding_once(answer, len(findings)),
        facts=RequestFacts(findings=len(findings)),
    )
    answer = ask_structured(verifier, call)
    assert isinstance(answer, SecondOpinionOutput)
    flags = []
    for verdict in answer.verdicts:
        # a salvaged answer (still broken after the repair: flagged as model_output) may name a finding
        # that does not exist
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


def _each_finding_once(answer: SecondOpinionOutput, count: int) -> list[str]:
    """What no schema can say: a verdict for every finding, none twice."""
    given = [verdict.finding for verdict in answer.verdicts]
    missing = sorted(set(range(count)) - set(given))
    twice = sorted({n for n in given if given.count(n) > 1})
    problems = [f"verdicts: no verdict for finding {n}" for n in missing]
    return problems + [f"verdicts: finding {n} judged more than once" for n in twice]
