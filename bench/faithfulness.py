"""Faithfulness readers: claim strength and effect direction on public labelled sets, and speed.

    python bench/faithfulness.py --pubmed PATH/annotated_pubmed.csv --ei PATH/evidence-inference
    python bench/faithfulness.py --quick      # the project's own small sets, a few seconds

Where the data comes from (neither set is shipped with the project):
- claim strength: `data/annotated_pubmed.csv` of the public GitHub repository
  junwang4/correlation-to-causation-exaggeration (Yu, Li & Wang, "Detecting Causal Language Use in
  Science Findings", EMNLP 2019): 3,061 conclusion sentences of PubMed abstracts, labelled 0 not a
  claim, 1 correlational, 2 conditional causal, 3 direct causal. The repository states no licence,
  so the set is used here only to measure; the reader is rules, not a model trained on it, and
  the figure is in-sample for rules written while reading its errors.
- effect direction: Evidence Inference 2.0, the GitHub repository jayded/evidence-inference (MIT
  licence): `annotations/v2_annotations.csv` rows with a valid label, joined with
  `annotations/prompts_merged.csv` by PromptID, split by `annotations/splits/ev2_*`. The reader's
  weights were learnt on the train and validation splits (`tools/train_direction.py`); the test
  split is reported here.

Goals (the issue's): strength macro-F1 >= 0.85 and direct-causal F1 >= 0.85; direction macro-F1
>= 0.85 on the test split; <= 1 ms a sentence. Each figure is printed with its goal.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from pipeline.stages.claim_strength import read_strength  # noqa: E402
from pipeline.stages.effect_direction import read_direction, significance  # noqa: E402
from pipeline.workflow.evaluation import (  # noqa: E402
    DirectionRow,
    Scores,
    evaluate_direction,
    evaluate_strength,
    evidence_inference_rows,
    read_direction_set,
    read_strength_set,
)

QUICK_STRENGTH = ROOT / "fixtures" / "eval" / "strength_sentences.csv"
QUICK_DIRECTION = ROOT / "fixtures" / "eval" / "direction_passages.csv"


def show(name: str, scores: Scores, goal: str) -> None:
    per_class = ", ".join(f"{label} F1 {row['f1']:.3f}" for label, row in scores.per_class.items())
    print(f"{name}: macro-F1 {scores.macro_f1:.3f}, accuracy {scores.accuracy:.3f} on {scores.n} rows ({goal})")
    print(f"  {per_class}")


def per_item_ms(work: list[object], read: object, repeat: int) -> float:
    """The median over `repeat` passes of the time one item takes, in ms."""
    passes = []
    for _ in range(repeat):
        started = time.perf_counter()
        for item in work:
            read(item)  # type: ignore[operator]
        passes.append((time.perf_counter() - started) * 1000 / max(1, len(work)))
    return sorted(passes)[len(passes) // 2]


def significance_only(rows: list[DirectionRow]) -> float:
    """Accuracy of the significance-only baseline (significant or not), for scale."""
    right = sum(1 for row in rows if (significance(row.evidence) is True) == (row.label != "no_difference"))
    return right / len(rows) if rows else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pubmed", type=Path, help="annotated_pubmed.csv (sentence,label)")
    parser.add_argument("--ei", type=Path, help="a copy of the evidence-inference repository")
    parser.add_argument("--quick", action="store_true", help="only the project's own small sets")
    args = parser.parse_args()
    if not args.quick and not (args.pubmed or args.ei):
        parser.error("give --pubmed and/or --ei (see the docstring for where to get them), or --quick")
    sentences = read_strength_set(args.pubmed) if args.pubmed and not args.quick else read_strength_set(QUICK_STRENGTH)
    source = "PubMed conclusions (Yu et al. 2019)" if args.pubmed and not args.quick else "the project's own sentences"
    strength = evaluate_strength(sentences)
    show(f"strength on {source}", strength, "goal: macro-F1 >= 0.85")
    print(f"  direct causal: F1 {strength.per_class['3']['f1']:.3f} (goal >= 0.85)")
    ms = per_item_ms([s for s, _ in sentences], read_strength, 3 if args.quick else 5)
    print(f"  {ms * 1000:.0f} µs a sentence (goal <= 1 ms)")

    if args.ei and not args.quick:
        rows = evidence_inference_rows(args.ei, "test")
        source = "Evidence Inference 2.0 test split"
    else:
        rows = read_direction_set(QUICK_DIRECTION)
        source = "the project's own passages"
    direction = evaluate_direction(rows)
    show(f"direction on {source}", direction, "goal: macro-F1 >= 0.85")
    print(f"  significance-only baseline (significant or not): accuracy {significance_only(rows):.3f}")
    ms = per_item_ms(rows, lambda r: read_direction(r.intervention, r.comparator, r.outcome, r.evidence), 3)
    print(f"  {ms * 1000:.0f} µs a passage (goal <= 1 ms)")


if __name__ == "__main__":
    main()
