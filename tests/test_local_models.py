"""Local model servers (issue 13): the client learns what the endpoint accepts, budgets fit the
model's context window, and a timed-out request is not sent again to a busy local server."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import DVT_PDF, HPYLORI_PDF, chat_request, claims, load_scripts
from scripted_endpoint import Faults, ScriptedEndpoint, Scripts, stage_of

from pipeline.core.errors import LLMError, LLMUnavailableError
from pipeline.core.retry import RetryPolicy
from pipeline.core.settings import CHARS_PER_TOKEN, MIN_PAPER_CHARS, TEMPLATE_TOKENS, RunSettings, Settings
from pipeline.llm.base import LLMContext
from pipeline.llm.openai import OpenAIChatModel, chat_body
from pipeline.sources.pdf import document_from_pages
from pipeline.stages.paper_text import messages_with_paper
from pipeline.workflow.run import run_pipeline


def run_paper(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, model: str, **traits: Any
) -> tuple[Any, ScriptedEndpoint]:
    """`claims run` on the bundled H. pylori paper, as a user would, against the scripted
    endpoint behaving as `traits` say (see `scripted_endpoint.Traits`)."""
    with ScriptedEndpoint(load_scripts("huang-2010-hpylori-iron")) as endpoint:
        for name, value in traits.items():
            setattr(endpoint.traits, name, value)
        monkeypatch.setenv("OPENAI_BASE_URL", endpoint.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
        return runner.invoke(claims, ["run", str(HPYLORI_PDF), "--model", model]), endpoint


def test_a_server_that_refuses_json_schema_gets_json_object_with_the_schema(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    """As llama-cpp-python's server does: HTTP 500 for `json_schema`, a schema in `json_object` taken."""
    result, endpoint = run_paper(runner, monkeypatch, "scripted-endpoint", refuse_json_schema=True)
    assert result.exit_code == 0, result.output
    formats = [body["response_format"]["type"] for body in endpoint.scripts.requests]
    assert formats[0] == "json_object"  # the refused json_schema request never reached the scripts
    assert set(formats) == {"json_object"}
    assert all(body["response_format"]["schema"]["type"] == "object" for body in endpoint.scripts.requests)
    # another endpoint than OpenAI's also gets max_tokens (llama-cpp-python reads no other)
    assert all(body["max_tokens"] == body["max_completion_tokens"] for body in endpoint.scripts.requests)
    assert (
        "note: the endpoint refused response_format json_schema; answers are constrained as json_object"
        in result.output
    )


def test_the_schema_goes_in_the_prompt_when_the_server_takes_no_response_format() -> None:
    request = chat_request("hi", schema={"type": "object", "properties": {}})
    body = chat_body(request, "prompt")
    assert "response_format" not in body
    assert body["messages"][-1]["role"] == "system" and "JSON Schema" in body["messages"][-1]["content"]


def test_the_context_window_the_server_reports_is_read() -> None:
    with ScriptedEndpoint(Scripts([])) as endpoint:
        endpoint.traits.n_ctx = 8192
        assert OpenAIChatModel("sk-local", endpoint.base_url).context_window("m") == 8192
        endpoint.traits.n_ctx = None
        assert OpenAIChatModel("sk-local", endpoint.base_url).context_window("m") is None


def test_ollama_s_window_is_that_of_the_loaded_model_loaded_first_if_need_be() -> None:
    """Ollama cuts a longer prompt without an error, at the window it gave the model on loading."""
    with ScriptedEndpoint(Scripts([])) as endpoint:
        endpoint.traits.ollama_context = 4096
        chat = OpenAIChatModel("sk-local", endpoint.base_url)
        assert chat.context_window("smollm2") == 4096
        assert endpoint.traits.loaded == ["smollm2:latest"]
        assert chat.context_window("smollm2:latest") == 4096
        assert endpoint.traits.loaded == ["smollm2:latest"]  # loaded once


