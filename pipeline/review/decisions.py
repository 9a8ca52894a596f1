"""Review: the decisions a person makes on a draft, and the rules they follow.

    draft ──approve──> approved        approve is refused while the record has flags, unless the
      │                   │            reviewer gives an override reason (kept in the history)
      └──reject───> rejected
    approved / rejected ──reopen──> draft
    any ──edit──> draft                an edit is validated and re-checked against the paper; an
                                       invalid edit is refused whole and nothing is saved

Every change names the version it was made on: a change to a record someone else has changed
since is refused (`StaleVersionError`), never merged or overwritten. Web page and CLI both call
these functions, so they cannot disagree.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

from pydantic import ValidationError

from pipeline.core.errors import InputError, InvalidEditError, ReviewRefusedError
from pipeline.core.models import ClaimRecord, ReviewStatus
from pipeline.core.schema import schema_errors
from pipeline.review.render import Approval
from pipeline.sources.pdf import Document, document_from_pages, read_pdf, read_pdf_bytes
from pipeline.stages.check import Sources, run_checks
from pipeline.stages.grade import rate_certainty
from pipeline.team.accounts import started_by
from pipeline.team.store import Store, flag_count


def _require_reviewer(reviewer: str) -> str:
    if not reviewer.strip():
        raise InputError("a reviewer's name is required (--reviewer NAME)")
    return reviewer.strip()


def flag_summary(record: ClaimRecord) -> str:
    codes = [flag.code.replace("_", " ") for check in record.checks for flag in check.flags]
    return ", ".join(f"{codes.count(code)} {code}" for code in dict.fromkeys(codes))


# The one state machine, for the CLI and the web page alike: a decision is made on a draft; to
# change a decision, reopen the record (back to draft) first. An edit always makes a new draft.
ALLOWED = {
    "approve": {ReviewStatus.draft},
    "reject": {ReviewStatus.draft},
    "reopen": {ReviewStatus.approved, ReviewStatus.rejected},
}


_PAST = {"approve": "approved", "reject": "rejected", "reopen": "reopened"}


def allowed_actions(record: ClaimRecord) -> list[str]:
    """What a reviewer may do to the record now (an edit is always allowed)."""
    return [action for action, states in ALLOWED.items() if record.status in states] + ["edit"]


def _require_state(record: ClaimRecord, action: str) -> None:
    if record.status in ALLOWED[action]:
        return
    if record.status is ReviewStatus.draft:
        raise ReviewRefusedError(f"record {record.record_id} is a draft already: there is no decision to reopen")
    raise ReviewRefusedError(
        f"record {record.record_id} is {record.status.value}: only a draft can be {_PAST[action]}; "
        "reopen it first to change the decision"
    )


def _at_version(store: Store, record_id: str, version: int) -> ClaimRecord:
    """The record, if it is still at `version`: read with its version in one read, so that a
    decision someone made meanwhile is reported as that (who, when: reload), never judged by the
    state it left ("only a draft can be approved")."""
    record, current = store.get_versioned(record_id)
    if current != version:
        store.require_version(record_id, version)  # versions only grow: this says who changed it
    return record


# The store setting that makes the four-eyes rule hold for every approval, on the command line
# and on every review server alike (`claims db settings --require-second-reviewer on`).
SECOND_REVIEWER = "require_second_reviewer"


def second_reviewer_required(store: Store) -> bool:
    return store.setting(SECOND_REVIEWER) == "on"


def authors(store: Store, record_id: str) -> set[str]:
    """Everyone who made what an approval would approve: the curator who started the run, and
    whoever edited the record or added evidence to it."""
    found = set()
    for entry in store.history(record_id):
        if entry.action == "created":
            found.add(started_by(entry.note) or entry.actor)
        elif entry.action in ("edited", "evidence added"):
            found.add(entry.actor)
    return found


def approve(
    store: Store,
    record_id: str,
    version: int,
    reviewer: str,
    note: str = "",
    override: str = "",
    second_reviewer: bool = False,
) -> int:
    """`second_reviewer`: the four-eyes rule (also on when the store's setting says so): no one
    who made the version may approve it. An override lifts the flags' hold, never this rule."""
    record = _at_version(store, record_id, version)
    _require_state(record, "approve")
    if (second_reviewer or second_reviewer_required(store)) and reviewer.strip() in authors(store, record_id):
        raise ReviewRefusedError(
            f"{reviewer.strip()} ran or edited record {record.record_id}: another reviewer must approve it "
            "(the second-reviewer rule)"
        )
    if flag_count(record) and not override.strip():
        raise ReviewRefusedError(
            f"record {record.record_id} has flags ({flag_summary(record)}); resolve them, or approve with "
            "an override reason (--override on the command line)"
        )
    record.status = ReviewStatus.approved
    text = " ".join(
        part for part in (note.strip(), f"override: {override.strip()}" if override.strip() else "") if part
    )
    return store.update(record, version, "approved", _require_reviewer(reviewer), text)


def reject(store: Store, record_id: str, version: int, reviewer: str, reason: str) -> int:
    record = _at_version(store, record_id, version)
    _require_state(record, "reject")
    if not reason.strip():
        raise InputError("a reason is required to reject (--reason TEXT)")
    record.status = ReviewStatus.rejected
    return store.update(record, version, "rejected", _require_reviewer(reviewer), reason.strip())


def reopen(store: Store, record_id: str, version: int, reviewer: str, note: str = "") -> int:
    record = _at_version(store, record_id, version)
    _require_state(record, "reopen")
    record.status = ReviewStatus.draft
    return store.update(record, version, "reopened", _require_reviewer(reviewer), note.strip())


def edit(store: Store, record_id: str, version: int, edited_json: str, reviewer: str, note: str = "") -> ClaimRecord:
    """Validate the edited record, re-check it against its paper, and save it as a new draft version."""
    current = store.get(record_id)
    edited = parse_edit(edited_json)
    # The certainty follows from the design and the ratings (GRADE), whatever the edit says of it.
    edited.certainty.certainty = rate_certainty(
        edited.certainty.design, edited.certainty.domains, edited.certainty.upgrades
    )
    if edited.record_id != current.record_id:
        raise InvalidEditError([f"record_id: may not change ({current.record_id} -> {edited.record_id})"])
    if edited.model_dump() == current.model_dump():
        raise ReviewRefusedError("the edit changes nothing; nothing was saved")
    recheck(store, edited)
    edited.status = ReviewStatus.draft
    store.update(edited, version, "edited", _require_reviewer(reviewer), note.strip())
    return edited


def parse_edit(text: str) -> ClaimRecord:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidEditError([f"not JSON: {exc}"]) from exc
    except RecursionError:
        raise InvalidEditError(["the JSON is nested too deeply to be a record"]) from None
    problems = schema_errors(data)
    if problems:
        raise InvalidEditError(problems)
    try:
        return ClaimRecord.model_validate(data)
    except ValidationError as exc:
        raise InvalidEditError([f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]) from exc


def stored_sources(store: Store, record: ClaimRecord) -> Sources:
    """The texts of the record's studies, as the store keeps them (those it has)."""
    sources: Sources = {}
    for study in record.studies:
        sha = record.pdf_sha256(study.reference.study_id)
        stored = store.source_pages(sha) if sha else None
        if sha and stored is not None:
            file_name, pages = stored
            sources[study.reference.study_id] = document_from_pages(file_name, sha, pages, study.reference.doi)
    return sources


def recheck(store: Store, record: ClaimRecord) -> None:
    """Run the checks again on an edited record, against the stored text of its papers."""
    sources = stored_sources(store, record)
    missing = [
        s.reference.source_file or s.reference.study_id for s in record.studies if s.reference.study_id not in sources
    ]
    if missing:
        raise ReviewRefusedError(
            f"the text of {', '.join(map(str, missing))} is not in the store, so the edit cannot be re-checked; "
            "run the paper again (claims run) to store its text"
        )
    record.checks = run_checks(record, sources)


def recheck_against_pdf(record: ClaimRecord, pdf: Path, read: Callable[[Path], Document] = read_pdf) -> None:
    """The checks run again on a record file against a PDF it was made from (its sha256 must be
    the record's source or one of its studies'); no model is called, so nothing is rewritten.
    `read`: how the PDF is read (the CLI's, in a capped process: a record file can name any hash)."""
    known = {record.provenance.source.sha256} | {s.source_sha256 for s in record.studies if s.source_sha256}
    if hashlib.sha256(read_pdf_bytes(pdf)).hexdigest() not in known:
        raise InputError(f"{pdf} is not a PDF this record was made from (sha256 differs)")
    document = read(pdf)
    owner = next(
        (s.reference.study_id for s in record.studies if s.source_sha256 == document.sha256),
        record.studies[0].reference.study_id,
    )
    record.checks = run_checks(record, {owner: document})


def approved_versions(store: Store) -> Iterator[tuple[ClaimRecord, Approval]]:
    """What readers may see, for `claims export` and the site: the latest approved version of
    each claim with its approval (`Store.published` says which claims are left out)."""
    for summary in store.summaries():
        published = store.published(summary.record_id)
        if published is not None:
            record, entry = published
            yield record, Approval(entry.actor, entry.at, entry.note)
