"""How the worker processes that read PDFs (and check a batch's records) start.

Apart from the batch, so that a new worker imports only this and what its work needs (the PDF
reader), not the command line, the store and the model client: about 0.2 s of imports instead
of 0.55 s, on the processor the batch's first request is waiting for.
"""

from __future__ import annotations

import os
import resource
import threading
import time

PARSE_NICENESS = 10  # the workers' niceness, above the batch's own


def start_worker(batch_pid: int, memory_bytes: int) -> None:
    """In each worker: yield the processor to the batch's own process, whose model requests are
    what the batch waits for (on 2 cores, two workers and the batch would otherwise share them
    evenly, and the first request would leave 0.3 s later); stop at `memory_bytes`, so that a
    hostile PDF ends its own process, not the machine's memory; and exit once the batch is gone:
    a batch killed with kill -9 cannot shut its pool down, and the workers would otherwise wait
    for work for ever."""
    os.nice(PARSE_NICENESS)
    _cap_memory(memory_bytes)

    def watch() -> None:
        while True:
            time.sleep(1)
            try:
                os.kill(batch_pid, 0)
            except OSError:
                os._exit(0)

    threading.Thread(target=watch, daemon=True, name="exit-with-batch").start()


def _cap_memory(memory_bytes: int) -> None:
    """The soft limit only, and never above the hard one: a lower limit set by the machine
    (a container's) stays as it is, and a system that refuses the limit runs without it."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = memory_bytes if hard == resource.RLIM_INFINITY else min(memory_bytes, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ValueError, OSError):
        pass
