"""The client keeps each method inside its operating-time budget (protocol notes §00 item 10,
§4.2), against the sandbox over HTTP. Time is scaled down: a 0.5 s budget per 1 s window."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from bot.bitrix.batch import BatchCall
from bot.bitrix.client import BitrixClient, PortalLimiters, RetryPolicy, WebhookAuth
from bot.bitrix.operating import OperatingBudget
from bot.sandbox.portal import Fault, Portal, Webhook
from tests.bot.sandbox.test_rest import rest
from tests.harness import webhook_url

LIMIT, WINDOW, COST = 0.5, 1.0, 0.05
NO_RETRIES = RetryPolicy(attempts=1)


@pytest.fixture
def scaled(portal: Portal) -> Portal:
    """`profile` costs 0.05 s of a 0.5 s budget per 1 s: ten calls a window."""
    portal.operating_cost["profile"] = COST
    portal.operating_limit, portal.operating_window = LIMIT, WINDOW
    return portal


def scaled_client(
    http: aiohttp.ClientSession, sandbox: TestServer, retry: RetryPolicy = NO_RETRIES
) -> BitrixClient:
    limiters = PortalLimiters(rate=500, burst=500, operating_limit=LIMIT, operating_window=WINDOW)
    return BitrixClient(http, WebhookAuth(SecretStr(webhook_url(sandbox))), limiters, retry=retry)


def refusals(portal: Portal) -> int:
    return sum(1 for call in portal.calls if call.error == "OPERATION_TIME_LIMIT")


async def one_by_one(client: BitrixClient, calls: int) -> None:
    for _ in range(calls):
        await client.call("profile")


async def all_at_once(client: BitrixClient, calls: int) -> None:
    await asyncio.gather(*(client.call("profile") for _ in range(calls)))


async def in_batches_of_four(client: BitrixClient, calls: int) -> None:
    async def batch(first: int) -> None:
        keys = [f"p{n}" for n in range(first, min(first + 4, calls))]
        result = await client.batch([BatchCall(key, "profile") for key in keys])
        for key in keys:
            result.value(key)  # raises a call's OPERATION_TIME_LIMIT

    await asyncio.gather(*(batch(first) for first in range(0, calls, 4)))


@pytest.mark.parametrize("how", [one_by_one, all_at_once, in_batches_of_four])
async def test_a_run_worth_two_budgets_waits_instead_of_overrunning(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    scaled: Portal,
    how: Callable[[BitrixClient, int], Awaitable[None]],
) -> None:
    """Twenty calls of 0.05 s are twice the budget: without waiting, the eleventh within a
    window would be refused, and retries are off, so any 429 would fail the run."""
    client = scaled_client(http, sandbox)
    await how(client, 20)
    assert refusals(scaled) == 0
    counted = [c for c in scaled.calls if c.method == "profile" and c.error is None]
    assert len(counted) == 20
    assert client.budget.used("profile") <= LIMIT


async def test_after_a_429_the_method_waits_for_operating_reset_at(
    http: aiohttp.ClientSession, sandbox: TestServer, scaled: Portal
) -> None:
    """Another caller spent the budget; the portal's 429 names the reset time, and the client
    calls that method again only after it, once, while other methods go on."""
    scaled.webhooks.append(Webhook(28, "0th3rc4ll3r", frozenset({"imopenlines"})))
    other = webhook_url(sandbox, 28, "0th3rc4ll3r")
    while (await rest(http, other + "profile"))[0] == 200:
        pass
    retrying = RetryPolicy(attempts=5, deadline=10, initial_wait=0.01, max_wait=0.02)
    client = scaled_client(http, sandbox, retry=retrying)
    profile = await client.call("profile")
    assert profile["ID"] == "1"
    # One refusal from the other caller's last try, one for ours; the retry came after reset.
    assert refusals(scaled) == 2


@pytest.mark.parametrize(
    ("answer_time", "blocked_for"),
    [
        ({"operating_reset_at": 1000.25, "finish": 1000.0}, 0.25),
        ({"operating_reset_at": 50.25}, 0.25),  # no `finish`: reckoned on our clock
        ({"operating_reset_at": 10**12, "finish": 1000.0}, WINDOW),  # never beyond a window
        ({"operating_reset_at": "garbled", "finish": 1000.0}, 0.0),
        ({}, 0.0),  # no reset time known: the retry backoff is all the wait
    ],
)
async def test_a_429_blocks_the_method_until_its_reset_and_never_longer_than_a_window(
    answer_time: dict[str, object], blocked_for: float
) -> None:
    now = [50.0]
    budget = OperatingBudget(limit=LIMIT, window=WINDOW, clock=lambda: now[0])
    budget.block("profile", answer_time)
    if blocked_for:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(budget.acquire(["profile"]), 0.05)
    now[0] += blocked_for + 0.001
    await asyncio.wait_for(budget.acquire(["profile"]), 1)  # free again
    assert budget.used("profile") == 0


@pytest.mark.parametrize(
    "answer_time",
    [
        {"operating_reset_at": 5000.25, "finish": 5000.0},  # the 429 names the reset
        {},  # it does not: the reset an earlier answer named
    ],
)
async def test_a_wall_clock_stepped_back_does_not_stretch_a_429_wait(
    answer_time: dict[str, object],
) -> None:
    """The attack: NTP steps the wall clock back an hour while a method waits out its 429.
    The method waits what the portal said (0.25 s), not an hour more."""
    now = [5000.0]
    budget = OperatingBudget(limit=LIMIT, window=WINDOW, clock=lambda: now[0])
    budget.observe("profile", {"operating_reset_at": 5000.25, "finish": 5000.0})
    budget.block("profile", answer_time)
    now[0] -= 3600
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(budget.acquire(["profile"]), 0.05)  # the wait is not over
    now[0] += 0.251
    await asyncio.wait_for(budget.acquire(["profile"]), 1)


async def test_a_new_method_is_probed_one_request_at_a_time_until_an_answer() -> None:
    """Its cost is unknown until the first answer; one without figures (as the docs' batch
    example shows `result_time`) ends the probing all the same."""
    budget = OperatingBudget(limit=LIMIT, window=WINDOW)
    await budget.acquire(["imopenlines.session.head.vote"])
    second = asyncio.ensure_future(budget.acquire(["imopenlines.session.head.vote"]))
    third = asyncio.ensure_future(budget.acquire(["profile"]))  # another method: no wait
    await asyncio.wait_for(third, 1)
    await asyncio.sleep(0.01)
    assert not second.done()
    budget.observe("imopenlines.session.head.vote", {})
    budget.release(["imopenlines.session.head.vote"])
    await asyncio.wait_for(second, 1)


@pytest.mark.parametrize("figure", ['"inf"', '"nan"', "Infinity", "NaN", '"-inf"'])
@pytest.mark.parametrize("field", ["finish", "operating", "operating_reset_at"])
async def test_a_garbled_time_figure_does_not_stop_every_later_call(
    http: aiohttp.ClientSession, sandbox: TestServer, scaled: Portal, field: str, figure: str
) -> None:
    """The attack: one answer (a proxy's, a portal bug's) whose `time` holds a figure that is
    not finite, which Python's float() and json.loads both take. Taken in, it made the
    portal's clock infinite or NaN, and every later call of every method raised before it
    left: the bot was dead to the portal until restarted."""
    figures = {"finish": 1000.0, "operating": 0.01, "operating_reset_at": 1000.5, field: "X"}
    answer_time = json.dumps(figures).replace('"X"', figure)
    body = f'{{"result": {{}}, "time": {answer_time}}}'
    scaled.faults.append(Fault(method="profile", body=body, content_type="application/json"))
    client = scaled_client(http, sandbox)
    await client.call("profile")  # the garbled answer
    for method in ("profile", "imbot.bot.list"):
        await asyncio.wait_for(client.call(method), 5)
    assert 0 <= client.budget.used("profile") <= LIMIT
