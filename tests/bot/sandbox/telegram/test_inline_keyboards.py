"""Inline keyboards in the fake Telegram as the Bot API reads them (`_inline_keyboard` in
bot/sandbox/telegram/methods.py): url buttons kept, buttons with no action refused, and a
press on a url button that sends the bot nothing."""

from __future__ import annotations

from typing import Any, Final

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.sandbox.telegram.seed import SUPERVISORS_GROUP
from bot.sandbox.telegram.world import TelegramWorld
from tests.harness import telegram_api_url

AUTHORIZE: Final = "https://b24.example.com/oauth/authorize/?client_id=local.1&state=n0nce"
REFUSED: Final = "Bad Request: can't parse inline keyboard button: "
NO_ACTION: Final = REFUSED + "Text buttons are unallowed in the inline keyboard"


async def send(
    http: aiohttp.ClientSession, sandbox: TestServer, world: TelegramWorld, *buttons: Any
) -> tuple[int, dict[str, Any]]:
    """sendMessage with one row of `buttons`, as JSON: the status and Telegram's answer."""
    url = f"{telegram_api_url(sandbox)}/bot{world.token}/sendMessage"
    markup = {"inline_keyboard": [list(buttons)]}
    body = {"chat_id": SUPERVISORS_GROUP, "text": "Связать?", "reply_markup": markup}
    async with http.post(url, json=body) as answer:
        return answer.status, await answer.json()


@pytest.mark.parametrize(
    ("button", "kept"),
    [
        pytest.param(
            {"text": "Связать", "url": AUTHORIZE}, {"text": "Связать", "url": AUTHORIZE}, id="url"
        ),
        pytest.param(
            {"text": "x", "url": "http://127.0.0.1:8090/oauth/authorize/"},
            {"text": "x", "url": "http://127.0.0.1:8090/oauth/authorize/"},
            id="the sandbox portal's own address",
        ),
        pytest.param(
            {"text": "x", "url": "tg://resolve?domain=SandboxRatingBot"},
            {"text": "x", "url": "tg://resolve?domain=SandboxRatingBot"},
            id="a tg link",
        ),
        pytest.param(
            {"text": "x", "url": AUTHORIZE, "callback_data": "rate:494:5"},
            {"text": "x", "url": AUTHORIZE},
            id="url and callback_data: the url wins",
        ),
        pytest.param(
            {"text": "x", "url": "", "callback_data": "rate:494:5"},
            {"text": "x", "callback_data": "rate:494:5"},
            id="an empty url is none",
        ),
    ],
)
async def test_a_url_button_is_kept_as_the_bot_api_keeps_it(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    telegram_world: TelegramWorld,
    button: dict[str, Any],
    kept: dict[str, Any],
) -> None:
    status, answer = await send(http, sandbox, telegram_world, button)
    assert status == 200, answer
    assert answer["result"]["reply_markup"] == {"inline_keyboard": [[kept]]}


@pytest.mark.parametrize(
    ("button", "description"),
    [
        pytest.param({"text": "x"}, NO_ACTION, id="no action"),
        pytest.param({"text": "x", "callback_data": ""}, NO_ACTION, id="empty callback_data"),
        pytest.param(
            {"text": "x", "url": "javascript:alert(1)"},
            "Bad Request: inline keyboard button URL 'javascript:alert(1)' is invalid: "
            "Unsupported URL protocol",
            id="javascript",
        ),
        pytest.param(
            {"text": "x", "url": "data:text/html,<script>alert(1)</script>"},
            "Bad Request: inline keyboard button URL 'data:text/html,<script>alert(1)</script>'"
            " is invalid: Unsupported URL protocol",
            id="data",
        ),
        pytest.param(
            {"text": "x", "url": "ftp://example.com"},
            "Bad Request: inline keyboard button URL 'ftp://example.com' is invalid: "
            "Unsupported URL protocol",
            id="ftp",
        ),
        pytest.param(
            {"text": "x", "url": "not-a-url"},
            "Bad Request: inline keyboard button URL 'not-a-url' is invalid: Wrong HTTP URL",
            id="no scheme",
        ),
    ],
)
async def test_a_button_the_bot_api_refuses_is_refused_and_nothing_is_sent(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    telegram_world: TelegramWorld,
    button: dict[str, Any],
    description: str,
) -> None:
    before = len(telegram_world.messages)
    status, answer = await send(http, sandbox, telegram_world, button)
    assert (status, answer["description"]) == (400, description)
    assert len(telegram_world.messages) == before


async def test_a_press_on_a_url_button_sends_the_bot_no_update(
    http: aiohttp.ClientSession, sandbox: TestServer, telegram_world: TelegramWorld
) -> None:
    link = {"text": "Связать", "url": AUTHORIZE}
    status, _ = await send(
        http, sandbox, telegram_world, link, {"text": "5", "callback_data": "r"}
    )
    assert status == 200
    press = sandbox.make_url("/_sandbox/telegram/press")
    body = {"user_id": 5001, "chat_id": SUPERVISORS_GROUP, "button": 0}
    async with http.post(press, json=body) as answer:
        assert (answer.status, await answer.json()) == (200, {"update": None})
    assert telegram_world.updates == []
    async with http.post(press, json=body | {"button": 1}) as answer:
        pressed = await answer.json()
    assert pressed["update"]["callback_query"]["data"] == "r"  # the callback button beside it
