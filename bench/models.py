"""Per stage, how a model's answers fared: valid at first try, after a retry of a cut-off answer,
after the repair request, salvaged, failed; quotes grounded; seconds; tokens.

    python bench/models.py [RECORDING_DIR ...]

Replays each recording (default: the run against SmolLM2-135M-Instruct on llama-cpp-python's
server, and the same paper against the scripted endpoint) through the pipeline, counting how each
stage's structured answer ended, and reads seconds and tokens from the recorded exchanges (a
recording made before exchanges kept their time shows none).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from pipeline.core.errors import ClaimsError  # noqa: E402
from pipeline.llm.base import LLMContext  # noqa: E402
from pipeline.llm.recording import ReplayChatModel, load_recording, recorded_pdf  # noqa: E402
from pipeline.workflow.run import run_pipeline  # noqa: E402

DEFAULT = [ROOT / "fixtures" / "runs" / "local-smollm2-hpylori", ROOT / "fixtures" / "runs" / "huang-2010-hpylori-iron"]
KINDS = ("first try", "after retry", "after repair", "salvaged", "failed")


def figures(directory: Path) -> tuple[str, list[list[str]], str]:
    recording, _ = load_recording(directory)
    llm = LLMContext(ReplayChatModel(recording), recording.run_settings())
    quotes = "-"
    try:
        record = run_pipeline(recorded_pdf(directory, recording), llm, metadata=recording.input.metadata).record
        located = next(c for c in record.checks if c.name == "quotes").quotes
        quotes = f"{sum(1 for q in located if q.status.value != 'ungrounded')} of {len(located)}"
    except ClaimsError as exc:
        quotes = f"run failed: {exc}"[:80]
    rows = []
    for stage, tally in llm.usage.by_stage.items():
        exchanges = [i for i in recording.interactions if i["stage"] == stage]
        seconds = sum(i.get("seconds", 0.0) for i in exchanges)
        tokens = sum(
            i["response"].get("usage", {}).get("prompt_tokens", 0)
            + i["response"].get("usage", {}).get("completion_tokens", 0)
            for i in exchanges
            if "usage" in i["response"]
        )
        rows.append(
            [
                stage,
                *[str(tally.outcomes.get(kind, 0)) for kind in KINDS],
                str(tally.calls),
                f"{seconds:.0f}" if seconds else "-",
                str(tokens),
            ]
        )
    return recording.made_against, rows, quotes


def main(directories: list[Path]) -> None:
    header = ["stage", *KINDS, "requests", "seconds", "tokens"]
    for directory in directories:
        made_against, rows, quotes = figures(directory)
        print(f"\n{directory.name}: {made_against}")
        print(" | ".join(header))
        for row in rows:
            print(" | ".join(row))
        print(f"quotes grounded: {quotes}")


if __name__ == "__main__":
    main([Path(arg) for arg in sys.argv[1:]] or DEFAULT)
