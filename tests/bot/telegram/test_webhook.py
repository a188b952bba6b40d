"""Webhook mode: setWebhook on start, the secret checked on every update, each update stored
before the 200, and one update delivered twice stored once."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from bot.state import CORE, SETTINGS
from bot.telegram.side import TELEGRAM
from tests.bot.telegram.conftest import GROUP, LINKED, SECRET, Service, Start
from tests.bot.telegram.fakebot import FakeBotApi
from tests.harness import eventually, write_locked

HEADER = "X-Telegram-Bot-Api-Secret-Token"


async def deliver(service: Service, body: Any, headers: dict[str, str] | None = None) -> int:
    """What Telegram does with an update: POST it to the webhook."""
    sent = {HEADER: SECRET} if headers is None else headers
    async with aiohttp.ClientSession() as http:
        url = service.server.make_url("/telegram/webhook")
        data = body if isinstance(body, str) else None
        async with http.post(
            url, json=None if data else body, data=data, headers=sent
        ) as response:
            return response.status


async def webhook_service(start: Start, fake: FakeBotApi) -> Service:
    service = await start(TELEGRAM_MODE="webhook")
    await eventually(lambda: service.app[TELEGRAM].status()["state"] == "webhook")
    return service


async def test_the_webhook_is_set_with_the_secret_and_the_used_update_types(
    start: Start, fake: FakeBotApi
) -> None:
    service = await webhook_service(start, fake)
    (hook,) = fake.sent("setWebhook")
    assert hook["url"] == f"{service.app[TELEGRAM].settings.public_url}/telegram/webhook"
    assert hook["secret_token"] == SECRET
    assert set(hook["allowed_updates"]) == {"message", "channel_post", "callback_query"}
    assert fake.sent("getUpdates") == []


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({HEADER: "wrong"}, 401),
        ({HEADER: SECRET[:-1]}, 401),
        ({HEADER: SECRET + "x"}, 401),
        ({HEADER: "sécret"}, 401),  # not ASCII: still a clean refusal, not a 500
        ({HEADER: SECRET}, 200),
    ],
)
async def test_every_update_must_carry_the_secret(
    start: Start, fake: FakeBotApi, headers: dict[str, str], status: int
) -> None:
    service = await webhook_service(start, fake)
    update = fake.type(GROUP, LINKED, "/rate 494 5")
    assert await deliver(service, update, headers) == status
    if status == 200:
        await eventually(lambda: service.core.seen)
    else:
        assert service.core.seen == []


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '{"update_id": "x"}'])
async def test_a_body_that_is_no_update_is_refused_cleanly(
    start: Start, fake: FakeBotApi, body: str
) -> None:
    service = await webhook_service(start, fake)
    assert await deliver(service, body) == 400
    assert service.core.seen == []


async def test_an_update_delivered_twice_is_one_command(start: Start, fake: FakeBotApi) -> None:
    service = await webhook_service(start, fake)
    update = fake.type(GROUP, LINKED, "/rate 494 5 Молодец")
    assert await deliver(service, update) == 200
    await eventually(lambda: fake.sent("sendMessage"))
    assert await deliver(service, update) == 200  # Telegram retries a webhook it thinks failed
    audit = await service.app[CORE].storage.audit()
    assert [entry.key for entry in audit] == [f"tg:{update['update_id']}:0"]
    assert len(service.core.seen) == 1
    assert len(fake.sent("sendMessage")) == 1


async def test_a_command_by_webhook_is_answered_in_the_group(
    start: Start, fake: FakeBotApi
) -> None:
    service = await webhook_service(start, fake)
    update = fake.type(GROUP, LINKED, "/rate@RatingBot 494 5 Молодец")
    assert await deliver(service, update) == 200
    (sent,) = await eventually(lambda: fake.sent("sendMessage"))
    assert (sent["chat_id"], sent["text"]) == (str(GROUP), "✅ Saved. 494: 5 Молодец")
    assert sent["reply_parameters"]["message_id"] == update["message"]["message_id"]


async def test_an_update_the_storage_cannot_take_is_refused_for_telegram_to_send_again(
    start: Start, fake: FakeBotApi
) -> None:
    service = await webhook_service(start, fake)
    update = fake.type(GROUP, LINKED, "/rate 494 5")
    with write_locked(service.app[SETTINGS].bot_database_url):
        assert await deliver(service, update) == 503  # never a 200 for what was not stored
    assert await deliver(service, update) == 200  # Telegram's next try
    (job,) = await eventually(lambda: service.core.seen)
    assert job.key == f"tg:{update['update_id']}:0"
