"""getUpdates (offsets, long polling, one poller at a time) and webhooks (delivery with the
secret, retries, the 409 while one is set), through real aiogram."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramConflictError
from aiogram.types import Update
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from bot.sandbox.telegram.seed import SUPERVISORS_GROUP
from bot.sandbox.telegram.world import TelegramWorld
from tests.harness import eventually


def typed(world: TelegramWorld, text: str, user_id: int = 5001) -> int:
    update = world.type(user_id, SUPERVISORS_GROUP, text)
    assert update is not None
    return int(update["update_id"])


async def test_offset_confirms_every_update_below_it(
    bot: Bot, telegram_world: TelegramWorld
) -> None:
    ids = [typed(telegram_world, f"/rate 494 {n}") for n in (1, 2, 3)]
    assert [u.update_id for u in await bot.get_updates()] == ids
    assert [u.update_id for u in await bot.get_updates(limit=2)] == ids[:2]
    assert [u.update_id for u in await bot.get_updates(offset=ids[1] + 1)] == ids[2:]
    assert [u.update_id for u in await bot.get_updates()] == ids[2:]  # the others are gone
    assert await bot.get_updates(offset=ids[2] + 1) == []


async def test_a_negative_offset_keeps_the_last_updates(
    bot: Bot, telegram_world: TelegramWorld
) -> None:
    ids = [typed(telegram_world, f"/help {n}") for n in range(4)]
    assert [u.update_id for u in await bot.get_updates(offset=-1)] == ids[-1:]
    assert [u.update_id for u in await bot.get_updates()] == ids[-1:]


async def test_updates_parse_as_aiogram_updates(bot: Bot, telegram_world: TelegramWorld) -> None:
    typed(telegram_world, "/rate@SandboxRatingBot 494 5 Молодец")
    [update] = await bot.get_updates()
    assert isinstance(update, Update)
    assert update.message is not None
    message = update.message
    assert message.text == "/rate@SandboxRatingBot 494 5 Молодец"
    assert message.from_user is not None
    assert message.from_user.username == "svetlana_iv"
    assert (message.chat.id, message.chat.type) == (SUPERVISORS_GROUP, "group")
    assert message.entities is not None
    assert [(e.type, e.offset, e.length) for e in message.entities] == [("bot_command", 0, 22)]


async def test_long_polling_answers_as_soon_as_an_update_arrives(
    bot: Bot, telegram_world: TelegramWorld
) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=50, request_timeout=60))
    await eventually(lambda: telegram_world.polls_waiting)
    update_id = typed(telegram_world, "/help")
    # Well before the 50 s the poll asked for: an update ends the wait.
    updates = await asyncio.wait_for(poll, 20)
    assert [u.update_id for u in updates] == [update_id]


async def test_long_polling_without_updates_answers_an_empty_list(bot: Bot) -> None:
    assert await bot.get_updates(timeout=1) == []


async def test_a_second_poller_terminates_the_first(
    bot: Bot, telegram_world: TelegramWorld
) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=50, request_timeout=60))
    await eventually(lambda: telegram_world.polls_waiting)
    assert await bot.get_updates() == []
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates request"):
        await asyncio.wait_for(first, 20)


async def test_allowed_updates_drop_other_types_from_then_on(
    bot: Bot, telegram_world: TelegramWorld
) -> None:
    assert await bot.get_updates(allowed_updates=["callback_query"]) == []
    assert telegram_world.type(5001, SUPERVISORS_GROUP, "/help") is None
    assert await bot.get_updates(allowed_updates=[]) == []  # back to the default set
    typed(telegram_world, "/help")
    assert len(await bot.get_updates()) == 1


class Receiver:
    """A webhook endpoint on loopback that answers with the next status of `statuses`."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, Any], str | None]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(
            (await request.json(), request.headers.get("X-Telegram-Bot-Api-Secret-Token"))
        )
        status = self.statuses.pop(0) if self.statuses else 200
        return web.json_response({}, status=status)


