"""`OpenAIChatModel`: any OpenAI-compatible endpoint through the openai SDK, with strict
JSON-schema structured outputs and bounded tenacity retries on 429 / 5xx / timeouts (honouring
Retry-After). The openai package is imported on first use: a resumed batch whose papers are all
done never pays for it.

Chat requests run on one event loop, in a thread of its own, through the SDK's async client:
a batch's papers wait for their answers in their own threads, while every request in flight is
one coroutine on that loop, not a thread blocked in a socket. The limit on requests in flight
(`claims batch -j`) is kept on that loop too: when an answer arrives, the next waiting request
leaves at once, with no thread to wake on the way.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.core.errors import (
    ConfigError,
    EndpointRefusedError,
    EndpointUnreachableError,
    LLMError,
    LLMUnavailableError,
)
from pipeline.core.retry import RetryError, RetryPolicy, call_with_retries
from pipeline.core.settings import Settings
from pipeline.llm.base import ChatRequest, ChatResponse, Usage, request_priority
from pipeline.llm.ratelimit import RequestSlots
from pipeline.sources.http import tls_context


class OpenAIChatModel:
    """Any OpenAI-compatible endpoint (OpenAI, Azure, vLLM, Ollama, llama.cpp's servers).

    What the endpoint accepts is learnt, not assumed. `response_format` "auto" sends
    `json_schema` first and, when the server refuses that format (llama-cpp-python's server does),
    `json_object` with the schema inside it, then the schema in the prompt alone; the format that
    worked is kept for the rest of the run. Another endpoint than OpenAI's also gets `max_tokens`
    beside `max_completion_tokens` (llama-cpp-python reads only the former). A sampling parameter
    the endpoint refuses is left out from then on: OpenAI's reasoning models take no temperature
    but their default and no `max_tokens`, and some servers refuse a field they do not know, such
    as `seed`. Each such change is said in `adaptations`. Timeouts have their
    own retry budget: a server on this machine keeps computing a request whose client gave up, so
    sending it again only queues the same work twice.
    """

    @classmethod
    def from_settings(cls, settings: Settings, max_in_flight: int | None = None) -> OpenAIChatModel:
        """The endpoint the user configured (OPENAI_BASE_URL, OPENAI_API_KEY, CLAIMS_TIMEOUT,
        CLAIMS_TIMEOUT_RETRIES, CLAIMS_RESPONSE_FORMAT), with at most `max_in_flight` chat
        requests at once."""
        return cls(
            api_key=settings.api_key,
            base_url=settings.base_url,
            timeout=settings.timeout,
            timeout_retries=settings.timeout_retries,
            response_format=settings.response_format,
            max_in_flight=max_in_flight,
        )

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 120.0,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        timeout_retries: int = 2,
        response_format: str = "auto",
        max_in_flight: int | None = None,
    ):
        if not api_key:
            raise ConfigError("OPENAI_API_KEY is not set: export it (and OPENAI_BASE_URL for another endpoint)")
        self._api_key, self._base_url, self._timeout = api_key, base_url, timeout
        self._client_instance: Any = None
        self._async_client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._max_in_flight = max_in_flight
        self._slots: RequestSlots | None = None
        self._client_lock = threading.Lock()
        self._retry = retry
        self._sleep = sleep
        self._timeout_retries = timeout_retries
        self._formats = list(FORMATS) if response_format == "auto" else [response_format]
        self._left_out: set[str] = set()  # request parameters the endpoint refused
        self._learning = threading.Lock()  # concurrent requests may be refused the same way at once
        self.adaptations: list[str] = []  # what a run should tell its user, and its recording
        self._send_max_tokens = base_url is not None

    @property
    def response_format(self) -> str:
        """The answer format in use (the first the server has not refused)."""
        return self._formats[0]

    @property
    def client(self) -> Any:
        """The synchronous openai client (the Batch API's file and batch calls), made on first use."""
        with self._client_lock:
            if self._client_instance is None:
                import openai

                # The SDK's own retries are off: tenacity owns them, so they are bounded in one place.
                # The process's TLS context: the SDK's default client loads the CA bundle again.
                self._client_instance = openai.OpenAI(
                    api_key=self._api_key,
                    base_url=self._base_url,
                    timeout=self._timeout,
                    max_retries=0,
                    http_client=openai.DefaultHttpxClient(verify=tls_context()),
                )
            return self._client_instance

    def warm(self) -> None:
        """Load the openai package and start the request loop before the first request needs them."""
        self._requests()

    def _requests(self) -> tuple[Any, asyncio.AbstractEventLoop]:
        """The async client and the event loop every chat request runs on, made on first use."""
        with self._client_lock:
            if self._loop is None:
                import openai

                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, daemon=True, name="model-requests").start()
                self._async_client = openai.AsyncOpenAI(
                    api_key=self._api_key,
                    base_url=self._base_url,
                    timeout=self._timeout,
                    max_retries=0,
                    http_client=openai.DefaultAsyncHttpxClient(verify=tls_context()),
                )
                if self._max_in_flight is not None:
                    self._slots = RequestSlots(self._max_in_flight)  # used on the loop only
                self._loop = loop
            return self._async_client, self._loop

    def context_window(self, model: str) -> int | None:
        """The model's context window in tokens where the server says: vLLM's `/v1/models`
        (`max_model_len`), llama.cpp's `/props` (`n_ctx`), or Ollama's `/api/ps` (the loaded
        model's `context_length`); None elsewhere (and for OpenAI). Ollama cuts a longer prompt
        without an error, and sets the window when it loads the model, so a model it has not
        loaded yet is loaded first (an `/api/generate` with no prompt), as the first request would."""
        if self._base_url is None:
            return None
        import httpx

        root = self._base_url.rstrip("/").removesuffix("/v1")
        headers = {"Authorization": f"Bearer {self._api_key}"}
        with httpx.Client(headers=headers, timeout=10, verify=tls_context()) as http:

            def body(url: str, load: dict[str, Any] | None = None) -> Any:
                try:
                    if load is not None:
                        http.post(f"{root}/api/generate", json=load, timeout=self._timeout)
                    answer = http.get(url)
                    return answer.json() if answer.status_code == 200 else None
                except (httpx.HTTPError, ValueError):
                    return None

            window = _max_model_len(body(f"{root}/v1/models")) or _n_ctx(body(f"{root}/props"))
            if window is None:
                running = body(f"{root}/api/ps")
                if isinstance(running, dict) and isinstance(running.get("models"), list):  # Ollama's
                    window = _loaded_context(running, model) or _loaded_context(
                        body(f"{root}/api/ps", load={"model": model}), model
                    )
            return window

    def complete(self, request: ChatRequest) -> ChatResponse:
        import openai

        while True:
            answer_format, body = self.request_body(request)
            try:
                return self._complete(request, body)
            except LLMError as exc:
                cause = exc.__cause__
                if not (
                    isinstance(cause, openai.APIStatusError) and self.learn(Refusal.of(cause), answer_format, body)
                ):
                    raise

    def request_body(self, request: ChatRequest) -> tuple[str, dict[str, Any]]:
        """The answer format in use, and the body of `request` as this endpoint takes it: in that
        format, with `max_tokens` where wanted, without what the endpoint has refused."""
        answer_format = self.response_format
        body = chat_body(request, answer_format)
        limit = body.get("max_completion_tokens")
        if limit is not None and (self._send_max_tokens or "max_completion_tokens" in self._left_out):
            body["max_tokens"] = limit
        for refused in self._left_out:
            body.pop(refused, None)
        return answer_format, body

    def learn(self, refusal: Refusal, answer_format: str, body: dict[str, Any]) -> bool:
        """Whether a request the endpoint turned down is worth sending again, changed: it was
        refused for its answer format, or for a sampling parameter it can go without. What is
        learnt holds for the rest of the run; requests refused at the same time learn it once."""
        with self._learning:
            if refusal.of_format():
                if answer_format != self.response_format:  # another request has learnt it meanwhile
                    return True
                if len(self._formats) == 1:
                    return False
                self._formats.pop(0)
                self.adaptations.append(
                    f"the endpoint refused response_format {answer_format}; answers are constrained as "
                    f"{self.response_format} instead"
                )
                return True
            refused = refusal.parameter_in(body)
            if refused is None:
                return False
            if refused not in self._left_out:
                self._left_out.add(refused)
                self.adaptations.append(
                    f"the endpoint refused {refused}={body[refused]!r} ({refusal.said}); requests go {WITHOUT[refused]}"
                )
            return True

    def _complete(self, request: ChatRequest, body: dict[str, Any]) -> ChatResponse:
        import openai

        timeouts = 0

        def transient(exc: BaseException) -> bool:
            nonlocal timeouts
            # A gateway's 504 is a timeout too, the proxy's: the server behind it is still at work.
            if isinstance(exc, openai.APITimeoutError) or getattr(exc, "status_code", None) == GATEWAY_TIMEOUT:
                timeouts += 1
                return timeouts <= self._timeout_retries
            if isinstance(exc, openai.APIStatusError):
                return (exc.status_code == 429 or exc.status_code >= 500) and not Refusal.of(exc).of_format()
            return isinstance(exc, openai.APIConnectionError | _NoChoices)

        def headers_of(exc: BaseException) -> Any:
            return getattr(getattr(exc, "response", None), "headers", None)

        try:
            completion = call_with_retries(lambda: self._create(body), transient, headers_of, self._retry, self._sleep)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            if isinstance(last, openai.APIConnectionError):
                raise EndpointUnreachableError(
                    f"stage {request.stage}: could not reach the endpoint in {exc.last_attempt.attempt_number} attempts "
                    f"({_cause_of(last)}): is the server at OPENAI_BASE_URL running, and is that its address?"
                ) from last
            raise LLMUnavailableError(
                f"stage {request.stage}: the endpoint kept failing after {exc.last_attempt.attempt_number} attempts "
                f"({_describe(last)})"
            ) from last
        except openai.APITimeoutError as exc:
            raise LLMUnavailableError(
                f"stage {request.stage}: no answer within {self._timeout:g} s"
                + (f" after {self._timeout_retries + 1} attempts" if self._timeout_retries else "")
                + "; raise CLAIMS_TIMEOUT for a slow model (a local server keeps working on a request "
                "it was sent, so it is not sent again unless CLAIMS_TIMEOUT_RETRIES says so)"
            ) from exc
        except openai.AuthenticationError as exc:
            raise EndpointRefusedError("the endpoint refused the API key (401): check OPENAI_API_KEY") from exc
        except openai.PermissionDeniedError as exc:
            raise EndpointRefusedError(
                f"the endpoint refused access (403: {_server_message(exc) or 'permission denied'}): check that the "
                f"key may use model '{request.model}'"
            ) from exc
        except openai.NotFoundError as exc:
            said = _server_message(exc)
            raise EndpointRefusedError(
                f"the endpoint does not know model '{request.model}' or the route (404{': ' + said if said else ''}): "
                "check --model (or CLAIMS_MODEL) and OPENAI_BASE_URL, which usually ends in /v1"
            ) from exc
        except openai.APIStatusError as exc:
            if exc.status_code == GATEWAY_TIMEOUT:
                raise LLMUnavailableError(
                    f"stage {request.stage}: a gateway in front of the model gave up waiting for the answer (HTTP 504"
                    + (f", {timeouts} times" if timeouts > 1 else "")
                    + "): the model takes longer than the proxy waits; raise the proxy's timeout (nginx: "
                    "proxy_read_timeout), or use a faster model"
                ) from exc
            raise LLMError(f"stage {request.stage}: the endpoint answered {_describe(exc)}") from exc
        return response_from_completion(completion)

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        client, loop = self._requests()
        send = self._send(client, body, request_priority.get())  # read here: the loop's thread has its own context
        return _completion_body(asyncio.run_coroutine_threadsafe(send, loop).result())

    async def _send(self, client: Any, body: dict[str, Any], priority: tuple[int, ...]) -> Any:
        """One attempt, in a request slot where there is a limit. A retry waits for its Retry-After
        outside any slot, so other papers' requests use it meanwhile."""
        if self._slots is None:
            return await client.chat.completions.create(**body)
        async with self._slots.slot(priority):
            return await client.chat.completions.create(**body)


FORMATS = ("json_schema", "json_object", "prompt")
GATEWAY_TIMEOUT = 504
SCHEMA_IN_PROMPT = (
    "Answer with one JSON object and nothing else. It must follow this JSON Schema exactly "
    "(every property present, no other property):\n"
)


# A request parameter an endpoint may refuse, and how requests go once it has.
WITHOUT = {
    "temperature": "without temperature: the model's default sampling, so answers may vary from run to run",
    "seed": "without seed",
    "max_tokens": "with max_completion_tokens alone",
    "max_completion_tokens": "with max_tokens alone",
}
REFUSAL_WORDS = (
    "unsupported",
    "not supported",
    "does not support",
    "not permitted",
    "not allowed",
    "unrecognized",
    "unknown",
)


@dataclass(frozen=True)
class Refusal:
    """What an endpoint said when it turned a request down: the HTTP status, its own words, and
    the parameter it named (OpenAI's `param`); from the SDK's error, or a Batch API output line."""

    status: int
    said: str
    param: str | None = None

    @classmethod
    def of(cls, exc: Any) -> Refusal:
        param = getattr(exc, "param", None)
        return cls(getattr(exc, "status_code", 0) or 0, _server_message(exc), param if isinstance(param, str) else None)

    @classmethod
    def in_answer(cls, status: int, body: Any) -> Refusal:
        """A Batch API output line's failed response: its status code and body."""
        error = body.get("error", body) if isinstance(body, dict) else body
        param = error.get("param") if isinstance(error, dict) else None
        return cls(status, _words(_message_in(body)), param if isinstance(param, str) else None)

    def of_format(self) -> bool:
        """Turned down for its response_format (not for anything else)."""
        said = self.said.lower()
        return self.status in (400, 415, 422, 500, 501) and (
            "response_format" in said or "json_schema" in said or "json_object" in said
        )

    def parameter_in(self, body: dict[str, Any]) -> str | None:
        """The parameter of `body` refused as unsupported (HTTP 400 or 422), where a request can
        go without it: the one the error names, else the first one its words name (a pydantic
        server's 'Extra inputs are not permitted' at body.seed)."""
        if self.status not in (400, 422) or not any(word in self.said.lower() for word in REFUSAL_WORDS):
            return None  # e.g. 'max_tokens is too large': a limit to report, not a parameter to drop
        if self.param in WITHOUT and self.param in body:
            return self.param
        mentioned = [
            (found.start(), name)
            for name in WITHOUT
            if name in body and (found := re.search(rf"\b{name}\b", self.said))
        ]
        return min(mentioned)[1] if mentioned else None


def _max_model_len(body: Any) -> int | None:
    models = body.get("data") if isinstance(body, dict) else None
    lengths = [m.get("max_model_len") for m in models or [] if isinstance(m, dict)]
    return next((int(n) for n in lengths if isinstance(n, int) and n > 0), None)


def _loaded_context(body: Any, model: str) -> int | None:
    """The `context_length` Ollama's `/api/ps` gives the model loaded under that name (a name
    without a tag is its `:latest`)."""
    names = {model, model if ":" in model else f"{model}:latest"}
    running = (body.get("models") or []) if isinstance(body, dict) else []
    for loaded in running:
        if isinstance(loaded, dict) and names & {loaded.get("name"), loaded.get("model")}:
            length = loaded.get("context_length")
            return length if isinstance(length, int) and length > 0 else None
    return None


def _n_ctx(body: Any) -> int | None:
    settings = body.get("default_generation_settings") if isinstance(body, dict) else None
    n_ctx = (settings or {}).get("n_ctx") or (body.get("n_ctx") if isinstance(body, dict) else None)
    return int(n_ctx) if isinstance(n_ctx, int) and n_ctx > 0 else None


def chat_body(request: ChatRequest, response_format: str = "json_schema") -> dict[str, Any]:
    """The body of a chat completion request, its answer constrained as the server allows:
    a strict `json_schema`, a `json_object` carrying the schema, or the schema in the prompt."""
    schema = request.output_schema
    body: dict[str, Any] = {"model": request.model, "messages": request.messages, **request.params}
    if response_format == "json_schema":
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": schema["name"], "strict": True, "schema": schema["schema"]},
        }
    elif response_format == "json_object":
        body["response_format"] = {"type": "json_object", "schema": schema["schema"]}
    else:
        instruction = SCHEMA_IN_PROMPT + json.dumps(schema["schema"], separators=(",", ":"))
        body["messages"] = [*request.messages, {"role": "system", "content": instruction}]
    return body


class _NoChoices(LLMError):
    """HTTP 200 whose body is an error, or a completion with no choices: what some servers and
    proxies answer when overloaded, so the request is sent again like a 5xx (and reported, with
    its stage, only when every attempt got one)."""


def _completion_body(answer: Any) -> dict[str, Any]:
    """The SDK's answer as the JSON the server sent, once it is known to be a chat completion.
    The SDK hands back a body that is not JSON as text, and builds a completion with no choices
    from an error object without complaint; either would otherwise surface as an internal error
    far from its cause."""
    if isinstance(answer, str) and answer.lstrip().startswith("data:"):
        answer = _assembled(answer)
    if isinstance(answer, str):
        start = " ".join(answer.split())[:80]
        raise EndpointRefusedError(
            f"the endpoint (OPENAI_BASE_URL) answered a chat request with a web page or text, not the API's JSON "
            f"({start!r}): set OPENAI_BASE_URL to the API's address, which usually ends in /v1"
        )
    body: dict[str, Any] = (
        answer if isinstance(answer, dict) else answer.model_dump(warnings=False, exclude_unset=True)
    )  # as sent: the SDK checks no type
    _require_reply(body)
    return body


def _assembled(events: str) -> dict[str, Any] | str:
    """One completion from an answer streamed as server-sent events though none was asked for
    (some gateways always stream): the chunks' text joined, the last finish reason and usage
    kept. Text that is not such a stream is returned as it is."""
    chunks = []
    for line in events.splitlines():
        data = line.removeprefix("data:").strip() if line.startswith("data:") else ""
        if data and data != "[DONE]":
            try:
                chunks.append(json.loads(data))
            except ValueError:
                return events
    chunks = [c for c in chunks if isinstance(c, dict)]
    choices = [
        c["choices"][0]
        for c in chunks
        if isinstance(c.get("choices"), list) and c["choices"] and isinstance(c["choices"][0], dict)
    ]
    if not choices:
        return events
    text = "".join(str((choice.get("delta") or {}).get("content") or "") for choice in choices)
    return {
        "model": next((c.get("model") for c in chunks if c.get("model")), None),
        "system_fingerprint": next((c.get("system_fingerprint") for c in chunks if c.get("system_fingerprint")), None),
        "choices": [
            {
                "message": {"role": "assistant", "content": text},
                "finish_reason": next(
                    (c.get("finish_reason") for c in reversed(choices) if c.get("finish_reason")), None
                ),
            }
        ],
        "usage": next((c.get("usage") for c in reversed(chunks) if c.get("usage")), None),
    }


def _require_reply(body: dict[str, Any]) -> None:
    choices = body.get("choices")
    if not (isinstance(choices, list) and choices and isinstance(choices[0], dict) and choices[0].get("message")):
        said = _words(_message_in(body.get("error")))
        raise _NoChoices("the endpoint's answer held no reply" + (f": {said}" if said else ""))


def response_from_completion(body: dict[str, Any]) -> ChatResponse:
    """What a run keeps of a chat completion as JSON (the live answer, or a line of the Batch
    API's output file), read as leniently as servers write it: a list of content parts for a
    text reply, null token counts, a number as the fingerprint."""
    _require_reply(body)
    choice = body["choices"][0]
    message = choice["message"]
    usage = body.get("usage")
    return ChatResponse(
        content=_text_of(message.get("content")),
        refusal=_string(message.get("refusal")),
        finish_reason=_string(choice.get("finish_reason")),
        usage=Usage(prompt_tokens=_count(usage, "prompt_tokens"), completion_tokens=_count(usage, "completion_tokens")),
        served_by=_string(body.get("system_fingerprint")),
        model=_string(body.get("model")),
    )


def _text_of(content: Any) -> str | None:
    """The reply's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, list):
        return "".join(str(part.get("text") or "") for part in content if isinstance(part, dict))
    return _string(content)


def _string(value: Any) -> str | None:
    return None if value is None else str(value)


def _count(usage: Any, name: str) -> int:
    value = usage.get(name) if isinstance(usage, dict) else None
    return int(value) if isinstance(value, int | float) else 0


def _describe(exc: BaseException | None) -> str:
    """The status and the server's own words (e.g. 'maximum context length is 8192 tokens')."""
    if isinstance(exc, _NoChoices):
        return str(exc)
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    said = _server_message(exc)
    return (f"HTTP {status} {name}" if status else name) + (f": {said}" if said else "")


def _cause_of(exc: BaseException) -> str:
    """What lies under a connection error: 'Connection refused', a name that does not resolve."""
    cause = exc.__cause__ or exc.__context__
    return " ".join(str(cause or exc).split())[:200] or type(cause or exc).__name__


def _server_message(exc: BaseException | None) -> str:
    """The server's own words in an SDK error (see `_message_in`), else the SDK's message."""
    message = _message_in(getattr(exc, "body", None))
    if not message and getattr(exc, "status_code", None):
        message = getattr(exc, "message", None)
    return _words(message)


def _message_in(body: Any) -> Any:
    """The words in an error body: OpenAI's `error.message`, or a FastAPI server's validation
    `detail` ('body.seed: Extra inputs are not permitted')."""
    if not isinstance(body, dict):
        return body
    error = body.get("error", body)
    return (error.get("message") or _validation_detail(error.get("detail"))) if isinstance(error, dict) else error


def _words(message: Any) -> str:
    text = " ".join(str(message).split()) if message else ""
    return text[:300] + ("..." if len(text) > 300 else "")


def _validation_detail(detail: Any) -> Any:
    """FastAPI's 422 `detail` (a list of {loc, msg}) as 'body.seed: Extra inputs are not permitted'."""
    if not isinstance(detail, list):
        return detail
    parts = [
        f"{'.'.join(str(part) for part in item.get('loc', []))}: {item.get('msg', '')}"
        for item in detail
        if isinstance(item, dict)
    ]
    return "; ".join(parts) or detail
