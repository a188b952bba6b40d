"""The event sender: bodies as Bitrix24 builds them, routed as Bitrix24 routes them (§1, §0)."""

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
from bot.sandbox.portal import Portal
from tests.bot.sandbox.test_keyboard import LINK, STAR, add_message, click
from tests.bot.sandbox.test_rest import rest
from tests.harness import webhook_url


@dataclass(frozen=True)
class Received:
    path: str
    query: dict[str, str]
    content_type: str
    pairs: list[tuple[str, str]]

    @property
    def form(self) -> dict[str, Any]:
        return unflatten_form(self.pairs)


@pytest.fixture
async def handler(aiohttp_server: AiohttpServer) -> tuple[TestServer, list[Received]]:
    """A bot's event handler that records what arrives."""
    received: list[Received] = []

    async def record(request: web.Request) -> web.Response:
        raw = (await request.read()).decode()
        pairs = parse_qsl(raw, keep_blank_values=True)
        received.append(Received(request.path, dict(request.query), request.content_type, pairs))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/b24/{tail:.*}", record)
    server: TestServer = await aiohttp_server(app)
    return server, received


@dataclass
class Setup:
    sender: EventSender
    portal: Portal
    received: list[Received]
    bot_id: int
    command_id: int


async def setup_bot(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    handler: tuple[TestServer, list[Received]],
    *,
    openline: str = "Y",
    common: str = "Y",
) -> Setup:
    server, received = handler
    url = webhook_url(sandbox)
    hook = str(server.make_url("/b24/events/s3cret"))
    _, bot = await rest(
        http,
        url + "imbot.register",
        json={
            "CODE": "rating_bot",
            "EVENT_HANDLER": hook,
            "OPENLINE": openline,
            "PROPERTIES": {"NAME": "Оценка"},
            "CLIENT_ID": "c1",
        },
    )
    _, command = await rest(
        http,
        url + "imbot.command.register",
        json={
            "BOT_ID": bot["result"],
            "COMMAND": "rate",
            "COMMON": common,
            "EVENT_COMMAND_ADD": hook,
            "LANG": [{"LANGUAGE_ID": "ru", "TITLE": "Оценить"}],
            "CLIENT_ID": "c1",
        },
    )
    sender = sandbox.app[EVENTS]
    return Setup(sender, sender.portal, received, bot["result"], command["result"])


async def test_a_command_to_the_bot_is_onimcommandadd_as_bitrix_builds_it(
    http: aiohttp.ClientSession, sandbox: TestServer, handler: tuple[TestServer, list[Received]]
) -> None:
    s = await setup_bot(http, sandbox, handler)
    [delivery] = await s.sender.send_message(27, s.bot_id, "/rate 494 5 Молодец")
    assert delivery.status == 200
    [event] = s.received
    assert (event.path, event.query) == ("/b24/events/s3cret", {"CLIENT_ID": "c1"})
    assert event.content_type == "application/x-www-form-urlencoded"
    flat = dict(event.pairs)
    message_id = flat["data[PARAMS][MESSAGE_ID]"]
    c = f"data[COMMAND][{s.command_id}]"
    assert {k: v for k, v in flat.items() if k.startswith(c)} == {
        f"{c}[BOT_ID]": str(s.bot_id),
        f"{c}[BOT_CODE]": "rating_bot",
        f"{c}[COMMAND]": "rate",
        f"{c}[COMMAND_ID]": str(s.command_id),
        f"{c}[COMMAND_PARAMS]": "494 5 Молодец",
        f"{c}[COMMAND_CONTEXT]": "TEXTAREA",
        f"{c}[MESSAGE_ID]": message_id,
    }
    assert flat["event"] == "ONIMCOMMANDADD"
    assert flat["data[PARAMS][MESSAGE]"] == "/rate 494 5 Молодец"
    assert (flat["data[PARAMS][DIALOG_ID]"], flat["data[PARAMS][FROM_USER_ID]"]) == ("27", "27")
    assert (flat["data[PARAMS][TO_USER_ID]"], flat["data[PARAMS][CHAT_TYPE]"]) == (
        str(s.bot_id),
        "P",
    )
    assert flat["data[PARAMS][LANGUAGE]"] == "ru"
    assert (flat["data[USER][ID]"], flat["data[USER][NAME]"]) == ("27", "Светлана Иванова")
    assert flat["auth[application_token]"] == s.portal.bots[s.bot_id].application_token
    assert flat["auth[client_endpoint]"] == "https://sandbox.bitrix24.test/rest/"
    assert "auth[access_token]" not in flat  # a webhook bot's events carry no tokens (§6.8)
    assert flat["ts"].isdigit()
    assert flat["event_handler_id"].isdigit()
    # Numeric segments stay dictionary keys once decoded.
    assert list(event.form["data"]["COMMAND"]) == [str(s.command_id)]


