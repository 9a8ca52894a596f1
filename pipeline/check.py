"""Stage 5, check: the assembled record against the JSON Schema, then the faithfulness checks.

`RECORD_CHECKS` is the one list of checks that run on every record; each takes the record and
the source document and returns a `CheckResult`. Checks report, they do not repair: a flagged
record is stored as a draft with its flags for a reviewer to see.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any, Callable

from .errors import ClaimsError
from .ingest import Document
from .models import CheckResult, CheckStatus, ClaimRecord, Flag
from .resources import record_schema_path


class RecordSchemaError(ClaimsError):
    """The pipeline built a record its own schema refuses: a bug, never written to the store."""


@cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    schema = json.loads(record_schema_path().read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_errors(data: Any) -> list[str]:
    """Every way `data` breaks schemas/claim_record.schema.json, as 'path: message' lines."""
    errors = sorted(_validator().iter_errors(data), key=lambda error: list(error.path))
    return [f"{'/'.join(str(p) for p in error.path) or '(root)'}: {error.message}" for error in errors]


def require_valid(record: ClaimRecord) -> None:
    problems = schema_errors(record.model_dump(mode="json"))
    if problems:
        raise RecordSchemaError(f"record {record.record_id} breaks the schema: {problems[0]}")


def schema_check(record: ClaimRecord, document: Document) -> CheckResult:
    problems = schema_errors(record.model_dump(mode="json"))
    return CheckResult(
        name="schema",
        status=CheckStatus.failed if problems else CheckStatus.passed,
        summary=f"{len(problems)} schema error(s)" if problems else "valid against claim_record.schema.json",
        flags=[Flag(where=problem.split(":", 1)[0], message=problem) for problem in problems],
    )


def citation_check(record: ClaimRecord, document: Document) -> CheckResult:
    """Every study cited by a causal step must be one of the record's own studies."""
    known = {study.reference.study_id for study in record.studies}
    flags = [
        Flag(where=f"mechanism.steps[{index}].citations", message=f"cites {cited}, which is not a study of this record")
        for index, step in enumerate(record.mechanism.steps)
        for cited in step.citations
        if cited not in known
    ]
    return CheckResult(
        name="citations",
        status=CheckStatus.flagged if flags else CheckStatus.passed,
        summary=f"{len(flags)} citation(s) to studies not given" if flags else "every citation is a study of this record",
        flags=flags,
    )


RECORD_CHECKS: tuple[Callable[[ClaimRecord, Document], CheckResult], ...] = (schema_check, citation_check)


def run_checks(record: ClaimRecord, document: Document) -> list[CheckResult]:
    return [check(record, document) for check in RECORD_CHECKS]
