"""Client-side limits shared by all of a batch's workers: requests in flight (`--concurrency`),
requests and tokens a minute (`--rpm`, `--tpm`).

A sliding minute: a request waits until fewer than `rpm` requests, and fewer than `tpm` tokens,
were sent in the last 60 seconds. A request's tokens are estimated as OpenAI's own limiter
counts them before the answer exists: the prompt (about four characters a token) plus the
completion tokens it allows.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.llm.base import ChatModel, ChatRequest, ChatResponse

WINDOW_SECONDS = 60.0


@dataclass
class RateLimiter:
    rpm: int | None
    tpm: int | None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _sent: deque[tuple[float, int]] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def acquire(self, tokens: int) -> None:
        while True:
            with self._lock:
                now = self.clock()
                while self._sent and now - self._sent[0][0] >= WINDOW_SECONDS:
                    self._sent.popleft()
                used = sum(t for _, t in self._sent)
                fits_requests = self.rpm is None or len(self._sent) < self.rpm
                fits_tokens = self.tpm is None or not self._sent or used + tokens <= self.tpm
                if fits_requests and fits_tokens:
                    self._sent.append((now, tokens))
                    return
                wait = WINDOW_SECONDS - (now - self._sent[0][0])
            self.sleep(max(wait, 0.01))


def estimated_tokens(request: ChatRequest) -> int:
    return len(json.dumps(request.messages)) // 4 + int(request.params.get("max_completion_tokens", 0))


@dataclass
class RateLimitedChatModel:
    inner: ChatModel
    limiter: RateLimiter

    def complete(self, request: ChatRequest) -> ChatResponse:
        self.limiter.acquire(estimated_tokens(request))
        return self.inner.complete(request)


@dataclass
class InFlightLimitedChatModel:
    """At most `limit` requests in flight at once, however many papers are being worked on: a
    batch keeps more papers open than that, so one paper's parsing and checking never leaves a
    request slot idle."""

    inner: ChatModel
    limit: int
    _slots: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self) -> None:
        self._slots = threading.BoundedSemaphore(self.limit)

    def complete(self, request: ChatRequest) -> ChatResponse:
        with self._slots:
            return self.inner.complete(request)