@pytest.mark.parametrize("paper", [HPYLORI_PDF, DVT_PDF], ids=lambda p: p.stem)
def test_every_request_fits_an_8192_token_model(paper: Path) -> None:
    """Prompt (at the cautious 3 characters a token) plus the answer it may give fit the window,
    repair requests (which carry the first answer back) included. The answers are the scripted,
    paper-faithful ones: a model's own findings are part of the later stages' prompts."""
    settings = RunSettings(model="scripted-endpoint", context_tokens=8192)
    with ScriptedEndpoint(load_scripts()) as endpoint:
        chat = OpenAIChatModel("sk-local", endpoint.base_url)
        run_pipeline(paper, LLMContext(chat, settings))
    assert endpoint.scripts.requests
    for body in endpoint.scripts.requests:
        answer_tokens = body["max_completion_tokens"]
        assert answer_tokens == 2048
        # an answer carried back in a repair request is at most answer_tokens long, whatever its characters
        prompt_chars = sum(len(m["content"]) for m in body["messages"] if m["role"] != "assistant")
        carried = sum(answer_tokens for m in body["messages"] if m["role"] == "assistant")
        assert prompt_chars / CHARS_PER_TOKEN + carried + answer_tokens + TEMPLATE_TOKENS <= 8192, (
            prompt_chars,
            carried,
        )


def test_a_timed_out_request_is_not_sent_again_to_a_local_server() -> None:
    faults = Faults(rate=1.0, hang_seconds=1.0, kinds=("timeout",))
    with ScriptedEndpoint(load_scripts("huang-2010-hpylori-iron"), faults=faults) as endpoint:
        settings = Settings(
            {"OPENAI_API_KEY": "sk-local", "OPENAI_BASE_URL": endpoint.base_url, "CLAIMS_TIMEOUT": "0.3"}
        )
        assert settings.local_endpoint and settings.timeout_retries == 0
        chat = OpenAIChatModel.from_settings(settings)
        with pytest.raises(LLMUnavailableError, match=r"no answer within 0.3 s; raise CLAIMS_TIMEOUT"):
            run_pipeline(HPYLORI_PDF, LLMContext(chat, RunSettings(model="scripted-endpoint")))
    assert faults.counts["timeout"] == 1  # one request sent, not five


def test_timeouts_to_a_hosted_endpoint_are_retried_within_their_own_budget() -> None:
    faults = Faults(rate=1.0, hang_seconds=1.0, kinds=("timeout",))
    with ScriptedEndpoint(load_scripts("huang-2010-hpylori-iron"), faults=faults) as endpoint:
        chat = OpenAIChatModel(
            "sk-test",
            endpoint.base_url,
            timeout=0.3,
            timeout_retries=2,
            retry=RetryPolicy(attempts=5),
            sleep=lambda _: None,
        )
        with pytest.raises(LLMUnavailableError, match="after 3 attempts"):
            run_pipeline(HPYLORI_PDF, LLMContext(chat, RunSettings(model="scripted-endpoint")))
    assert faults.counts["timeout"] == 3


def test_settings_for_a_remote_endpoint_keep_retrying_timeouts() -> None:
    remote = Settings({"OPENAI_BASE_URL": "https://llm.example.org/v1"})
    assert not remote.local_endpoint and remote.timeout_retries == 2
    assert Settings({"OPENAI_BASE_URL": "http://127.0.0.1:8090/v1", "CLAIMS_TIMEOUT_RETRIES": "1"}).timeout_retries == 1
    assert json.dumps(Settings({}).response_format) == '"auto"'


