"""Derive the JSON Schema that OpenAI's strict structured outputs accept from a pydantic model.

Strict mode rejects what `model_json_schema()` emits by default: every property must be listed
in `required`, every object needs `additionalProperties: false`, `default` is refused, and a
`$ref` may not carry sibling keywords. Optional fields stay optional in meaning because pydantic
already types them as `anyOf: [T, null]`; the model must then send an explicit `null`.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel

_DROPPED_KEYWORDS = {"default", "title"}


@cache
def strict_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """Built once per model class; callers must not change what it returns."""
    return _make_strict(model.model_json_schema())


def _make_strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_make_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return {"$ref": node["$ref"]}
    strict = {
        key: (_strict_properties(value) if key == "properties" else _make_strict(value))
        for key, value in node.items()
        if key not in _DROPPED_KEYWORDS
    }
    if "properties" in strict:
        strict["additionalProperties"] = False
        strict["required"] = list(strict.get("properties", {}))
    return strict


def _strict_properties(properties: dict[str, Any]) -> dict[str, Any]:
    """Property names are keys, not keywords: only their schemas are rewritten."""
    return {name: _make_strict(schema) for name, schema in properties.items()}
