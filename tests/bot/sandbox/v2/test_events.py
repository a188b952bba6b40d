"""ONIMBOTV2* events, the fetch-mode queue and Event.get, Command.answer (§00 item 9, §1.11)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from bot.bitrix.form import unflatten_form
from bot.sandbox.app import EVENTS
from bot.sandbox.events import EventSender
from bot.sandbox.imbot import ANSWER_WINDOW
from bot.sandbox.portal import Portal
from bot.sandbox.v2.queue import RETENTION
from tests.bot.sandbox.test_rest import rest
from tests.bot.sandbox.v2.test_methods import TOKEN, register_rate, register_v2, v2
from tests.harness import webhook_url

HOUR = 3600.0


@dataclass
class Fetching:
    http: aiohttp.ClientSession
    sandbox: TestServer
    portal: Portal
    sender: EventSender
    bot_id: int
    command_id: int

    async def fetch(self, **params: Any) -> dict[str, Any]:
        status, answer = await v2(
            self.http, self.sandbox, "Event.get", botId=self.bot_id, botToken=TOKEN, **params
        )
        assert status == 200, answer
        result: dict[str, Any] = answer["result"]
        return result


@pytest.fixture
async def fetching(http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal) -> Fetching:
    """A fetch-mode bot with a common `/rate` command, supporting open lines."""
    bot_id = await register_v2(http, sandbox, isSupportOpenline=True)
    command_id = await register_rate(http, sandbox, bot_id)
    return Fetching(http, sandbox, portal, sandbox.app[EVENTS], bot_id, command_id)


def _has_key(value: Any, key: str) -> bool:
    if isinstance(value, dict):
        return key in value or any(_has_key(v, key) for v in value.values())
    if isinstance(value, list):
        return any(_has_key(v, key) for v in value)
    return False


async def test_a_command_is_queued_as_a_json_typed_event_without_auth(
    fetching: Fetching,
) -> None:
    [delivery] = await fetching.sender.send_message(27, fetching.bot_id, "/rate 494 5 Молодец")
    assert delivery.url == f"queue:{fetching.bot_id}"
    result = await fetching.fetch()
    [event] = result["events"]
    assert event["type"] == "ONIMBOTV2COMMANDADD"
    assert isinstance(event["eventId"], int)
    data = event["data"]
    assert data["command"] == {
        "id": fetching.command_id,
        "command": "/rate",
        "params": "494 5 Молодец",
        "context": "textarea",
    }
    assert (data["message"]["text"], data["message"]["authorId"]) == ("/rate 494 5 Молодец", 27)
    assert (data["chat"]["dialogId"], data["user"]["id"], data["bot"]["id"]) == (
        "27",
        27,
        fetching.bot_id,
    )
    assert data["bot"]["eventMode"] == "fetch"
    assert not _has_key(event, "auth")
    assert (result["nextOffset"], result["hasMore"]) == (event["eventId"] + 1, False)


@pytest.mark.parametrize(
    ("text", "params"),
    [
        ("/rate 494 5 a\n/rate 495 4 b\n/rate 496 3 c", ["494 5 a", "495 4 b", "496 3 c"]),
        ("/rate 494 5 a\n/rate 494 5 a", ["494 5 a", "494 5 a"]),
        ("итоги:\n/rate 494 5\nвсё", ["494 5"]),
    ],
)
async def test_each_command_occurrence_is_its_own_event(
    fetching: Fetching, text: str, params: list[str]
) -> None:
    await fetching.sender.send_message(27, "chat2001", text)
    events = (await fetching.fetch())["events"]
    assert [e["type"] for e in events] == ["ONIMBOTV2COMMANDADD"] * len(params)
    assert [e["data"]["command"]["params"] for e in events] == params
    assert len({e["data"]["message"]["id"] for e in events}) == 1
    assert [e["data"]["chat"]["dialogId"] for e in events] == ["chat2001"] * len(params)


async def test_a_command_in_an_open_line_carries_the_session_fields(fetching: Fetching) -> None:
    await fetching.sender.send_message(27, "chat1157", "/rate 5 Молодец")
    [event] = (await fetching.fetch())["events"]
    chat = event["data"]["chat"]
    assert (chat["entityType"], chat["entityData1"].split("|")[5]) == ("LINES", "494")


async def test_a_plain_message_to_the_bot_is_onimbotv2messageadd(fetching: Fetching) -> None:
    await fetching.sender.send_message(27, fetching.bot_id, "привет")
    [event] = (await fetching.fetch())["events"]
    assert event["type"] == "ONIMBOTV2MESSAGEADD"
    assert (event["data"]["message"]["text"], event["data"]["language"]) == ("привет", "ru")
    assert "command" not in event["data"]


async def test_join_and_delete_are_queued_too(fetching: Fetching) -> None:
    await fetching.sender.join(fetching.bot_id, 27, 2001)
    [event] = (await fetching.fetch())["events"]
    assert (event["type"], event["data"]["dialogId"]) == ("ONIMBOTV2JOINCHAT", "chat2001")
    assert fetching.bot_id in fetching.portal.chats[2001].members
    delivery = await fetching.sender.delete_bot(fetching.bot_id)
    assert (delivery.event, delivery.form["bot"]["id"]) == ("ONIMBOTV2DELETE", fetching.bot_id)


async def queue_messages(fetching: Fetching, count: int) -> list[int]:
    for number in range(count):
        await fetching.sender.send_message(27, fetching.bot_id, f"сообщение {number}")
    return [e.event_id for e in fetching.portal.queue_of(fetching.bot_id).events]


@pytest.mark.parametrize(
    ("limit", "pages"),
    [(2, [2, 2, 1]), (5, [5]), (1000, [5]), (0, [1, 1, 1, 1, 1]), (5000, [5])],
)
async def test_event_get_pages_by_limit_and_acknowledges_by_offset(
    fetching: Fetching, limit: int, pages: list[int]
) -> None:
    ids = await queue_messages(fetching, 5)
    seen: list[int] = []
    sizes: list[int] = []
    offset: dict[str, int] = {}
    more = True
    while more:
        result = await fetching.fetch(limit=limit, **offset)
        sizes.append(len(result["events"]))
        seen += [e["eventId"] for e in result["events"]]
        offset, more = {"offset": result["nextOffset"]}, result["hasMore"]
    assert (sizes, seen) == (pages, ids)
    assert (await fetching.fetch(**offset))["events"] == []


async def test_unacknowledged_events_are_fetched_again(fetching: Fetching) -> None:
    ids = await queue_messages(fetching, 3)
    first = await fetching.fetch(limit=2)
    again = await fetching.fetch(limit=2)  # no offset: nothing was acknowledged
    assert [e["eventId"] for e in again["events"]] == [e["eventId"] for e in first["events"]]
    after = await fetching.fetch(offset=ids[1])  # acknowledges only the first
    assert [e["eventId"] for e in after["events"]] == ids[1:]


@pytest.mark.parametrize(
    ("age", "kept"), [(23 * HOUR, True), (RETENTION - 60, True), (RETENTION + 1, False)]
)
async def test_unacknowledged_events_are_kept_24_hours(
    fetching: Fetching, age: float, kept: bool
) -> None:
    await queue_messages(fetching, 1)
    fetching.portal.advance_clock(age)
    result = await fetching.fetch()
    assert len(result["events"]) == (1 if kept else 0)


async def test_a_webhook_mode_bot_gets_the_event_posted_as_a_php_form(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    aiohttp_server: AiohttpServer,
) -> None:
    bodies: list[str] = []

    async def record(request: web.Request) -> web.Response:
        bodies.append(await request.text())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", record)
    handler: TestServer = await aiohttp_server(app)
    bot_id = await register_v2(
        http, sandbox, eventMode="webhook", webhookUrl=str(handler.make_url("/hook"))
    )
    command_id = await register_rate(http, sandbox, bot_id)
    [delivery] = await sandbox.app[EVENTS].send_message(27, bot_id, "/rate 494 5 Молодец")
    assert delivery.status == 200
    form = unflatten_form(parse_qsl(bodies[0], keep_blank_values=True))
    assert form["event"] == "ONIMBOTV2COMMANDADD"
    data = form["data"]
    assert (data["bot"]["id"], data["command"]["id"]) == (str(bot_id), str(command_id))
    assert data["message"]["isSystem"] == "0"  # every scalar a string (events.md)
    assert form["auth"]["application_token"] == portal.bots[bot_id].application_token
    assert data["bot"]["auth"]["application_token"] == form["auth"]["application_token"]
    assert portal.queue_of(bot_id).events == []


@pytest.mark.parametrize(
    ("chat", "member", "late", "posted"),
    [
        ("27", True, False, {"system": False, "to_customer": False}),
        ("chat2001", False, False, {"system": True}),  # not a member: a system answer
        ("chat1157", True, False, {"system": False, "to_customer": True}),  # as v1 (§00 7)
        ("chat1157", False, False, {"system": True, "to_customer": False}),
        ("27", True, True, None),  # after the window: true, and nothing posted (§0 item 13)
    ],
)
async def test_command_answer_follows_the_v1_rules(
    fetching: Fetching, chat: str, member: bool, late: bool, posted: dict[str, Any] | None
) -> None:
    if chat.startswith("chat") and member:
        fetching.portal.chats[int(chat.removeprefix("chat"))].members.add(fetching.bot_id)
    to: int | str = fetching.bot_id if chat == "27" else chat
    await fetching.sender.send_message(27, to, "/rate 494 5")
    [event] = (await fetching.fetch())["events"]
    if late:
        fetching.portal.advance_clock(ANSWER_WINDOW + 1)
    status, answer = await v2(
        fetching.http,
        fetching.sandbox,
        "Command.answer",
        botId=fetching.bot_id,
        botToken=TOKEN,
        commandId=event["data"]["command"]["id"],
        messageId=event["data"]["message"]["id"],
        dialogId=event["data"]["chat"]["dialogId"],
        fields={"message": "Оценка сохранена"},
    )
    assert (status, answer["result"]) == (200, {"result": True})
    answers = [m for m in fetching.portal.messages.values() if m.author_id == fetching.bot_id]
    if posted is None:
        assert answers == []
        return
    [message] = answers
    assert {key: getattr(message, key) for key in posted} == posted
    assert message.via == "imbot.v2.Command.answer"


async def test_a_keyboard_click_is_a_command_event_in_keyboard_context(
    fetching: Fetching,
) -> None:
    _, sent = await v2(
        fetching.http,
        fetching.sandbox,
        "Chat.Message.send",
        botId=fetching.bot_id,
        botToken=TOKEN,
        dialogId="27",
        fields={
            "message": "Оценка?",
            "keyboard": [{"TEXT": "5", "COMMAND": "rate", "COMMAND_PARAMS": "494 5"}],
        },
    )
    await fetching.sender.click(27, sent["result"]["id"], 0)
    [event] = (await fetching.fetch())["events"]
    assert (event["data"]["command"]["context"], event["data"]["command"]["params"]) == (
        "keyboard",
        "494 5",
    )


@pytest.mark.parametrize(
    ("switch", "event"), [(False, "ONIMCOMMANDADD"), (True, "ONIMBOTV2COMMANDADD")]
)
async def test_a_classic_bot_switched_to_fetch_gets_v2_events_only_where_the_portal_allows(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    switch: bool,
    event: str,
) -> None:
    """migration.md: a bot keeps the event format of the API it was registered through;
    issue 9 assumes Bot.update switches it. `Portal.classic_bots_switch` picks the world."""
    portal.classic_bots_switch = switch
    _, registered = await rest(
        http,
        webhook_url(sandbox) + "imbot.register",
        json={
            "CODE": "rating_bot",
            "EVENT_HANDLER": "http://127.0.0.1:9/b24",  # nobody listens: recorded, not sent
            "PROPERTIES": {"NAME": "Оценка"},
            "CLIENT_ID": TOKEN,
        },
    )
    bot_id = registered["result"]
    await rest(
        http,
        webhook_url(sandbox) + "imbot.command.register",
        json={
            "BOT_ID": bot_id,
            "COMMAND": "rate",
            "EVENT_COMMAND_ADD": "http://127.0.0.1:9/b24",
            "LANG": [{"LANGUAGE_ID": "ru", "TITLE": "Оценить"}],
            "CLIENT_ID": TOKEN,
        },
    )
    status, _ = await v2(
        http, sandbox, "Bot.update", botId=bot_id, botToken=TOKEN, fields={"eventMode": "fetch"}
    )
    assert status == 200
    [delivery] = await sandbox.app[EVENTS].send_message(27, bot_id, "/rate 494 5")
    assert delivery.event == event
    assert len(portal.queue_of(bot_id).events) == (1 if switch else 0)


async def test_event_get_works_inside_batch_and_acknowledges_there(fetching: Fetching) -> None:
    ids = await queue_messages(fetching, 2)
    query = f"botId={fetching.bot_id}&botToken={TOKEN}"
    cmd = {"first": f"imbot.v2.Event.get?{query}&limit=1"}
    _, body = await rest(fetching.http, webhook_url(fetching.sandbox) + "batch", json={"cmd": cmd})
    [event] = body["result"]["result"]["first"]["events"]
    assert event["eventId"] == ids[0]
    cmd = {"next": f"imbot.v2.Event.get?{query}&offset={ids[1]}"}
    _, body = await rest(fetching.http, webhook_url(fetching.sandbox) + "batch", json={"cmd": cmd})
    assert [e["eventId"] for e in body["result"]["result"]["next"]["events"]] == ids[1:]
