"""Coalescing: calls waiting behind the rate limit leave together in batch requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from bot.bitrix.batch import BatchCall
from bot.bitrix.client import BitrixClient, TokenAuth, WebhookAuth
from bot.bitrix.coalesce import Coalescer
from bot.bitrix.votes import BitrixSessionVotes
from bot.errors import (
    BitrixBadResponse,
    BitrixError,
    BitrixMethodError,
    BitrixRequestFailed,
    VoteRefused,
)
from bot.sandbox.portal import Fault, Portal
from tests.harness import webhook_url


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
        # A chat without a session: a method error (§00 item 2).
        [BatchCall("read", "imopenlines.session.history.get", {"CHAT_ID": 2001})]
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


@dataclass
class BuggyAuth:
    """The webhook's auth, except that its first `bugs` requests hit an unexpected error: a
    stand-in for a bug anywhere on the way out, provided through the client's RestAuth port."""

    inner: WebhookAuth
    bugs: int = 1

    @property
    def portal(self) -> str:
        return self.inner.portal

    def url_for(self, method: str) -> str:
        if self.bugs > 0:
            self.bugs -= 1
            raise RuntimeError(method)
        return self.inner.url_for(method)

    def auth_params(self) -> dict[str, str]:
        return self.inner.auth_params()


HOSTILE_ANSWERS = [
    "[" * 100_000 + "]" * 100_000,  # deeper than the JSON decoder's recursion limit
    '{"result": ' + "9" * 5000 + "}",  # past Python's 4300-digit limit for ints
]


@pytest.mark.parametrize("body", HOSTILE_ANSWERS)
async def test_a_hostile_answer_fails_its_callers_and_the_senders_go_on(
    coalescer: Coalescer, portal: Portal, body: str
) -> None:
    portal.faults.append(
        Fault(method="batch", status=200, body=body, content_type="application/json")
    )
    outcomes = await asyncio.gather(
        coalescer.call("profile"), coalescer.call("profile"), return_exceptions=True
    )
    assert all(isinstance(o, BitrixBadResponse) for o in outcomes), outcomes
    assert (await coalescer.call("profile"))["ID"] == "1"
    assert coalescer.alive()


async def test_an_unexpected_error_fails_its_callers_with_a_typed_error_and_the_senders_go_on(
    make_client: Callable[..., BitrixClient], sandbox: TestServer
) -> None:
    client = make_client(BuggyAuth(WebhookAuth(SecretStr(webhook_url(sandbox))), bugs=4))
    coalescer = Coalescer(client, client.limiter, senders=2)
    try:
        for _ in range(4):  # more failures than senders
            with pytest.raises(BitrixRequestFailed) as caught:
                # A dead sender would leave the caller waiting for ever: bound the wait.
                await asyncio.wait_for(coalescer.call("profile"), 10)
            assert (caught.value.code, caught.value.retryable) == ("REQUEST_FAILED", False)
        assert (await asyncio.wait_for(coalescer.call("profile"), 10))["ID"] == "1"
        assert coalescer.alive()
    finally:
        await coalescer.close()
    assert not coalescer.alive()


async def test_a_group_with_a_dollar_in_its_text_runs_on_its_own_with_its_halt(
    coalescer: Coalescer, portal: Portal
) -> None:
    result = await coalescer.batch(
        [
            BatchCall("bad", "imopenlines.session.head.vote", {"COMMENT": "$result[x]"}),
            BatchCall("after", "imopenlines.session.history.get", {"SESSION_ID": 494}),
        ],
        halt=True,
    )
    assert result.errors["bad"].code == "EMPTY_SESSION_ID"
    assert "after" not in result.results
    assert requests_to(portal, "batch") == 0
    assert requests_to(portal, "imopenlines.session.head.vote") == 1


def _acting(coalescer: Coalescer, sandbox: TestServer, portal: Portal, user_id: int) -> Any:
    """Session votes under a token the portal issued to `user_id`."""
    token = f"token-of-{user_id}"
    portal.tokens[token] = user_id
    auth = TokenAuth(str(sandbox.make_url("/rest/")), SecretStr(token))
    return BitrixSessionVotes(coalescer.acting_as(auth))


@pytest.mark.parametrize("bucket", [(5.0, 1)])
async def test_each_user_s_calls_run_under_their_own_token_and_never_share_a_request(
    coalescer: Coalescer, portal: Portal, sandbox: TestServer
) -> None:
    """A head of the line (27), a supervisor without the right (28) and the webhook's owner
    (1) vote at once through a bucket of one: each vote is checked and recorded as its own
    user, and no batch request mixes two users' calls."""
    head, without_right = (_acting(coalescer, sandbox, portal, u) for u in (27, 28))
    webhook = BitrixSessionVotes(coalescer)
    outcomes = await asyncio.gather(
        head.vote(494, rating=4, comment="27"),
        without_right.vote(494, rating=2, comment="28"),
        webhook.vote(496, rating=5, comment="1"),
        head.vote(495, rating=3, comment=None),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], VoteRefused)
    assert not any(isinstance(o, BaseException) for i, o in enumerate(outcomes) if i != 1)
    assert (portal.sessions[494].vote_head, portal.sessions[494].comment_head) == (4, "27")
    assert (portal.sessions[495].vote_head, portal.sessions[495].comment_head) == (3, "Вежливо")
    voters = {(n["from_user_id"], n["session_id"]) for n in portal.notifications}
    assert {(27, 494), (1, 496), (27, 495)} <= voters
    assert not any(n["from_user_id"] == 28 for n in portal.notifications)
    # A batch request is recorded after the calls made inside it.
    requests: list[set[int | None]] = []
    inside: set[int | None] = set()
    for call in portal.calls:
        inside.add(call.user_id)
        if call.batch_of is None:
            requests.append(inside)
            inside = set()
    assert len(requests) >= 3
    assert all(len(users) == 1 for users in requests), requests


async def test_a_token_of_another_portal_is_refused_before_any_call(
    coalescer: Coalescer, portal: Portal
) -> None:
    elsewhere = TokenAuth("https://other.bitrix24.test/rest/", SecretStr("t"))
    with pytest.raises(ValueError, match="another portal"):
        coalescer.acting_as(elsewhere)
    assert portal.calls == []
