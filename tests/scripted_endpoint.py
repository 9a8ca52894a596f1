"""A scripted, local, OpenAI-compatible endpoint: what recordings are made against, and what the
live-client tests talk to over real HTTP. It is not a model: it answers from hand-written scripts.

    python tests/scripted_endpoint.py fixtures/scripts/*.json --port 8765
    OPENAI_BASE_URL=http://127.0.0.1:8765/v1 OPENAI_API_KEY=unused \
        claims run fixtures/papers/x.pdf --record fixtures/runs/x

A script (JSON) names a `match` string that occurs in the paper's text, or the `model` whose
every request it answers, and for each stage (the strict schema's name: extract, draft, grade,
rewrite) a list of answers served in turn; the last one repeats. An answer is either the JSON object to return, or one of:
    {"$raw": "text"}                                  content that is not valid JSON
    {"$raw": "text", "$finish_reason": "length"}      ... cut off at the token limit
    {"$status": 429, "$headers": {"Retry-After": "1"}} an HTTP error instead of an answer
    {"$refusal": "text"}                              a refusal
    {"$body": {...} or "text"}                        this whole response body, with HTTP 200 (text as a web page)
With `--random-within-schema SEED` it answers every request with JSON picked at random (seeded)
within the schema the request sent, and nothing the schema does not say: what a constrained
decoder with no understanding would write. Strings are random words or a random stretch of the
request's own text, so some quotes are found in the paper and most are not.

Every response carries `system_fingerprint: claims-scripted-endpoint`, so a recording can say
truthfully what answered it. It also serves the Batch API routes (/v1/files, /v1/files/ID/content,
/v1/batches, /v1/batches/ID), and for benchmarks a fixed latency and seeded faults
(`--fault-rate`: 429 with Retry-After, 500, hangs, truncated JSON). It binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pipeline.llm.recording import SCRIPTED_ENDPOINT_ID

# A stage by the properties its answer schema asks for (a json_object request names no schema).
_STAGE_KEYS = {
    "extract": {"bibliography", "findings"},
    "draft": {"claim", "stances"},
    "grade": {"design_rationale", "gold_standard"},
    "synthesis": {"causal_chain", "domains"},
    "stance": {"rationale", "stance"},
    "rewrite": {"text"},
}


def schema_of(body: dict[str, Any]) -> dict[str, Any] | None:
    """The answer schema a request sent: strict json_schema, or json_object with a schema."""
    response_format = body.get("response_format") or {}
    return response_format.get("json_schema", {}).get("schema") or response_format.get("schema")


def stage_of(body: dict[str, Any]) -> str:
    named = (body.get("response_format") or {}).get("json_schema", {}).get("name")
    if named:
        return str(named)
    keys = set((schema_of(body) or {}).get("properties", {}))
    return next((stage for stage, wanted in _STAGE_KEYS.items() if wanted <= keys), "")


class Scripts:
    def __init__(self, scripts: list[dict[str, Any]]):
        self.scripts = scripts
        self.served: dict[tuple[int, str], int] = defaultdict(int)
        self.requests: list[dict[str, Any]] = []  # every request body, for tests to inspect
        self.timeline: list[tuple[float, float]] = []  # (arrived, answered) per chat request, for benchmarks
        self.lock = threading.Lock()

    @classmethod
    def from_files(cls, paths: list[Path]) -> Scripts:
        """A file holds one script, or a list of them."""
        scripts: list[dict[str, Any]] = []
        for path in paths:
            data = json.loads(path.read_text())
            scripts.extend(data if isinstance(data, list) else [data])
        return cls(scripts)

    def next_answer(self, body: dict[str, Any]) -> dict[str, Any]:
        stage = stage_of(body)
        text = "\n".join(str(message.get("content", "")) for message in body.get("messages", []))
        with self.lock:
            self.requests.append(body)
            model = body.get("model")
            named_first = sorted(enumerate(self.scripts), key=lambda item: "model" not in item[1])
            for index, script in named_first:
                # A script that names a model answers every request for that model (that is how the
                # misbehaving variants of a paper are recorded beside the faithful script); any
                # other script answers the requests whose text contains its match string.
                if script["model"] == model if "model" in script else script["match"] in text:
                    answers = script["answers"].get(stage)
                    if not answers:
                        return {"$status": 400, "$error": f"script {script.get('name')} has no answer for {stage!r}"}
                    served = self.served[(index, stage)]
                    self.served[(index, stage)] += 1
                    return answers[min(served, len(answers) - 1)]
        return {"$status": 400, "$error": "no script matches this request's text"}


class RandomWithinSchema:
    """Answers at random within each request's JSON schema (the strict subset: objects, arrays
    with minItems/maxItems, enums, anyOf, $ref, integers and numbers with bounds, strings)."""

    WORDS = ("the", "patients", "iron", "risk", "may", "increase", "trial", "dose", "levels", "group", "weeks", "lower")

    def __init__(self, seed: int = 1):
        self.random = random.Random(seed)
        self.requests: list[dict[str, Any]] = []
        self.timeline: list[tuple[float, float]] = []
        self.lock = threading.Lock()

    def next_answer(self, body: dict[str, Any]) -> dict[str, Any]:
        schema = schema_of(body)
        if schema is None:
            return {"$status": 400, "$error": "the request sent no JSON schema"}
        text = " ".join(str(m.get("content", "")) for m in body.get("messages", []) if m.get("role") == "user").split()
        with self.lock:
            self.requests.append(body)
            return self.value(schema, schema, text)

    def value(self, node: dict[str, Any], root: dict[str, Any], text: list[str]) -> Any:
        pick = self.random
        if "$ref" in node:
            return self.value(root["$defs"][node["$ref"].split("/")[-1]], root, text)
        if "anyOf" in node:
            return self.value(pick.choice(node["anyOf"]), root, text)
        if "enum" in node:
            return pick.choice(node["enum"])
        kind = node.get("type")
        if kind == "object":
            return {name: self.value(sub, root, text) for name, sub in node.get("properties", {}).items()}
        if kind == "array":
            low = node.get("minItems", 0)
            count = pick.randint(low, node.get("maxItems", low + 3))
            return [self.value(node["items"], root, text) for _ in range(count)]
        if kind == "integer":
            low = (
                node["minimum"]
                if "minimum" in node
                else node["exclusiveMinimum"] + 1
                if "exclusiveMinimum" in node
                else -5
            )
            return pick.randint(low, node.get("maximum", low + 500))
        if kind == "number":
            low = node.get("minimum", node.get("exclusiveMinimum", -50.0))
            return round(pick.uniform(low, node.get("maximum", low + 500)) or 0.5, 3)
        if kind == "boolean":
            return pick.random() < 0.5
        if kind == "null":
            return None
        if text and pick.random() < 0.5:  # a stretch of the request's own text
            start = pick.randrange(len(text))
            return " ".join(text[start : start + pick.randint(3, 25)])
        return " ".join(pick.choice(self.WORDS) for _ in range(pick.randint(0, 12)))


class CarefulVerifier:
    """Answers the second opinion's request (`verify`) as a careful reader would, from what the
    request itself holds: each finding against its own quote. An effect or interval figure the
    quote does not carry, an interval whose ends are swapped, or a direction the quote's
    significance contradicts makes the finding not supported. Population, intervention, outcome
    and sample size are not judged (quotes abbreviate them, or leave them to the sentence before).
    It knows nothing of how a case was made: the same rules judge faithful findings and changed
    ones. Not a model."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.timeline: list[tuple[float, float]] = []
        self.lock = threading.Lock()

    def next_answer(self, body: dict[str, Any]) -> dict[str, Any]:
        from pipeline.stages.textmatch import numbers_of

        text = " ".join(str(m.get("content", "")) for m in body.get("messages", []) if m.get("role") == "user")
        findings = json.JSONDecoder().raw_decode(text[text.index("[") :])[0]
        with self.lock:
            self.requests.append(body)
        verdicts = []
        for finding in findings:
            quote = finding["quote"]
            carried = set(numbers_of(quote))
            effect = finding.get("effect") or {}
            differs = []
            named = [effect.get("value"), effect.get("ci_lower"), effect.get("ci_upper")]
            if any(n is not None and str(n) not in carried and f"{n:g}" not in carried for n in named):
                differs.append("numbers")
            low, high = effect.get("ci_lower"), effect.get("ci_upper")
            if low is not None and high is not None and low > high:
                differs.append("interval")
            if self._direction_contradicted(finding["direction"], quote, effect):
                differs.append("direction")
            verdicts.append(
                {
                    "finding": finding["finding"],
                    "verdict": "not_supported" if differs else "supported",
                    "differs": differs,
                    "reason": "The quote reports other " + ", ".join(differs) if differs else "The quote bears it out.",
                }
            )
        return {"verdicts": verdicts}

    @staticmethod
    def _direction_contradicted(direction: str, quote: str, effect: dict[str, Any]) -> bool:
        """The quote's significance (its words, a small p, or an interval clear of no effect: 0
        for a difference, 1 for a ratio) against the finding's direction."""
        if direction in ("mixed", "not_reported"):
            return False
        lowered = quote.lower()
        null = re.search(
            r"\bno (statistically )?significant|\bnot (statistically )?significant"
            r"|did not (differ|influence|affect|change|alter|improve)",
            lowered,
        )
        low, high = effect.get("ci_lower"), effect.get("ci_upper")
        neutral = 1.0 if re.search(r"ratio|odds|hazard", str(effect.get("measure", "")).lower()) else 0.0
        clear = low is not None and high is not None and (min(low, high) > neutral or max(low, high) < neutral)
        significant = (re.search(r"p\s*[<≤]\s*0?\.0[0-5]", lowered) or clear) and not null
        no_difference = direction == "no_significant_difference"
        return bool((no_difference and significant) or (not no_difference and null and not significant))


