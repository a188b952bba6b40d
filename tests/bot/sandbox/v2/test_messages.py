"""imbot.v2.Chat.Message.update, v2 keyboards a user can click, Command.answer's refusals
(`imbot.v2/messages/chat-message-update.md`, `message-keyboards.md`, `command-answer.md`)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.sandbox.app import EVENTS
from bot.sandbox.portal import Portal
from tests.bot.sandbox.test_keyboard import LINK, STAR, click
from tests.bot.sandbox.v2.test_methods import TOKEN, register_rate, register_v2, v2

KEYBOARD = [{"TEXT": "5", "COMMAND": "rate", "COMMAND_PARAMS": "494 5", "DISPLAY": "LINE"}]


async def send(
    http: aiohttp.ClientSession, sandbox: TestServer, bot_id: int, **fields: Any
) -> int:
    status, answer = await v2(
        http,
        sandbox,
        "Chat.Message.send",
        botId=bot_id,
        botToken=TOKEN,
        dialogId="27",
        fields={"message": "Оценка?"} | fields,
    )
    assert status == 200, answer
    message_id: int = answer["result"]["id"]
    return message_id


@pytest.mark.parametrize(
    ("fields", "text", "keyboard"),
    [
        ({"message": "Сохранено", "keyboard": "N"}, "Сохранено", None),
        ({"keyboard": ""}, "Оценка?", None),
        ({"message": "Иначе"}, "Иначе", KEYBOARD),
        (
            {"keyboard": {"BOT_ID": 1, "BUTTONS": KEYBOARD}},
            "Оценка?",
            {"BOT_ID": 1, "BUTTONS": KEYBOARD},
        ),
    ],
)
async def test_an_update_changes_the_bots_own_message(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    fields: dict[str, Any],
    text: str,
    keyboard: Any,
) -> None:
    bot_id = await register_v2(http, sandbox)
    message_id = await send(http, sandbox, bot_id, keyboard=KEYBOARD)
    status, answer = await v2(
        http,
        sandbox,
        "Chat.Message.update",
        botId=bot_id,
        botToken=TOKEN,
        messageId=message_id,
        fields=fields,
    )
    assert (status, answer["result"]) == (200, {"result": True})
    message = portal.messages[message_id]
    assert (message.text, message.keyboard) == (text, keyboard)


@pytest.mark.parametrize("whose", ["deleted", "a user's", "another bot's", "system"])
async def test_an_update_of_a_message_not_the_bots_own_is_access_denied(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal, whose: str
) -> None:
    bot_id = await register_v2(http, sandbox)
    other = await register_v2(http, sandbox, code="other")
    message_id = await send(http, sandbox, bot_id, system=whose == "system")
    message = portal.messages[message_id]
    if whose == "deleted":
        del portal.messages[message_id]
    message.author_id = {"a user's": 27, "another bot's": other}.get(whose, bot_id)
    status, answer = await v2(
        http,
        sandbox,
        "Chat.Message.update",
        botId=bot_id,
        botToken=TOKEN,
        messageId=message_id,
        fields={"message": "x", "keyboard": "N"},
    )
    assert (status, answer["error"]) == (403, "ACCESS_DENIED")
    assert message.text == "Оценка?"


async def test_a_click_on_a_full_form_keyboard_reaches_the_bots_queue(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    bot_id = await register_v2(http, sandbox)
    await register_rate(http, sandbox, bot_id)
    message_id = await send(
        http, sandbox, bot_id, keyboard={"BOT_ID": bot_id, "BUTTONS": KEYBOARD}
    )
    await sandbox.app[EVENTS].click(27, message_id, 0)
    _, fetched = await v2(http, sandbox, "Event.get", botId=bot_id, botToken=TOKEN)
    [event] = fetched["result"]["events"]
    command = event["data"]["command"]
    assert (event["type"], command["context"], command["params"]) == (
        "ONIMBOTV2COMMANDADD",
        "keyboard",
        "494 5",
    )
    assert event["data"]["message"]["id"] == message_id


async def test_a_click_on_a_link_button_queues_nothing(
    http: aiohttp.ClientSession, sandbox: TestServer
) -> None:
    bot_id = await register_v2(http, sandbox)
    await register_rate(http, sandbox, bot_id)
    message_id = await send(http, sandbox, bot_id, keyboard=[LINK, STAR])
    assert await click(http, sandbox, message_id, 0) == []  # the browser opens the link
    _, fetched = await v2(http, sandbox, "Event.get", botId=bot_id, botToken=TOKEN)
    assert fetched["result"]["events"] == []
    [delivered] = await click(http, sandbox, message_id, 1)  # the command beside it
    assert delivered["event"] == "ONIMBOTV2COMMANDADD"


async def test_an_answer_to_a_command_not_the_bots_own_is_command_not_found(
    http: aiohttp.ClientSession, sandbox: TestServer
) -> None:
    bot_id = await register_v2(http, sandbox)
    other = await register_v2(http, sandbox, code="other")
    command_id = await register_rate(http, sandbox, other)
    status, answer = await v2(
        http,
        sandbox,
        "Command.answer",
        botId=bot_id,
        botToken=TOKEN,
        commandId=command_id,
        messageId=1,
        dialogId="27",
        fields={"message": "x"},
    )
    assert (status, answer["error"]) == (400, "COMMAND_NOT_FOUND")
