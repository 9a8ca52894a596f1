"""The one seam to the model: `ChatModel.complete(ChatRequest) -> ChatResponse`.

Three implementations share it:
- `OpenAIChatModel` talks to any OpenAI-compatible endpoint through the openai SDK, with
  strict JSON-schema structured outputs and bounded tenacity retries on 429 / 5xx / timeouts
  (honouring Retry-After);
- `RecordingChatModel` wraps another one and keeps every request and response;
- `ReplayChatModel` (in `recording.py`) answers from a recording, matched on request content.

`ask_structured` sits on top: it sends one stage's request, validates the answer against the
stage's pydantic model and, when it does not validate, sends one repair request carrying the
validation errors. Tokens of every attempt are counted, not only the last.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, TypeVar

from pydantic import BaseModel, PrivateAttr, ValidationError

from .errors import ConfigError, LLMError, LLMRefusalError, LLMUnavailableError, StageOutputError
from .retry import RetryError, RetryPolicy, call_with_retries
from .strict_schema import strict_json_schema

T = TypeVar("T", bound=BaseModel)


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatRequest(BaseModel):
    stage: str
    model: str
    messages: list[dict[str, str]]
    output_schema: dict[str, Any]  # {"name": ..., "schema": ...}
    params: dict[str, Any]
    _fingerprint: str | None = PrivateAttr(default=None)

    def content(self) -> dict[str, Any]:
        """What the endpoint sees; the fingerprint and replay matching use exactly this."""
        return {
            "model": self.model,
            "messages": self.messages,
            "output_schema": self.output_schema,
            "params": self.params,
        }

    def fingerprint(self) -> str:
        """sha256 of the canonical content; computed once (a request is not changed after it is made)."""
        if self._fingerprint is None:
            canonical = json.dumps(self.content(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
            self._fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
        return self._fingerprint


class ChatResponse(BaseModel):
    content: str | None
    refusal: str | None = None
    finish_reason: str | None = None
    usage: Usage = Usage()
    served_by: str | None = None  # the response's system_fingerprint, e.g. the scripted endpoint's


class ChatModel(Protocol):
    def complete(self, request: ChatRequest) -> ChatResponse: ...


# --------------------------------------------------------------------------- live


class OpenAIChatModel:
    """Any OpenAI-compatible endpoint (OpenAI, Azure, vLLM, Ollama, llama.cpp server)."""

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
        self._options = {"api_key": api_key, "base_url": base_url, "timeout": timeout}
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
                self._client_instance = openai.OpenAI(**self._options, max_retries=0)
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
    )


def _describe(exc: BaseException | None) -> str:
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    return f"HTTP {status} {name}" if status else name


# --------------------------------------------------------------------------- recording


@dataclass
class Interaction:
    stage: str
    fingerprint: str
    request: dict[str, Any]
    response: dict[str, Any]


@dataclass
class RecordingChatModel:
    """Passes requests on and keeps each exchange. Only request content is kept: no headers."""

    inner: ChatModel
    interactions: list[Interaction] = field(default_factory=list)

    def complete(self, request: ChatRequest) -> ChatResponse:
        response = self.inner.complete(request)
        self.interactions.append(
            Interaction(request.stage, request.fingerprint(), request.content(), response.model_dump())
        )
        return response


# --------------------------------------------------------------------------- structured calls


@dataclass
class StageTally:
    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class UsageLog:
    """Model calls and tokens per stage, across every attempt; answers from the cache cost none."""

    by_stage: dict[str, StageTally] = field(default_factory=dict)

    def add(self, stage: str, usage: Usage) -> None:
        tally = self.by_stage.setdefault(stage, StageTally())
        tally.calls += 1
        tally.prompt_tokens += usage.prompt_tokens
        tally.completion_tokens += usage.completion_tokens

    def add_cached(self, stage: str) -> None:
        self.by_stage.setdefault(stage, StageTally()).cached_calls += 1

    @property
    def calls(self) -> int:
        return sum(t.calls for t in self.by_stage.values())

    @property
    def tokens(self) -> tuple[int, int]:
        return sum(t.prompt_tokens for t in self.by_stage.values()), sum(t.completion_tokens for t in self.by_stage.values())


class ResponseCache(Protocol):
    """Validated answers by the fingerprint of the request that first asked for them."""

    def get(self, fingerprint: str) -> str | None: ...

    def put(self, fingerprint: str, stage: str, content: str) -> None: ...


@dataclass
class LLMContext:
    """What every model-calling stage needs: the model, the run settings, the tally, the cache."""

    chat: ChatModel
    settings: Any  # config.RunSettings (not imported here: config is the lower layer)
    usage: UsageLog = field(default_factory=UsageLog)
    cache: ResponseCache | None = None


@dataclass(frozen=True)
class StageCall:
    stage: str
    output: type[BaseModel]
    messages: list[dict[str, str]]
    repair_instructions: str
    check: Callable[[Any], list[str]] = lambda _: []  # semantic problems beyond the schema


def ask_structured(llm: LLMContext, call: StageCall) -> Any:
    """The stage's answer, validated. A cached answer is used when it still validates; only an
    answer that validated is cached (under the first request's fingerprint), never a failure."""
    schema = {"name": call.stage, "schema": strict_json_schema(call.output)}
    params = llm.settings.params()
    messages = list(call.messages)
    first = ChatRequest(stage=call.stage, model=llm.settings.model, messages=messages, output_schema=schema, params=params)
    if llm.cache is not None and (cached := llm.cache.get(first.fingerprint())) is not None:
        parsed, _ = _parse(call, ChatResponse(content=cached, finish_reason="stop"))
        if parsed is not None:
            llm.usage.add_cached(call.stage)
            return parsed
    problems: list[str] = []
    request = first
    for attempt in range(2):
        response = llm.chat.complete(request)
        llm.usage.add(call.stage, response.usage)
        if response.refusal:
            raise LLMRefusalError(f"stage {call.stage}: the model refused: {response.refusal[:200]}")
        parsed, problems = _parse(call, response)
        if parsed is not None:
            if llm.cache is not None:
                llm.cache.put(first.fingerprint(), call.stage, response.content or "")
            return parsed
        if attempt == 0:
            messages = messages + [
                {"role": "assistant", "content": response.content or ""},
                {"role": "user", "content": call.repair_instructions + "\n\nProblems:\n- " + "\n- ".join(problems)},
            ]
            request = ChatRequest(stage=call.stage, model=llm.settings.model, messages=messages, output_schema=schema, params=params)
    raise StageOutputError(call.stage, problems)


_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*?)\n\s*```\s*$", re.DOTALL)


def _unfenced(content: str) -> str:
    """Some local servers wrap the JSON in a Markdown code fence even in JSON mode."""
    match = _FENCE.match(content)
    return match.group(1) if match else content


def _parse(call: StageCall, response: ChatResponse) -> tuple[Any, list[str]]:
    if not response.content:
        return None, ["the answer was empty"]
    problems: list[str] = []
    if response.finish_reason == "length":
        problems.append("the answer was cut off at the token limit; answer more briefly")
    try:
        parsed = call.output.model_validate_json(_unfenced(response.content))
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            where = ".".join(str(part) for part in error["loc"]) or "(top level)"
            problems.append(f"{where}: {error['msg']}")
        return None, problems
    problems = call.check(parsed)
    return (None, problems) if problems else (parsed, [])