def _content_of(payload: Any) -> str | None:
    """A chat completion's reply text; None for any other body (a scripted `$body`)."""
    try:
        return payload["choices"][0]["message"]["content"]
    except (TypeError, KeyError, IndexError):
        return None


def completion(
    model: str, content: str | None, refusal: str | None, prompt_chars: int, finish_reason: str = "stop"
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "system_fingerprint": SCRIPTED_ENDPOINT_ID,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        # A rough count (4 characters a token): enough for the cost and token figures to move.
        "usage": {
            "prompt_tokens": prompt_chars // 4,
            "completion_tokens": len(content or refusal or "") // 4,
            "total_tokens": prompt_chars // 4 + len(content or refusal or "") // 4,
        },
    }


@dataclass
class Faults:
    """Injected failures, for benchmarks and fault tests: with probability `rate` a request gets
    one of: 429 with Retry-After, 500, no answer for `hang_seconds` (a timeout), or a truncated
    JSON answer. Seeded, so a run can be repeated."""

    rate: float = 0.0
    hang_seconds: float = 3.0
    retry_after: str = "1"
    seed: int = 1
    kinds: tuple[str, ...] = ("429", "500", "timeout", "truncated")
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()

    def draw(self) -> str | None:
        with self._lock:
            if self._random.random() >= self.rate:
                return None
            kind = self._random.choice(self.kinds)
            self.counts[kind] += 1
            return kind


