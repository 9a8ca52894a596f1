"""The one seam to the model: `ChatModel.complete(ChatRequest) -> ChatResponse`.

Implementations: `OpenAIChatModel` (`llm/openai.py`) talks to any OpenAI-compatible endpoint;
`RecordingChatModel` (here) wraps another one and keeps every request and response;
`ReplayChatModel` (`llm/recording.py`) answers from a recording, matched on request content;
the Batch API and rate limits wrap one in turn.

`ask_structured` sits on top: it sends one stage's request with the schema built for it, reads
the answer as real servers write it (prose or a code fence around the JSON, raw control
characters in strings), checks it against the exact schema sent and the stage's own rules, and:
- retries an answer cut off before its end (`finish_reason: length`, or JSON that stops short) as
  a transient failure, asking for a briefer answer and varying the seed, so a deterministic
  server does not repeat itself;
- sends one repair request for an answer that breaks a rule, never re-sending a cut-off answer;
- when the repair breaks a rule too, lets the stage salvage what is usable: the fixes become
  flags or notes for the reviewer (`LLMContext.salvaged`), and the stage fails only when nothing
  usable came back.
Tokens of every attempt are counted, not only the last.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Collection
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel, PrivateAttr, ValidationError

from pipeline.core.errors import LLMError, LLMRefusalError, StageOutputError
from pipeline.core.models import Flag
from pipeline.core.resources import PromptSet, load_prompt_set
from pipeline.llm.strict_schema import RequestFacts, request_schema

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

T = TypeVar("T", bound=BaseModel)

# Which waiting request a freed request slot goes to, lowest first: a batch sets (the stage's
# place in the chain, the paper's place in the batch) as each stage starts.
request_priority: ContextVar[tuple[int, ...]] = ContextVar("claims_request_priority", default=(0,))


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
    model: str | None = None  # the model the server says answered (response.model)

    def answered_by(self) -> str | None:
        """'model (fingerprint)': what the server said answered, for the record's provenance."""
        if not self.model and not self.served_by:
            return None
        return f"{self.model or 'unnamed model'}" + (f" ({self.served_by})" if self.served_by else "")


class ChatModel(Protocol):
    def complete(self, request: ChatRequest) -> ChatResponse: ...


# --------------------------------------------------------------------------- recording


@dataclass
class Interaction:
    stage: str
    fingerprint: str
    request: dict[str, Any]
    response: dict[str, Any]
    seconds: float = 0.0  # how long the endpoint took (kept for the figures; replay ignores it)


@dataclass
class RecordingChatModel:
    """Passes requests on and keeps each exchange. Only request content is kept: no headers."""

    inner: ChatModel
    interactions: list[Interaction] = field(default_factory=list)

    def complete(self, request: ChatRequest) -> ChatResponse:
        started = time.perf_counter()
        try:
            response = self.inner.complete(request)
        except LLMError as exc:
            # Kept so a failed run's recording shows what the server said; replay raises it again.
            self.interactions.append(
                Interaction(
                    request.stage, request.fingerprint(), request.content(), {"error": str(exc)}, _since(started)
                )
            )
            raise
        self.interactions.append(
            Interaction(request.stage, request.fingerprint(), request.content(), response.model_dump(), _since(started))
        )
        return response


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 3)


# --------------------------------------------------------------------------- structured calls


@dataclass
class StageTally:
    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # How each structured answer ended: valid at first try, after a retry of a cut-off answer,
    # after the repair request, salvaged, or failed (for the figures in bench/models.py).
    outcomes: dict[str, int] = field(default_factory=dict)


@dataclass
class UsageLog:
    """Model calls and tokens per stage, across every attempt; answers from the cache cost none."""

    by_stage: dict[str, StageTally] = field(default_factory=dict)
    answered_by: dict[str, None] = field(default_factory=dict)  # an ordered set

    def add(self, stage: str, response: ChatResponse) -> None:
        tally = self.by_stage.setdefault(stage, StageTally())
        tally.calls += 1
        tally.prompt_tokens += response.usage.prompt_tokens
        tally.completion_tokens += response.usage.completion_tokens
        if who := response.answered_by():
            self.answered_by[who] = None

    def outcome(self, stage: str, kind: str) -> None:
        outcomes = self.by_stage.setdefault(stage, StageTally()).outcomes
        outcomes[kind] = outcomes.get(kind, 0) + 1

    def add_cached(self, stage: str) -> None:
        self.by_stage.setdefault(stage, StageTally()).cached_calls += 1

    @property
    def calls(self) -> int:
        return sum(t.calls for t in self.by_stage.values())

    @property
    def tokens(self) -> tuple[int, int]:
        return sum(t.prompt_tokens for t in self.by_stage.values()), sum(
            t.completion_tokens for t in self.by_stage.values()
        )


