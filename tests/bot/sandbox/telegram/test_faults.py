"""Telegram's failures on demand, as aiogram sees them: 429 with retry_after, 403 for a chat
the bot was removed from (a state of the chat), 5xx, a hang, an answer lost after the work."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiogram import Bot
from aiogram.exceptions import (
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiohttp.test_utils import TestServer

from bot.sandbox.telegram.seed import CHANNEL, FORUM, SUPERVISORS_GROUP
from bot.sandbox.telegram.world import TelegramWorld, TgFault


async def test_429_for_the_next_calls_of_a_method(bot: Bot, telegram_world: TelegramWorld) -> None:
    telegram_world.faults.append(TgFault("sendMessage", times=2, status=429, retry_after=7))
    for _ in range(2):
        with pytest.raises(TelegramRetryAfter) as caught:
            await bot.send_message(SUPERVISORS_GROUP, "ok")
        assert caught.value.retry_after == 7
        assert "Too Many Requests: retry after 7" in caught.value.message
    await bot.get_me()  # other methods are not touched
    assert (await bot.send_message(SUPERVISORS_GROUP, "ok")).text == "ok"
    assert telegram_world.messages_from_bot() == ["ok"]


@pytest.mark.parametrize(
    ("chat_id", "old", "new", "description"),
    [
        (SUPERVISORS_GROUP, "member", "left", "Forbidden: bot was kicked from the group chat"),
        (FORUM, "member", "kicked", "Forbidden: bot was kicked from the supergroup chat"),
        (
            CHANNEL,
            "administrator",
            "kicked",
            "Forbidden: bot is not a member of the channel chat",
        ),
        (5001, "member", "kicked", "Forbidden: bot was blocked by the user"),
    ],
)
async def test_a_removed_bot_gets_403_and_hears_it(
    bot: Bot,
    telegram_world: TelegramWorld,
    chat_id: int,
    old: str,
    new: str,
    description: str,
) -> None:
    if chat_id > 0:
        telegram_world.type(chat_id, chat_id, "/start")  # the private chat exists
    await bot.get_updates(offset=-1)
    await bot.get_updates(offset=10**12)  # nothing pending
    telegram_world.remove_bot(chat_id, by_user_id=5003)
    [update] = await bot.get_updates()
    change = update.my_chat_member
    assert change is not None
    assert change.chat.id == chat_id
    assert (change.old_chat_member.status, change.new_chat_member.status) == (old, new)
    assert change.from_user.id == 5003
    with pytest.raises(TelegramForbiddenError) as caught:
        await bot.send_message(chat_id, "ok")
    assert caught.value.message == description
    telegram_world.add_bot(chat_id)
    assert (await bot.send_message(chat_id, "back")).text == "back"


async def test_a_removed_bot_hears_nothing_from_the_chat(
    bot: Bot, telegram_world: TelegramWorld
) -> None:
    telegram_world.remove_bot(SUPERVISORS_GROUP)
    await bot.get_updates(offset=-1)
    await bot.get_updates(offset=10**12)
    assert telegram_world.type(5001, SUPERVISORS_GROUP, "/help") is None
    assert await bot.get_updates() == []


@pytest.mark.parametrize("status", [500, 502])
async def test_server_errors(bot: Bot, telegram_world: TelegramWorld, status: int) -> None:
    telegram_world.faults.append(TgFault("*", status=status))
    with pytest.raises(TelegramServerError):
        await bot.get_me()
    assert (await bot.get_me()).username == "SandboxRatingBot"


async def test_a_hang_ends_in_the_client_timeout(bot: Bot, telegram_world: TelegramWorld) -> None:
    telegram_world.faults.append(TgFault("getMe", hang=True))
    with pytest.raises(TelegramNetworkError):
        await bot.get_me(request_timeout=1)


async def test_an_answer_lost_after_the_work(bot: Bot, telegram_world: TelegramWorld) -> None:
    telegram_world.faults.append(TgFault("sendMessage", status=502, after=True))
    with pytest.raises(TelegramServerError):
        await bot.send_message(SUPERVISORS_GROUP, "sent once")
    assert telegram_world.messages_from_bot() == ["sent once"]  # it was sent all the same


async def test_faults_over_http(
    bot: Bot, sandbox: TestServer, http: aiohttp.ClientSession
) -> None:
    fault = {"method": "sendMessage", "times": 1, "status": 429, "retry_after": 3}
    async with http.post(sandbox.make_url("/_sandbox/telegram/faults"), json=fault) as answer:
        assert (await answer.json()) == {"faults": 1}
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(SUPERVISORS_GROUP, "ok")
    async with http.post(sandbox.make_url("/_sandbox/telegram/faults"), json=fault):
        pass
    async with http.delete(sandbox.make_url("/_sandbox/telegram/faults")):
        pass
    await asyncio.wait_for(bot.send_message(SUPERVISORS_GROUP, "ok"), 10)
