"""The record schema: schemas/claim_record.schema.json, generated from the pydantic models, and
validation against it.

`python -m pipeline.core.schema` rewrites the file; `--check` exits 1 when the checked-in file
has drifted from the models (the test suite runs the same comparison). The store validates every
record against it before writing, and the check stage reports it as the `schema` check.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pipeline.core.errors import RecordSchemaError
from pipeline.core.files import write_text_atomic
from pipeline.core.memo import computed_once
from pipeline.core.models import STAGE_RULES, ClaimRecord
from pipeline.core.resources import record_schema_path


@computed_once
def record_validator() -> Any:
    """The record schema's validator, built once (about 80 ms): a batch builds it while its first
    requests are out."""
    from jsonschema import Draft202012Validator

    schema = json.loads(record_schema_path().read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_errors(data: Any) -> list[str]:
    """Every way `data` breaks schemas/claim_record.schema.json, as 'path: message' lines."""
    errors = sorted(record_validator().iter_errors(data), key=lambda error: list(error.path))
    return [f"{'/'.join(str(p) for p in error.path) or '(root)'}: {error.message}" for error in errors]


def require_valid(record: ClaimRecord) -> None:
    problems = schema_errors(record.model_dump(mode="json"))
    if problems:
        raise RecordSchemaError(f"record {record.record_id} breaks the schema: {problems[0]}")


def without_stage_rules(node: Any) -> Any:
    """A schema with the stage rules removed (the record schema: records outlive the rules)."""
    if isinstance(node, list):
        return [without_stage_rules(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {key: without_stage_rules(value) for key, value in node.items() if key != STAGE_RULES}


def record_schema_text() -> str:
    schema = without_stage_rules(ClaimRecord.model_json_schema())
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://claims.invalid/schemas/claim_record.schema.json",
        **schema,
    }
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    path = record_schema_path()
    if "--check" in argv:
        if path.read_text() != record_schema_text():
            print(f"{path} is out of date: run python -m pipeline.core.schema", file=sys.stderr)
            return 1
        print(f"{path} is up to date")
        return 0
    write_text_atomic(path, record_schema_text())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