class BatchStore:
    """Files and batches for the Batch API routes; a batch completes after `polls` retrievals."""

    def __init__(self, polls: int = 1):
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.polls = polls
        self.lock = threading.Lock()

    def add_file(self, content: bytes, filename: str, purpose: str) -> dict[str, Any]:
        with self.lock:
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = content
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": 0,
            "filename": filename,
            "purpose": purpose,
        }


@dataclass
class Traits:
    """How the server behaves beyond its answers; a test may change them while it runs.
    `refuse_json_schema`: refuse `response_format: json_schema` as llama-cpp-python's server does
    (HTTP 500, 'Input should be 'text' or 'json_object''), taking `json_object` with a schema;
    `n_ctx`: the context window `/props` reports, as llama.cpp's own server does;
    `refused_params`: request fields turned down when sent, in the words of `refusal_style`:
    "openai" (400 naming the `param`, as OpenAI's reasoning models refuse temperature 0 and
    max_tokens) or "pydantic" (422 'Extra inputs are not permitted', as a FastAPI server with
    strict request models refuses a field it does not know);
    `ollama_context`: serve Ollama's `/api/ps` (loaded models, each with its `context_length`,
    in the shape a real Ollama server answers) and `/api/generate`, whose empty request loads a
    model with this window; `loaded` holds the names loaded so far."""

    latency: float = 0.0
    refuse_json_schema: bool = False
    n_ctx: int | None = None
    refused_params: tuple[str, ...] = ()
    refusal_style: str = "openai"
    ollama_context: int | None = None
    loaded: list[str] = field(default_factory=list)


def ollama_running(traits: Traits) -> dict[str, Any]:
    """Ollama's `/api/ps`, its fields as a real server gives them."""
    return {
        "models": [
            {
                "name": name,
                "model": name,
                "size": 492523008,
                "digest": "0" * 64,
                "details": {"format": "gguf", "family": "llama", "parameter_size": "135M"},
                "expires_at": "2026-11-27T10:15:00Z",
                "size_vram": 0,
                "context_length": traits.ollama_context,
            }
            for name in traits.loaded
        ]
    }


