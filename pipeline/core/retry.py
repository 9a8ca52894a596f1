"""Bounded retries for every outside service (the model endpoint, Crossref, OpenAlex, Unpaywall).

Transient failures (429, 5xx, timeouts, dropped connections) are retried a bounded number of
times; the wait honours the server's Retry-After when it gives one, else backs off exponentially
with jitter; every wait is capped. The sleep function is injected so tests never wait.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import RetryError, Retrying, retry_if_exception, stop_after_attempt

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    max_wait_seconds: float = 60.0
    base_wait_seconds: float = 1.0


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds the server asked us to wait, if it said in a way that can be read: OpenAI's and
    Azure's `retry-after-ms`, else Retry-After as seconds or an HTTP date."""
    if headers is None:
        return None
    try:
        return max(0.0, float(headers.get("retry-after-ms")) / 1000)
    except (TypeError, ValueError):
        pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):  # 'soon', a bad date: the policy's own wait then
        return None
    return max(0.0, parsed.timestamp() - time.time())


def call_with_retries(
    work: Callable[[], T],
    transient: Callable[[BaseException], bool],
    headers_of: Callable[[BaseException], Any],
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `work`, retrying transient failures. Raises tenacity's RetryError when they persist."""

    def wait(state: Any) -> float:
        asked = retry_after_seconds(headers_of(state.outcome.exception()))
        if asked is None:
            asked = policy.base_wait_seconds * 2 ** (state.attempt_number - 1) * (1 + random.random())
        return min(asked, policy.max_wait_seconds)

    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts), wait=wait, retry=retry_if_exception(transient), sleep=sleep
    )
    return retrying(work)


__all__ = ["RetryError", "RetryPolicy", "call_with_retries", "retry_after_seconds"]
