"""`claims eval`: stance classification measured on a labelled set of (claim, evidence, label), and
the offline readers of claim strength and effect direction on theirs.

Reads HealthVer's CSV (id, evidence, claim, label: Supports / Refutes / Neutral) and the SciFact
format (claims JSONL with `evidence` by cited doc id, plus a corpus JSONL of abstracts, as
SciFact and Citation-Integrity ship them: SUPPORT / CONTRADICT or REFUTE / no evidence). Each
row's evidence is classified with the same stance prompt `claims add-evidence` uses, so the
figures speak for that stage. Accuracy and the confusion matrix are printed; a run can be
recorded and replayed like any other.
"""

from __future__ import annotations

import csv
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core.errors import InputError, LLMError
from pipeline.core.models import Stance
from pipeline.llm.base import LLMContext
from pipeline.sources.pdf import Document, Span
from pipeline.stages.claim_strength import Strength, read_strength
from pipeline.stages.effect_direction import Reported, read_direction
from pipeline.workflow.evidence import classify_stance

LABELS = {
    "supports": Stance.supporting,
    "support": Stance.supporting,
    "refutes": Stance.contradicting,
    "refute": Stance.contradicting,
    "contradict": Stance.contradicting,
    "neutral": Stance.no_clear_bearing,
    "nei": Stance.no_clear_bearing,
}


@dataclass(frozen=True)
class EvalRow:
    row_id: str
    claim: str
    evidence: str
    label: Stance


def read_dataset(path: Path, corpus: Path | None = None, limit: int | None = None) -> list[EvalRow]:
    try:
        rows = _healthver(path) if path.suffix.lower() == ".csv" else _scifact(path, corpus)
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{path}: cannot read it as a labelled set ({type(exc).__name__}: {exc})") from exc
    if not rows:
        raise InputError(f"{path}: no labelled row in it")
    return rows[:limit] if limit else rows


def _healthver(path: Path) -> list[EvalRow]:
    with path.open(newline="", encoding="utf-8") as stream:
        return [
            EvalRow(row["id"], row["claim"], row["evidence"], LABELS[row["label"].strip().lower()])
            for row in csv.DictReader(stream)
        ]


def _scifact(path: Path, corpus: Path | None) -> list[EvalRow]:
    if corpus is None:
        raise InputError(f"{path}: SciFact-format claims need the abstracts they cite: pass --corpus corpus.jsonl")
    abstracts = {}
    for line in corpus.read_text(encoding="utf-8").splitlines():
        if line.strip():
            doc = json.loads(line)
            text = doc["abstract"] if isinstance(doc["abstract"], str) else " ".join(doc["abstract"])
            abstracts[str(doc["doc_id"])] = f"{doc.get('title') or ''}\n{text}".strip()
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        claim = json.loads(line)
        for doc_id in map(str, claim.get("cited_doc_ids", [])):
            if doc_id not in abstracts:
                continue
            labels = [item["label"] for item in claim.get("evidence", {}).get(doc_id, [])]
            label = LABELS[labels[0].lower()] if labels else Stance.no_clear_bearing
            rows.append(EvalRow(f"{claim['id']}:{doc_id}", claim["claim"], abstracts[doc_id], label))
    return rows


def evidence_document(row: EvalRow) -> Document:
    """A row's evidence as a one-page document, so the stance stage reads it like a paper."""
    text = f"Abstract\n{row.evidence}"
    return Document(
        file_name=f"row-{row.row_id}",
        sha256="",
        pages=[text],
        spans=[Span("abstract", 1, text)],
        doi=f"row:{row.row_id}",
        title=None,
    )


@dataclass
class EvalResult:
    predictions: list[Stance | None]  # None: the model gave no usable answer
    rows: list[EvalRow]
    errors: list[str] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        right = sum(1 for row, guess in zip(self.rows, self.predictions) if guess is row.label)
        return right / len(self.rows) if self.rows else 0.0

    def confusion(self) -> dict[str, dict[str, int]]:
        """label -> predicted -> count, 'error' for rows without an answer."""
        matrix = {label.value: {**{p.value: 0 for p in Stance}, "error": 0} for label in Stance}
        for row, guess in zip(self.rows, self.predictions):
            matrix[row.label.value][guess.value if guess else "error"] += 1
        return matrix

    def summary(self) -> dict[str, object]:
        return {
            "rows": len(self.rows),
            "accuracy": round(self.accuracy, 4),
            "confusion": self.confusion(),
            "errors": self.errors,
        }


def evaluate(rows: list[EvalRow], llm: LLMContext, workers: int = 4) -> EvalResult:
    def one(row: EvalRow) -> tuple[Stance | None, str | None]:
        try:
            return classify_stance(row.claim, evidence_document(row), [], llm).stance, None
        except LLMError as exc:
            return None, f"row {row.row_id}: {exc}"

    with ThreadPoolExecutor(max_workers=workers) as pool:
        answers = list(pool.map(one, rows))
    return EvalResult([a for a, _ in answers], rows, [e for _, e in answers if e])


# --------------------------------------------------------------------------- wording and direction
# `claims eval strength|direction`: the two offline readers of the faithfulness checks measured on
# labelled sets, with no model call.

STRENGTH_LABELS = {str(s.value): s.name for s in Strength}
DIRECTION_LABELS = [r.value for r in Reported]


