"""getChat in the fake Telegram, through aiogram: a chat the bot is in, one it was removed
from, one it does not know."""

from __future__ import annotations

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError

from bot.sandbox.telegram.seed import CHANNEL, FEED, FORUM, SUPERVISORS_GROUP
from bot.sandbox.telegram.world import TelegramWorld


@pytest.mark.parametrize(
    ("chat_id", "kind", "title"),
    [
        (SUPERVISORS_GROUP, "group", "Руководители"),
        (FORUM, "supergroup", "Контакт-центр"),
        (FEED, "group", "Лента оценок"),
        (CHANNEL, "channel", "Новости смены"),
    ],
)
async def test_a_chat_the_bot_is_in_is_shown(
    bot: Bot, chat_id: int, kind: str, title: str
) -> None:
    chat = await bot.get_chat(chat_id)
    assert (chat.id, chat.type, chat.title) == (chat_id, kind, title)


@pytest.mark.parametrize(
    ("chat_id", "error"),
    [
        (SUPERVISORS_GROUP, "bot was kicked from the group chat"),
        (FORUM, "bot was kicked from the supergroup chat"),
    ],
)
async def test_a_chat_the_bot_was_removed_from_is_forbidden(
    bot: Bot, telegram_world: TelegramWorld, chat_id: int, error: str
) -> None:
    telegram_world.remove_bot(chat_id)
    with pytest.raises(TelegramForbiddenError, match=error):
        await bot.get_chat(chat_id)


async def test_an_unknown_chat_is_not_found(bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.get_chat(-777)
