"""`claims add-evidence` and `claims match`: claims that grow as studies accumulate."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from pipeline.cli.app import (
    DbOption,
    MaxPdfOption,
    NotAStudyOption,
    PasswordStdinOption,
    StageProgress,
    VerifyOption,
    app,
    credentials,
    doi_tools,
    err,
    one_line_errors,
    open_store,
    out,
    paper_tools,
    pdf_cap,
    run_settings,
    say_adaptations,
)
from pipeline.cli.review import ReviewerOption
from pipeline.core.errors import InputError
from pipeline.core.files import require_writable_folder
from pipeline.core.models import Stance
from pipeline.core.settings import current
from pipeline.llm.base import LLMContext, RecordingChatModel
from pipeline.llm.providers import get_model
from pipeline.llm.recording import save_eval_recording
from pipeline.stages.check import count
from pipeline.team.accounts import attributed
from pipeline.workflow.evaluation import (
    DIRECTION_LABELS,
    STRENGTH_LABELS,
    EvalResult,
    evaluate,
    evaluate_direction,
    evaluate_strength,
    read_dataset,
    read_direction_set,
    read_strength_set,
)
from pipeline.workflow.evidence import already_a_study, rank_matches
from pipeline.workflow.paper import PaperOptions, PaperRequest, add_paper, locate
from pipeline.workflow.pool import ParsePool, read_alone


@app.command("add-evidence")
@one_line_errors
def add_evidence_command(
    claim_id: str = typer.Argument(..., metavar="CLAIM_ID", help="The claim record to add the study to."),
    source: str = typer.Argument(..., metavar="PDF|DOI", help="The new study."),
    pdf: Path | None = typer.Option(
        None, "--pdf", metavar="PDF", help="With a DOI: read this PDF instead of downloading one."
    ),
    reviewer: str = ReviewerOption,
    model: str = typer.Option(
        None, "--model", metavar="MODEL", help="Model name. Default: $CLAIMS_MODEL or gpt-4o-mini."
    ),
    record: Path | None = typer.Option(
        None, "--record", metavar="DIR", help="Keep this run as a recording in this folder."
    ),
    refresh: bool = typer.Option(False, "--refresh", help="Ignore cached DOI metadata and PDFs."),
    max_pdf_mb: float | None = MaxPdfOption,
    not_a_study_ok: bool = NotAStudyOption,
    verify_with: str | None = VerifyOption,
    password_stdin: bool = PasswordStdinOption,
    db: str | None = DbOption,
) -> None:
    """Add a study to a claim: its stance, a new synthesis, the checks; a new draft version.

    An approved version stays in the history until the new one is approved."""
    store = open_store(db)
    reviewer = attributed(store, reviewer, "add-evidence", credentials(password_stdin))
    if record:
        require_writable_folder(record.resolve().parent, "recording")
    live = get_model(current())
    settings = run_settings(model, live, verify_with)
    request = PaperRequest(source, pdf=pdf, record_to=record)
    options = PaperOptions(refresh=refresh, not_a_study_ok=not_a_study_ok, started_by=reviewer)
    progress = StageProgress(err)
    try:
        with ParsePool(warm=live.warm, workers=1, max_pdf_bytes=pdf_cap(max_pdf_mb)) as pool:
            tools = paper_tools(live, live, store, pool, max_pdf_mb, progress=progress)
            added = add_paper(request, claim_id, settings, tools, options)
    finally:
        progress.stop()
        say_adaptations(live)
    if added is None:
        out.print(f"{source} is already a study of record {claim_id}; nothing changed", markup=False)
        return
    updated = added.after
    by_stance = {s: sum(1 for st in updated.studies if st.stance is s) for s in Stance}
    scores = updated.scores
    out.print(
        f"{updated.studies[-1].reference.study_id}: {added.stance.stance.value.replace('_', ' ')} \u2014 "
        f"{added.stance.rationale}",
        markup=False,
    )
    out.print(
        f"record {updated.record_id} version {added.version} (a draft): synthesis from {len(updated.studies)} studies; "
        f"supporting {by_stance[Stance.supporting]}, contradicting {by_stance[Stance.contradicting]}, "
        f"no clear bearing {by_stance[Stance.no_clear_bearing]}; Pro {scores.pro:g} / Against {scores.against:g}; "  # type: ignore[union-attr]
        f"certainty {updated.certainty.certainty.value.replace('_', ' ')}",
        markup=False,
    )
    out.print(f"checks: {count(updated.checks).line()}", markup=False)


@app.command("match")
@one_line_errors
def match_command(
    source: str = typer.Argument(..., metavar="PDF|DOI", help="The new paper."),
    limit: int = typer.Option(10, "--limit", min=1, help="Show at most this many claims, best first."),
    refresh: bool = typer.Option(False, "--refresh", help="Ignore cached DOI metadata and PDFs."),
    max_pdf_mb: float | None = MaxPdfOption,
    db: str | None = DbOption,
) -> None:
    """List the stored claims a paper bears on, best first, with the terms they share.

    No model call: a lexical match of the paper's title and abstract to each claim's population,
    intervention and outcome."""
    located = locate(PaperRequest(source), doi_tools(max_pdf_mb), refresh, StageProgress(err))
    document = read_alone(located.pdf, pdf_cap(max_pdf_mb))
    metadata = located.metadata
    opening = " ".join(
        filter(
            None,
            [
                metadata.title if metadata else None,
                metadata.abstract if metadata else None,
                document.text_of(("front", "abstract"), 8000),
            ],
        )
    )
    matches = rank_matches([record for record, _ in open_store(db, read_only=True).records()], opening)
    table = Table(title=f"claims {document.study_id} may bear on")
    table.add_column("score", no_wrap=True)
    table.add_column("id", no_wrap=True, min_width=12)
    for column in ("claim", "shared terms"):
        table.add_column(column, overflow="fold", ratio=1)
    for match in matches[:limit]:
        shared = "; ".join(f"{part}: {', '.join(words)}" for part, words in match.shared.items() if words) or "none"
        already = already_a_study(match.claim, document)
        table.add_row(
            f"{match.score:g}",
            match.claim.record_id,
            match.claim.claim.text + (" [already a study of this claim]" if already else ""),
            shared,
        )
    out.print(table)


OFFLINE_KINDS = ("strength", "direction")


@app.command("eval")
@one_line_errors
def eval_command(
    target: str = typer.Argument(
        ...,
        metavar="DATASET|strength|direction",
        help="A stance set (HealthVer CSV, or SciFact-format claims JSONL with --corpus), or 'strength' or "
        "'direction' followed by their labelled CSV.",
    ),
    labelled: Path | None = typer.Argument(
        None,
        metavar="FILE.csv",
        help="With strength: columns sentence,label (0 not a claim, 1 correlational, 2 conditional causal, "
        "3 direct causal). With direction: columns intervention,comparator,outcome,evidence,label "
        "(increased, decreased, no_difference).",
    ),
    as_json: bool = typer.Option(False, "--json", help="strength, direction: print one JSON object instead."),
    corpus: Path | None = typer.Option(
        None, "--corpus", metavar="FILE.jsonl", help="SciFact format: the abstracts the claims cite (JSONL)."
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N rows."),
    model: str = typer.Option(
        None, "--model", metavar="MODEL", help="Model name. Default: $CLAIMS_MODEL or gpt-4o-mini."
    ),
    record: Path | None = typer.Option(
        None, "--record", metavar="DIR", help="Keep the run as a recording (replay it with claims replay)."
    ),
) -> None:
    """Measure a classifier on a labelled set: the stance stage (calls the model), or the offline
    readers of claim strength and effect direction (no model call)."""
    if target in OFFLINE_KINDS:
        if labelled is None:
            raise InputError(f"claims eval {target} needs its labelled CSV: claims eval {target} FILE.csv")
        _eval_offline(target, labelled, limit, as_json)
        return
    if labelled is not None:
        raise InputError(f"unexpected {labelled} after {target}: only 'strength' and 'direction' take a second file")
    dataset = Path(target)
    rows = read_dataset(dataset, corpus, limit)
    if record:
        require_writable_folder(record, "recording")
    live = get_model(current())
    settings, base_url = run_settings(model, live), current().base_url
    chat = RecordingChatModel(live) if record else live
    with err.status(f"classifying {len(rows)} rows ..."):
        llm = LLMContext(chat, settings)
        result = evaluate(rows, llm)
    print_eval(result)
    if record and isinstance(chat, RecordingChatModel):
        save_eval_recording(
            record, dataset, corpus, limit, settings, chat, result, base_url, llm.prompts, tuple(live.adaptations)
        )
        err.print(f"recording saved to {record}")
    say_adaptations(live)


def _eval_offline(kind: str, path: Path, limit: int | None, as_json: bool) -> None:
    if kind == "strength":
        sentences = read_strength_set(path)[:limit]
        scores, names = evaluate_strength(sentences), STRENGTH_LABELS
    else:
        rows = read_direction_set(path)[:limit]
        scores, names = evaluate_direction(rows), {label: label for label in DIRECTION_LABELS}
    if as_json:
        out.print_json(data={"kind": kind, **scores.as_json()})
        return
    table = Table(title=f"{kind} on {scores.n} rows: accuracy {scores.accuracy:.1%}, macro-F1 {scores.macro_f1:.3f}")
    for column in ("label", "precision", "recall", "F1", "rows"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, row in scores.per_class.items():
        table.add_row(
            _label_name(label, names),
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['f1']:.3f}",
            str(row["support"]),
        )
    out.print(table)
    matrix = Table(title="confusion (rows: label, columns: predicted)")
    matrix.add_column("label \\ predicted")
    for label in scores.confusion:
        matrix.add_column(_label_name(label, names), justify="right")
    for label, counts in scores.confusion.items():
        matrix.add_row(_label_name(label, names), *[str(n) for n in counts.values()])
    out.print(matrix)
    out.print(f"macro-F1 {scores.macro_f1:.4f}; accuracy {scores.accuracy:.4f} on {scores.n} rows", markup=False)


def _label_name(label: str, names: dict[str, str]) -> str:
    name = names[label]
    return label if name == label else f"{label} {name.replace('_', ' ')}"


def print_eval(result: EvalResult) -> None:
    table = Table(title=f"stance on {len(result.rows)} rows: accuracy {result.accuracy:.1%}")
    table.add_column("label \\ predicted")
    columns = [s.value for s in Stance] + ["error"]
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    for label, counts in result.confusion().items():
        table.add_row(label.replace("_", " "), *[str(counts[c]) for c in columns])
    out.print(table)
    out.print(
        f"accuracy {result.accuracy:.4f} ({sum(1 for r, g in zip(result.rows, result.predictions) if g is r.label)}"
        f" of {len(result.rows)})",
        markup=False,
    )
    for error in result.errors[:10]:
        err.print(f"  {error}", markup=False)
