"""Client-side limits shared by all of a batch's workers: requests and tokens a minute (`--rpm`,
`--tpm`). The limit on requests in flight (`-j`) is the model client's own, on its event loop.

A sliding minute: a request waits until fewer than `rpm` requests, and fewer than `tpm` tokens,
were sent in the last 60 seconds. A request's tokens are estimated as OpenAI's own limiter
counts them before the answer exists: the prompt (about four characters a token) plus the
completion tokens it allows.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
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


class RequestSlots:
    """At most `limit` requests in flight, kept on the event loop the requests run on (so an
    answer's arrival starts the next request with no thread to wake). A freed slot goes to the
    waiting request with the lowest priority, then to the one waiting longest."""

    def __init__(self, limit: int):
        self._free = limit
        self._waiting: list[tuple[tuple[int, ...], int, asyncio.Future[None]]] = []
        self._arrival = itertools.count()

    @asynccontextmanager
    async def slot(self, priority: tuple[int, ...]) -> AsyncIterator[None]:
        await self._acquire(priority)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: tuple[int, ...]) -> None:
        if self._free and not self._waiting:
            self._free -= 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._arrival), granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():  # given the slot, cancelled before using it
                self._release()
            raise

    def _release(self) -> None:
        while self._waiting:
            _, _, granted = heapq.heappop(self._waiting)
            if not granted.done():  # a cancelled waiter's future is done already
                granted.set_result(None)
                return
        self._free += 1