async def test_repeated_commands_collapse_into_one_entry_and_the_message_keeps_every_line(
    http: aiohttp.ClientSession, sandbox: TestServer, handler: tuple[TestServer, list[Received]]
) -> None:
    s = await setup_bot(http, sandbox, handler)
    text = "/rate 494 5 Молодец\n/rate 495 4 Хорошо\nвторая строка"
    await s.sender.send_message(27, s.bot_id, text)
    [event] = s.received
    commands = event.form["data"]["COMMAND"]
    assert list(commands) == [str(s.command_id)]
    assert commands[str(s.command_id)]["COMMAND_PARAMS"] == "495 4 Хорошо"
    assert event.form["data"]["PARAMS"]["MESSAGE"] == text


async def test_different_commands_in_one_message_are_entries_of_one_event(
    http: aiohttp.ClientSession, sandbox: TestServer, handler: tuple[TestServer, list[Received]]
) -> None:
    s = await setup_bot(http, sandbox, handler)
    _, body = await rest(
        http,
        webhook_url(sandbox) + "imbot.command.register",
        json={
            "BOT_ID": s.bot_id,
            "COMMAND": "help",
            "COMMON": "Y",
            "EVENT_COMMAND_ADD": s.portal.commands[s.command_id].handler.split("?")[0],
            "LANG": [{"LANGUAGE_ID": "ru", "TITLE": "Справка"}],
            "CLIENT_ID": "c1",
        },
    )
    await s.sender.send_message(27, s.bot_id, "/help\n/rate 494 5")
    [event] = s.received
    commands = event.form["data"]["COMMAND"]
    assert {c["COMMAND"]: c["COMMAND_PARAMS"] for c in commands.values()} == {
        "help": "",
        "rate": "494 5",
    }
    assert set(commands) == {str(s.command_id), str(body["result"])}


async def test_a_mention_in_an_open_line_chat_is_onimbotmessageadd_with_the_session(
    http: aiohttp.ClientSession, sandbox: TestServer, handler: tuple[TestServer, list[Received]]
) -> None:
    s = await setup_bot(http, sandbox, handler)
    await s.sender.join(s.bot_id, 101, 1157)
    await s.sender.send_message(27, "chat1157", "оцени", mention=s.bot_id)
    message = s.received[-1].form
    assert message["event"] == "ONIMBOTMESSAGEADD"
    params = message["data"]["PARAMS"]
    assert (params["CHAT_ENTITY_TYPE"], params["CHAT_ENTITY_DATA_1"].split("|")[5]) == (
        "LINES",
        "494",
    )