class ResponseCache(Protocol):
    """Validated answers by the fingerprint of the request that first asked for them."""

    def get(self, fingerprint: str) -> str | None: ...

    def put(self, fingerprint: str, stage: str, content: str) -> None: ...


@dataclass
class LLMContext:
    """What every model-calling stage needs: the model, the run settings, the tally, the cache,
    and what the stages salvaged from answers that broke a rule even after the repair."""

    chat: ChatModel
    settings: Any  # config.RunSettings (not imported here: config is the lower layer)
    usage: UsageLog = field(default_factory=UsageLog)
    cache: ResponseCache | None = None
    salvaged: list[Flag] = field(default_factory=list)
    prompts: PromptSet = field(default_factory=load_prompt_set)  # read once; a batch shares one


REPAIR_PROBLEM_CHARS = 1200  # the problems a repair request lists, at most (see settings.REPAIR_TOKENS)
TRUNCATION_RETRIES = 2  # a cut-off answer is asked again this often before it counts as a failure


def no_problems(_: Any) -> list[str]:
    return []


@dataclass(frozen=True)
class StageCall:
    """One stage's request. `check` finds what no schema can say (an empty quote). `salvage`
    mends an answer that still breaks a rule after the repair, returning flags that say what it
    changed, or None when nothing usable is left; whatever rule is still broken after it is
    flagged as it stands (see `_salvage`)."""

    stage: str
    output: type[BaseModel]
    messages: list[dict[str, str]]
    check: Callable[[Any], list[str]] = no_problems
    facts: RequestFacts = field(default_factory=RequestFacts)
    salvage: Callable[[Any], list[Flag] | None] | None = None


@dataclass
class _Reading:
    parsed: Any = None  # the answer as the stage's model, when it has that shape
    problems: list[str] = field(default_factory=list)
    cut_off: bool = False

    @property
    def usable(self) -> bool:
        return self.parsed is not None and not self.problems


def ask_structured(llm: LLMContext, call: StageCall) -> Any:
    """The stage's answer, valid against the schema sent and the stage's rules, or salvaged.

    A cached answer is used when it is still valid; only a valid answer is cached (under the
    first request's fingerprint), never a failure or a salvaged one."""
    from jsonschema import Draft202012Validator  # here: a batch whose papers are all stored never loads it

    schema = {"name": call.stage, "schema": request_schema(call.output, call.facts)}
    validator = Draft202012Validator(schema["schema"])
    params = llm.settings.params()
    first = ChatRequest(
        stage=call.stage, model=llm.settings.model, messages=call.messages, output_schema=schema, params=params
    )
    if llm.cache is not None and (cached := llm.cache.get(first.fingerprint())) is not None:
        reading = _read(call, validator, ChatResponse(content=cached, finish_reason="stop"))
        if reading.usable:
            llm.usage.add_cached(call.stage)
            llm.usage.outcome(call.stage, "cached")
            return reading.parsed
    request, retries, repaired, best = first, 0, False, None
    while True:
        response = llm.chat.complete(request)
        llm.usage.add(call.stage, response)
        if response.refusal:
            raise LLMRefusalError(f"stage {call.stage}: the model refused: {response.refusal[:200]}")
        if response.finish_reason == "content_filter":  # Azure's, Gemini's: the same prompt is withheld again
            raise LLMRefusalError(
                f"stage {call.stage}: the endpoint's content filter withheld the answer (finish_reason "
                "content_filter); a paper on a sensitive subject may need a deployment with another filter setting"
            )
        reading = _read(call, validator, response)
        if reading.usable:
            if llm.cache is not None:
                llm.cache.put(first.fingerprint(), call.stage, response.content or "")
            llm.usage.outcome(call.stage, "after repair" if repaired else "after retry" if retries else "first try")
            return reading.parsed
        if reading.parsed is not None:
            best = reading
        if reading.cut_off and retries < TRUNCATION_RETRIES:
            retries += 1
            request = _retry_request(first, retries, response, llm.prompts)
        elif not repaired:
            repaired = True
            request = _repair_request(first, retries + 1, response, reading, llm.prompts)
        else:
            break
    return _salvage(llm, call, validator, best, reading)


