"""Reading the `/_sandbox/` control API's JSON bodies: what the caller got wrong is a 400 that
says so, never a 500."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from aiohttp import web


async def read_body(request: web.Request) -> dict[str, Any]:
    with bad_request():
        body = await request.json()
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


@contextlib.contextmanager
def bad_request() -> Iterator[None]:
    """What the caller got wrong (a missing field, no such bot, chat or button) is a 400
    that says so, not a 500."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise web.HTTPBadRequest(text=f"{type(error).__name__}: {error}") from error