@pytest.mark.parametrize(
    ("author", "is_connector", "is_extranet"),
    [(27, "N", "N"), (301, "N", "Y"), (1211, "Y", "N")],
    ids=["staff", "extranet", "a line's customer"],
)
async def test_a_message_event_says_whether_its_author_is_a_customer_or_extranet(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    handler: tuple[TestServer, list[Received]],
    author: int,
    is_connector: str,
    is_extranet: str,
) -> None:
    s = await setup_bot(http, sandbox, handler)
    await s.sender.join(s.bot_id, 101, 1157)
    await s.sender.send_message(author, "chat1157", "оцени", mention=s.bot_id)
    message = s.received[-1].form["data"]
    assert (message["USER"]["IS_CONNECTOR"], message["USER"]["IS_EXTRANET"]) == (
        is_connector,
        is_extranet,
    )
    assert (message["PARAMS"]["CHAT_TYPE"], message["PARAMS"]["CHAT_ENTITY_TYPE"]) == (
        "L",
        "LINES",
    )


async def test_a_command_event_s_user_block_has_no_is_fields(
    http: aiohttp.ClientSession, sandbox: TestServer, handler: tuple[TestServer, list[Received]]
) -> None:
    """As in the docs' example of ONIMCOMMANDADD (§1.5): a customer's command looks like
    anyone's, except that the author is the last field of the chat's CHAT_ENTITY_ID."""
    s = await setup_bot(http, sandbox, handler)
    await s.sender.send_message(1211, "chat1157", "/rate 5")
    data = s.received[-1].form["data"]
    assert s.received[-1].form["event"] == "ONIMCOMMANDADD"
    assert not {"IS_CONNECTOR", "IS_EXTRANET"} & set(data["USER"])
    assert data["PARAMS"]["CHAT_ENTITY_ID"].split("|")[3] == data["PARAMS"]["FROM_USER_ID"]


async def test_a_message_that_is_no_command_is_onimbotmessageadd(
    http: aiohttp.ClientSession, sandbox: TestServer, handler: tuple[TestServer, list[Received]]
) -> None:
    s = await setup_bot(http, sandbox, handler)
    await s.sender.send_message(27, s.bot_id, "/help")  # not a registered command
    await s.sender.send_message(27, s.bot_id, "привет")
    events = [e.form for e in s.received]
    assert [e["event"] for e in events] == ["ONIMBOTMESSAGEADD", "ONIMBOTMESSAGEADD"]
    assert events[1]["data"]["BOT"][str(s.bot_id)] == {
        "BOT_ID": str(s.bot_id),
        "BOT_CODE": "rating_bot",
    }
    assert events[1]["data"]["PARAMS"]["COMMAND_CONTEXT"] == "TEXTAREA"
    assert events[1]["data"]["USER"]["IS_BOT"] == "N"


@pytest.mark.parametrize(
    ("to", "text", "events"),
    [
        ("bot", "/rate 494 5", ["ONIMCOMMANDADD"]),
        ("bot", "/Rate 494 5", ["ONIMBOTMESSAGEADD"]),  # a plain message in the private chat
        ("bot", "/RATE 494 5", ["ONIMBOTMESSAGEADD"]),
        ("chat2001", "/rate 494 5", ["ONIMCOMMANDADD"]),
        ("chat2001", "/Rate 494 5", []),  # in a group: no command at all
    ],
)
async def test_command_names_are_matched_case_sensitively(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    handler: tuple[TestServer, list[Received]],
    to: str,
    text: str,
    events: list[str],
) -> None:
    """`Im\\Command::findCommands` compares names with `==` (§00 item 5)."""
    s = await setup_bot(http, sandbox, handler)
    await s.sender.send_message(27, s.bot_id if to == "bot" else to, text)
    assert [e.form["event"] for e in s.received] == events


