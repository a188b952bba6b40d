"""imbot.* in the sandbox (protocol notes §6): CLIENT_ID rules, bots, commands, messages."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.sandbox.imbot import ANSWER_WINDOW
from bot.sandbox.portal import Portal
from tests.bot.sandbox.test_rest import rest
from tests.harness import webhook_url

HANDLER = "https://bot.example.com/b24/events/s3cret"


async def call(
    http: aiohttp.ClientSession, sandbox: TestServer, method: str, **params: Any
) -> tuple[int, dict[str, Any]]:
    return await rest(http, webhook_url(sandbox) + method, json=params)


async def register_bot(
    http: aiohttp.ClientSession, sandbox: TestServer, client_id: str = "c1", **extra: Any
) -> int:
    status, body = await call(
        http,
        sandbox,
        "imbot.register",
        CODE=extra.pop("CODE", "rating_bot"),
        EVENT_HANDLER=HANDLER,
        PROPERTIES={"NAME": "Оценка диалогов"},
        CLIENT_ID=client_id,
        **extra,
    )
    assert status == 200, body
    bot_id: int = body["result"]
    return bot_id


async def register_command(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    bot_id: int,
    client_id: str = "c1",
    **extra: Any,
) -> int:
    status, body = await call(
        http,
        sandbox,
        "imbot.command.register",
        BOT_ID=bot_id,
        COMMAND=extra.pop("COMMAND", "rate"),
        EVENT_COMMAND_ADD=HANDLER,
        LANG=[{"LANGUAGE_ID": "ru", "TITLE": "Оценить", "PARAMS": "сессия оценка"}],
        CLIENT_ID=client_id,
        **extra,
    )
    assert status == 200, body
    command_id: int = body["result"]
    return command_id


async def test_a_webhook_registration_needs_a_client_id(
    http: aiohttp.ClientSession, sandbox: TestServer
) -> None:
    status, body = await call(
        http, sandbox, "imbot.register", CODE="b", EVENT_HANDLER=HANDLER, PROPERTIES={"NAME": "B"}
    )
    assert (status, body["error"]) == (403, "ACCESS_DENIED")
    assert body["error_description"] == "Access denied! Client ID not specified"


@pytest.mark.parametrize(
    ("handler", "stored"),
    [(HANDLER, f"{HANDLER}?CLIENT_ID=c1"), (f"{HANDLER}?x=1", f"{HANDLER}?x=1&CLIENT_ID=c1")],
)
async def test_handler_urls_get_the_client_id_appended(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal, handler: str, stored: str
) -> None:
    _, body = await call(
        http,
        sandbox,
        "imbot.register",
        CODE="b",
        EVENT_HANDLER=handler,
        PROPERTIES={"NAME": "B"},
        CLIENT_ID="c1",
        OPENLINE="Y",
    )
    bot = portal.bots[body["result"]]
    assert bot.handlers == {
        "EVENT_MESSAGE_ADD": stored,
        "EVENT_WELCOME_MESSAGE": stored,
        "EVENT_BOT_DELETE": stored,
        "EVENT_MESSAGE_UPDATE": stored,
        "EVENT_MESSAGE_DELETE": stored,
    }
    assert (bot.app_id, bot.openline) == ("customc1", True)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"EVENT_HANDLER": HANDLER, "PROPERTIES": {"NAME": "B"}}, "CODE_ERROR"),
        ({"CODE": "b", "PROPERTIES": {"NAME": "B"}}, "EVENT_MESSAGE_ADD_ERROR"),
        (
            {"CODE": "b", "EVENT_HANDLER": "ftp://x", "PROPERTIES": {"NAME": "B"}},
            "EVENT_MESSAGE_ADD_ERROR",
        ),
        ({"CODE": "b", "EVENT_HANDLER": HANDLER}, "NAME_ERROR"),
    ],
)
async def test_registration_errors(
    http: aiohttp.ClientSession, sandbox: TestServer, params: dict[str, Any], code: str
) -> None:
    status, body = await call(http, sandbox, "imbot.register", CLIENT_ID="c1", **params)
    assert (status, body["error"]) == (400, code)


async def test_registering_a_code_again_answers_the_same_bot(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    first = await register_bot(http, sandbox)
    assert await register_bot(http, sandbox) == first
    assert len(portal.bots) == 1
    _, body = await call(http, sandbox, "imbot.bot.list")
    assert body["result"] == {
        str(first): {"ID": first, "NAME": "Оценка диалогов", "CODE": "rating_bot", "OPENLINE": "N"}
    }


async def test_a_taken_code_answers_the_other_application_s_bot(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    """bot.list shows every application's bots; register with a taken code answers the
    other application's bot, which only its owner may change (§00 item 8)."""
    theirs = await register_bot(http, sandbox, client_id="theirs")
    assert await register_bot(http, sandbox, client_id="ours") == theirs
    _, listed = await call(http, sandbox, "imbot.bot.list")
    assert [bot["CODE"] for bot in listed["result"].values()] == ["rating_bot"]
    status, body = await call(
        http, sandbox, "imbot.update", BOT_ID=theirs, CLIENT_ID="ours", FIELDS={"TYPE": "B"}
    )
    assert (status, body["error"]) == (400, "APP_ID_ERROR")
    assert portal.bots[theirs].app_id == "customtheirs"


