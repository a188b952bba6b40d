"""im.user.get in the sandbox: a user's card with the flags the bot reads, and who may see whom."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.sandbox.portal import Bot, Portal
from tests.bot.sandbox.test_rest import rest
from tests.harness import webhook_url


@pytest.mark.parametrize(
    ("caller", "params", "status", "expected"),
    [
        (1, {"ID": 27}, 200, {"id": 27, "extranet": False, "connector": False, "bot": False}),
        (1, {}, 200, {"id": 1, "extranet": False, "connector": False, "bot": False}),
        (1, {"ID": 301}, 200, {"id": 301, "extranet": True, "connector": False, "bot": False}),
        (1, {"ID": 1211}, 200, {"id": 1211, "extranet": False, "connector": True, "bot": False}),
        (1, {"ID": 7000}, 200, {"id": 7000, "extranet": False, "connector": False, "bot": True}),
        (28, {"ID": 301}, 400, {"error": "ACCESS_DENIED"}),  # a guest outside 28's chats
        (1, {"ID": 99999}, 400, {"error": "USER_NOT_EXISTS"}),
    ],
)
async def test_user_get(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    caller: int,
    params: dict[str, Any],
    status: int,
    expected: dict[str, Any],
) -> None:
    portal.bots[7000] = Bot(id=7000, code="other", app_id="customother", name="Другой бот")
    [hook] = [h for h in portal.webhooks if h.user_id == caller]
    answered, body = await rest(
        http, webhook_url(sandbox, caller, hook.code) + "im.user.get", json=params
    )
    assert answered == status
    found = body.get("result", body)
    assert {key: found.get(key) for key in expected} == expected


async def test_a_guest_is_visible_to_whoever_shares_a_chat_with_them(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    portal.chats[2001].members.add(301)
    [hook] = [h for h in portal.webhooks if h.user_id == 28]
    answered, body = await rest(
        http, webhook_url(sandbox, 28, hook.code) + "im.user.get", json={"ID": 301}
    )
    assert (answered, body["result"]["extranet"]) == (200, True)