async def test_group_chats_tell_the_bot_only_when_it_is_mentioned(
    http: aiohttp.ClientSession, sandbox: TestServer, handler: tuple[TestServer, list[Received]]
) -> None:
    s = await setup_bot(http, sandbox, handler)
    join = await s.sender.join(s.bot_id, 1, 2001)
    assert join.event == "ONIMBOTJOINCHAT"
    assert await s.sender.send_message(27, "chat2001", "всем привет") == []
    await s.sender.send_message(27, "chat2001", "помоги", mention=s.bot_id)
    joined, mentioned = (e.form for e in s.received)
    assert joined["data"]["PARAMS"]["DIALOG_ID"] == "chat2001"
    params = mentioned["data"]["PARAMS"]
    assert (params["DIALOG_ID"], params["CHAT_ID"], params["MESSAGE"]) == (
        "chat2001",
        "2001",
        "помоги",
    )
    assert params["MENTIONED_LIST"] == {str(s.bot_id): str(s.bot_id)}
    assert params["MESSAGE_ORIGINAL"].startswith(f"[USER={s.bot_id}]")


@pytest.mark.parametrize(
    ("openline", "common", "delivered"), [("Y", "Y", True), ("N", "Y", False), ("Y", "N", False)]
)
async def test_commands_in_an_open_line_need_openline_and_common(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    handler: tuple[TestServer, list[Received]],
    openline: str,
    common: str,
    delivered: bool,
) -> None:
    """§0 item 12: OPENLINE=Y on the bot and COMMON=Y on the command, or nothing arrives."""
    s = await setup_bot(http, sandbox, handler, openline=openline, common=common)
    await s.sender.send_message(27, "chat1157", "/rate 5 Молодец")
    assert bool(s.received) is delivered
    if delivered:
        params = s.received[0].form["data"]["PARAMS"]
        assert (params["CHAT_ENTITY_TYPE"], params["MESSAGE_TYPE"]) == ("LINES", "L")
        assert params["CHAT_ENTITY_DATA_1"].split("|")[5] == "494"
        assert params["DIALOG_ID"] == "chat1157"


async def test_a_keyboard_click_is_a_command_with_keyboard_context(
    http: aiohttp.ClientSession, sandbox: TestServer, handler: tuple[TestServer, list[Received]]
) -> None:
    s = await setup_bot(http, sandbox, handler)
    buttons = [
        {"TEXT": str(n), "COMMAND": "rate", "COMMAND_PARAMS": f"494 {n}"} for n in range(1, 6)
    ]
    _, body = await rest(
        http,
        webhook_url(sandbox) + "imbot.message.add",
        json={
            "DIALOG_ID": "27",
            "MESSAGE": "Оценка?",
            "KEYBOARD": {"BUTTONS": buttons},
            "CLIENT_ID": "c1",
        },
    )
    delivery = await s.sender.click(27, body["result"], 2)
    assert delivery is not None
    assert delivery.status == 200
    command = s.received[0].form["data"]["COMMAND"][str(s.command_id)]
    assert (command["COMMAND_CONTEXT"], command["COMMAND_PARAMS"]) == ("KEYBOARD", "494 3")
    assert command["MESSAGE_ID"] == str(body["result"])  # the keyboard's message
    params = s.received[0].form["data"]["PARAMS"]
    assert (params["MESSAGE"], params["FROM_USER_ID"]) == ("/rate 494 3", "27")
    assert "TEMPLATE_ID" not in params  # a click has no id of its own
    assert (s.command_id, body["result"]) in s.portal.answer_grants


async def test_a_click_on_a_link_button_tells_the_bot_nothing(
    http: aiohttp.ClientSession, sandbox: TestServer, handler: tuple[TestServer, list[Received]]
) -> None:
    s = await setup_bot(http, sandbox, handler)
    _, body = await add_message(http, sandbox, [LINK, STAR])
    assert await click(http, sandbox, body["result"], 0) == []  # the browser opens the link
    assert s.received == []
    [delivered] = await click(http, sandbox, body["result"], 1)  # the command beside it
    assert (delivered["event"], len(s.received)) == ("ONIMCOMMANDADD", 1)


