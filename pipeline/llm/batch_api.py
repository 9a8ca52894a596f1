"""`--via batch-api`: the OpenAI Batch API behind the same `ChatModel` seam, at half the price.

Each worker thread asks for its answer as usual; requests are gathered until every paper in
flight is waiting (or a short quiet spell passes), then sent as one batch: a JSONL upload to
/v1/files, /v1/batches to start it, polling until it ends, and the output file downloaded and
handed back request by request. The batch ids and the fingerprints they carry are saved in a
small SQLite file, so a run that is killed and started again waits on the batches it already
sent instead of paying for them twice.

Given the live model (not only its client), each request's body is the one it would send, and
a request the endpoint turned down for a parameter it can go without (OpenAI's reasoning models
refuse temperature 0) is learnt from as the live model learns, and goes again in the next batch.
"""

from __future__ import annotations

import functools
import io
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from pipeline.core.errors import LLMError, LLMUnavailableError
from pipeline.core.retry import RetryError, RetryPolicy, call_with_retries
from pipeline.llm.base import ChatRequest, ChatResponse
from pipeline.llm.openai import OpenAIChatModel, Refusal, chat_body, response_from_completion

FINISHED = {"completed", "failed", "expired", "cancelled"}


class BatchApiChatModel:
    def __init__(
        self,
        client: Any,  # an openai.OpenAI, or an object whose .client is one (made on first use)
        state_path: Path,
        expected_waiting: int,
        poll_seconds: float = 10.0,
        gather_seconds: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._source = client
        # the live model, where given: it builds each body and learns from refusals
        self._live = client if isinstance(client, OpenAIChatModel) else None
        self._expected = max(1, expected_waiting)
        self._poll_seconds = poll_seconds
        self._gather_seconds = gather_seconds
        self._sleep = sleep
        self._lock = threading.Lock()
        self._pending: list[tuple[ChatRequest, Future[ChatResponse]]] = []
        self._first_pending_at = 0.0
        self._waiters: dict[str, list[Future[ChatResponse]]] = {}
        # what this run sent under each fingerprint: the request, and the answer format and body
        self._sent: dict[str, tuple[ChatRequest, str, dict[str, Any]]] = {}
        state_path.parent.mkdir(parents=True, exist_ok=True)
        self._state = sqlite3.connect(state_path, isolation_level=None, check_same_thread=False, timeout=30)
        self._state.execute("CREATE TABLE IF NOT EXISTS sent (fingerprint TEXT PRIMARY KEY, batch_id TEXT NOT NULL)")
        self._flusher = threading.Thread(target=self._flush_loop, daemon=True, name="batch-api")
        self._flusher.start()

    @property
    def _client(self) -> Any:
        return getattr(self._source, "client", self._source)

    # ------------------------------------------------------------------ the seam

    def complete(self, request: ChatRequest) -> ChatResponse:
        future: Future[ChatResponse] = Future()
        fingerprint = request.fingerprint()
        with self._lock:
            row = self._state.execute("SELECT batch_id FROM sent WHERE fingerprint = ?", (fingerprint,)).fetchone()
            if row:  # sent by an earlier, interrupted run: wait for that batch
                self._waiters.setdefault(fingerprint, []).append(future)
                threading.Thread(target=self._collect, args=(row[0],), daemon=True).start()
            else:
                self._queue(request, future)
        return future.result()

    def _queue(self, request: ChatRequest, future: Future[ChatResponse]) -> None:
        """Into the next batch (the lock held)."""
        if not self._pending:
            self._first_pending_at = time.monotonic()
        self._pending.append((request, future))

    def _body(self, request: ChatRequest) -> tuple[str, dict[str, Any]]:
        if self._live is not None:
            return self._live.request_body(request)
        return "json_schema", chat_body(request)

    # ------------------------------------------------------------------ gathering and sending

    def _flush_loop(self) -> None:
        while True:
            time.sleep(0.05)
            with self._lock:
                ready = self._pending and (
                    len(self._pending) >= self._expected
                    or time.monotonic() - self._first_pending_at >= self._gather_seconds
                )
                batch, self._pending = (self._pending, []) if ready else ([], self._pending)
            if batch:
                threading.Thread(target=self._send, args=(batch,), daemon=True).start()

    def _send(self, batch: list[tuple[ChatRequest, Future[ChatResponse]]]) -> None:
        try:
            bodies = {r.fingerprint(): (r, *self._body(r)) for r, _ in batch}
            lines = [
                json.dumps({"custom_id": fingerprint, "method": "POST", "url": "/v1/chat/completions", "body": body})
                for fingerprint, (_, _, body) in bodies.items()
            ]
            uploaded = self._call(
                lambda: self._client.files.create(
                    file=("claims-batch.jsonl", io.BytesIO("\n".join(lines).encode())), purpose="batch"
                )
            )
            created = self._call(
                lambda: self._client.batches.create(
                    input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
                )
            )
        except Exception as exc:  # this thread's end: its waiters must hear of any failure, not hang
            failure = exc if isinstance(exc, LLMError) else LLMUnavailableError(f"the batch was not sent ({exc!r})")
            for _, future in batch:
                future.set_exception(failure)
            return
        with self._lock:
            self._sent.update(bodies)
            for request, future in batch:
                fingerprint = request.fingerprint()
                self._waiters.setdefault(fingerprint, []).append(future)
                self._state.execute("INSERT OR REPLACE INTO sent VALUES (?, ?)", (fingerprint, created.id))
        self._collect(created.id)

    # ------------------------------------------------------------------ waiting and answering

    def _collect(self, batch_id: str) -> None:
        try:
            status = self._call(lambda: self._client.batches.retrieve(batch_id))
            while status.status not in FINISHED:
                self._sleep(self._poll_seconds)
                status = self._call(lambda: self._client.batches.retrieve(batch_id))
            answers: dict[str, Any] = {}
            for file_id in (status.output_file_id, status.error_file_id):
                if file_id:
                    text = self._call(functools.partial(self._client.files.content, file_id)).text
                    for line in filter(None, text.splitlines()):
                        item = json.loads(line)
                        answers[item["custom_id"]] = item
        except Exception as exc:  # this thread's end: its waiters must hear of any failure, not hang
            failure = (
                exc
                if isinstance(exc, LLMError)
                else LLMUnavailableError(f"batch {batch_id}: its results could not be read ({exc!r})")
            )
            self._answer_all(batch_id, lambda _: failure)
            return
        self._answer_all(batch_id, lambda fingerprint: _outcome(answers.get(fingerprint), status.status, batch_id))

    def _answer_all(self, batch_id: str, outcome: Callable[[str], Any]) -> None:
        with self._lock:
            fingerprints = [
                f for (f,) in self._state.execute("SELECT fingerprint FROM sent WHERE batch_id = ?", (batch_id,))
            ]
            self._state.execute("DELETE FROM sent WHERE batch_id = ?", (batch_id,))
            waiting = {f: (self._waiters.pop(f, []), self._sent.pop(f, None)) for f in fingerprints}
        for fingerprint, (futures, sent) in waiting.items():
            try:
                result = outcome(fingerprint)
            except Exception as exc:  # a malformed line fails its request; the others still get theirs
                result = LLMUnavailableError(f"batch {batch_id}: an answer could not be read ({exc!r})")
            if isinstance(result, _Refused) and sent is not None and self._learns(result.refusal, sent):
                with self._lock:  # sent again, as the endpoint takes it now
                    for future in futures:
                        self._queue(sent[0], future)
                continue
            for future in futures:
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _learns(self, refusal: Refusal, sent: tuple[ChatRequest, str, dict[str, Any]]) -> bool:
        _, answer_format, body = sent
        return self._live is not None and self._live.learn(refusal, answer_format, body)

    def _call(self, work: Callable[[], Any]) -> Any:
        import openai

        def transient(exc: BaseException) -> bool:
            if isinstance(exc, openai.APIStatusError):
                return exc.status_code == 429 or exc.status_code >= 500
            return isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError))

        try:
            return call_with_retries(
                work,
                transient,
                lambda e: getattr(getattr(e, "response", None), "headers", None),
                RetryPolicy(),
                self._sleep,
            )
        except RetryError as exc:
            raise LLMUnavailableError(
                f"the Batch API kept failing ({type(exc.last_attempt.exception()).__name__})"
            ) from exc
        except openai.APIError as exc:
            raise LLMError(f"the Batch API refused: {exc}") from exc


class _Refused(LLMUnavailableError):
    """A request of the batch that the endpoint turned down, with what it said."""

    def __init__(self, message: str, refusal: Refusal):
        super().__init__(message)
        self.refusal = refusal


def _outcome(item: dict[str, Any] | None, status: str, batch_id: str) -> ChatResponse | LLMError:
    if item is None:
        return LLMUnavailableError(f"batch {batch_id} ended {status} without an answer for this request")
    response = item.get("response") or {}
    if response.get("status_code", 200) >= 400:
        body = response.get("body") or {}
        refusal = Refusal.in_answer(response["status_code"], body)
        return _Refused(f"batch {batch_id}: the request failed ({refusal.said or response['status_code']})", refusal)
    if item.get("error"):
        return LLMUnavailableError(f"batch {batch_id}: the request failed ({item['error']})")
    try:
        return response_from_completion(response.get("body") or {})
    except LLMError as exc:
        return LLMUnavailableError(f"batch {batch_id}: {exc}")
