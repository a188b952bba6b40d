"""Coalescing: calls waiting behind the rate limit leave together in batch requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from bot.bitrix.batch import BatchCall
from bot.bitrix.client import BitrixClient
from bot.bitrix.coalesce import Coalescer
from bot.bitrix.votes import BitrixSessionVotes
from bot.errors import BitrixError, BitrixMethodError
from bot.sandbox.portal import Fault, Portal


def requests_to(portal: Portal, method: str) -> int:
    return sum(1 for c in portal.calls if c.method == method and c.batch_of is None)


@pytest.fixture
async def coalescer(make_client: Callable[..., BitrixClient]) -> AsyncIterator[Coalescer]:
    client = make_client()
    merged = Coalescer(client, client.limiter)
    yield merged
    await merged.close()


async def test_an_idle_portal_gets_the_call_at_once(coalescer: Coalescer, portal: Portal) -> None:
    assert (await coalescer.call("profile"))["ID"] == "1"
    assert requests_to(portal, "batch") == 1


@pytest.mark.parametrize("bucket", [(5.0, 2)])
async def test_votes_that_queue_up_share_batch_requests_and_each_gets_its_own_result(
    coalescer: Coalescer, portal: Portal
) -> None:
    """30 votes through a bucket of 2: a handful of requests, every vote right, no 503."""
    for session_id in range(1000, 1030):
        portal.sessions[session_id] = type(portal.sessions[494])(
            session_id, 1, 1157, 101, comment_head=f"c{session_id}"
        )
    votes = BitrixSessionVotes(coalescer)
    results = await asyncio.gather(
        *(votes.vote(s, rating=s % 5 + 1, comment=None) for s in range(1000, 1030))
    )
    for session_id, result in zip(range(1000, 1030), results, strict=True):
        # A rating alone keeps each session's own comment: references stayed in their group.
        assert (result.after.rating, result.after.comment) == (
            session_id % 5 + 1,
            f"c{session_id}",
        )
        assert portal.sessions[session_id].comment_head == f"c{session_id}"
    assert requests_to(portal, "batch") <= 4
    assert all(call.status == 200 for call in portal.calls)


@pytest.mark.parametrize("bucket", [(5.0, 1)])
async def test_a_call_s_error_stays_with_its_caller(coalescer: Coalescer, portal: Portal) -> None:
    good = coalescer.call("profile")
    bad = coalescer.batch(
        [BatchCall("read", "imopenlines.session.history.get", {"SESSION_ID": 999})]
    )
    profile, result = await asyncio.gather(good, bad)
    assert profile["ID"] == "1"
    with pytest.raises(BitrixMethodError) as caught:
        result.value("read")
    assert caught.value.code == "INVALID_SESSION_ID"


async def test_a_failed_request_fails_every_caller_in_it(
    coalescer: Coalescer, portal: Portal
) -> None:
    portal.faults.append(Fault(method="batch", status=400, error="WRONG_REQUEST", times=-1))
    outcomes = await asyncio.gather(
        coalescer.call("profile"), coalescer.call("profile"), return_exceptions=True
    )
    assert all(isinstance(o, BitrixError) and o.code == "WRONG_REQUEST" for o in outcomes)
