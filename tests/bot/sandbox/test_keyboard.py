"""Keyboards in the sandbox portal as Bitrix24 keeps them (bot/sandbox/keyboard.py): link
buttons, the buttons it drops, and the click on a link that tells the bot nothing."""

from __future__ import annotations

from typing import Any, Final

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.sandbox.portal import Portal
from tests.bot.sandbox.test_imbot import call, register_bot
from tests.bot.sandbox.v2.test_methods import TOKEN, register_v2, v2

AUTHORIZE: Final = "https://b24.example.com/oauth/authorize/?client_id=local.1&state=n0nce"
LINK: Final = {"TEXT": "Связать аккаунт", "LINK": AUTHORIZE, "DISPLAY": "LINE"}
STAR: Final = {"TEXT": "★", "COMMAND": "rate", "COMMAND_PARAMS": "494 1"}

# A keyboard as sent, and the buttons the portal keeps of it (None: KEYBOARD_ERROR).
KEYBOARDS: Final = (
    ("a link", [LINK], [LINK]),
    (
        "a plain http link",
        [{"TEXT": "x", "LINK": "http://x.ru/"}],
        [{"TEXT": "x", "LINK": "http://x.ru/"}],
    ),
    (
        "a path on the portal",
        [{"TEXT": "x", "LINK": "/online/"}],
        [{"TEXT": "x", "LINK": "/online/"}],
    ),
    ("a link and a command: a link", [LINK | {"COMMAND": "rate", "COMMAND_PARAMS": "1"}], [LINK]),
    ("a javascript: link alone", [{"TEXT": "x", "LINK": "javascript:alert(1)"}], None),
    ("a data: link alone", [{"TEXT": "x", "LINK": "data:text/html,<script>"}], None),
    ("an ftp link alone", [{"TEXT": "x", "LINK": "ftp://x.ru/"}], None),
    ("a scheme in capitals", [{"TEXT": "x", "LINK": "HTTPS://x.ru/"}], None),
    ("a javascript: link on a command", [STAR | {"LINK": "javascript:alert(1)"}], [STAR]),
    ("neither link nor command", [{"TEXT": "x"}], None),
    ("a link without text", [{"TEXT": " ", "LINK": AUTHORIZE}], None),
    ("a bad link beside a good one", [{"TEXT": "x", "LINK": "javascript:1"}, LINK], [LINK]),
    ("a command with a slash", [STAR | {"COMMAND": "/rate"}], [STAR]),
    ("a row break", [LINK, {"TYPE": "NEWLINE"}, STAR], [LINK, {"TYPE": "NEWLINE"}, STAR]),
)
CASES: Final = [pytest.param(sent, kept, id=name) for name, sent, kept in KEYBOARDS]


async def add_message(
    http: aiohttp.ClientSession, sandbox: TestServer, keyboard: Any
) -> tuple[int, dict[str, Any]]:
    """imbot.message.add "x" with `keyboard`, by the classic bot of CLIENT_ID c1, to user 27."""
    return await call(
        http,
        sandbox,
        "imbot.message.add",
        DIALOG_ID="27",
        MESSAGE="x",
        KEYBOARD=keyboard,
        CLIENT_ID="c1",
    )


async def send_message(
    http: aiohttp.ClientSession, sandbox: TestServer, bot_id: int, keyboard: Any
) -> tuple[int, dict[str, Any]]:
    """imbot.v2.Chat.Message.send "x" with `keyboard`, by the v2 bot `bot_id`, to user 27."""
    return await v2(
        http,
        sandbox,
        "Chat.Message.send",
        botId=bot_id,
        botToken=TOKEN,
        dialogId="27",
        fields={"message": "x", "keyboard": keyboard},
    )


@pytest.mark.parametrize(("sent", "kept"), CASES)
async def test_imbot_message_add_keeps_the_buttons_bitrix24_keeps(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    sent: list[dict[str, Any]],
    kept: list[dict[str, Any]] | None,
) -> None:
    await register_bot(http, sandbox)
    status, body = await add_message(http, sandbox, sent)
    if kept is None:
        assert (status, body["error"]) == (400, "KEYBOARD_ERROR")
        assert [m for m in portal.messages.values() if m.text == "x"] == []
    else:
        assert status == 200, body
        assert portal.messages[body["result"]].keyboard == kept


@pytest.mark.parametrize(("sent", "kept"), CASES)
async def test_imbot_v2_chat_message_send_keeps_the_buttons_bitrix24_keeps(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    sent: list[dict[str, Any]],
    kept: list[dict[str, Any]] | None,
) -> None:
    bot_id = await register_v2(http, sandbox)
    keyboard = {"BOT_ID": bot_id, "BUTTONS": sent}  # the full form, as message-keyboards.md
    status, body = await send_message(http, sandbox, bot_id, keyboard)
    if kept is None:
        assert (status, body["error"]) == (400, "KEYBOARD_ERROR")
    else:
        assert status == 200, body
        stored = portal.messages[body["result"]["id"]].keyboard
        assert stored == {"BOT_ID": bot_id, "BUTTONS": kept}


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_an_update_to_a_keyboard_with_nothing_left_is_refused_and_changes_nothing(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal, api: str
) -> None:
    hostile = [{"TEXT": "x", "LINK": "javascript:alert(1)"}]
    if api == "v1":
        await register_bot(http, sandbox)
        _, sent = await add_message(http, sandbox, [LINK])
        message_id = sent["result"]
        status, body = await call(
            http,
            sandbox,
            "imbot.message.update",
            MESSAGE_ID=message_id,
            MESSAGE="y",
            KEYBOARD=hostile,
            CLIENT_ID="c1",
        )
    else:
        bot_id = await register_v2(http, sandbox)
        _, sent = await send_message(http, sandbox, bot_id, [LINK])
        message_id = sent["result"]["id"]
        status, body = await v2(
            http,
            sandbox,
            "Chat.Message.update",
            botId=bot_id,
            botToken=TOKEN,
            messageId=message_id,
            fields={"message": "y", "keyboard": hostile},
        )
    assert (status, body["error"]) == (400, "KEYBOARD_ERROR")
    message = portal.messages[message_id]
    assert (message.text, message.keyboard) == ("x", [LINK])


async def click(
    http: aiohttp.ClientSession, sandbox: TestServer, message_id: int, button: int
) -> list[dict[str, Any]]:
    """User 27 clicks a button through the control API: what it delivered."""
    body = {"user_id": 27, "message_id": message_id, "button": button}
    async with http.post(sandbox.make_url("/_sandbox/events/click"), json=body) as answer:
        assert answer.status == 200
        delivered: list[dict[str, Any]] = await answer.json()
        return delivered
