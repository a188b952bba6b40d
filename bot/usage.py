"""Counting the REST requests one command costs, across the tasks that serve it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_requests: ContextVar[list[int] | None] = ContextVar("rest_requests", default=None)


def count_rest_request() -> None:
    """Called by the REST client for every HTTP request it makes (retries included)."""
    counter = _requests.get()
    if counter is not None:
        counter[0] += 1


@contextmanager
def counting_rest_requests() -> Iterator[list[int]]:
    """Within the block, `counter[0]` is the number of REST requests made so far."""
    counter = [0]
    token = _requests.set(counter)
    try:
        yield counter
    finally:
        _requests.reset(token)