async def receiver(aiohttp_server: AiohttpServer, statuses: list[int]) -> tuple[Receiver, str]:
    hook = Receiver(statuses)
    app = web.Application()
    app.router.add_post("/telegram/webhook", hook.handle)
    server: TestServer = await aiohttp_server(app)
    return hook, str(server.make_url("/telegram/webhook"))


async def test_a_webhook_gets_updates_with_the_secret(
    bot: Bot, telegram_world: TelegramWorld, aiohttp_server: AiohttpServer
) -> None:
    hook, url = await receiver(aiohttp_server, [])
    pending = typed(telegram_world, "/help")
    assert await bot.set_webhook(url, secret_token="s3cr3t_-X", allowed_updates=["message"])
    later = typed(telegram_world, "/rate 494 5")
    await eventually(lambda: len(hook.received) == 2)
    assert [(body["update_id"], secret) for body, secret in hook.received] == [
        (pending, "s3cr3t_-X"),
        (later, "s3cr3t_-X"),
    ]
    info = await bot.get_webhook_info()
    assert (info.url, info.pending_update_count, info.allowed_updates) == (url, 0, ["message"])


async def test_a_failed_delivery_stays_pending_and_is_retried(
    bot: Bot, telegram_world: TelegramWorld, aiohttp_server: AiohttpServer
) -> None:
    hook, url = await receiver(aiohttp_server, [500, 503])
    await bot.set_webhook(url)
    update_id = typed(telegram_world, "/help")
    await eventually(lambda: len(hook.received) == 3)
    assert {body["update_id"] for body, _ in hook.received} == {update_id}
    assert [secret for _, secret in hook.received] == [None, None, None]
    info = await bot.get_webhook_info()
    assert info.pending_update_count == 0
    assert info.last_error_message == "Wrong response from the webhook: 503 Service Unavailable"


async def test_an_unreachable_webhook_keeps_updates_pending(
    bot: Bot, telegram_world: TelegramWorld
) -> None:
    await bot.set_webhook("http://127.0.0.1:9/telegram/webhook")
    typed(telegram_world, "/help")
    error = await eventually(lambda: telegram_world.webhook.last_error_message)
    assert error.startswith("Connection failed")
    assert (await bot.get_webhook_info()).pending_update_count == 1


async def test_get_updates_conflicts_with_a_webhook(
    bot: Bot, telegram_world: TelegramWorld
) -> None:
    await bot.set_webhook("http://127.0.0.1:9/telegram/webhook")
    with pytest.raises(TelegramConflictError, match="can't use getUpdates method while webhook"):
        await bot.get_updates()
    typed(telegram_world, "/help")
    assert await bot.delete_webhook()
    assert len(await bot.get_updates()) == 1
    assert (await bot.get_webhook_info()).url == ""


@pytest.mark.parametrize("method", ["set_webhook", "delete_webhook"])
async def test_drop_pending_updates(bot: Bot, telegram_world: TelegramWorld, method: str) -> None:
    typed(telegram_world, "/help")
    if method == "set_webhook":
        await bot.set_webhook("http://127.0.0.1:9/hook", drop_pending_updates=True)
        await bot.delete_webhook()
    else:
        await bot.delete_webhook(drop_pending_updates=True)
    assert await bot.get_updates() == []


async def test_a_secret_with_forbidden_characters_is_refused(bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="secret token contains unallowed characters"):
        await bot.set_webhook("http://127.0.0.1:9/hook", secret_token="no spaces")


async def test_a_webhook_may_answer_with_a_method(
    bot: Bot, telegram_world: TelegramWorld, aiohttp_server: AiohttpServer
) -> None:
    async def reply(request: web.Request) -> web.Response:
        update = await request.json()
        chat_id = update["message"]["chat"]["id"]
        return web.json_response({"method": "sendMessage", "chat_id": chat_id, "text": "Помощь"})

    app = web.Application()
    app.router.add_post("/hook", reply)
    server: TestServer = await aiohttp_server(app)
    await bot.set_webhook(str(server.make_url("/hook")))
    typed(telegram_world, "/help")
    await eventually(lambda: telegram_world.messages_from_bot(SUPERVISORS_GROUP) == ["Помощь"])
