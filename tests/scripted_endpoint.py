"""A scripted, local, OpenAI-compatible endpoint: what recordings are made against, and what the
live-client tests talk to over real HTTP. It is not a model: it answers from hand-written scripts.

    python tests/scripted_endpoint.py fixtures/scripts/*.json --port 8765
    OPENAI_BASE_URL=http://127.0.0.1:8765/v1 OPENAI_API_KEY=unused \
        claims run fixtures/papers/x.pdf --record fixtures/runs/x

A script (JSON) names a `match` string that occurs in the paper's text, or the `model` whose
every request it answers, and for each stage (the strict schema's name: extract, draft, grade,
rewrite) a list of answers served in turn; the last one repeats. An answer is either the JSON object to return, or one of:
    {"$raw": "text"}                                  content that is not valid JSON
    {"$status": 429, "$headers": {"Retry-After": "1"}} an HTTP error instead of an answer
    {"$refusal": "text"}                              a refusal
Every response carries `system_fingerprint: claims-scripted-endpoint`, so a recording can say
truthfully what answered it. It binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pipeline.recording import SCRIPTED_ENDPOINT_ID



class Scripts:
    def __init__(self, scripts: list[dict[str, Any]]):
        self.scripts = scripts
        self.served: dict[tuple[int, str], int] = defaultdict(int)
        self.requests: list[dict[str, Any]] = []  # every request body, for tests to inspect
        self.lock = threading.Lock()

    @classmethod
    def from_files(cls, paths: list[Path]) -> "Scripts":
        return cls([json.loads(path.read_text()) for path in paths])

    def next_answer(self, body: dict[str, Any]) -> dict[str, Any]:
        stage = body.get("response_format", {}).get("json_schema", {}).get("name", "")
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


def completion(model: str, content: str | None, refusal: str | None, prompt_chars: int) -> dict[str, Any]:
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
                "finish_reason": "stop",
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


def make_handler(scripts: Scripts, latency: float = 0.0) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            if not self.path.endswith("/chat/completions"):
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            if latency:
                time.sleep(latency)
            answer = scripts.next_answer(body)
            if "$status" in answer:
                message = answer.get("$error", "scripted fault")
                self._send(answer["$status"], {"error": {"message": message}}, answer.get("$headers"))
                return
            prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
            if "$refusal" in answer:
                payload = completion(body["model"], None, answer["$refusal"], prompt_chars)
            elif "$raw" in answer:
                payload = completion(body["model"], answer["$raw"], None, prompt_chars)
            else:
                payload = completion(body["model"], json.dumps(answer, ensure_ascii=False), None, prompt_chars)
            self._send(200, payload)

    return Handler


class ScriptedEndpoint:
    """The server on a free loopback port, in a background thread; a context manager."""

    def __init__(self, scripts: Scripts, latency: float = 0.0, port: int = 0):
        self.scripts = scripts
        self.server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(scripts, latency))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> "ScriptedEndpoint":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scripts", nargs="+", type=Path)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each answer")
    args = parser.parse_args()
    endpoint = ScriptedEndpoint(Scripts.from_files(args.scripts), args.latency, args.port)
    print(f"scripted endpoint on {endpoint.base_url} ({len(args.scripts)} scripts); Ctrl-C to stop", flush=True)
    try:
        endpoint.server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
