"""`/help` offers `/оценка` only where a typed `/оценка` reaches the bot: the private chat with
the Bitrix24 bot, in both event modes. Each place is tried over HTTP against the sandbox: what
the help says there, and what `/оценка` typed there does."""

from __future__ import annotations

from functools import partial

import pytest
from aiohttp.test_utils import TestServer

from bot.sandbox.telegram.seed import SUPERVISORS_GROUP
from bot.sandbox.telegram.world import TelegramWorld
from bot.texts import render
from tests.bot.telegram.test_end_to_end import start_both
from tests.harness import Service, ServiceFactory, drained, eventually

# Both Bitrix24 paths: the classic imbot API pushed to the service, Chatbots 2.0 fetched by it.
MODES = {"webhook": {}, "fetch": {"B24_EVENT_MODE": "fetch", "B24_RATE_LIMIT": "50"}}
SVETLANA = 5001  # in Telegram; the portal's supervisor 27
ALIAS = "/оценка"


async def start(start_service: ServiceFactory, mode: str) -> Service:
    return await start_service(**({"B24_EVENT_MODE": mode} | MODES[mode]))


def private_chat_of(service: Service, user_id: int) -> int:
    return service.portal.private_chat(user_id, service.bot_id).id


@pytest.mark.parametrize("mode", MODES)
async def test_in_the_private_chat_the_help_offers_the_alias_and_the_alias_rates(
    start_service: ServiceFactory, mode: str
) -> None:
    service = await start(start_service, mode)
    answer = await service.reply_to(27, service.bot_id, "/help")
    assert ALIAS in answer.text
    assert answer.chat_id == private_chat_of(service, 27)
    saved = await service.reply_to(27, service.bot_id, "/оценка 494 5 Молодец")
    assert saved.text.startswith("✅ Сохранено. Сессия 494")
    assert service.portal.sessions[494].vote_head == 5


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("where", "typed"),
    [
        # A group: Bitrix24 sends the bot a message that holds no registered command only
        # when the bot is mentioned.
        ("chat2001", "/оценка 494 5 Молодец"),
        # An open line: the same, and the text is a message of the dialog; the help asked
        # here is answered in the private chat, but it is about this chat.
        ("chat1157", "/оценка 5 Молодец"),
    ],
)
async def test_in_group_and_open_line_chats_the_help_keeps_to_rate_where_the_alias_is_lost(
    start_service: ServiceFactory, mode: str, where: str, typed: str
) -> None:
    service = await start(start_service, mode)
    answer = await service.reply_to(27, where, "/help")
    assert "/rate 494 5" in answer.text
    assert ALIAS not in answer.text
    assert await service.say(27, where, typed) == []  # no event: the bot never hears it
    answered = len(service.bot_messages())
    saved = await service.reply_to(27, where, typed.replace(ALIAS, "/rate"))
    await drained(service)
    assert saved.text.startswith("✅ Сохранено. Сессия 494")  # /rate there does what it says
    assert len(service.bot_messages()) == answered + 1


async def test_in_telegram_the_help_never_offers_the_alias_which_privacy_mode_keeps_away(
    start_service: ServiceFactory, sandbox: TestServer, telegram_world: TelegramWorld
) -> None:
    await start_both(start_service, sandbox, "polling", TELEGRAM_USER_MAP=f"{SVETLANA}:27")
    # Telegram takes only Latin letters, digits and _ as a command, and a group with privacy
    # mode on (BotFather's default) sends its bot commands only: /оценка never arrives.
    assert telegram_world.type(SVETLANA, SUPERVISORS_GROUP, "/оценка 494 5 Молодец") is None
    telegram_world.type(SVETLANA, SUPERVISORS_GROUP, "/help")
    [answer] = await eventually(
        partial(telegram_world.messages_from_bot, SUPERVISORS_GROUP), within=10
    )
    assert "/rate 494 5" in answer
    assert ALIAS not in answer


async def test_in_telegram_s_private_chat_the_help_is_about_linking_which_is_all_it_takes(
    start_service: ServiceFactory, sandbox: TestServer, telegram_world: TelegramWorld
) -> None:
    await start_both(start_service, sandbox, "polling", TELEGRAM_USER_MAP=f"{SVETLANA}:27")
    telegram_world.type(SVETLANA, SVETLANA, "/help")
    [answer] = await eventually(partial(telegram_world.messages_from_bot, SVETLANA), within=10)
    assert answer == render("help.telegram_private", "ru")
