"""`OpenAIChatModel`: any OpenAI-compatible endpoint through the openai SDK, with strict
JSON-schema structured outputs and bounded tenacity retries on 429 / 5xx / timeouts (honouring
Retry-After). The openai package is imported on first use: a resumed batch whose papers are all
done never pays for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from pipeline.errors import ConfigError, LLMError, LLMUnavailableError
from pipeline.llm.base import ChatRequest, ChatResponse, Usage
from pipeline.retry import RetryError, RetryPolicy, call_with_retries
from pipeline.settings import Settings


class OpenAIChatModel:
    """Any OpenAI-compatible endpoint (OpenAI, Azure, vLLM, Ollama, llama.cpp server)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIChatModel:
        """The endpoint, key and timeout the user configured (OPENAI_BASE_URL, OPENAI_API_KEY, CLAIMS_TIMEOUT)."""
        return cls(api_key=settings.api_key, base_url=settings.base_url, timeout=settings.timeout)

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 120.0,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not api_key:
            raise ConfigError("OPENAI_API_KEY is not set: export it (and OPENAI_BASE_URL for another endpoint)")
        self._api_key, self._base_url, self._timeout = api_key, base_url, timeout
        self._client_instance: Any = None
        self._client_lock = threading.Lock()
        self._retry = retry
        self._sleep = sleep

    @property
    def client(self) -> Any:
        """The openai client, made on first use: importing openai takes longer than a resumed batch."""
        with self._client_lock:
            if self._client_instance is None:
                import openai

                # The SDK's own retries are off: tenacity owns them, so they are bounded in one place.
                self._client_instance = openai.OpenAI(
                    api_key=self._api_key, base_url=self._base_url, timeout=self._timeout, max_retries=0
                )
            return self._client_instance

    def complete(self, request: ChatRequest) -> ChatResponse:
        import openai

        def transient(exc: BaseException) -> bool:
            if isinstance(exc, openai.APIStatusError):
                return exc.status_code == 429 or exc.status_code >= 500
            return isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError))

        def headers_of(exc: BaseException) -> Any:
            return getattr(getattr(exc, "response", None), "headers", None)

        try:
            completion = call_with_retries(
                lambda: self._create(request), transient, headers_of, self._retry, self._sleep
            )
        except RetryError as exc:
            last = exc.last_attempt.exception()
            raise LLMUnavailableError(
                f"stage {request.stage}: the endpoint kept failing after {self._retry.attempts} attempts "
                f"({_describe(last)})"
            ) from last
        except openai.AuthenticationError as exc:
            raise ConfigError("the endpoint refused the API key (401): check OPENAI_API_KEY") from exc
        except openai.NotFoundError as exc:
            raise ConfigError(f"the endpoint does not know model '{request.model}' or the route (404)") from exc
        except openai.APIStatusError as exc:
            raise LLMError(f"stage {request.stage}: the endpoint answered {_describe(exc)}") from exc
        choice = completion.choices[0]
        usage = completion.usage
        return ChatResponse(
            content=choice.message.content,
            refusal=getattr(choice.message, "refusal", None),
            finish_reason=choice.finish_reason,
            usage=Usage(
                prompt_tokens=usage.prompt_tokens if usage else 0,
                completion_tokens=usage.completion_tokens if usage else 0,
            ),
            served_by=completion.system_fingerprint,
            model=completion.model,
        )

    def _create(self, request: ChatRequest) -> Any:
        return self.client.chat.completions.create(**chat_body(request))


def chat_body(request: ChatRequest) -> dict[str, Any]:
    """The body of a chat completion request with a strict JSON-schema answer format."""
    schema = request.output_schema
    return {
        "model": request.model,
        "messages": request.messages,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": schema["name"], "strict": True, "schema": schema["schema"]},
        },
        **request.params,
    }


def response_from_completion(body: dict[str, Any]) -> ChatResponse:
    """A ChatResponse from a chat completion as JSON (what the Batch API's output file holds)."""
    choice = body["choices"][0]
    usage = body.get("usage") or {}
    return ChatResponse(
        content=choice["message"].get("content"),
        refusal=choice["message"].get("refusal"),
        finish_reason=choice.get("finish_reason"),
        usage=Usage(prompt_tokens=usage.get("prompt_tokens", 0), completion_tokens=usage.get("completion_tokens", 0)),
        served_by=body.get("system_fingerprint"),
        model=body.get("model"),
    )


def _describe(exc: BaseException | None) -> str:
    """The status and the server's own words (e.g. 'maximum context length is 8192 tokens')."""
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    said = _server_message(exc)
    return (f"HTTP {status} {name}" if status else name) + (f": {said}" if said else "")


def _server_message(exc: BaseException | None) -> str:
    body = getattr(exc, "body", None)
    message: Any = None
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else error
    if not message and getattr(exc, "status_code", None):
        message = getattr(exc, "message", None)
    text = " ".join(str(message).split()) if message else ""
    return text[:300] + ("..." if len(text) > 300 else "")