async def test_update_changes_handlers_and_properties(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    bot_id = await register_bot(http, sandbox)
    status, body = await call(
        http,
        sandbox,
        "imbot.update",
        BOT_ID=bot_id,
        CLIENT_ID="c1",
        FIELDS={
            "EVENT_HANDLER": "https://new.example.com/h",
            "OPENLINE": "Y",
            "PROPERTIES": {"NAME": "Новый"},
        },
    )
    assert (status, body["result"]) == (200, True)
    bot = portal.bots[bot_id]
    assert bot.handlers["EVENT_MESSAGE_ADD"] == "https://new.example.com/h?CLIENT_ID=c1"
    assert (bot.name, bot.openline) == ("Новый", True)


async def test_another_client_id_may_not_touch_the_bot(
    http: aiohttp.ClientSession, sandbox: TestServer
) -> None:
    bot_id = await register_bot(http, sandbox)
    refused: list[tuple[str, dict[str, Any]]] = [
        ("imbot.unregister", {"BOT_ID": bot_id}),
        ("imbot.update", {"BOT_ID": bot_id, "FIELDS": {"CODE": "x"}}),
        ("imbot.command.register", {"BOT_ID": bot_id, "COMMAND": "rate"}),
    ]
    for method, params in refused:
        status, body = await call(http, sandbox, method, CLIENT_ID="other", **params)
        assert (status, body["error"]) == (400, "APP_ID_ERROR")


async def test_unregister_removes_the_bot_and_its_commands(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    bot_id = await register_bot(http, sandbox)
    await register_command(http, sandbox, bot_id)
    status, body = await call(http, sandbox, "imbot.unregister", BOT_ID=bot_id, CLIENT_ID="c1")
    assert (status, body["result"]) == (200, True)
    assert (portal.bots, portal.commands) == ({}, {})
    status, body = await call(http, sandbox, "imbot.unregister", BOT_ID=bot_id, CLIENT_ID="c1")
    assert (status, body["error"]) == (400, "BOT_ID_ERROR")


async def test_commands_register_once_and_unregister(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    bot_id = await register_bot(http, sandbox)
    command_id = await register_command(http, sandbox, bot_id, COMMON="Y")
    assert await register_command(http, sandbox, bot_id) == command_id
    command = portal.commands[command_id]
    assert (command.command, command.common, command.handler) == (
        "rate",
        True,
        f"{HANDLER}?CLIENT_ID=c1",
    )
    status, _ = await call(
        http, sandbox, "imbot.command.unregister", COMMAND_ID=command_id, CLIENT_ID="c1"
    )
    assert (status, portal.commands) == (200, {})


@pytest.mark.parametrize(
    ("params", "code"),
    [
        (
            {
                "COMMAND": "",
                "EVENT_COMMAND_ADD": HANDLER,
                "LANG": [{"LANGUAGE_ID": "ru", "TITLE": "t"}],
            },
            "COMMAND_ERROR",
        ),
        (
            {
                "COMMAND": "ra te",
                "EVENT_COMMAND_ADD": HANDLER,
                "LANG": [{"LANGUAGE_ID": "ru", "TITLE": "t"}],
            },
            "COMMAND_ERROR",
        ),
        (  # "Only Latin letters and numbers can be used" (protocol notes §6.4)
            {
                "COMMAND": "оценка",
                "EVENT_COMMAND_ADD": HANDLER,
                "LANG": [{"LANGUAGE_ID": "ru", "TITLE": "t"}],
            },
            "COMMAND_ERROR",
        ),
        (
            {"COMMAND": "rate", "LANG": [{"LANGUAGE_ID": "ru", "TITLE": "t"}]},
            "EVENT_COMMAND_ADD_ERROR",
        ),
        ({"COMMAND": "rate", "EVENT_COMMAND_ADD": HANDLER, "LANG": []}, "LANG_ERROR"),
        (
            {"COMMAND": "rate", "EVENT_COMMAND_ADD": HANDLER, "LANG": [{"TITLE": "t"}]},
            "LANG_ERROR",
        ),
    ],
)
async def test_command_registration_errors(
    http: aiohttp.ClientSession, sandbox: TestServer, params: dict[str, Any], code: str
) -> None:
    bot_id = await register_bot(http, sandbox)
    status, body = await call(
        http, sandbox, "imbot.command.register", BOT_ID=bot_id, CLIENT_ID="c1", **params
    )
    assert (status, body["error"]) == (400, code)


@pytest.mark.parametrize(
    ("dialog", "extra", "to_customer"),
    [
        ("27", {}, False),
        ("chat2001", {}, False),
        ("chat1157", {}, True),
        ("chat1157", {"SKIP_CONNECTOR": "Y"}, False),
        ("chat1157", {"SYSTEM": "Y"}, False),
        ("chat1157 silent", {}, False),
        ("chat1157 marked only by CHAT_TYPE=L", {}, True),
        ("chat1157 marked only by ENTITY_TYPE=LINES", {}, True),
    ],
)
async def test_the_connector_forwards_to_the_customer_what_is_not_system_or_skip_connector(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    dialog: str,
    extra: dict[str, str],
    to_customer: bool,
) -> None:
    """§00 item 7: every non-system message of an open line goes to the customer, unless
    SKIP_CONNECTOR=Y or the chat is in silent mode (CHAT_ENTITY_DATA_3)."""
    bot_id = await register_bot(http, sandbox)
    line = portal.chats[1157]
    line.members.add(bot_id)
    portal.chats[2001].members.add(bot_id)
    if "silent" in dialog:
        line.entity_data_3 = "Y"
    if "CHAT_TYPE" in dialog:
        line.entity_type = ""
    if "ENTITY_TYPE" in dialog:
        line.type = "C"
    dialog = dialog.split(maxsplit=1)[0]
    status, body = await call(
        http,
        sandbox,
        "imbot.message.add",
        DIALOG_ID=dialog,
        MESSAGE="Сохранено",
        CLIENT_ID="c1",
        **extra,
    )
    assert status == 200
    message = portal.messages[body["result"]]
    assert (message.author_id, message.text, message.to_customer) == (
        bot_id,
        "Сохранено",
        to_customer,
    )


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"MESSAGE": "x"}, "DIALOG_ID_EMPTY"),
        ({"DIALOG_ID": "27", "MESSAGE": " "}, "MESSAGE_EMPTY"),
        ({"DIALOG_ID": "27", "MESSAGE": "x", "KEYBOARD": "bad"}, "KEYBOARD_ERROR"),
    ],
)
async def test_message_errors(
    http: aiohttp.ClientSession, sandbox: TestServer, params: dict[str, Any], code: str
) -> None:
    await register_bot(http, sandbox)
    status, body = await call(http, sandbox, "imbot.message.add", CLIENT_ID="c1", **params)
    assert (status, body["error"]) == (400, code)


