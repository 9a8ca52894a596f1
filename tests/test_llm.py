"""The live client over real HTTP against the scripted endpoint: retries, repair, refusals,
and the strict schema OpenAI requires."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from conftest import chat_request
from pydantic import BaseModel
from scripted_endpoint import ScriptedEndpoint, Scripts, completion

from pipeline.core.errors import (
    ConfigError,
    EndpointUnreachableError,
    LLMError,
    LLMRefusalError,
    LLMUnavailableError,
    StageOutputError,
)
from pipeline.core.models import (
    DraftOutput,
    ExtractOutput,
    Flag,
    GradeDomain,
    GradeOutput,
    StanceOutput,
    SynthesisOutput,
    UpgradeFactor,
)
from pipeline.core.retry import RetryPolicy, retry_after_seconds
from pipeline.core.settings import RunSettings
from pipeline.llm.base import LLMContext, StageCall, UsageLog, ask_structured
from pipeline.llm.openai import OpenAIChatModel
from pipeline.llm.strict_schema import RequestFacts, request_schema, strict_json_schema


class Answer(BaseModel):
    verdict: str
    score: int
    note: str | None


GOOD = {"verdict": "supported", "score": 3, "note": None}


def serve(*answers: dict[str, Any]) -> ScriptedEndpoint:
    return ScriptedEndpoint(Scripts([{"name": "t", "match": "PAPER", "answers": {"answer": list(answers)}}]))


def call(check=lambda _: []) -> StageCall:  # type: ignore[no-untyped-def]
    messages = [{"role": "system", "content": "Judge."}, {"role": "user", "content": "PAPER text"}]
    return StageCall("answer", Answer, messages, check)


def context(chat: OpenAIChatModel, usage: UsageLog) -> LLMContext:
    return LLMContext(chat, RunSettings(model="m"), usage)


def client(server: ScriptedEndpoint, sleeps: list[float] | None = None, attempts: int = 4) -> OpenAIChatModel:
    record = sleeps if sleeps is not None else []
    return OpenAIChatModel(
        "sk-test", server.base_url, timeout=10, retry=RetryPolicy(attempts=attempts), sleep=record.append
    )


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
    with serve({"$status": 503}) as server, pytest.raises(LLMUnavailableError, match="after 3 attempts.*503"):
        ask_structured(context(client(server, sleeps, attempts=3), UsageLog()), call())
    assert len(server.scripts.requests) == 3
    assert len(sleeps) == 2


def test_bad_key_is_a_config_error_not_a_retry() -> None:
    with serve({"$status": 401}) as server, pytest.raises(ConfigError, match="refused the API key"):
        ask_structured(context(client(server), UsageLog()), call())
    assert len(server.scripts.requests) == 1


def test_invalid_json_gets_one_repair_request_with_the_errors() -> None:
    with serve({"$raw": '{"verdict": "supported", "score": "three", "note": null}'}, GOOD) as server:
        usage = UsageLog()
        result = ask_structured(context(client(server), usage), call())
    assert result.score == 3
    tally = usage.by_stage["answer"]
    assert tally.calls == 2 and tally.completion_tokens > 0
    repair = server.scripts.requests[1]["messages"]
    assert repair[-2]["role"] == "assistant"
    assert (
        "could not be used" in repair[-1]["content"]
        and "score: Input should be a valid integer" in repair[-1]["content"]
    )
    assert server.scripts.requests[1]["seed"] == server.scripts.requests[0]["seed"] + 1  # not the same request again


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


def test_an_answer_withheld_by_a_content_filter_is_said_and_not_repaired() -> None:
    """Azure's and Gemini's filters end an answer with finish_reason content_filter and no text."""
    withheld = {"$raw": None, "$finish_reason": "content_filter"}
    with serve(withheld) as server, pytest.raises(LLMRefusalError, match="content filter withheld the answer"):
        ask_structured(context(client(server), UsageLog()), call())
    assert len(server.scripts.requests) == 1


def test_a_gateway_timeout_is_a_timeout_with_its_own_budget_and_says_what_to_raise() -> None:
    """nginx in front of a model server answers 504 with a page when an answer takes longer than
    proxy_read_timeout; the server behind it is still computing, so it is sent again only as a
    timed-out request would be (CLAIMS_TIMEOUT_RETRIES), not five times like a 500."""
    page = "<html><head><title>504 Gateway Time-out</title></head><body><center>nginx</center></body></html>"
    with serve({"$status": 504, "$body": page}) as server:
        chat = OpenAIChatModel(
            "sk-test", server.base_url, retry=RetryPolicy(attempts=5), sleep=[].append, timeout_retries=1
        )
        with pytest.raises(
            LLMUnavailableError, match=r"gave up waiting for the answer \(HTTP 504, 2 times\).*proxy_read_timeout"
        ):
            ask_structured(context(chat, UsageLog()), call())
    assert len(server.scripts.requests) == 2


def test_missing_key_is_refused_before_any_request() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
        OpenAIChatModel("")


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("5", 5.0), ("0", 0.0), (None, None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("soon", None), ("-", None)],
)
def test_retry_after_header(header: str | None, seconds: float | None) -> None:
    """A header that cannot be read leaves the policy's own wait, never a failure."""
    assert retry_after_seconds({"retry-after": header} if header else {}) == seconds