def _salvage(
    llm: LLMContext, call: StageCall, validator: Draft202012Validator, best: _Reading | None, last: _Reading
) -> Any:
    """The last answer that had the stage's shape, mended by the stage where it can be, every
    rule still broken flagged for the reviewer: a flagged draft rather than nothing. Fails only
    when no answer had the stage's shape, or the stage finds nothing usable in it."""
    flags = call.salvage(best.parsed) if best is not None and call.salvage is not None else []
    if best is None or flags is None:
        llm.usage.outcome(call.stage, "failed")
        raise StageOutputError(call.stage, last.problems, _cut_off_hint(llm.settings) if last.cut_off else "")
    llm.usage.outcome(call.stage, "salvaged")
    flags += [
        Flag(
            where=f"{call.stage} answer: {problem.split(':')[0]}",
            code="model_output",
            message=f"the model's answer still broke a rule after a repair request: {problem}",
        )
        for problem in _problems(call, validator, best.parsed)
    ]
    llm.salvaged.extend(flags)
    return best.parsed


def _cut_off_hint(settings: Any) -> str:
    """Why answers run to the token limit, and what to do: a context window the server did not
    say (the prompt and the answer's limit overflow it, and the server cuts the answer short),
    or a model that repeats itself."""
    limit = settings.completion_limit()
    if settings.context_tokens is None:
        return (
            f"the last answer was cut off at the token limit: if the model's context window is smaller than the "
            f"prompt plus {limit:,} tokens of answer, set CLAIMS_CONTEXT_TOKENS to it (the server does not say it)"
        )
    return f"the last answer was cut off at the {limit:,}-token limit, as a model that repeats itself is"


def _varied(params: dict[str, Any], attempt: int) -> dict[str, Any]:
    """The parameters moved on so that a deterministic server does not answer the same again: the
    seed, and at temperature 0 (where greedy decoding ignores the seed) a little temperature."""
    varied = dict(params)
    if varied.get("seed") is not None:
        varied["seed"] += attempt
    if not varied.get("temperature"):
        varied["temperature"] = min(0.9, 0.3 * attempt)
    return varied


def _retry_request(first: ChatRequest, attempt: int, response: ChatResponse, prompts: PromptSet) -> ChatRequest:
    """Ask again after a cut-off answer; at the token limit, ask for a briefer one. The cut-off
    answer is never sent back: it could push the conversation past the server's context."""
    messages = list(first.messages)
    if response.finish_reason == "length":
        messages.append({"role": "user", "content": prompts.instruction("retry_shorter")})
    return first.model_copy(update={"messages": messages, "params": _varied(first.params, attempt)})


def _repair_request(
    first: ChatRequest, attempt: int, response: ChatResponse, reading: _Reading, prompts: PromptSet
) -> ChatRequest:
    messages = list(first.messages)
    if not reading.cut_off:
        messages.append({"role": "assistant", "content": response.content or ""})
    problems = _within(reading.problems, REPAIR_PROBLEM_CHARS)
    messages.append(
        {"role": "user", "content": prompts.instruction("repair") + "\n\nProblems:\n- " + "\n- ".join(problems)}
    )
    return first.model_copy(update={"messages": messages, "params": _varied(first.params, attempt)})


def _within(problems: list[str], limit: int) -> list[str]:
    """The first problems that fit in `limit` characters, and how many more there were."""
    shown: list[str] = []
    for problem in problems:
        if sum(len(p) + 3 for p in shown) + len(problem) > limit:
            return [*shown, f"(and {len(problems) - len(shown)} more problem(s) of the same kinds)"]
        shown.append(problem)
    return shown