def test_a_reasoning_model_that_refuses_temperature_and_max_tokens_still_runs(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    """OpenAI's reasoning models (behind a gateway, so max_tokens is sent too) answer 400 to
    temperature 0 and to max_tokens: the run goes on without them, and says so."""
    result, endpoint = run_paper(runner, monkeypatch, "o4-mini", refused_params=("temperature", "max_tokens"))
    assert result.exit_code == 0, result.output
    answered = endpoint.scripts.requests  # the refused requests never reached the scripts
    assert answered and all("temperature" not in b and "max_tokens" not in b for b in answered)
    assert all(b["max_completion_tokens"] == 8000 and b["seed"] == 7 for b in answered)
    assert (
        "note: the endpoint refused temperature=0.0 (Unsupported value: 'temperature' does not support" in result.output
    )
    assert "note: the endpoint refused max_tokens=8000" in result.output
    assert "requests go with max_completion_tokens alone" in result.output


def test_a_field_a_strict_server_does_not_know_is_left_out() -> None:
    """A FastAPI server with strict request models answers 422 'Extra inputs are not permitted'."""
    with ScriptedEndpoint(load_scripts("huang-2010-hpylori-iron")) as endpoint:
        endpoint.traits.refused_params = ("seed",)
        endpoint.traits.refusal_style = "pydantic"
        chat = OpenAIChatModel("sk-local", endpoint.base_url)
        run_pipeline(HPYLORI_PDF, LLMContext(chat, RunSettings(model="scripted-endpoint")))
    assert all("seed" not in body and body["temperature"] == 0 for body in endpoint.scripts.requests)
    assert chat.adaptations == ["the endpoint refused seed=7 (" + chat.adaptations[0].split("(", 1)[1]]
    assert "requests go without seed" in chat.adaptations[0] and "Extra inputs are not permitted" in chat.adaptations[0]


def test_a_limit_the_server_finds_too_large_is_reported_not_dropped() -> None:
    """'max_tokens is too large' names the parameter but does not refuse it: sending no limit
    would hide the user's mistake, so the server's words are the error."""
    too_large = (
        "'max_tokens' or 'max_completion_tokens' is too large: 8000. This model's maximum context length is 4096 tokens"
    )
    scripts = Scripts([{"name": "t", "match": "PAPER", "answers": {"answer": [{"$status": 400, "$error": too_large}]}}])
    with ScriptedEndpoint(scripts) as endpoint:
        chat = OpenAIChatModel("sk-local", endpoint.base_url)
        with pytest.raises(LLMError, match="HTTP 400 .*is too large: 8000"):
            chat.complete(chat_request("PAPER"))
    assert len(endpoint.scripts.requests) == 1 and chat.adaptations == []


def test_requests_refused_at_the_same_time_learn_the_format_once() -> None:
    """A batch's first requests can all be refused json_schema at once: each is sent again as
    json_object, none fails for having learnt it after another did."""
    answers = [{"text": "yes"}] * 8
    scripts = Scripts([{"name": "t", "match": "PAPER", "answers": {"rewrite": answers}}])
    schema = {"type": "object", "properties": {"text": {"type": "string"}}}
    with ScriptedEndpoint(scripts, latency=0.2) as endpoint:
        endpoint.traits.refuse_json_schema = True
        chat = OpenAIChatModel("sk-local", endpoint.base_url, max_in_flight=8)
        with ThreadPoolExecutor(8) as pool:
            answered = list(pool.map(lambda i: chat.complete(chat_request(f"PAPER {i}", "rewrite", schema)), range(8)))
    assert [json.loads(a.content) for a in answered] == answers
    assert chat.adaptations == [
        "the endpoint refused response_format json_schema; answers are constrained as json_object instead"
    ]


def test_a_context_window_too_small_for_the_paper_is_an_error_before_any_call(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    """llama.cpp's server reporting 2,048 tokens: extract would have had no room for any of the
    paper, and the model would have drafted from its instructions alone."""
    result, endpoint = run_paper(runner, monkeypatch, "scripted-endpoint", n_ctx=2048)
    assert result.exit_code == 2, result.output
    assert (
        "error: stage extract: the model's context window of 2,048 tokens leaves room for 0 characters of the "
        "paper beside the prompt and the answer, under the 2,000 needed: start the server with a context of "
        "8,192 tokens or more (llama.cpp: -c 8192; vLLM: --max-model-len 8192; Ollama: OLLAMA_CONTEXT_LENGTH=8192)"
    ) in " ".join(result.output.split())
    assert endpoint.scripts.requests == []
    assert "Traceback" not in result.output


def test_a_short_paper_fits_a_small_window_whole() -> None:
    """The floor is on what is cut away: a paper shorter than the room left is sent whole."""
    settings = RunSettings(model="scripted-endpoint", context_tokens=4096)
    short = document_from_pages("short.pdf", "0" * 64, ["Abstract\nIron deficiency and H. pylori."], None)
    llm = LLMContext(OpenAIChatModel("sk-local", "http://127.0.0.1:9/v1"), settings)
    findings = json.dumps([{"statement": "Eradication raised ferritin in iron-deficient adults.", "page": 1}] * 6)
    others = sum(
        len(m["content"]) for m in llm.prompts.render("draft", paper_text="", findings=findings, study_id="s1")
    )
    assert 40 < settings.text_budget("draft", others) < MIN_PAPER_CHARS  # below the floor, above this paper
    messages = messages_with_paper(llm, "draft", "draft", short, ("abstract",), findings=findings, study_id="s1")
    assert "Iron deficiency and H. pylori." in messages[-1]["content"]


def test_ollama_s_default_window_stops_the_run_at_draft_naming_its_setting(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    """4,096 tokens (Ollama's default on a small machine) leave extract an abstract's worth of the
    paper and draft, whose prompt carries the findings too, none of it."""
    result, endpoint = run_paper(runner, monkeypatch, "llama3.2", ollama_context=4096)
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert "error: stage draft: the model's context window of 4,096 tokens leaves room for" in said
    assert "Ollama: OLLAMA_CONTEXT_LENGTH=8192" in said
    assert [stage_of(body) for body in endpoint.scripts.requests] == ["extract"]
