"""Local model servers (issue 13): the client learns what the endpoint accepts, budgets fit the
model's context window, and a timed-out request is not sent again to a busy local server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import DVT_PDF, HPYLORI_PDF, chat_request, load_scripts
from scripted_endpoint import Faults, ScriptedEndpoint, Scripts
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.errors import LLMUnavailableError
from pipeline.llm.base import LLMContext
from pipeline.llm.openai import OpenAIChatModel, chat_body
from pipeline.retry import RetryPolicy
from pipeline.run import run_pipeline
from pipeline.settings import CHARS_PER_TOKEN, TEMPLATE_TOKENS, RunSettings, Settings


def test_a_server_that_refuses_json_schema_gets_json_object_with_the_schema(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    """As llama-cpp-python's server does: HTTP 500 for `json_schema`, a schema in `json_object` taken."""
    with ScriptedEndpoint(load_scripts("huang-2010-hpylori-iron")) as endpoint:
        endpoint.traits.refuse_json_schema = True
        monkeypatch.setenv("OPENAI_BASE_URL", endpoint.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
        result = runner.invoke(app, ["run", str(HPYLORI_PDF), "--model", "scripted-endpoint"])
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
        assert OpenAIChatModel("sk-local", endpoint.base_url).context_window() == 8192
        endpoint.traits.n_ctx = None
        assert OpenAIChatModel("sk-local", endpoint.base_url).context_window() is None


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
