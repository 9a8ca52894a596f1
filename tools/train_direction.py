"""Learn the effect-direction reader's weights from Evidence Inference 2.0's training split.

    pip install scikit-learn          # for training only; claims itself does not need it
    python tools/train_direction.py PATH/TO/evidence-inference [--out pipeline/stages/direction_model.json]

PATH is a copy of the public repository jayded/evidence-inference (MIT licence; Lehman,
DeYoung, Barzilay & Wallace, NAACL 2019, and DeYoung et al., BioNLP 2020). The regularisation is
chosen on the validation split, then the model is fitted again on training and validation
together; the test split is never read here (`bench/faithfulness.py` reports it). Weights that
round to zero are dropped, so the file stays small (well under the 5 MB the project allows).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LogisticRegression

from pipeline.stages.effect_direction import MODEL_FILE, features
from pipeline.workflow.evaluation import DirectionRow, evidence_inference_rows, score

GRID = [0.03, 0.05, 0.1, 0.3]


def _features(rows: list[DirectionRow]) -> list[dict[str, int]]:
    return [dict.fromkeys(features(r.intervention, r.comparator, r.outcome, r.evidence), 1) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("evidence_inference", type=Path, help="a copy of jayded/evidence-inference")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "pipeline/stages" / MODEL_FILE
    )
    args = parser.parse_args()
    train = evidence_inference_rows(args.evidence_inference, "train")
    validation = evidence_inference_rows(args.evidence_inference, "validation")
    classes = ["increased", "decreased", "no_difference"]

    best = (-1.0, GRID[0])
    for c in GRID:
        vectors = DictVectorizer()
        model = LogisticRegression(C=c, max_iter=5000).fit(
            vectors.fit_transform(_features(train)), [r.label for r in train]
        )
        guesses = list(model.predict(vectors.transform(_features(validation))))
        macro = score([r.label for r in validation], guesses, classes).macro_f1
        print(f"C={c}: validation macro-F1 {macro:.4f}")
        best = max(best, (macro, c))

    rows = train + validation
    vectors = DictVectorizer()
    model = LogisticRegression(C=best[1], max_iter=5000).fit(
        vectors.fit_transform(_features(rows)), [r.label for r in rows]
    )
    order = [list(model.classes_).index(c) for c in classes]
    weights = {}
    for k, name in enumerate(vectors.get_feature_names_out()):
        row = [round(float(model.coef_[i][k]), 4) for i in order]
        if any(row):
            weights[str(name)] = row
    bias = [round(float(model.intercept_[i]), 4) for i in order]
    weights["BIAS"] = [round(a + b, 4) for a, b in zip(weights.get("BIAS", [0.0, 0.0, 0.0]), bias)]
    args.out.write_text(
        json.dumps(
            {
                "source": "Evidence Inference 2.0 (jayded/evidence-inference, MIT licence): "
                "annotations/v2_annotations.csv with a valid label, joined with prompts_merged.csv; "
                "splits ev2_train and ev2_validation",
                "trained_by": "tools/train_direction.py (scikit-learn LogisticRegression)",
                "C": best[1],
                "rows": len(rows),
                "classes": classes,
                "weights": weights,
            },
            separators=(",", ":"),
            sort_keys=True,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"C={best[1]} chosen; {len(weights)} weights from {len(rows)} rows -> {args.out}")


if __name__ == "__main__":
    main()
