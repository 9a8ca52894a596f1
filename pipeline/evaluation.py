"""`claims eval`: stance classification measured on a labelled set of (claim, evidence, label).

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

from pipeline.errors import InputError, LLMError
from pipeline.evidence import classify_stance
from pipeline.llm.base import LLMContext
from pipeline.models import Stance
from pipeline.sources.pdf import Document, Span

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
