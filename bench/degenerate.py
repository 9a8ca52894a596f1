"""How many free-text fields the free-text check flags: every one, on answers that are junk; none,
on the faithful records.

    python bench/degenerate.py [--seeds 10]
    python bench/degenerate.py --quick      # 2 random runs (a test runs it)

- the real small model's recording (fixtures/runs/local-smollm2-hpylori): its fields, replayed,
  with how many are flagged (they are not all junk: a model sometimes writes a real sentence);
- runs against the random-within-schema endpoint (tests/scripted_endpoint.py: answers that keep
  to the schema and mean nothing) on a bundled paper, one per seed: every free-text field is junk;
- the faithful bundled records: none should be flagged;
- the second opinion (`--verify-with`) against a careful verifier (tests/scripted_endpoint.py's
  CarefulVerifier: rules that read each finding against its own quote, as a careful model would;
  not a model): how many of the errors injected into findings it flags at their finding, and how
  many findings of the faithful records it doubts. The errors are those of the misbehaviour
  recordings that change a finding (fixtures/runs/misbehaving-*) and six changes of a faithful
  finding (a number, a swapped interval, a flipped direction (three), a fabricated quote).
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from scripted_endpoint import CarefulVerifier, RandomWithinSchema, ScriptedEndpoint  # noqa: E402

from pipeline.core.models import ClaimRecord, Direction, Finding  # noqa: E402
from pipeline.core.retry import RetryPolicy  # noqa: E402
from pipeline.core.settings import RunSettings  # noqa: E402
from pipeline.llm.base import LLMContext  # noqa: E402
from pipeline.llm.openai import OpenAIChatModel  # noqa: E402
from pipeline.stages.free_text import free_text_fields  # noqa: E402
from pipeline.stages.verify import second_opinion  # noqa: E402
from pipeline.workflow.replay import replay  # noqa: E402
from pipeline.workflow.run import run_pipeline  # noqa: E402

RUNS = ROOT / "fixtures" / "runs"
PAPER = ROOT / "fixtures" / "papers" / "pmj_hpylori_iron_deficiency_metaanalysis_2010.pdf"
FAITHFUL = ["huang-2010-hpylori-iron", "siervo-2016-nitrate", "datta-2010-dvt-prophylaxis"]


def flagged(record: ClaimRecord) -> tuple[int, int]:
    """(free-text fields flagged, free-text fields)."""
    places = {where for where, _, _ in free_text_fields(record)}
    hit = {f.where for c in record.checks if c.name == "free_text" for f in c.flags if f.where in places}
    return len(hit), len(places)


def random_run(seed: int) -> ClaimRecord:
    with ScriptedEndpoint(RandomWithinSchema(seed)) as endpoint:
        chat = OpenAIChatModel(api_key="sk-bench", base_url=endpoint.base_url, retry=RetryPolicy(attempts=1))
        llm = LLMContext(chat, RunSettings(model="random-within-schema"))
        return run_pipeline(PAPER, llm, not_a_study_ok=True).record


def _changed(name: str, index: int, change: Callable[[Finding], None]) -> tuple[str, list[Finding], int]:
    record = _replayed(name)
    change(record.studies[0].findings[index])
    return name, record.studies[0].findings, index


def _replayed(name: str) -> ClaimRecord:
    """A fresh copy of the recording's replayed record (each case changes its own)."""
    return _replay(name).model_copy(deep=True)


@functools.cache
def _replay(name: str) -> ClaimRecord:
    record = replay(RUNS / name).replayed
    assert record is not None
    return record


def _set(field: str, value: object) -> Callable[[Finding], None]:
    def change(finding: Finding) -> None:
        target = finding.effect if field in ("value", "ci_lower", "ci_upper") else finding
        setattr(target, field, value)

    return change


def _swap_interval(finding: Finding) -> None:
    assert finding.effect is not None
    finding.effect.ci_lower, finding.effect.ci_upper = finding.effect.ci_upper, finding.effect.ci_lower


def _fabricate_quote(finding: Finding) -> None:
    finding.quote.text = "Eradication therapy cured anaemia in every patient within one week."


def injected_errors() -> list[tuple[str, list[Finding], int]]:
    """(where from, the study's findings, the finding with the error), one a case."""
    huang, siervo = "huang-2010-hpylori-iron", "siervo-2016-nitrate"
    return [
        ("misbehaving-fabricated-quote", _replayed("misbehaving-fabricated-quote").studies[0].findings, 1),
        ("misbehaving-wrong-numbers (sample size)", _replayed("misbehaving-wrong-numbers").studies[0].findings, 0),
        ("misbehaving-wrong-numbers (effect)", _replayed("misbehaving-wrong-numbers").studies[0].findings, 1),
        _changed(huang, 0, _set("value", 21.5)),
        _changed(huang, 1, _swap_interval),
        _changed(huang, 2, _set("direction", Direction.no_significant_difference)),
        _changed(siervo, 0, _set("direction", Direction.increased)),
        _changed(siervo, 1, _set("direction", Direction.increased)),
        _changed(huang, 3, _fabricate_quote),
    ]


def second_opinion_recall() -> tuple[int, int, int, int, list[str]]:
    """(errors flagged at their finding, errors, faithful findings doubted, faithful findings, misses)."""
    with ScriptedEndpoint(CarefulVerifier()) as endpoint:
        chat = OpenAIChatModel(api_key="sk-bench", base_url=endpoint.base_url, retry=RetryPolicy(attempts=1))
        llm = LLMContext(chat, RunSettings(model="careful-verifier"))
        caught, misses = 0, []
        cases = injected_errors()
        for name, findings, index in cases:
            doubted = {flag.where for flag in second_opinion(findings, llm, "careful-verifier")}
            if f"studies[0].findings[{index}]" in doubted:
                caught += 1
            else:
                misses.append(f"{name}, finding {index}")
        doubts = total = 0
        for name in FAITHFUL:
            findings = _replayed(name).studies[0].findings
            doubts += len(second_opinion(findings, llm, "careful-verifier"))
            total += len(findings)
    return caught, len(cases), doubts, total, misses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    local = replay(RUNS / "local-smollm2-hpylori").replayed
    assert local is not None
    hit, total = flagged(local)
    print(f"local SmolLM2-135M recording: {hit} of {total} free-text fields flagged")
    hits = totals = 0
    seeds = 2 if args.quick else args.seeds
    for seed in range(seeds):
        hit, total = flagged(random_run(seed))
        hits, totals = hits + hit, totals + total
    print(f"random-within-schema answers, {seeds} runs: {hits} of {totals} free-text fields flagged (goal: all)")
    hits = 0
    for name in FAITHFUL:
        record = replay(RUNS / name).replayed
        assert record is not None
        hits += flagged(record)[0]
    print(f"faithful records ({len(FAITHFUL)}): {hits} free-text fields flagged (goal: none)")
    caught, cases, doubts, findings, misses = second_opinion_recall()
    print(
        f"second opinion, careful verifier: {caught} of {cases} injected finding errors flagged at their finding"
        + (f" (missed: {'; '.join(misses)})" if misses else "")
        + f"; {doubts} of {findings} faithful findings doubted"
    )


if __name__ == "__main__":
    main()
