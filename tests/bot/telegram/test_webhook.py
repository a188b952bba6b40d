"""Webhook mode: setWebhook on start, the fake Telegram delivering to /telegram/webhook, the
secret checked on every update (the attacker posting straight to the webhook), each update
stored before the 200, and one update delivered twice stored once."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from bot.models import NoAuthor
from bot.sandbox.telegram.seed import CHANNEL
from bot.sandbox.telegram.world import TelegramWorld
from bot.state import CORE, SETTINGS
from bot.telegram.side import TELEGRAM
from tests.bot.telegram.conftest import GROUP, LINKED, SECRET, Service, Start, called, from_bot
from tests.harness import eventually, write_locked

HEADER = "X-Telegram-Bot-Api-Secret-Token"


async def post(service: Service, body: Any, headers: dict[str, str] | None = None) -> int:
    """What anyone can do: POST a body to the webhook (Telegram adds the secret)."""
    sent = {HEADER: SECRET} if headers is None else headers
    async with aiohttp.ClientSession() as http:
        url = service.server.make_url("/telegram/webhook")
        data = body if isinstance(body, str) else None
        async with http.post(
            url, json=None if data else body, data=data, headers=sent
        ) as response:
            return response.status


async def webhook_service(start: Start) -> Service:
    service = await start(TELEGRAM_MODE="webhook")
    await eventually(lambda: service.app[TELEGRAM].status()["state"] == "webhook")
    return service


async def test_the_webhook_is_set_with_the_secret_and_the_used_update_types(
    start: Start, telegram_world: TelegramWorld
) -> None:
    service = await webhook_service(start)
    hook = telegram_world.webhook
    assert hook.url == f"{service.app[TELEGRAM].settings.public_url}/telegram/webhook"
    assert hook.secret_token == SECRET
    assert telegram_world.allowed_updates == frozenset(
        {"message", "channel_post", "callback_query"}
    )
    assert called(telegram_world, "getUpdates") == []


async def test_the_fake_delivers_with_the_secret_and_the_update_is_one_command(
    start: Start, telegram_world: TelegramWorld
) -> None:
    service = await webhook_service(start)
    update = telegram_world.type(LINKED, GROUP, "/rate 494 5")
    assert update is not None
    (job,) = await eventually(lambda: service.core.seen)
    assert job.key == f"tg:{update['update_id']}:0"
    assert telegram_world.updates == []  # delivered and acknowledged
    assert telegram_world.webhook.last_error_message is None


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {HEADER: "wrong"},
        {HEADER: SECRET[:-1]},
        {HEADER: SECRET + "x"},
        {HEADER: "sécret"},  # not ASCII: still a clean refusal, not a 500
    ],
)
async def test_an_update_without_the_secret_is_refused(
    start: Start, telegram_world: TelegramWorld, headers: dict[str, str]
) -> None:
    service = await webhook_service(start)
    update = telegram_world.type(LINKED, GROUP, "/rate 494 5")
    await eventually(lambda: service.core.seen)  # the real one, delivered by the fake
    forged = update | {"update_id": 999_999_999} if update else {}
    assert await post(service, forged, headers) == 401
    assert await post(service, forged) == 200  # the same body with the secret is taken
    await eventually(lambda: len(service.core.seen) == 2)
    assert [j.key for j in service.core.seen][1] == "tg:999999999:0"


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '{"update_id": "x"}'])
async def test_a_body_that_is_no_update_is_refused_cleanly(
    start: Start, telegram_world: TelegramWorld, body: str
) -> None:
    service = await webhook_service(start)
    assert await post(service, body) == 400
    assert service.core.seen == []
    assert telegram_world.webhook.last_error_message is None


async def test_an_update_delivered_twice_is_one_command(
    start: Start, telegram_world: TelegramWorld
) -> None:
    service = await webhook_service(start)
    update = telegram_world.type(LINKED, GROUP, "/rate 494 5 Молодец")
    assert update is not None
    await eventually(lambda: from_bot(telegram_world, GROUP))
    telegram_world.updates.append(update)  # Telegram retries a webhook it thinks failed
    marker = telegram_world.type(LINKED, GROUP, "/help")  # delivered after the retry
    assert marker is not None
    await eventually(
        lambda: any(j.key == f"tg:{marker['update_id']}:0" for j in service.core.seen)
    )
    storage = service.app[CORE].storage
    for _ in range(500):  # the marker's reply is sent before its job is marked done
        if not await storage.unfinished():
            break
        await asyncio.sleep(0.01)
    assert await storage.unfinished() == 0
    audit = await storage.audit()
    keys = [f"tg:{u['update_id']}:0" for u in (update, marker)]
    assert sorted(entry.key for entry in audit) == keys
    assert [j.text for j in service.core.seen] == ["/rate 494 5 Молодец", "/help"]
    assert len(from_bot(telegram_world, GROUP)) == 2


async def test_a_post_with_no_author_delivered_twice_is_told_once(
    start: Start, telegram_world: TelegramWorld
) -> None:
    service = await webhook_service(start)
    post = telegram_world.post_in_channel(CHANNEL, "/rate 494 5")
    assert post is not None
    await eventually(lambda: service.core.seen)
    telegram_world.updates.append(post)  # Telegram retries a webhook it thinks failed
    marker = telegram_world.type(LINKED, GROUP, "/help")  # delivered after the retry
    assert marker is not None
    await eventually(lambda: len(from_bot(telegram_world, GROUP)) == 1)
    assert [j.notice for j in service.core.seen] == [NoAuthor(), None]
    told = [m for (chat, _), m in telegram_world.messages.items() if chat == CHANNEL][1:]
    assert [m.text for m in told] == ["Notice: no_author"]


async def test_a_command_by_webhook_is_answered_in_the_group(
    start: Start, telegram_world: TelegramWorld
) -> None:
    await webhook_service(start)
    update = telegram_world.type(LINKED, GROUP, "/rate@SandboxRatingBot 494 5 Молодец")
    assert update is not None
    (sent,) = await eventually(lambda: from_bot(telegram_world, GROUP))
    assert sent.text == "✅ Saved. 494: 5 Молодец"
    assert sent.reply_to == update["message"]["message_id"]


async def test_an_update_the_storage_cannot_take_is_refused_for_telegram_to_send_again(
    start: Start, telegram_world: TelegramWorld
) -> None:
    service = await webhook_service(start)
    with write_locked(service.app[SETTINGS].bot_database_url):
        update = telegram_world.type(LINKED, GROUP, "/rate 494 5")
        # never a 200 for what was not stored: the fake keeps it and tries again
        error = await eventually(lambda: telegram_world.webhook.last_error_message, within=20)
        assert "503" in error
        assert update in telegram_world.updates
    (job,) = await eventually(lambda: service.core.seen, within=20)
    assert update is not None
    assert job.key == f"tg:{update['update_id']}:0"
    await eventually(lambda: not telegram_world.updates)