def test_retry_after_ms_comes_first() -> None:
    """OpenAI and Azure send milliseconds beside the rounded seconds."""
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "2"}) == 1.5
    assert retry_after_seconds({"retry-after-ms": "x", "retry-after": "2"}) == 2.0


def _walk(node: Any, path: str = "$"):  # type: ignore[no-untyped-def]
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")


# Keywords of OpenAI's strict subset that llama.cpp's and vLLM's grammar conversions also accept.
ALLOWED_KEYWORDS = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "anyOf",
    "enum",
    "$ref",
    "$defs",
    "description",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "exclusiveMinimum",
}


@pytest.mark.parametrize("model", [ExtractOutput, DraftOutput, GradeOutput, StanceOutput, SynthesisOutput, Answer])
def test_strict_schema_follows_openai_rules(model: type[BaseModel]) -> None:
    schema = request_schema(model, RequestFacts(study_ids=("10.1/a", "10.1/b"), pages=9))
    for path, node in _walk(schema):
        assert "default" not in node, path
        if not path.endswith(".properties") and not path.endswith(".$defs"):
            assert set(node) <= ALLOWED_KEYWORDS, f"{path}: {set(node) - ALLOWED_KEYWORDS}"
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


# --------------------------------------------------------------------------- what real servers send


def test_raw_newlines_in_strings_and_prose_around_the_json_are_accepted() -> None:
    answer = 'Here is the JSON you asked for:\n{"verdict": "line one\nline two\tend", "score": 2, "note": null}\nHope it helps!'
    with serve({"$raw": answer}) as server:
        result = ask_structured(context(client(server), UsageLog()), call())
    assert result.verdict == "line one\nline two\tend"
    assert len(server.scripts.requests) == 1


@pytest.mark.parametrize(
    "answer",
    [
        # a reasoning model on a server with no reasoning parser: its thoughts stay in the answer
        '<think>\nThey want {"score": 1}? No: {"verdict" must come first.\n</think>\n\n{GOOD}',
        # a chat template that opens the tag in the prompt: only its end is in the answer
        'I should give {"score": 1} at most.</think>{GOOD}',
        # thinking aloud with no tags: a fragment of the answer, then the answer
        'A sketch: {"score": 1}. Final answer:\n```json\n{GOOD}\n```',
    ],
)
def test_a_reasoning_model_s_thoughts_before_the_json_are_passed_over(answer: str) -> None:
    with serve({"$raw": answer.replace("{GOOD}", json.dumps(GOOD))}) as server:
        assert ask_structured(context(client(server), UsageLog()), call()) == Answer(**GOOD)
    assert len(server.scripts.requests) == 1


def test_thoughts_that_never_end_are_not_taken_for_the_answer() -> None:
    unfinished = {"$raw": '<think>Maybe {"verdict": "x", "score": 1, "note": null}, or'}
    with serve(unfinished, GOOD) as server:
        assert ask_structured(context(client(server), UsageLog()), call()) == Answer(**GOOD)
    assert "holds no JSON object" in server.scripts.requests[1]["messages"][-1]["content"]


def test_what_servers_write_beside_the_reply_does_not_break_the_run() -> None:
    """Content as a list of parts, null token counts, a number as the fingerprint, no model."""
    body = completion("m", None, None, 0)
    body["choices"][0]["message"]["content"] = [{"type": "text", "text": json.dumps(GOOD)}]
    body.update(usage={"prompt_tokens": None, "completion_tokens": None}, system_fingerprint=7)
    del body["model"]
    with serve({"$body": body}) as server:
        usage = UsageLog()
        assert ask_structured(context(client(server), usage), call()) == Answer(**GOOD)
    assert (usage.by_stage["answer"].calls, usage.by_stage["answer"].prompt_tokens) == (1, 0)


