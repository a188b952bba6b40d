"""The sandbox's operating-time limit (protocol notes §00 item 10, §4.2), over HTTP."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.sandbox.portal import Portal
from tests.bot.sandbox.test_rest import rest
from tests.harness import webhook_url

HISTORY = "imopenlines.session.history.get"


@pytest.fixture
def dear_profile(portal: Portal) -> Portal:
    """`profile` costs 0.2 s of a 0.5 s budget per 10 s (ten 1-second buckets)."""
    portal.operating_cost["profile"] = 0.2
    portal.operating_limit, portal.operating_window = 0.5, 10.0
    return portal


async def test_a_method_past_its_budget_answers_429_and_others_keep_working(
    http: aiohttp.ClientSession, sandbox: TestServer, dear_profile: Portal
) -> None:
    url = webhook_url(sandbox)
    answers = [await rest(http, url + "profile") for _ in range(4)]
    assert [(status, round(body["time"]["operating"], 6)) for status, body in answers] == [
        (200, 0.2),
        (200, 0.4),
        (200, 0.6),  # begun below the limit: it runs, and the method is now past it
        (429, 0.6),
    ]
    status, refused = answers[-1]
    assert refused["error"] == "OPERATION_TIME_LIMIT"
    assert "result" not in refused
    finish, reset_at = refused["time"]["finish"], refused["time"]["operating_reset_at"]
    assert finish < reset_at <= finish + dear_profile.operating_window
    status, _ = await rest(http, url + HISTORY, json={"SESSION_ID": 494})
    assert status == 200
    # The oldest bucket drops out at operating_reset_at, and with it room for a call.
    dear_profile.advance_clock(reset_at - finish - 0.3)
    status, _ = await rest(http, url + "profile")
    assert status == 429
    dear_profile.advance_clock(0.31)
    status, _ = await rest(http, url + "profile")
    assert status == 200
    # A whole window later every bucket is gone.
    dear_profile.advance_clock(dear_profile.operating_window)
    status, body = await rest(http, url + "profile")
    assert (status, round(body["time"]["operating"], 6)) == (200, 0.2)


async def test_a_batch_counts_each_call_and_not_itself(
    http: aiohttp.ClientSession, sandbox: TestServer, dear_profile: Portal
) -> None:
    cmd = {f"p{n}": "profile" for n in range(4)}
    status, body = await rest(http, webhook_url(sandbox) + "batch", json={"cmd": cmd})
    assert status == 200
    inner = body["result"]
    assert sorted(inner["result"]) == ["p0", "p1", "p2"]
    assert inner["result_error"] == {
        "p3": {
            "error": "OPERATION_TIME_LIMIT",
            "error_description": "Method is blocked due to operation time limit.",
        }
    }
    times = {key: round(t["operating"], 6) for key, t in inner["result_time"].items()}
    assert times == {"p0": 0.2, "p1": 0.4, "p2": 0.6, "p3": 0.6}
    assert "operating_reset_at" in inner["result_time"]["p3"]
    assert dear_profile.operating.get("batch") is None
    assert body["time"]["operating"] == 0
