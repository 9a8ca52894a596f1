"""`computed_once`: `functools.cache` for values a batch's threads may all ask for at once.

`functools.cache` lets every thread that misses compute the value; a batch's first papers all
reach the record validator (about 80 ms to build) or a stage's strict schema together, and a
dozen threads building the same thing under one interpreter lock stall the model requests.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])


def computed_once(function: F) -> F:
    """Cache `function` by its (hashable, positional) arguments; a value being computed is waited
    for, not computed again."""
    cached = functools.cache(function)
    lock = threading.RLock()

    @functools.wraps(function)
    def once(*args: Hashable) -> Any:
        with lock:
            return cached(*args)

    return cast(F, once)