def test_an_answer_streamed_though_not_asked_for_is_put_together() -> None:
    """Some gateways always stream: the chunks' text is joined; finish reason and usage kept."""
    text = json.dumps(GOOD)

    def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> str:
        event = {
            "object": "chat.completion.chunk",
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return "data: " + json.dumps({**event, **({"usage": usage} if usage else {})}) + "\n\n"

    events = (
        chunk({"role": "assistant", "content": text[:10]})
        + chunk({"content": text[10:]})
        + chunk({}, "stop", {"prompt_tokens": 40, "completion_tokens": 12})
        + "data: [DONE]\n\n"
    )
    with serve({"$body": events}) as server:
        usage = UsageLog()
        assert ask_structured(context(client(server), usage), call()) == Answer(**GOOD)
    assert (usage.by_stage["answer"].calls, usage.by_stage["answer"].prompt_tokens) == (1, 40)


def test_an_error_or_no_reply_with_http_200_is_sent_again_then_reported() -> None:
    error = {"$body": {"error": {"message": "model overloaded", "type": "server_error"}}}
    with serve(error, {"$body": {"choices": []}}, GOOD) as server:
        assert ask_structured(context(client(server), UsageLog()), call()) == Answer(**GOOD)
    assert len(server.scripts.requests) == 3
    with (
        serve(error) as server,
        pytest.raises(LLMUnavailableError, match="kept failing after 4 attempts .*held no reply: model overloaded"),
    ):
        ask_structured(context(client(server), UsageLog()), call())


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"error": {"message": "model overloaded"}}, "the endpoint's answer held no reply: model overloaded"),
        ("not a completion", "an answer could not be read"),  # before, the collecting thread died: a hang
    ],
)
def test_a_batch_api_answer_with_no_reply_fails_its_request_with_the_reason(tmp_path, body, reason) -> None:  # type: ignore[no-untyped-def]
    import openai

    from pipeline.llm.batch_api import BatchApiChatModel

    request = chat_request("PAPER text")
    with serve({"$body": body}) as server:
        batches = BatchApiChatModel(
            openai.OpenAI(api_key="x", base_url=server.base_url),
            tmp_path / "batches.db",
            expected_waiting=1,
            poll_seconds=0.01,
        )
        with pytest.raises(LLMUnavailableError, match=f"batch batch-1: {reason}"):
            batches.complete(request)


def test_a_web_page_instead_of_the_api_names_the_setting_to_fix() -> None:
    with (
        serve({"$body": "<html><body>Welcome to Open WebUI</body></html>"}) as server,
        pytest.raises(ConfigError, match="web page or text.*Welcome to Open WebUI.*OPENAI_BASE_URL .* /v1"),
    ):
        ask_structured(context(client(server), UsageLog()), call())
    assert len(server.scripts.requests) == 1


def test_an_endpoint_that_is_not_there_is_named_as_unreachable() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        chat = OpenAIChatModel("sk-test", f"http://127.0.0.1:{port}/v1", retry=RetryPolicy(attempts=2), sleep=[].append)
        with pytest.raises(
            EndpointUnreachableError, match="could not reach the endpoint in 2 attempts .*OPENAI_BASE_URL running"
        ):
            ask_structured(context(chat, UsageLog()), call())


def test_an_unknown_model_quotes_the_server_and_names_both_settings() -> None:
    missing = {"$status": 404, "$error": "The model `m` does not exist."}
    with serve(missing) as server, pytest.raises(ConfigError, match="does not exist.*--model .*OPENAI_BASE_URL"):
        ask_structured(context(client(server), UsageLog()), call())


def test_an_answer_cut_off_at_the_token_limit_is_retried_not_repaired() -> None:
    cut = {"$raw": '{"verdict": "supported because the paper says at len', "$finish_reason": "length"}
    with serve(cut, GOOD) as server:
        usage = UsageLog()
        result = ask_structured(context(client(server), usage), call())
    assert result == Answer(**GOOD)
    first, retry = server.scripts.requests
    # the cut-off answer is never sent back; the retry asks for a briefer answer, with another seed
    assert all(m["role"] != "assistant" for m in retry["messages"])
    assert retry["messages"][: len(first["messages"])] == first["messages"]
    assert "cut off at the token limit" in retry["messages"][-1]["content"]
    assert retry["seed"] != first["seed"]
    assert usage.by_stage["answer"].calls == 2


