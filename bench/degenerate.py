"""How many free-text fields the free-text check flags: every one, on answers that are junk; none,
on the faithful records.

    python bench/degenerate.py [--seeds 10]
    python bench/degenerate.py --quick      # 2 random runs (a test runs it)

- the real small model's recording (fixtures/runs/local-smollm2-hpylori): its fields, replayed,
  with how many are flagged (they are not all junk: a model sometimes writes a real sentence);
- runs against the random-within-schema endpoint (tests/scripted_endpoint.py: answers that keep
  to the schema and mean nothing) on a bundled paper, one per seed: every free-text field is junk;
- the faithful bundled records: none should be flagged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from scripted_endpoint import RandomWithinSchema, ScriptedEndpoint  # noqa: E402

from pipeline.core.models import ClaimRecord  # noqa: E402
from pipeline.core.retry import RetryPolicy  # noqa: E402
from pipeline.core.settings import RunSettings  # noqa: E402
from pipeline.llm.base import LLMContext  # noqa: E402
from pipeline.llm.openai import OpenAIChatModel  # noqa: E402
from pipeline.stages.free_text import free_text_fields  # noqa: E402
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


if __name__ == "__main__":
    main()
