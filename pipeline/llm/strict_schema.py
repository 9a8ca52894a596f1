"""The JSON Schema sent with each model request: strict, and as tight as the request allows.

OpenAI's strict structured outputs reject what `model_json_schema()` emits by default: every
property must be listed in `required`, every object needs `additionalProperties: false`,
`default` is refused, and a `$ref` may not carry sibling keywords. Optional fields stay optional
in meaning because pydantic already types them as `anyOf: [T, null]`; the model must then send
an explicit `null`.

On top of that, `request_schema` applies the stage rules the models declare under `x-stage`
(see `models.stage_rule`), filling in what depends on the request: the ids of the studies given
(`$study_ids`, an enum), the paper's page count (`$pages`), the number of studies (`$studies`) and
the number of findings a second opinion judges (`$findings`, `$last_finding`).
Only keywords that OpenAI's strict subset and llama.cpp's / vLLM's grammar conversion both accept
are used: `enum`, `minItems`, `maxItems`, `minimum`, `maximum`, `exclusiveMinimum`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from pipeline.core.memo import computed_once
from pipeline.core.models import STAGE_RULES

_DROPPED_KEYWORDS = {"default", "title"}


@dataclass(frozen=True)
class RequestFacts:
    """What a request's schema may depend on. None: not known, the rule is left out."""

    study_ids: tuple[str, ...] | None = None
    pages: int | None = None
    findings: int | None = None  # how many findings a second opinion is asked about


@computed_once
def strict_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """Built once per model class, stage rules still unresolved; callers must not change it."""
    return _make_strict(model.model_json_schema())


def request_schema(model: type[BaseModel], facts: RequestFacts = RequestFacts()) -> dict[str, Any]:
    """The strict schema with every stage rule resolved for this request."""
    return _resolve(strict_json_schema(model), facts)


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


def _resolve(node: Any, facts: RequestFacts) -> Any:
    if isinstance(node, list):
        return [_resolve(item, facts) for item in node]
    if not isinstance(node, dict):
        return node
    resolved = {
        key: (_resolve_properties(value, facts) if key == "properties" else _resolve(value, facts))
        for key, value in node.items()
        if key != STAGE_RULES
    }
    for keyword, value in node.get(STAGE_RULES, {}).items():
        concrete = _fill(value, facts)
        if concrete is not None:
            resolved[keyword] = concrete
    return resolved


def _resolve_properties(properties: dict[str, Any], facts: RequestFacts) -> dict[str, Any]:
    return {name: _resolve(schema, facts) for name, schema in properties.items()}


def _fill(value: Any, facts: RequestFacts) -> Any:
    if value == "$study_ids":
        return list(facts.study_ids) if facts.study_ids else None
    if value == "$studies":
        return len(facts.study_ids) if facts.study_ids else None
    if value == "$pages":
        return facts.pages
    if value == "$findings":
        return facts.findings
    if value == "$last_finding":
        return facts.findings - 1 if facts.findings else None
    return value
