"""/readyz and /metrics as an on-call engineer reads them, in each state fetch mode can be in
(issue 9, item 7): consuming, refused for good (a setting to fix), registration still failing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from bot.sandbox.portal import Fault, Portal
from tests.harness import ServiceFactory

FETCH = {"B24_EVENT_MODE": "fetch", "B24_RATE_LIMIT": "50"}


def nothing(_portal: Portal) -> None:
    pass


def without_chatbots_2(portal: Portal) -> None:
    portal.chatbots_v2 = False


def registration_failing(portal: Portal) -> None:
    portal.faults.append(Fault("imbot.v2.bot.list", times=-1, status=500, error="INTERNAL"))


@pytest.mark.parametrize(
    ("portal_is", "status", "shown", "consuming"),
    [
        (nothing, 200, {"portal": "ok", "events": "ok"}, 1),
        (
            without_chatbots_2,
            503,
            {
                "portal": "not registered: this portal has no Chatbots 2.0; "
                "set B24_EVENT_MODE=webhook",
                "events": "waiting: no_bot",
            },
            0,
        ),
        (registration_failing, 503, {"portal": "not registered", "events": "waiting: no_bot"}, 0),
    ],
    ids=lambda value: value.__name__ if callable(value) else None,
)
async def test_readyz_and_metrics_say_what_the_poller_is_doing(
    start_service: ServiceFactory,
    portal: Portal,
    http: aiohttp.ClientSession,
    portal_is: Callable[[Portal], None],
    status: int,
    shown: dict[str, str],
    consuming: int,
) -> None:
    portal_is(portal)
    service = await start_service(registered=False, **FETCH)

    async def readyz() -> tuple[int, dict[str, Any]]:
        async with http.get(service.server.make_url("/readyz")) as answer:
            return answer.status, await answer.json()

    deadline = asyncio.get_running_loop().time() + 10
    while (ready := await readyz())[0] != status or {k: ready[1][k] for k in shown} != shown:
        assert asyncio.get_running_loop().time() < deadline, ready
        await asyncio.sleep(0.05)
    async with http.get(service.server.make_url("/metrics")) as answer:
        metrics = await answer.text()
    assert f"bot_fetch_active {float(consuming)}" in metrics.splitlines()