@dataclass(frozen=True)
class DirectionRow:
    intervention: str
    comparator: str
    outcome: str
    evidence: str
    label: str


@dataclass(frozen=True)
class Scores:
    """Per-class precision, recall and F1, their macro average, accuracy and the confusion
    matrix (label -> predicted -> count)."""

    n: int
    accuracy: float
    macro_f1: float
    per_class: dict[str, dict[str, float]]
    confusion: dict[str, dict[str, int]]

    def as_json(self) -> dict[str, object]:
        return {
            "n": self.n,
            "accuracy": round(self.accuracy, 4),
            "macro_f1": round(self.macro_f1, 4),
            "per_class": {
                label: {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
                for label, row in self.per_class.items()
            },
            "confusion": self.confusion,
        }


def score(labels: list[str], predictions: list[str], classes: list[str]) -> Scores:
    confusion = {label: dict.fromkeys(classes, 0) for label in classes}
    for label, guess in zip(labels, predictions):
        confusion[label][guess] += 1
    per_class: dict[str, dict[str, float]] = {}
    for c in classes:
        right = confusion[c][c]
        predicted = sum(confusion[label][c] for label in classes)
        actual = sum(confusion[c].values())
        precision = right / predicted if predicted else 0.0
        recall = right / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[c] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
    right = sum(confusion[c][c] for c in classes)
    return Scores(
        n=len(labels),
        accuracy=right / len(labels) if labels else 0.0,
        macro_f1=sum(row["f1"] for row in per_class.values()) / len(classes),
        per_class=per_class,
        confusion=confusion,
    )


def _labelled_rows(path: Path, columns: list[str], labels: list[str]) -> list[dict[str, str]]:
    """The rows of a labelled CSV, every one checked: a bad file is one clear error naming its row."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as stream:
            reader = csv.DictReader(stream)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(
                    f"{path}: needs the columns {','.join(columns)} (missing: {', '.join(missing)}); "
                    f"the first line must name them"
                )
            rows = []
            for number, row in enumerate(reader, start=2):
                label = (row.get("label") or "").strip()
                if label not in labels:
                    raise InputError(f"{path}, line {number}: label {label!r} is not one of {', '.join(labels)}")
                rows.append({**{c: (row.get(c) or "").strip() for c in columns}, "label": label})
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read it as a CSV file ({exc})") from exc
    if not rows:
        raise InputError(f"{path}: no labelled row in it")
    return rows


def read_strength_set(path: Path) -> list[tuple[str, str]]:
    """(sentence, label 0-3) rows: not a claim, correlational, conditional causal, direct causal."""
    return [(row["sentence"], row["label"]) for row in _labelled_rows(path, ["sentence"], list(STRENGTH_LABELS))]


def read_direction_set(path: Path) -> list[DirectionRow]:
    columns = ["intervention", "comparator", "outcome", "evidence"]
    return [DirectionRow(**row) for row in _labelled_rows(path, columns, DIRECTION_LABELS)]


def evaluate_strength(rows: list[tuple[str, str]]) -> Scores:
    predictions = [str(read_strength(sentence).strength.value) for sentence, _ in rows]
    return score([label for _, label in rows], predictions, list(STRENGTH_LABELS))


def evaluate_direction(rows: list[DirectionRow]) -> Scores:
    predictions = [
        read_direction(row.intervention, row.comparator, row.outcome, row.evidence).reported.value for row in rows
    ]
    return score([row.label for row in rows], predictions, DIRECTION_LABELS)


_EI_LABELS = {
    "significantly increased": Reported.increased.value,
    "significantly increase": Reported.increased.value,
    "significantly decreased": Reported.decreased.value,
    "no significant difference": Reported.no_difference.value,
}


def evidence_inference_rows(folder: Path, split: str) -> list[DirectionRow]:
    """Evidence Inference 2.0 as `claims eval direction` reads it: the annotations with a valid
    label, joined with their prompts by PromptID, of the articles of one split (train, validation
    or test); an evidence passage several annotators marked alike is counted once.

    `folder` is a copy of the repository jayded/evidence-inference (or its annotations folder)."""
    base = folder / "annotations" if (folder / "annotations").is_dir() else folder
    try:
        articles = set((base / "splits" / f"ev2_{split}_article_ids.txt").read_text().split())
        with (base / "prompts_merged.csv").open(newline="", encoding="utf-8") as stream:
            prompts = {row["PromptID"]: row for row in csv.DictReader(stream)}
        with (base / "v2_annotations.csv").open(newline="", encoding="utf-8") as stream:
            annotations = list(csv.DictReader(stream))
    except (OSError, KeyError, csv.Error) as exc:
        raise InputError(f"{folder}: not a copy of Evidence Inference's annotations ({exc})") from exc
    rows: dict[DirectionRow, None] = {}
    for note in annotations:
        prompt = prompts.get(note["PromptID"])
        label = _EI_LABELS.get(note["Label"].strip())
        evidence = " ".join(note["Annotations"].split())
        if note["Valid Label"] != "True" or note["PMCID"] not in articles or not prompt or not label or not evidence:
            continue
        row = DirectionRow(
            prompt["Intervention"].strip(), prompt["Comparator"].strip(), prompt["Outcome"].strip(), evidence, label
        )
        rows[row] = None
    return list(rows)