def test_answers_always_cut_off_name_the_context_window_setting() -> None:
    """A gateway hides the server's context window: the prompt and the answer's limit overflow it,
    and every answer stops short. The error says so, not only that the JSON is unterminated."""
    cut = {"$raw": '{"verdict": "supported because the paper says at len', "$finish_reason": "length"}
    with serve(cut) as server:
        with pytest.raises(StageOutputError) as failed:
            ask_structured(context(client(server), UsageLog()), call())
    assert len(server.scripts.requests) == 4  # two retries for a briefer answer, then the repair
    assert str(failed.value).endswith(
        "the last answer was cut off at the token limit: if the model's context window is smaller than the "
        "prompt plus 8,000 tokens of answer, set CLAIMS_CONTEXT_TOKENS to it (the server does not say it)"
    )


def test_json_that_stops_short_is_retried_and_a_repair_is_still_left() -> None:
    cut = {"$raw": '{"verdict": "supp'}
    bad = {"verdict": "x", "score": "not a number", "note": None}
    with serve(cut, cut, bad, GOOD) as server:
        assert ask_structured(context(client(server), UsageLog()), call()).score == 3
    assert len(server.scripts.requests) == 4
    assert server.scripts.requests[3]["messages"][-2]["role"] == "assistant"  # the repair carries the bad answer


def test_what_still_breaks_a_rule_after_the_repair_is_salvaged_and_flagged() -> None:
    def at_least_two(answer: Answer) -> list[str]:
        return ["score: must be at least 2"] if answer.score < 2 else []

    def salvage(answer: Answer) -> list[Flag]:
        answer.score, answer.note = 2, "raised"
        return [Flag(where="score", code="mended", message="raised to 2")]

    low = {"verdict": "x", "score": 1, "note": None}
    messages = [{"role": "user", "content": "PAPER text"}]
    with serve(low) as server:
        llm = context(client(server), UsageLog())
        result = ask_structured(llm, StageCall("answer", Answer, messages, at_least_two, salvage=salvage))
    assert (result.score, result.note) == (2, "raised")
    assert [f.code for f in llm.salvaged] == ["mended"]
    assert len(server.scripts.requests) == 2


def test_a_rule_no_salvage_mends_is_kept_as_a_flag_not_a_failure() -> None:
    def at_least_two(answer: Answer) -> list[str]:
        return ["score: must be at least 2"] if answer.score < 2 else []

    with serve({"verdict": "x", "score": 1, "note": None}) as server:
        llm = context(client(server), UsageLog())
        assert ask_structured(llm, call(at_least_two)).score == 1
    assert [(f.code, f.where) for f in llm.salvaged] == [("model_output", "answer answer: score")]


def test_the_server_s_own_error_message_is_quoted() -> None:
    error = {"$status": 400, "$error": "This model's maximum context length is 8192 tokens, you requested 9311"}
    with (
        serve(error) as server,
        pytest.raises(
            LLMError, match="stage answer: the endpoint answered HTTP 400 .*maximum context length is 8192 tokens"
        ),
    ):
        ask_structured(context(client(server), UsageLog()), call())


def test_the_schema_sent_names_the_studies_and_pages_given() -> None:
    schema = request_schema(DraftOutput, RequestFacts(study_ids=("10.1136/pgmj.2009.089987",), pages=4))
    defs = schema["$defs"]
    assert defs["StudyStanceOutput"]["properties"]["study_id"]["enum"] == ["10.1136/pgmj.2009.089987"]
    assert defs["CausalStep"]["properties"]["citations"]["items"]["enum"] == ["10.1136/pgmj.2009.089987"]
    assert defs["CausalStep"]["properties"]["citations"]["minItems"] == 1
    assert schema["properties"]["stances"]["minItems"] == schema["properties"]["stances"]["maxItems"] == 1
    assert (defs["Quote"]["properties"]["page"]["minimum"], defs["Quote"]["properties"]["page"]["maximum"]) == (1, 4)
    grade = request_schema(GradeOutput, RequestFacts(pages=4))
    domains = grade["$defs"]["GradeDomains"]
    assert sorted(domains["required"]) == sorted(d.value for d in GradeDomain)
    assert set(grade["$defs"]["GradeUpgrades"]["required"]) == {f.value for f in UpgradeFactor}