def _read(call: StageCall, validator: Draft202012Validator, response: ChatResponse) -> _Reading:
    """Parse as leniently as real servers need, then hold the answer to the schema that was sent."""
    if not response.content or not response.content.strip():
        return _Reading(problems=["the answer was empty"], cut_off=response.finish_reason == "length")
    cut_off = response.finish_reason == "length"
    try:
        data = json_object_in(response.content, call.output.model_fields)
    except NoJSONObject as exc:
        return _Reading(problems=[f"(top level): {exc}"], cut_off=cut_off or exc.cut_off)
    try:
        parsed = call.output.model_validate(data)
    except ValidationError as exc:
        return _Reading(problems=_pydantic_problems(exc), cut_off=cut_off)
    problems = _problems(call, validator, parsed)
    if cut_off and not problems:
        problems = ["the answer was cut off at the token limit"]
    return _Reading(parsed=parsed, problems=problems, cut_off=cut_off)


def _problems(call: StageCall, validator: Draft202012Validator, parsed: BaseModel) -> list[str]:
    """The rules the answer breaks: the schema that was sent, then the stage's own."""
    problems = [_schema_problem(error) for error in validator.iter_errors(parsed.model_dump(mode="json"))]
    return problems + call.check(parsed)


def _pydantic_problems(exc: ValidationError) -> list[str]:
    return [
        f"{'.'.join(str(part) for part in error['loc']) or '(top level)'}: {error['msg']}"
        for error in exc.errors(include_url=False)
    ]


def _schema_problem(error: Any) -> str:
    where = ".".join(str(part) for part in error.absolute_path) or "(top level)"
    return f"{where}: {error.message[:200]}"


_DECODER = json.JSONDecoder(strict=False)  # strict=False: raw newlines and tabs inside strings
_MAX_STARTS = 20


class NoJSONObject(ValueError):
    """No JSON object in an answer; `cut_off` when the JSON stops short (a string or object
    still open at the end), which a retry may mend, rather than being malformed."""

    def __init__(self, message: str, cut_off: bool):
        super().__init__(message)
        self.cut_off = cut_off


def json_object_in(content: str, keys: Collection[str] = ()) -> Any:
    """The JSON object in an answer: bare, in a Markdown code fence, after some prose, or after a
    reasoning model's thoughts (`<think>...</think>`, which servers without a reasoning parser
    leave in the answer). Of several objects, the one holding most of the schema's `keys`: a
    model thinking aloud may sketch a fragment of its answer before giving it."""
    content = _without_reasoning(content)
    found: list[dict[str, Any]] = []
    first_error: json.JSONDecodeError | None = None
    start = content.find("{")
    for _ in range(_MAX_STARTS):
        if start < 0:
            break
        try:
            data, end = _DECODER.raw_decode(content, start)
            if isinstance(data, dict):
                found.append(data)
                start = content.find("{", end)
                continue
        except json.JSONDecodeError as exc:
            if _stops_short(exc, content):  # an inner '{' would only give a fragment of it
                if found:
                    break
                raise NoJSONObject(f"Invalid JSON: {exc}", cut_off=True) from None
            first_error = first_error or exc
        start = content.find("{", start + 1)
    if found:
        return max(found, key=lambda data: len(data.keys() & set(keys)))  # the first of equals
    if first_error is None:
        raise NoJSONObject("the answer holds no JSON object", cut_off=False)
    raise NoJSONObject(f"Invalid JSON: {first_error}", cut_off=False)


_THOUGHTS_END = re.compile(r"</(?:think|thinking|reasoning)>", re.IGNORECASE)
_THOUGHTS_START = re.compile(r"<(?:think|thinking|reasoning)>", re.IGNORECASE)


def _without_reasoning(content: str) -> str:
    """The answer after the model's thoughts. Some chat templates open the `<think>` tag in the
    prompt, so only its end is in the answer; thoughts that never end hold no answer."""
    ends = list(_THOUGHTS_END.finditer(content))
    if ends:
        return content[ends[-1].end() :]
    opened = _THOUGHTS_START.search(content)
    return content[: opened.start()] if opened else content


def _stops_short(error: json.JSONDecodeError, content: str) -> bool:
    return error.msg.startswith("Unterminated string") or error.pos >= len(content.rstrip())
