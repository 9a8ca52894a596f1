"""Generate schemas/claim_record.schema.json from the pydantic models.

`python -m pipeline.schema` rewrites the file; `--check` exits 1 when the checked-in file
has drifted from the models (the test suite runs the same comparison).
"""

from __future__ import annotations

import json
import sys

from pipeline.files import write_text_atomic
from pipeline.models import ClaimRecord
from pipeline.resources import record_schema_path
from pipeline.llm.strict_schema import without_stage_rules


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
            print(f"{path} is out of date: run python -m pipeline.schema", file=sys.stderr)
            return 1
        print(f"{path} is up to date")
        return 0
    write_text_atomic(path, record_schema_text())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
