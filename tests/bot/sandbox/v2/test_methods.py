"""imbot.v2.* in the sandbox (protocol notes §00 item 9): bots, commands, messages, ownership."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.sandbox.portal import Portal
from tests.bot.sandbox.test_rest import rest
from tests.harness import webhook_url

TOKEN = "tok-rating-bot"
PROPERTIES = {"name": "Оценка", "lastName": "диалогов"}


async def v2(
    http: aiohttp.ClientSession, sandbox: TestServer, method: str, **params: Any
) -> tuple[int, dict[str, Any]]:
    """One imbot.v2.<method> call through the main incoming webhook, as JSON."""
    return await rest(http, webhook_url(sandbox) + f"imbot.v2.{method}", json=params)


async def register_v2(
    http: aiohttp.ClientSession, sandbox: TestServer, token: str = TOKEN, **fields: Any
) -> int:
    body = {"code": "rating_bot", "botToken": token, "properties": PROPERTIES} | fields
    status, answer = await v2(http, sandbox, "Bot.register", fields=body)
    assert status == 200, answer
    bot_id: int = answer["result"]["bot"]["id"]
    return bot_id


async def register_rate(
    http: aiohttp.ClientSession, sandbox: TestServer, bot_id: int, token: str = TOKEN, **more: Any
) -> int:
    fields = {"command": "rate", "common": True, "title": {"ru": "Оценить", "en": "Rate"}} | more
    status, answer = await v2(
        http, sandbox, "Command.register", botId=bot_id, botToken=token, fields=fields
    )
    assert status == 200, answer
    command_id: int = answer["result"]["command"]["id"]
    return command_id


async def test_a_bot_registers_in_fetch_mode_by_default(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    status, answer = await v2(
        http,
        sandbox,
        "Bot.register",
        fields={"code": "rating_bot", "botToken": TOKEN, "properties": PROPERTIES},
    )
    assert status == 200
    bot = answer["result"]["bot"]
    assert (bot["eventMode"], bot["appId"], bot["type"]) == ("fetch", f"custom{TOKEN}", "bot")
    assert answer["result"]["users"][0]["name"] == "Оценка диалогов"
    assert portal.bots[bot["id"]].event_mode == "fetch"


async def test_registration_is_idempotent_per_code_within_the_application(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    first = await register_v2(http, sandbox)
    again = await register_v2(http, sandbox, properties={"name": "Другое"})
    assert again == first
    assert portal.bots[first].name == "Оценка диалогов"  # not updated by a repeat
    status, answer = await v2(
        http,
        sandbox,
        "Bot.register",
        fields={"code": "rating_bot", "botToken": "someone-else", "properties": PROPERTIES},
    )
    assert (status, answer["error"]) == (400, "BOT_CODE_ALREADY_TAKEN")


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"botToken": None}, "BOT_TOKEN_NOT_SPECIFIED"),
        ({"botToken": "x" * 41}, "BOT_REGISTER_FAILED"),
        ({"code": ""}, "BOT_CODE_REQUIRED"),
        ({"properties": {}}, "BOT_PROPERTIES_REQUIRED"),
        ({"type": "robot"}, "BOT_INVALID_TYPE"),
        ({"eventMode": "push"}, "BOT_INVALID_EVENT_MODE"),
        ({"eventMode": "webhook"}, "BOT_WEBHOOK_URL_REQUIRED"),
        ({"eventMode": "webhook", "webhookUrl": "ftp://bot/"}, "BOT_INVALID_CALLBACK"),
    ],
)
async def test_a_registration_the_docs_refuse_is_refused(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    fields: dict[str, Any],
    error: str,
) -> None:
    body = {"code": "rating_bot", "botToken": TOKEN, "properties": PROPERTIES} | fields
    status, answer = await v2(http, sandbox, "Bot.register", fields=body)
    assert (status, answer["error"]) == (400, error)
    assert portal.bots == {}


async def test_a_classic_bot_is_addressed_by_its_client_id_as_bot_token(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    status, answer = await rest(
        http,
        webhook_url(sandbox) + "imbot.register",
        json={
            "CODE": "rating_bot",
            "EVENT_HANDLER": "https://bot.example.com/b24",
            "PROPERTIES": {"NAME": "Оценка"},
            "CLIENT_ID": TOKEN,
        },
    )
    bot_id = answer["result"]
    assert portal.bots[bot_id].event_mode == ""  # classic: v1 events, pushed
    assert await register_v2(http, sandbox) == bot_id  # the same application's code
    status, answer = await v2(
        http, sandbox, "Bot.update", botId=bot_id, botToken=TOKEN, fields={"eventMode": "fetch"}
    )
    assert (status, answer["result"]["bot"]["eventMode"]) == (200, "fetch")
    _, listed = await v2(http, sandbox, "Bot.list", botToken=TOKEN)
    assert [b["id"] for b in listed["result"]["bots"]] == [bot_id]
    _, foreign = await v2(http, sandbox, "Bot.list", botToken="another-app")
    assert foreign["result"]["bots"] == []


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("Bot.update", {"fields": {"eventMode": "webhook", "webhookUrl": "https://evil/"}}),
        ("Bot.unregister", {}),
        ("Command.register", {"fields": {"command": "steal", "title": {"en": "x"}}}),
        ("Chat.Message.send", {"dialogId": "27", "fields": {"message": "hi"}}),
        ("Event.get", {}),
    ],
)
async def test_another_application_is_refused(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    method: str,
    params: dict[str, Any],
) -> None:
    bot_id = await register_v2(http, sandbox)
    status, answer = await v2(
        http, sandbox, method, botId=bot_id, botToken="another-app", **params
    )
    assert (status, answer["error"]) == (403, "BOT_OWNERSHIP_ERROR")
    assert portal.bots[bot_id].event_mode == "fetch"
    assert portal.messages == {}


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        ({}, 400, "BOT_TOKEN_NOT_SPECIFIED"),
        ({"botToken": TOKEN}, 400, "BOT_ID_REQUIRED"),
        ({"botToken": TOKEN, "botId": 999999}, 400, "BOT_NOT_FOUND"),
    ],
)
async def test_event_get_names_what_is_missing(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    params: dict[str, Any],
    status: int,
    error: str,
) -> None:
    await register_v2(http, sandbox)
    answer_status, answer = await v2(http, sandbox, "Event.get", **params)
    assert (answer_status, answer["error"]) == (status, error)


async def test_unregister_removes_the_bot_and_its_commands(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    bot_id = await register_v2(http, sandbox)
    await register_rate(http, sandbox, bot_id)
    status, answer = await v2(http, sandbox, "Bot.unregister", botId=bot_id, botToken=TOKEN)
    assert (status, answer["result"]) == (200, True)
    assert (portal.bots, portal.commands) == ({}, {})


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"command": ""}, "COMMAND_REQUIRED"),
        ({"command": "ra te"}, "COMMAND_NAME_INVALID"),
        ({"command": "rate", "title": None}, "COMMAND_TITLE_REQUIRED"),
    ],
)
async def test_a_command_the_docs_refuse_is_refused(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    fields: dict[str, Any],
    error: str,
) -> None:
    bot_id = await register_v2(http, sandbox)
    body = {"title": {"ru": "Оценить"}} | fields
    status, answer = await v2(
        http, sandbox, "Command.register", botId=bot_id, botToken=TOKEN, fields=body
    )
    assert (status, answer["error"]) == (400, error)
    assert portal.commands == {}


async def test_command_registration_is_idempotent_and_keeps_the_titles(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    bot_id = await register_v2(http, sandbox)
    first = await register_rate(http, sandbox, bot_id)
    assert await register_rate(http, sandbox, bot_id, common=False) == first
    command = portal.commands[first]
    assert (command.command, command.common) == ("rate", True)
    assert [(t["LANGUAGE_ID"], t["TITLE"]) for t in command.lang] == [
        ("ru", "Оценить"),
        ("en", "Rate"),
    ]


@pytest.mark.parametrize(
    ("dialog", "fields", "status", "posted"),
    [
        # the bot is a member of open-line chat 1157: the connector forwards a normal message
        ("chat1157", {"message": "x"}, 200, {"system": False, "to_customer": True}),
        ("chat1157", {"message": "x", "skipConnector": True}, 200, {"to_customer": False}),
        ("chat1157", {"message": "x", "system": "Y"}, 200, {"system": True, "to_customer": False}),
        # group chat 2001 without the bot: only a system message gets in (§00 item 6)
        ("chat2001", {"message": "x"}, 403, None),
        ("chat2001", {"message": "x", "system": True}, 200, {"system": True}),
        ("27", {"message": "x"}, 200, {"system": False, "to_customer": False}),
        ("chat1157", {"message": "  "}, 400, None),
    ],
)
async def test_message_send_follows_membership_and_connector_rules(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    dialog: str,
    fields: dict[str, Any],
    status: int,
    posted: dict[str, Any] | None,
) -> None:
    bot_id = await register_v2(http, sandbox)
    portal.chats[1157].members.add(bot_id)
    answer_status, answer = await v2(
        http,
        sandbox,
        "Chat.Message.send",
        botId=bot_id,
        botToken=TOKEN,
        dialogId=dialog,
        fields=fields,
    )
    assert answer_status == status, answer
    if posted is None:
        assert portal.messages == {}
        return
    message = portal.messages[answer["result"]["id"]]
    assert {key: getattr(message, key) for key in posted} == posted
    assert message.via == "imbot.v2.Chat.Message.send"


async def test_a_message_longer_than_20000_characters_is_cut(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    bot_id = await register_v2(http, sandbox)
    _, answer = await v2(
        http,
        sandbox,
        "Chat.Message.send",
        botId=bot_id,
        botToken=TOKEN,
        dialogId="27",
        fields={"message": "я" * 20_001},
    )
    text = portal.messages[answer["result"]["id"]].text
    assert (len(text), text[-6:]) == (20_000, " (...)")


@pytest.mark.parametrize(("has_v2", "status"), [(True, 200), (False, 404)])
async def test_revision_get_tells_whether_the_portal_has_chatbots_2(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal, has_v2: bool, status: int
) -> None:
    portal.chatbots_v2 = has_v2
    answer_status, answer = await v2(http, sandbox, "Revision.get")
    assert answer_status == status
    assert answer.get("result", {}).get("rest", 0) >= (36 if has_v2 else 0)


@pytest.mark.parametrize(
    ("params", "codes", "more"),
    [
        ({}, ["a", "b", "c"], False),
        ({"limit": 2}, ["a", "b"], True),
        ({"limit": 2, "offset": 2}, ["c"], False),
        ({"filter": {"type": "supervisor"}}, ["b"], False),
        ({"filter": {"type": "nonsense"}}, [], False),
    ],
)
async def test_bot_list_pages_the_applications_bots(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    params: dict[str, Any],
    codes: list[str],
    more: bool,
) -> None:
    for code, kind in (("a", "bot"), ("b", "supervisor"), ("c", "bot")):
        await register_v2(http, sandbox, code=code, type=kind)
    await register_v2(http, sandbox, token="another-app", code="z")
    _, answer = await v2(http, sandbox, "Bot.list", botToken=TOKEN, **params)
    assert [b["code"] for b in answer["result"]["bots"]] == codes
    assert answer["result"]["hasNextPage"] is more
