"""Issue 10's "Done when", end to end: the whole service (Bitrix24 side against the sandbox
portal, Telegram side against a fake Bot API, both over real HTTP): a linked supervisor rates
in the allowed group and is answered there; every saved vote reaches the feed chat once."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from bot.telegram.side import TELEGRAM, WEBHOOK_PATH
from tests.bot.telegram.conftest import GROUP, LINKED, SECRET
from tests.bot.telegram.fakebot import FakeBotApi, fake_bot_app
from tests.harness import Service, ServiceFactory, eventually

FEED = -2002


def said(api: FakeBotApi, chat_id: int) -> list[str]:
    return [str(m["text"]) for m in api.sent("sendMessage") if int(m["chat_id"]) == chat_id]


async def start_both(
    start_service: ServiceFactory, aiohttp_server: AiohttpServer, mode: str
) -> tuple[Service, FakeBotApi]:
    api = FakeBotApi()
    telegram: TestServer = await aiohttp_server(fake_bot_app(api))
    service = await start_service(
        B24_EVENT_MODE="fetch",
        B24_RATE_LIMIT="50",
        TELEGRAM_BOT_TOKEN=api.token,
        TELEGRAM_API_URL=str(telegram.make_url("")).rstrip("/"),
        TELEGRAM_MODE=mode,
        TELEGRAM_WEBHOOK_SECRET=SECRET,
        TELEGRAM_ALLOWED_CHAT_IDS=str(GROUP),
        TELEGRAM_USER_MAP=f"{LINKED}:27",
        TELEGRAM_FEED_CHAT_ID=str(FEED),
    )
    await eventually(lambda: service.server.app[TELEGRAM].username, within=10)
    return service, api


async def deliver(
    service: Service, api: FakeBotApi, http: aiohttp.ClientSession, update: dict[str, Any]
) -> None:
    """Polling: the service fetches it. Webhook: Telegram posts it, with the secret."""
    if api.webhook.get("url"):
        url = service.server.make_url(WEBHOOK_PATH)
        headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        async with http.post(url, json=update, headers=headers) as answer:
            assert answer.status == 200


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_a_linked_supervisor_rates_in_the_group_and_every_vote_reaches_the_feed(
    start_service: ServiceFactory,
    aiohttp_server: AiohttpServer,
    http: aiohttp.ClientSession,
    mode: str,
) -> None:
    service, api = await start_both(start_service, aiohttp_server, mode)
    if mode == "webhook":
        await eventually(lambda: api.webhook.get("url"))
    await deliver(service, api, http, api.type(GROUP, LINKED, "/rate 494 5 Молодец"))
    [answer] = await eventually(lambda: said(api, GROUP), within=10)
    session = service.portal.sessions[494]
    assert (session.vote_head, session.comment_head) == (5, "Молодец")
    assert answer.startswith("✅ Saved. Session 494")
    # A vote typed in Bitrix24 reaches the feed too, once each.
    await service.reply_to(27, service.bot_id, "/rate 495 3 Из Битрикса")
    await eventually(lambda: len(said(api, FEED)) == 2, within=10)
    feed = said(api, FEED)
    assert [("494" in line, "495" in line) for line in feed] == [(True, False), (False, True)]
    assert "Молодец" in feed[0]
    assert "Из Битрикса" in feed[1]
