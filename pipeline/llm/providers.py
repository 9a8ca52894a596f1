"""Which chat model a command talks to: `get_model(settings)` over the registered providers.

A provider is a client that keeps the `ChatModel` seam and says what a run reports beside its
answers (`LiveModel`: the model's context window where the server tells it, and what the
endpoint made the client change). Adding one (a native Anthropic or Gemini client, LiteLLM as a
library) is its module plus one line in `PROVIDERS`; `CLAIMS_PROVIDER` picks it. The command line
names no client class: it asks here for the live model, and for the Batch API over it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pipeline.core.errors import ConfigError
from pipeline.core.settings import Settings
from pipeline.llm.base import ChatModel, ChatRequest, ChatResponse
from pipeline.llm.batch_api import BatchApiChatModel
from pipeline.llm.openai import OpenAIChatModel


class LiveModel(Protocol):
    """A model reached over the network, as a run uses it."""

    adaptations: list[str]  # what the endpoint refused and the client changed, for the user and the recording

    def complete(self, request: ChatRequest) -> ChatResponse: ...

    def context_window(self, model: str) -> int | None: ...

    def warm(self) -> None:
        """Load what the first request needs (a client library, a connection), so that it can be
        done while a paper is parsed."""


# name -> how to make its client from the settings, with at most `max_in_flight` requests at once
PROVIDERS: dict[str, Callable[[Settings, int | None], LiveModel]] = {
    "openai": OpenAIChatModel.from_settings,  # any OpenAI-compatible endpoint
}


def get_model(settings: Settings, max_in_flight: int | None = None) -> LiveModel:
    """The live model the settings name (CLAIMS_PROVIDER, default openai)."""
    name = settings.provider
    if name not in PROVIDERS:
        raise ConfigError(f"CLAIMS_PROVIDER={name}: no such provider; choose one of {', '.join(sorted(PROVIDERS))}")
    return PROVIDERS[name](settings, max_in_flight)


def via_batch_api(live: LiveModel, state: Path, expected_waiting: int, poll_seconds: float) -> ChatModel:
    """The same model through its provider's Batch API: requests gathered and sent as batches,
    half the price, answers within a day; interrupted batches resume from `state`."""
    if not isinstance(live, OpenAIChatModel):
        raise ConfigError("--via batch-api needs the openai provider: only its Batch API is supported")
    return BatchApiChatModel(live, state, expected_waiting=expected_waiting, poll_seconds=poll_seconds)