# (dialog, the bot is a member, SYSTEM, status, posted as a system message)
MEMBERSHIP: list[tuple[str, bool, str | None, int, bool | None]] = [
    ("27", False, None, 200, False),  # the private chat with the bot
    ("chat2001", True, None, 200, False),
    ("chat2001", False, None, 400, None),
    ("chat2001", False, "Y", 200, True),
    ("chat1157", False, None, 400, None),
    ("chat1157", True, None, 200, False),
]


@pytest.mark.parametrize(("dialog", "member", "system", "status", "posted_system"), MEMBERSHIP)
async def test_a_bot_posts_only_into_chats_it_is_a_member_of_unless_system(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    dialog: str,
    member: bool,
    system: str | None,
    status: int,
    posted_system: bool | None,
) -> None:
    """A refused post is 400 WRONG_REQUEST "Message isn't added" (§00 item 6)."""
    bot_id = await register_bot(http, sandbox)
    if member:
        portal.chats[int(dialog.removeprefix("chat"))].members.add(bot_id)
    extra = {"SYSTEM": system} if system else {}
    got, body = await call(
        http, sandbox, "imbot.message.add", DIALOG_ID=dialog, MESSAGE="x", CLIENT_ID="c1", **extra
    )
    assert got == status
    if posted_system is None:
        assert (body["error"], body["error_description"]) == (
            "WRONG_REQUEST",
            "Message isn't added",
        )
    else:
        assert portal.messages[body["result"]].system is posted_system


