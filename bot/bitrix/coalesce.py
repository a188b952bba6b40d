"""Coalescing: calls that queue up behind the rate limit leave together, in `batch` requests.

With the portal's 2 requests per second, one command at a time (a vote, its read-back and a
reply) would be about one command per second. Here every caller submits its group of calls
and waits; senders wait for the leaky bucket to have room and then pack every waiting group
they can into one `batch` of up to 50 calls (counted once by the limit, protocol notes §4.3).
When nothing is waiting, a call leaves at once, as it would without coalescing.

Groups keep their references (`BatchRef` keys are prefixed per group). A merged request
has one `halt` for everything, so a group's own `halt` is not kept; the only group with a
reference is the rating-only vote, whose vote on a session the first read could not see
saves nothing, and its read-back reports that. A group with a call that must not go through
batch (`needs_direct`: a `$` in its text) is not merged: the client runs it in order, with
its own `halt`.

A `batch` request runs under one user (its auth), so groups are merged only with groups of
the same auth: the webhook's, or one supervisor's own token (`acting_as`). Every auth shares
the one per-portal bucket the senders wait on.

A sender never dies: whatever goes wrong with one request fails that request's calls with
a typed error, and the sender takes the next.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Any, Final, Protocol

import structlog
from aiolimiter import AsyncLimiter

from bot.bitrix.batch import (
    MAX_BATCH,
    BatchCall,
    BatchRef,
    BatchResult,
    map_references,
    needs_direct,
)
from bot.bitrix.client import BitrixClient, TokenAuth
from bot.errors import BitrixError, BitrixRequestFailed
from bot.usage import count_rest_request

log = structlog.get_logger(__name__)

_POLL: Final = 0.01  # seconds between looks at the bucket while it is full
_GATHER: Final = 0.02  # seconds a request waits for more calls to join it
_PAUSE: Final = 1.0  # seconds a sender rests after a failure of its own loop


class RestCaller(Protocol):
    """What the adapters need from a REST client: the client itself, or the coalescer."""

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any: ...

    async def batch(self, calls: Sequence[BatchCall], *, halt: bool = False) -> BatchResult: ...


async def call_alone(caller: RestCaller, method: str, params: Mapping[str, Any] | None) -> Any:
    """`call` for a RestCaller that sends everything as batches: a batch of this one call."""
    result = await caller.batch([BatchCall("call", method, params or {})])
    return result.value("call")


class ActsAs(Protocol):
    """What can make calls under another token of the same portal: the client or the
    coalescer."""

    def acting_as(self, auth: TokenAuth) -> RestCaller: ...


@dataclass
class _Group:
    calls: list[BatchCall]
    client: BitrixClient  # the auth the calls run under
    done: asyncio.Future[BatchResult] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Coalescer:
    """Merges concurrent calls to one portal into shared `batch` requests."""

    def __init__(self, client: BitrixClient, limiter: AsyncLimiter, *, senders: int = 4) -> None:
        self._client = client
        self._limiter = limiter
        self._waiting: deque[_Group] = deque()
        self._arrived = asyncio.Event()
        self._ids = count()
        self._senders = [asyncio.create_task(self._send_loop()) for _ in range(senders)]

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        return await call_alone(self, method, params)

    async def batch(self, calls: Sequence[BatchCall], *, halt: bool = False) -> BatchResult:
        return await self._submit(self._client, calls, halt=halt)

    def acting_as(self, auth: TokenAuth) -> RestCaller:
        """Calls under a supervisor's own token, coalesced with that token's other calls."""
        return _ActingAs(self, self._client.acting_as(auth))

    async def _submit(
        self, client: BitrixClient, calls: Sequence[BatchCall], *, halt: bool
    ) -> BatchResult:
        if len(calls) > MAX_BATCH or any(needs_direct(call) for call in calls):
            return await client.batch(calls, halt=halt)
        # Counted as the request this command would have made alone (it may share it).
        count_rest_request()
        group = _Group(list(calls), client)
        self._waiting.append(group)
        self._arrived.set()
        return await group.done

    def alive(self) -> bool:
        """Every sender is still running."""
        return all(not task.done() for task in self._senders)

    async def close(self) -> None:
        for task in self._senders:
            task.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        while self._waiting:
            self._waiting.popleft().done.cancel()

    async def _send_loop(self) -> None:
        while True:
            try:
                await self._send_next()
            except Exception:  # the last guard: _send fails its groups itself
                log.exception("coalesce.sender_failed")
                await asyncio.sleep(_PAUSE)

    async def _send_next(self) -> None:
        while not self._waiting:
            self._arrived.clear()
            await self._arrived.wait()
        # Commands arrive in bursts: a moment's wait lets the rest of a burst join this
        # request instead of spending the bucket on requests of one call each.
        await asyncio.sleep(_GATHER)
        # aiolimiter can wait for room only by taking it, and the client takes it when it
        # sends; so look, and while the bucket is full let more work gather.
        while not self._limiter.has_capacity():  # noqa: ASYNC110
            await asyncio.sleep(_POLL)
        if self._waiting:
            await self._send(self._take_same_auth())

    def _take_same_auth(self) -> list[_Group]:
        """The first waiting group and, in order, every later one under the same auth that
        still fits in the request; the others keep their places."""
        auth = self._waiting[0].client.auth
        groups: list[_Group] = []
        others: deque[_Group] = deque()
        size = 0
        while self._waiting:
            group = self._waiting.popleft()
            if not groups or (group.client.auth == auth and size + len(group.calls) <= MAX_BATCH):
                groups.append(group)
                size += len(group.calls)
            else:
                others.append(group)
        self._waiting.extendleft(reversed(others))
        return groups

    async def _send(self, groups: list[_Group]) -> None:
        """One merged request for `groups`; any failure becomes the groups' error."""
        try:
            await self._send_merged(groups)
        except Exception as error:  # no failure may end the sender
            if not isinstance(error, BitrixError):
                log.exception(
                    "coalesce.request_failed",
                    methods=sorted({c.method for g in groups for c in g.calls}),
                )
                error = BitrixRequestFailed("batch", reason=type(error).__name__)
            for group in groups:
                if not group.done.done():
                    group.done.set_exception(error)

    async def _send_merged(self, groups: list[_Group]) -> None:
        prefixed: list[tuple[_Group, str]] = [(g, f"g{next(self._ids)}_") for g in groups]
        calls = [
            BatchCall(prefix + call.key, call.method, _prefix_references(call.params, prefix))
            for group, prefix in prefixed
            for call in group.calls
        ]
        merged = await groups[0].client.batch(calls)
        for group, prefix in prefixed:
            own = BatchResult(calls={c.key: c for c in group.calls})
            for call in group.calls:
                if prefix + call.key in merged.results:
                    own.results[call.key] = merged.results[prefix + call.key]
                if prefix + call.key in merged.errors:
                    own.errors[call.key] = merged.errors[prefix + call.key]
            with contextlib.suppress(asyncio.InvalidStateError):
                group.done.set_result(own)


@dataclass(frozen=True)
class _ActingAs:
    """A RestCaller whose calls go through the coalescer under one token."""

    coalescer: Coalescer
    client: BitrixClient

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        return await call_alone(self, method, params)

    async def batch(self, calls: Sequence[BatchCall], *, halt: bool = False) -> BatchResult:
        return await self.coalescer._submit(self.client, calls, halt=halt)  # noqa: SLF001


def _prefix_references(params: Mapping[str, Any], prefix: str) -> Any:
    return map_references(params, lambda ref: BatchRef(prefix + ref.key, ref.fields))
