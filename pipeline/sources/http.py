"""HTTP to the metadata services and PDF hosts, behind httpx's own seam: the transport.

`make_client` builds the one `httpx.Client` the DOI side uses (polite User-Agent with the contact
address, timeouts, redirects). Live runs use httpx's network transport; tests and offline demos
pass a `CassetteTransport`, which answers from a recorded cassette file and refuses anything not
in it, so nothing can reach the network by accident.

Cassette format (JSON): `{"source": "...", "interactions": [{"request": {"method", "url"},
"response": {"status", "headers", and one of "body" (text), "body_json", "body_file" (path
relative to the cassette)}}]}`. Requests match on method and URL, ignoring the `mailto` and
`email` parameters (contact addresses are never recorded); identical requests are answered in
order, the last answer repeating.
"""

from __future__ import annotations

import json
import ssl
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from pipeline import __version__
from pipeline.core import settings
from pipeline.core.errors import ConfigError
from pipeline.core.memo import computed_once

CONTACT_PARAMETERS = {"mailto", "email"}


def user_agent(mailto: str | None) -> str:
    contact = f"; mailto:{mailto}" if mailto else ""
    return f"claims/{__version__} (evidence claim records{contact})"


@computed_once
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context a process, for every client that does not bring its own:
    loading the CA bundle takes about 20 ms, paid again by each new client otherwise."""
    return httpx.create_ssl_context()


def make_client(
    mailto: str | None, timeout: float = 30.0, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """The client for DOI work. `CLAIMS_HTTP_CASSETTE` makes it answer from a cassette instead."""
    cassette = settings.current().http_cassette
    if transport is None and cassette is not None:
        transport = CassetteTransport(cassette)
    return httpx.Client(
        headers={"User-Agent": user_agent(mailto)},
        timeout=httpx.Timeout(timeout),
        follow_redirects=True,
        transport=transport,
        verify=tls_context(),
    )


def request_key(method: str, url: str) -> str:
    parts = urlsplit(url)
    query = sorted((k, v) for k, v in parse_qsl(parts.query) if k not in CONTACT_PARAMETERS)
    return f"{method.upper()} {urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ''))}"


class CassetteTransport(httpx.BaseTransport):
    def __init__(self, cassette: Path):
        try:
            data = json.loads(cassette.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{cassette}: cannot read the HTTP cassette ({exc})") from exc
        self._folder = cassette.parent
        self._answers: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for interaction in data["interactions"]:
            request = interaction["request"]
            self._answers[request_key(request["method"], request["url"])].append(interaction["response"])
        self._served: dict[str, int] = defaultdict(int)
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = request_key(request.method, str(request.url))
        answers = self._answers.get(key)
        if not answers:
            raise ConfigError(f"the HTTP cassette has no response for {key}")
        answer = answers[min(self._served[key], len(answers) - 1)]
        self._served[key] += 1
        if "body_file" in answer:
            content = (self._folder / answer["body_file"]).read_bytes()
        elif "body_json" in answer:
            content = json.dumps(answer["body_json"]).encode()
        else:
            content = answer.get("body", "").encode()
        return httpx.Response(answer["status"], headers=answer.get("headers", {}), content=content, request=request)