async def test_a_message_can_be_updated_by_its_bot(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    await register_bot(http, sandbox)
    _, body = await call(
        http,
        sandbox,
        "imbot.message.add",
        DIALOG_ID="27",
        MESSAGE="Оцените",
        CLIENT_ID="c1",
        KEYBOARD={"BUTTONS": [{"TEXT": "5", "COMMAND": "rate", "COMMAND_PARAMS": "494 5"}]},
    )
    status, _ = await call(
        http,
        sandbox,
        "imbot.message.update",
        MESSAGE_ID=body["result"],
        MESSAGE="Готово",
        KEYBOARD="N",
        CLIENT_ID="c1",
    )
    assert status == 200
    assert (portal.messages[body["result"]].text, portal.messages[body["result"]].keyboard) == (
        "Готово",
        None,
    )


async def bot_message(http: aiohttp.ClientSession, sandbox: TestServer) -> int:
    """A message of the bot (client c1) in its private chat with user 27."""
    _, body = await call(
        http, sandbox, "imbot.message.add", DIALOG_ID="27", MESSAGE="Оцените", CLIENT_ID="c1"
    )
    message_id: int = body["result"]
    return message_id


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"MESSAGE_ID": 0}, (400, "MESSAGE_ID_ERROR")),
        ({"MESSAGE_ID": "another bot's"}, (400, "CANT_EDIT_MESSAGE")),
        ({"MESSAGE_ID": "a user's"}, (400, "CANT_EDIT_MESSAGE")),
        ({"CLIENT_ID": None}, (403, "ACCESS_DENIED")),
        ({"CLIENT_ID": "c2"}, (400, "BOT_ID_ERROR")),
        ({"KEYBOARD": "yes"}, (400, "KEYBOARD_ERROR")),
    ],
)
async def test_a_message_update_is_refused_as_bitrix24_refuses_it(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    change: dict[str, Any],
    error: tuple[int, str],
) -> None:
    await register_bot(http, sandbox)
    other = await register_bot(http, sandbox, client_id="c3", CODE="other_bot")
    message_id = await bot_message(http, sandbox)
    chat_id = portal.messages[message_id].chat_id
    ids: dict[Any, Any] = {
        "another bot's": portal.post(chat_id, other, "чужое").id,
        "a user's": portal.post(chat_id, 27, "/rate 494").id,
    }
    params: dict[str, Any] = {"MESSAGE_ID": message_id, "MESSAGE": "Готово", "CLIENT_ID": "c1"}
    params |= change
    params = {k: ids.get(v, v) for k, v in params.items() if v is not None}
    status, answer = await call(http, sandbox, "imbot.message.update", **params)
    assert (status, answer["error"]) == error
    assert portal.messages[message_id].text == "Оцените"