async def test_deleting_the_bot_sends_onimbotdelete(
    http: aiohttp.ClientSession, sandbox: TestServer, handler: tuple[TestServer, list[Received]]
) -> None:
    s = await setup_bot(http, sandbox, handler)
    await s.sender.delete_bot(s.bot_id)
    form = s.received[0].form
    assert (form["event"], form["data"]) == (
        "ONIMBOTDELETE",
        {"BOT_ID": str(s.bot_id), "BOT_CODE": "rating_bot"},
    )
    assert s.bot_id not in s.portal.bots


async def test_an_unreachable_handler_is_recorded_not_raised(
    sandbox: TestServer, portal: Portal
) -> None:
    delivery = await sandbox.app[EVENTS].post("http://127.0.0.1:9/nowhere", {"event": "X"})
    assert (delivery.event, delivery.status) == ("X", None)


async def test_events_can_be_sent_over_the_inspection_api(
    http: aiohttp.ClientSession, sandbox: TestServer, handler: tuple[TestServer, list[Received]]
) -> None:
    s = await setup_bot(http, sandbox, handler)
    async with http.post(
        sandbox.make_url("/_sandbox/events/message"),
        json={"author_id": 27, "to": s.bot_id, "text": "/rate 494 5"},
    ) as answer:
        assert await answer.json() == [
            {
                "event": "ONIMCOMMANDADD",
                "url": s.portal.commands[s.command_id].handler,
                "status": 200,
                "body": "ok",
            }
        ]


async def test_the_inspection_api_takes_a_bot_s_code_and_clicks_the_newest_keyboard(
    http: aiohttp.ClientSession, sandbox: TestServer, handler: tuple[TestServer, list[Received]]
) -> None:
    s = await setup_bot(http, sandbox, handler)
    url = sandbox.make_url("/_sandbox/events/message")
    async with http.post(url, json={"author_id": 27, "to": "rating_bot", "text": "/x"}) as sent:
        [delivery] = await sent.json()
    assert delivery["event"] == "ONIMBOTMESSAGEADD"  # to the bot's private chat
    chat = s.portal.private_chat(27, s.bot_id)
    stars = {
        "BUTTONS": [
            {"TEXT": "★" * n, "COMMAND": "rate", "COMMAND_PARAMS": f"494 {n}"} for n in range(1, 6)
        ]
    }
    s.portal.post(chat.id, s.bot_id, "older", keyboard=stars)
    newest = s.portal.post(chat.id, s.bot_id, "newest", keyboard=stars)
    click = sandbox.make_url("/_sandbox/events/click")
    async with http.post(click, json={"user_id": 27, "button": 4}) as clicked:
        assert clicked.status == 200
    [*_, last] = s.received
    entry = next(iter(last.form["data"]["COMMAND"].values()))
    assert (entry["MESSAGE_ID"], entry["COMMAND_PARAMS"]) == (str(newest.id), "494 5")


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("events/message", {"author_id": 27, "to": "no_bot", "text": "/rate"}, "no bot with the"),
        ("events/message", {"author_id": 27, "to": "chat2001"}, "KeyError: 'text'"),
        ("events/message", ["not", "an", "object"], "a JSON object"),
        ("events/message", {"author_id": "x", "to": "chat2001", "text": "/r"}, "ValueError"),
        ("events/click", {"user_id": 27, "button": 1}, "no message with a keyboard"),
        ("clock", {}, "KeyError: 'advance'"),
        ("telegram/press", {"user_id": 5001, "chat_id": -2001, "button": 0}, "with buttons"),
        ("telegram/press", {"user_id": 5001, "chat_id": -9, "data": "x", "message_id": 1}, "-9"),
    ],
)
async def test_a_bad_request_to_the_inspection_api_is_a_400_that_says_what(
    http: aiohttp.ClientSession, sandbox: TestServer, path: str, body: object, says: str
) -> None:
    async with http.post(sandbox.make_url(f"/_sandbox/{path}"), json=body) as answer:
        text = await answer.text()
    assert answer.status == 400, text  # never a 500
    assert says in text
