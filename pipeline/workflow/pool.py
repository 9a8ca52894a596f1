"""`ParsePool`: where PDFs are read (`claims run`, `batch`, `match`, `add-evidence`, `check`) and a
batch's records are checked: in worker processes with a memory cap, never in the command's own."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

from pipeline.core.errors import ClaimsError, InputError
from pipeline.core.models import ClaimRecord
from pipeline.core.settings import current
from pipeline.core.worker import start_worker
from pipeline.sources.pdf import Document, read_pdf
from pipeline.stages.check import Rewriter, Sources, check_record

T = TypeVar("T")

# What a worker process runs: its start (`start_worker`), the PDF reader and the checks.
_WORKER_MODULES = ["pipeline.core.worker", "pipeline.sources.pdf", "pipeline.stages.check"]


class ParsePool:
    """PDFs parsed (and records checked) in worker processes: a batch's parsing uses every core,
    and a PDF that crashes the reader or overruns the memory cap (`pipeline.core.worker`) fails its own
    paper only, never the command, nor a batch resumed on it. The processes (and the model
    client, `warm`) start with the first paper that needs them: a batch whose papers are all
    done already starts neither."""

    def __init__(
        self,
        warm: Callable[[], Any] = lambda: None,
        workers: int | None = None,
        max_pdf_bytes: int | None = None,
        memory_bytes: int | None = None,
    ):
        self._warm = warm
        self._max_pdf_bytes = max_pdf_bytes
        # CLAIMS_PDF_MEMORY_MB, unless given
        self._memory_bytes = memory_bytes or current().pdf_memory_bytes
        self._workers = workers or os.cpu_count() or 2
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def parse(self, pdf: Path) -> Document:
        reading: tuple[ProcessPoolExecutor, Future[Document]] | None = None
        with self._lock:
            if self._pool is None:
                self._pool = self._processes(self._workers)
                # The processes start, and read the first paper, on the other cores; meanwhile,
                # here, the model client loads: the first request needs both, and the other
                # papers wait for it instead of slowing it down (in a thread of its own it took
                # 0.6-1.1 s, not 0.35 s, beside a batch's busy threads).
                reading = (self._pool, self._pool.submit(read_pdf, pdf, None, self._max_pdf_bytes))
                self._warm()
        crashed = InputError(
            f"{pdf.name}: reading it crashed the PDF reader or took more than "
            f"{self._memory_bytes >> 20} MB of memory (a damaged or hostile file): get another copy of the paper"
        )
        return self._isolated(crashed, read_pdf, pdf, None, self._max_pdf_bytes, sent=reading)

    def check(self, record: ClaimRecord, sources: Sources, rewrite: Rewriter | None) -> ClaimRecord:
        """The checks, in a worker process too: they are the CPU-heavy part of a paper, and in the
        batch's own process they would hold up other papers' model requests. A record whose plain
        language needs the model's rewrite is checked again here, where the model is."""
        if self._pool is None:
            return check_record(record, sources, rewrite)
        crashed = ClaimsError("the checks' process ended unexpectedly, twice")
        checked = self._isolated(crashed, check_record, record, sources, None)
        plain = next(c for c in checked.checks if c.name == "plain_language")
        if plain.flags and rewrite is not None:
            return check_record(record, sources, rewrite)
        return checked

    def _isolated(
        self,
        crashed: ClaimsError,
        work: Callable[..., T],
        *args: Any,
        sent: tuple[ProcessPoolExecutor, Future[T]] | None = None,
    ) -> T:
        """`work` in a worker process (`sent`: already submitted, to that pool). When a process
        dies, every paper its pool held fails with it: the pool is replaced, and the work runs
        again in a process of its own, where only a second death is this paper's (`crashed`)."""
        if sent is None:
            pool = self._pool
            assert pool is not None
            sent = (pool, pool.submit(work, *args))
        pool, future = sent
        try:
            return future.result()
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:
                    pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = self._processes(self._workers)
        with self._processes(1) as alone:
            try:
                return alone.submit(work, *args).result()
            except BrokenProcessPool:
                raise crashed from None

    def _processes(self, count: int) -> ProcessPoolExecutor:
        # forkserver: forking a process whose threads hold locks can hang. The server imports
        # what a worker runs, once, and each worker is a fork of it with those modules loaded;
        # otherwise every worker, and every replacement of a crashed one, imports the reader and
        # the checks itself (0.2 s each). (The command's main module, which each worker imports
        # too, is light: `pipeline.__main__`.)
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_WORKER_MODULES)
        return ProcessPoolExecutor(
            max_workers=count,
            mp_context=context,
            initializer=start_worker,
            initargs=(os.getpid(), self._memory_bytes),
        )

    def __enter__(self) -> ParsePool:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._pool is not None:
            # not waited for: idle workers end on their own once the batch's pipe closes
            self._pool.shutdown(wait=False, cancel_futures=True)


def read_alone(pdf: Path, max_pdf_bytes: int | None = None) -> Document:
    """One PDF read in a capped process of its own, as a batch reads each (`claims match`,
    `claims add-evidence`, `claims check`)."""
    with ParsePool(workers=1, max_pdf_bytes=max_pdf_bytes) as reader:
        return reader.parse(pdf)
