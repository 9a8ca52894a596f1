"""The live client over real HTTP against the scripted endpoint: retries, repair, refusals,
and the strict schema OpenAI requires."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from pipeline.errors import ConfigError, LLMRefusalError, LLMUnavailableError, StageOutputError
from pipeline.config import RunSettings
from pipeline.llm import LLMContext, OpenAIChatModel, StageCall, UsageLog, ask_structured
from pipeline.retry import RetryPolicy, retry_after_seconds
from pipeline.models import DraftOutput, ExtractOutput, GradeOutput
from pipeline.strict_schema import strict_json_schema
from scripted_endpoint import ScriptedEndpoint, Scripts


class Answer(BaseModel):
    verdict: str
    score: int
    note: str | None


GOOD = {"verdict": "supported", "score": 3, "note": None}


def serve(*answers: dict[str, Any]) -> ScriptedEndpoint:
    return ScriptedEndpoint(Scripts([{"name": "t", "match": "PAPER", "answers": {"answer": list(answers)}}]))


def call(check=lambda _: []) -> StageCall:  # type: ignore[no-untyped-def]
    messages = [{"role": "system", "content": "Judge."}, {"role": "user", "content": "PAPER text"}]
    return StageCall("answer", Answer, messages, "Fix these problems.", check)


def context(chat: OpenAIChatModel, usage: UsageLog) -> LLMContext:
    return LLMContext(chat, RunSettings(model="m"), usage)


def client(server: ScriptedEndpoint, sleeps: list[float] | None = None, attempts: int = 4) -> OpenAIChatModel:
    record = sleeps if sleeps is not None else []
    return OpenAIChatModel("sk-test", server.base_url, timeout=10, retry=RetryPolicy(attempts=attempts), sleep=record.append)


def test_valid_answer_in_one_call() -> None:
    with serve(GOOD) as server:
        usage = UsageLog()
        result = ask_structured(context(client(server), usage), call())
    assert result == Answer(**GOOD)
    assert usage.by_stage["answer"].calls == 1
    sent = server.scripts.requests[0]
    assert sent["response_format"]["json_schema"]["strict"] is True
    assert sent["temperature"] == 0


def test_429_with_retry_after_is_waited_out_then_succeeds() -> None:
    sleeps: list[float] = []
    with serve({"$status": 429, "$headers": {"Retry-After": "2"}}, GOOD) as server:
        result = ask_structured(context(client(server, sleeps), UsageLog()), call())
    assert result.verdict == "supported"
    assert sleeps == [2.0]


def test_repeated_5xx_gives_up_after_bounded_attempts() -> None:
    sleeps: list[float] = []
    with serve({"$status": 503}) as server:
        with pytest.raises(LLMUnavailableError, match="after 3 attempts.*503"):
            ask_structured(context(client(server, sleeps, attempts=3), UsageLog()), call())
    assert len(server.scripts.requests) == 3
    assert len(sleeps) == 2


def test_bad_key_is_a_config_error_not_a_retry() -> None:
    with serve({"$status": 401}) as server:
        with pytest.raises(ConfigError, match="refused the API key"):
            ask_structured(context(client(server), UsageLog()), call())
    assert len(server.scripts.requests) == 1


def test_invalid_json_gets_one_repair_request_with_the_errors() -> None:
    with serve({"$raw": '{"verdict": "supported", "score": "three"'}, GOOD) as server:
        usage = UsageLog()
        result = ask_structured(context(client(server), usage), call())
    assert result.score == 3
    tally = usage.by_stage["answer"]
    assert tally.calls == 2 and tally.completion_tokens > 0
    repair = server.scripts.requests[1]["messages"]
    assert repair[-2]["role"] == "assistant"
    assert "Fix these problems." in repair[-1]["content"] and "Problems:" in repair[-1]["content"]


def test_float_for_an_integer_does_not_crash_the_run() -> None:
    with serve({"verdict": "supported", "score": 3.0, "note": None}) as server:
        assert ask_structured(context(client(server), UsageLog()), call()).score == 3


def test_still_invalid_after_repair_is_a_stage_error() -> None:
    with serve({"$raw": "not json at all"}) as server:
        with pytest.raises(StageOutputError, match="stage answer.*after one repair"):
            ask_structured(context(client(server), UsageLog()), call())
    assert len(server.scripts.requests) == 2


def test_semantic_check_failures_also_trigger_the_repair() -> None:
    def no_low_scores(answer: Answer) -> list[str]:
        return ["score: must be at least 2"] if answer.score < 2 else []

    with serve({"verdict": "x", "score": 1, "note": None}, GOOD) as server:
        assert ask_structured(context(client(server), UsageLog()), call(no_low_scores)).score == 3
    assert "score: must be at least 2" in server.scripts.requests[1]["messages"][-1]["content"]


def test_refusal_is_reported() -> None:
    with serve({"$refusal": "I cannot help with that."}) as server:
        with pytest.raises(LLMRefusalError, match="refused: I cannot help"):
            ask_structured(context(client(server), UsageLog()), call())


def test_missing_key_is_refused_before_any_request() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
        OpenAIChatModel("")


@pytest.mark.parametrize(("header", "seconds"), [("5", 5.0), ("0", 0.0), (None, None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)])
def test_retry_after_header(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds({"retry-after": header} if header else {}) == seconds


def _walk(node: Any, path: str = "$"):  # type: ignore[no-untyped-def]
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")


@pytest.mark.parametrize("model", [ExtractOutput, DraftOutput, GradeOutput, Answer])
def test_strict_schema_follows_openai_rules(model: type[BaseModel]) -> None:
    schema = strict_json_schema(model)
    for path, node in _walk(schema):
        assert "default" not in node, path
        if "$ref" in node:
            assert set(node) == {"$ref"}, f"{path}: $ref with siblings"
        if "properties" in node:
            assert node["additionalProperties"] is False, path
            assert sorted(node["required"]) == sorted(node["properties"]), path
    # Optional fields stay nullable rather than becoming mandatory strings.
    note = strict_json_schema(Answer)["properties"]["note"]
    assert {"type": "null"} in note["anyOf"]
    json.dumps(schema)  # serialisable as sent


def test_json_in_a_markdown_fence_is_accepted() -> None:
    with serve({"$raw": '```json\n{"verdict": "supported", "score": 2, "note": null}\n```'}) as server:
        assert ask_structured(context(client(server), UsageLog()), call()).score == 2
    assert len(server.scripts.requests) == 1
