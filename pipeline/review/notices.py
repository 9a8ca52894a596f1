"""Claims that stay true after publication: ask again whether a stored record's studies were
retracted, corrected or given an expression of concern (Crossref `updated-by`, OpenAlex
`is_retracted`) and, when something new is found, make the record a new draft that says so.

Such a draft drops out of the public export (the latest decision is no longer an approval) until
a reviewer approves it again, with the notice in front of them, or rejects it.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.core.models import CheckResult, CheckStatus, ClaimRecord, Flag, ReviewStatus
from pipeline.sources.metadata import Notice
from pipeline.stages.check import PUBLICATION_STATUS
from pipeline.team.store import Store

CODES = {"retraction": "study_retracted", "correction": "study_corrected", "expression_of_concern": "study_concern"}
WORDS = {
    "retraction": "retracted",
    "correction": "corrected",
    "expression_of_concern": "given an expression of concern",
}


def notice_flags(record: ClaimRecord, notices_of: Callable[[str], list[Notice]]) -> list[Flag]:
    """A flag for each notice about each of the record's studies with a DOI, and the record's
    references marked retracted where one was."""
    flags = []
    for i, study in enumerate(record.studies):
        if not study.reference.doi:
            continue
        for notice in notices_of(study.reference.doi):
            if notice.kind == "retraction":
                study.reference.retracted = True
            flags.append(
                Flag(
                    where=f"studies[{i}].reference",
                    code=CODES[notice.kind],
                    message=f"{study.reference.doi} was {WORDS[notice.kind]}"
                    + (f" on {notice.date}" if notice.date else "")
                    + (f": notice {notice.notice_doi}" if notice.notice_doi else "")
                    + f" (from {notice.source})",
                )
            )
    return flags


def recheck_notices(store: Store, record_id: str, notices_of: Callable[[str], list[Notice]]) -> list[Flag]:
    """The notices not yet on the record; with any, the record becomes a new draft version."""
    record, version = store.get_versioned(record_id)
    earlier = next((c for c in record.checks if c.name == PUBLICATION_STATUS), None)
    known = {(f.code, f.message) for f in earlier.flags} if earlier else set()
    new = [flag for flag in notice_flags(record, notices_of) if (flag.code, flag.message) not in known]
    if not new:
        return []
    flags = [*(earlier.flags if earlier else []), *new]
    result = CheckResult(
        name=PUBLICATION_STATUS,
        status=CheckStatus.flagged,
        summary=f"{len(flags)} notice(s) about the studies since they were published",
        flags=flags,
    )
    record.checks = [
        *(c for c in record.checks if c.name not in (PUBLICATION_STATUS, "schema")),
        result,
        *(c for c in record.checks if c.name == "schema"),
    ]
    record.status = ReviewStatus.draft
    store.update(record, version, "rechecked", "claims recheck", "; ".join(flag.message for flag in new))
    return new