@pytest.mark.parametrize(
    ("age", "change", "outcome"),
    [
        (3 * 24 * 3600 - 60, {"KEYBOARD": ""}, "edited"),
        (0, {"MESSAGE": " "}, "deleted"),
        (3 * 24 * 3600 + 1, {"MESSAGE": "x"}, "CANT_EDIT_MESSAGE"),
    ],
)
async def test_a_message_can_be_edited_for_three_days_and_emptied_away(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    age: float,
    change: dict[str, str],
    outcome: str,
) -> None:
    await register_bot(http, sandbox)
    message_id = await bot_message(http, sandbox)
    portal.advance_clock(age)
    status, answer = await call(
        http, sandbox, "imbot.message.update", MESSAGE_ID=message_id, CLIENT_ID="c1", **change
    )
    if outcome == "CANT_EDIT_MESSAGE":
        assert (status, answer["error"]) == (400, outcome)
    else:
        assert (status, message_id in portal.messages) == (200, outcome == "edited")


async def _command_message(portal: Portal, command_id: int, chat_id: int, author: int = 27) -> int:
    message = portal.post(chat_id, author, "/rate 494 5", via="user")
    portal.answer_grants[(command_id, message.id)] = portal.now()
    return message.id


async def test_a_command_answer_is_posted_within_ten_minutes_and_dropped_after(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    bot_id = await register_bot(http, sandbox)
    command_id = await register_command(http, sandbox, bot_id)
    chat = portal.private_chat(27, bot_id)
    message_id = await _command_message(portal, command_id, chat.id)
    answer = {
        "COMMAND_ID": command_id,
        "MESSAGE_ID": message_id,
        "MESSAGE": "Сохранено",
        "CLIENT_ID": "c1",
    }
    status, body = await call(http, sandbox, "imbot.command.answer", **answer)
    assert status == 200
    assert portal.messages[body["result"]].text == "Сохранено"
    portal.advance_clock(ANSWER_WINDOW + 1)
    count = len(portal.messages)
    status, body = await call(http, sandbox, "imbot.command.answer", **answer)
    assert (status, body["result"]) == (200, True)
    assert len(portal.messages) == count


@pytest.mark.parametrize(
    ("chat_id", "member", "system", "to_customer"),
    [
        (2001, False, True, False),
        (2001, True, False, False),
        (1157, False, True, False),  # an open line: a system message stays with the staff
        (1157, True, False, True),  # the connector forwards a member's answer (§00 item 7)
    ],
)
async def test_a_command_answer_is_a_system_message_where_the_bot_is_no_member(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    chat_id: int,
    member: bool,
    system: bool,
    to_customer: bool,
) -> None:
    bot_id = await register_bot(http, sandbox, OPENLINE="Y")
    command_id = await register_command(http, sandbox, bot_id, COMMON="Y")
    if member:
        portal.chats[chat_id].members.add(bot_id)
    message_id = await _command_message(portal, command_id, chat_id)
    _, body = await call(
        http,
        sandbox,
        "imbot.command.answer",
        COMMAND_ID=command_id,
        MESSAGE_ID=message_id,
        MESSAGE="ok",
        CLIENT_ID="c1",
    )
    answer = portal.messages[body["result"]]
    assert (answer.system, answer.to_customer) == (system, to_customer)


async def test_a_command_answer_needs_a_command_it_received(
    http: aiohttp.ClientSession, sandbox: TestServer
) -> None:
    status, body = await call(
        http,
        sandbox,
        "imbot.command.answer",
        COMMAND_ID=1,
        MESSAGE_ID=1,
        MESSAGE="x",
        CLIENT_ID="c1",
    )
    assert (status, body["error"]) == (400, "COMMAND_ID_ERROR")