def refusal(param: str, value: Any, style: str) -> tuple[int, dict[str, Any]]:
    """A server's answer to a request carrying a field it does not take."""
    if style == "pydantic":
        detail = {
            "type": "extra_forbidden",
            "loc": ["body", param],
            "msg": "Extra inputs are not permitted",
            "input": value,
        }
        return 422, {"detail": [detail]}
    if param == "temperature":
        message = f"Unsupported value: 'temperature' does not support {value} with this model. Only the default (1) value is supported."
        code = "unsupported_value"
    else:
        message = f"Unsupported parameter: '{param}' is not supported with this model."
        code = "unsupported_parameter"
    return 400, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


def make_handler(
    scripts: Scripts | RandomWithinSchema,
    timing: Traits,
    faults: Faults | None = None,
    batches: BatchStore | None = None,
) -> type[BaseHTTPRequestHandler]:
    faults = faults or Faults()
    batches = batches or BatchStore()

    def turned_down(body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """The refusal `timing` calls for, the same on the chat route and in a batch."""
        if timing.refuse_json_schema and body.get("response_format", {}).get("type") == "json_schema":
            message = "1 validation error: ('body', 'response_format', 'type'): Input should be 'text' or 'json_object'"
            return 500, {"error": {"message": message, "type": "internal_server_error"}}
        refused = next((name for name in timing.refused_params if name in body), None)
        return None if refused is None else refusal(refused, body[refused], timing.refusal_style)

    def answer_chat(body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        if (refused := turned_down(body)) is not None:
            return (*refused, {})
        answer = scripts.next_answer(body)
        if "$status" in answer:  # with `$body`, a page in place of the API's error (a proxy's)
            error = (
                answer["$body"] if "$body" in answer else {"error": {"message": answer.get("$error", "scripted fault")}}
            )
            return answer["$status"], error, answer.get("$headers", {})
        if "$body" in answer:
            return 200, answer["$body"], {}
        prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
        if "$refusal" in answer:
            return 200, completion(body["model"], None, answer["$refusal"], prompt_chars), {}
        content = answer["$raw"] if "$raw" in answer else json.dumps(answer, ensure_ascii=False)
        return 200, completion(body["model"], content, None, prompt_chars, answer.get("$finish_reason", "stop")), {}

    class Handler(BaseHTTPRequestHandler):
        # Connections kept open between requests, as OpenAI's, vLLM's and llama.cpp's servers keep
        # them: a new connection a request would put this server's cost into the client's figures.
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are written apart: no 40 ms delayed-ACK wait between

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, payload: dict[str, Any] | str, headers: dict[str, str] | None = None) -> None:
            text = isinstance(payload, str)
            data = payload.encode() if text else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html" if text else "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self._write(data)

        def _send_bytes(self, data: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self._write(data)

        def _write(self, data: bytes) -> None:
            try:
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (an injected hang)
                self.close_connection = True

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path.endswith("/files"):
                self._send(200, self._upload(raw))
            elif self.path.endswith("/batches"):
                self._send(200, self._create_batch(json.loads(raw)))
            elif self.path.endswith("/chat/completions"):
                self._chat(json.loads(raw))
            elif self.path == "/api/generate" and timing.ollama_context:
                model = json.loads(raw)["model"]
                timing.loaded.append(model if ":" in model else f"{model}:latest")
                self._send(200, {"model": model, "response": "", "done": True, "done_reason": "load"})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_GET(self) -> None:
            parts = self.path.rstrip("/").split("/")
            if self.path.rstrip("/") == "/props" and timing.n_ctx:
                self._send(200, {"default_generation_settings": {"n_ctx": timing.n_ctx}})
            elif self.path == "/api/ps" and timing.ollama_context:
                self._send(200, ollama_running(timing))
            elif len(parts) >= 3 and parts[-3] == "files" and parts[-1] == "content" and parts[-2] in batches.files:
                self._send_bytes(batches.files[parts[-2]])
            elif len(parts) >= 2 and parts[-2] == "batches" and parts[-1] in batches.batches:
                batch = batches.batches[parts[-1]]
                with batches.lock:
                    batch["_polled"] += 1
                    if batch["_polled"] >= batches.polls:
                        batch["status"] = "completed"
                self._send(200, {k: v for k, v in batch.items() if not k.startswith("_")})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def _chat(self, body: dict[str, Any]) -> None:
            arrived = time.monotonic()
            try:
                self._answer_chat(body)
            finally:
                scripts.timeline.append((arrived, time.monotonic()))

        def _answer_chat(self, body: dict[str, Any]) -> None:
            if timing.latency:
                time.sleep(timing.latency)
            fault = faults.draw()
            if fault == "429":
                self._send(429, {"error": {"message": "rate limited (injected)"}}, {"Retry-After": faults.retry_after})
                return
            if fault == "500":
                self._send(500, {"error": {"message": "server error (injected)"}})
                return
            if fault == "timeout":
                time.sleep(faults.hang_seconds)
            status, payload, headers = answer_chat(body)
            if fault == "truncated" and status == 200 and _content_of(payload):
                # as a server cut off at its token limit: half the answer, finish_reason "length"
                content = payload["choices"][0]["message"]["content"]
                payload["choices"][0]["message"]["content"] = content[: len(content) // 2]
                payload["choices"][0]["finish_reason"] = "length"
            self._send(status, payload, headers)

        def _upload(self, raw: bytes) -> dict[str, Any]:
            message = BytesParser(policy=HTTP).parsebytes(
                b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + raw
            )
            fields = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
            file_part = fields["file"]
            return batches.add_file(
                file_part.get_payload(decode=True),
                file_part.get_filename() or "upload",
                fields["purpose"].get_content().strip(),
            )

        def _create_batch(self, request: dict[str, Any]) -> dict[str, Any]:
            lines = batches.files[request["input_file_id"]].decode().splitlines()
            output = []
            for line in filter(None, lines):
                item = json.loads(line)
                status, payload, _ = answer_chat(item["body"])
                output.append(
                    json.dumps(
                        {
                            "id": f"req-{len(output)}",
                            "custom_id": item["custom_id"],
                            "response": {"status_code": status, "body": payload},
                            "error": None,
                        }
                    )
                )
            output_file = batches.add_file("\n".join(output).encode(), "output.jsonl", "batch_output")
            with batches.lock:
                batch_id = f"batch-{len(batches.batches) + 1}"
                batches.batches[batch_id] = {
                    "id": batch_id,
                    "object": "batch",
                    "endpoint": request["endpoint"],
                    "errors": None,
                    "input_file_id": request["input_file_id"],
                    "completion_window": request["completion_window"],
                    "status": "in_progress",
                    "output_file_id": output_file["id"],
                    "error_file_id": None,
                    "created_at": 0,
                    "request_counts": {"total": len(output), "completed": len(output), "failed": 0},
                    "_polled": 0,
                }
            return {k: v for k, v in batches.batches[batch_id].items() if not k.startswith("_")}

    return Handler


class ScriptedEndpoint:
    """The server on a free loopback port, in a background thread; a context manager."""

    def __init__(
        self,
        scripts: Scripts | RandomWithinSchema,
        latency: float = 0.0,
        port: int = 0,
        faults: Faults | None = None,
        batch_polls: int = 1,
    ):
        self.scripts = scripts
        self.faults = faults or Faults()
        self.batches = BatchStore(batch_polls)
        self.traits = Traits(latency)
        self.server = ThreadingHTTPServer(
            ("127.0.0.1", port), make_handler(scripts, self.traits, self.faults, self.batches)
        )
        self.server.daemon_threads = True
        # a short poll: the server stops within 0.05 s instead of serve_forever's default 0.5 s
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> ScriptedEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scripts", nargs="*", type=Path)
    parser.add_argument(
        "--random-within-schema",
        type=int,
        metavar="SEED",
        help="answer at random within each request's schema instead of from scripts",
    )
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each answer")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of requests given an injected fault")
    parser.add_argument("--hang-seconds", type=float, default=3.0, help="how long an injected timeout hangs")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    faults = Faults(rate=args.fault_rate, hang_seconds=args.hang_seconds, seed=args.seed)
    answers = (
        RandomWithinSchema(args.random_within_schema)
        if args.random_within_schema is not None
        else Scripts.from_files(args.scripts)
    )
    endpoint = ScriptedEndpoint(answers, args.latency, args.port, faults)
    print(f"scripted endpoint on {endpoint.base_url} ({len(args.scripts)} scripts); Ctrl-C to stop", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        endpoint.server.serve_forever()


if __name__ == "__main__":
    main()
