"""The chat page over HTTP: served by the sandbox, its state, and the state pushed live."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.sandbox.portal import Portal
from bot.sandbox.telegram.world import TelegramWorld
from bot.sandbox.web.bounds import SHOWN_MESSAGES, SHOWN_TEXT
from bot.sandbox.web.page import MAX_STREAMS, STALLED, STATIC
from tests.bot.sandbox.test_imbot import register_bot
from tests.bot.sandbox.test_keyboard import LINK, STAR, add_message
from tests.harness import ServiceFactory, eventually, telegram_api_url

ROOT = Path(__file__).resolve().parents[4]


async def state(http: aiohttp.ClientSession, sandbox: TestServer) -> Any:
    async with http.get(sandbox.make_url("/_sandbox/state")) as answer:
        assert answer.status == 200
        return await answer.json()


async def say(http: aiohttp.ClientSession, sandbox: TestServer, **body: Any) -> None:
    async with http.post(sandbox.make_url("/_sandbox/events/message"), json=body) as answer:
        assert answer.status == 200


async def next_state(stream: aiohttp.ClientResponse) -> Any:
    """The next state the stream pushes (server-sent events: `data: <json>` and a blank line)."""
    async for line in stream.content:
        if line.startswith(b"data: "):
            return json.loads(line.removeprefix(b"data: "))
    raise AssertionError("the stream ended")


async def test_the_page_and_its_files_are_served_with_a_strict_policy(
    http: aiohttp.ClientSession, sandbox: TestServer
) -> None:
    async with http.get(sandbox.make_url("/")) as page:
        assert page.status == 200
        assert page.content_type == "text/html"
        policy = page.headers["Content-Security-Policy"]
        assert "script-src 'self';" in policy
        assert "style-src 'self';" in policy
        assert "unsafe" not in policy, "no inline script or style: [color] is set through the DOM"
        html = await page.text()
    for name in ("chat.js", "chat.css"):
        assert f"/_sandbox/static/{name}" in html
        async with http.get(sandbox.make_url(f"/_sandbox/static/{name}")) as answer:
            assert answer.status == 200


@pytest.mark.parametrize(
    "path", ["/_sandbox/static/../page.py", "/_sandbox/static/%2e%2e/page.py"]
)
async def test_nothing_outside_the_static_folder_is_served(
    http: aiohttp.ClientSession, sandbox: TestServer, path: str
) -> None:
    async with http.get(sandbox.make_url(path)) as answer:
        assert answer.status in (403, 404)


def test_a_non_editable_install_ships_every_static_file() -> None:
    """pyproject's package data names each file of the page (no build step: they are it)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["bot.sandbox.web"]
    files = sorted(p.name for p in STATIC.iterdir() if p.is_file())
    assert files == ["chat.css", "chat.js", "index.html"]
    for name in files:
        assert any(fnmatch(f"static/{name}", pattern) for pattern in patterns), name


async def test_the_people_to_be_are_a_supervisor_who_may_rate_one_who_may_not_an_operator(
    http: aiohttp.ClientSession, sandbox: TestServer
) -> None:
    people = (await state(http, sandbox))["people"]
    assert [(p["id"], p["role"]) for p in people[:3]] == [
        (27, "supervisor, may rate (Сайт)"),
        (28, "supervisor, may not rate (Сайт)"),
        (101, "operator (Сайт, Telegram)"),
    ]
    assert all(p["id"] < 1000 for p in people), "no customer is someone to be"


async def test_the_state_has_the_sessions_their_head_votes_and_the_bucket(
    http: aiohttp.ClientSession, sandbox: TestServer
) -> None:
    seen = await state(http, sandbox)
    votes = {s["id"]: (s["vote_head"], s["comment_head"]) for s in seen["sessions"]}
    assert votes == {494: (0, ""), 495: (4, "Вежливо"), 496: (0, "")}
    assert seen["bucket"] == {"level": 0.0, "capacity": 50, "rate": 50.0, "refused": 0}
    line_chat = next(c for c in seen["chats"] if c["id"] == 1157)
    assert (line_chat["type"], line_chat["session"], line_chat["customer"]) == ("L", 494, 1211)
    assert 27 in line_chat["staff"], "the line's head sees its chats"


async def test_a_rate_typed_on_the_page_is_saved_answered_and_pushed_live(
    http: aiohttp.ClientSession, sandbox: TestServer, start_service: ServiceFactory
) -> None:
    service = await start_service(B24_EVENT_MODE="fetch", B24_SUPERVISOR_IDS="27")
    async with http.get(sandbox.make_url("/_sandbox/stream")) as stream:
        assert stream.content_type == "text/event-stream"
        first = await next_state(stream)
        assert first["bot"]["id"] == service.bot_id
        await say(http, sandbox, author_id=27, to=service.bot_id, text="/rate 494 5 Молодец")
        latest = first
        while not any(m["author_id"] == service.bot_id for m in latest["messages"]):
            latest = await next_state(stream)
    votes = {s["id"]: s["vote_head"] for s in latest["sessions"]}
    assert votes[494] == 5
    called = [c["method"] for c in latest["calls"]]
    assert "imopenlines.session.head.vote" in called
    assert any(c["level"] for c in latest["calls"]), "each request shows the bucket's level"


async def test_a_keyboard_is_listed_with_the_positions_a_click_names(
    http: aiohttp.ClientSession, sandbox: TestServer, start_service: ServiceFactory
) -> None:
    service = await start_service(B24_EVENT_MODE="fetch", B24_SUPERVISOR_IDS="27")
    prompt = await service.reply_to(27, service.bot_id, "/rate 494")
    shown = next(m for m in (await state(http, sandbox))["messages"] if m["id"] == prompt.id)
    assert [(b["index"], b["text"]) for b in shown["keyboard"]] == [
        (0, "★"),
        (1, "★★"),
        (2, "★★★"),
        (3, "★★★★"),
        (4, "★★★★★"),
    ]
    click = {"user_id": 27, "message_id": prompt.id, "button": 3}
    async with http.post(sandbox.make_url("/_sandbox/events/click"), json=click) as answer:
        assert answer.status == 200
    await eventually(lambda: service.portal.sessions[494].vote_head == 4)
    sessions = (await state(http, sandbox))["sessions"]
    assert [s["vote_head"] for s in sessions if s["id"] == 494] == [4]


async def test_a_link_button_is_listed_with_its_link_and_a_hostile_link_with_none(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    await register_bot(http, sandbox)
    _, sent = await add_message(http, sandbox, [LINK, {"TYPE": "NEWLINE"}, STAR])
    # Past the portal's checks (it drops such a button): the page still draws no link of it.
    hostile = portal.post(2001, 28, "x", keyboard=[{"TEXT": "x", "LINK": "javascript:alert(1)"}])
    shown = {m["id"]: m["keyboard"] for m in (await state(http, sandbox))["messages"]}
    assert [(b["text"], b["link"]) for b in shown[sent["result"]]] == [
        (LINK["TEXT"], LINK["LINK"]),
        ("", None),
        (STAR["TEXT"], None),
    ]
    assert [b["link"] for b in shown[hostile.id]] == [None]


async def test_a_telegram_url_button_is_listed_with_its_url(
    http: aiohttp.ClientSession, sandbox: TestServer, telegram_world: TelegramWorld
) -> None:
    url = f"{telegram_api_url(sandbox)}/bot{telegram_world.token}/sendMessage"
    row = [{"text": "Связать", "url": LINK["LINK"]}, {"text": "5", "callback_data": "r"}]
    body = {"chat_id": -2001, "text": "Свяжите", "reply_markup": {"inline_keyboard": [row]}}
    async with http.post(url, json=body) as answer:
        assert answer.status == 200
    [message] = (await state(http, sandbox))["telegram"]["messages"]
    assert message["buttons"] == [
        [
            {"text": "Связать", "data": "", "url": LINK["LINK"]},
            {"text": "5", "data": "r", "url": None},
        ]
    ]


@pytest.mark.parametrize(
    "attack",
    [
        "<img src=x onerror=alert(1)>",
        "[url=javascript:alert(1)]нажми[/url]",
        '[send=x" onclick="alert(1)]x[/send]',
    ],
)
async def test_a_users_attack_reaches_the_page_as_text(
    http: aiohttp.ClientSession, sandbox: TestServer, attack: str
) -> None:
    await say(http, sandbox, author_id=28, to="chat2001", text=attack)
    [message] = [m for m in (await state(http, sandbox))["messages"] if m["text"] == attack]
    assert "<img" not in message["html"]
    assert "javascript:" not in message["html"].replace("[url=javascript:", "")
    assert 'onclick="' not in message["html"]


async def test_the_telegram_side_lists_the_groups_with_the_bot_and_each_persons_account(
    http: aiohttp.ClientSession, sandbox: TestServer
) -> None:
    telegram = (await state(http, sandbox))["telegram"]
    assert telegram["accounts"] == {"27": 5001, "28": 5002, "1": 5003}
    titles = {c["id"]: c["title"] for c in telegram["chats"]}
    assert titles == {-2001: "Руководители", -1002002: "Контакт-центр", -2004: "Лента оценок"}
    typed = {"user_id": 5002, "chat_id": -2001, "text": "<b>не жирный</b> /rate 494"}
    async with http.post(sandbox.make_url("/_sandbox/telegram/type"), json=typed) as answer:
        assert answer.status == 200
    [message] = (await state(http, sandbox))["telegram"]["messages"]
    assert (message["author"], message["text"]) == ("Пётр Смирнов", typed["text"])


# A megabyte of one message, plain or of tags the renderer would work on for hours.
HUGE: Final = (
    ("plain", "x" * 900_000),
    ("unclosed tags", "[b]" * 300_000),
    ("unclosed colours", "[color=red]" * 80_000),
    ("unclosed links", "[url=https://x.ru]" * 50_000),
)


@pytest.mark.parametrize("text", [text for _, text in HUGE], ids=[name for name, _ in HUGE])
async def test_a_huge_message_is_drawn_cut_and_the_state_stays_small(
    http: aiohttp.ClientSession, sandbox: TestServer, text: str
) -> None:
    body = io.BytesIO(json.dumps({"author_id": 28, "to": "chat2001", "text": text}).encode())
    headers = {"Content-Type": "application/json"}
    url = sandbox.make_url("/_sandbox/events/message")
    async with http.post(url, data=body, headers=headers) as answer:
        assert answer.status == 200
    async with http.get(sandbox.make_url("/_sandbox/state")) as answer:
        size = len(await answer.read())
    [message] = [m for m in (await state(http, sandbox))["messages"] if m["chat_id"] == 2001]
    assert message["text"].startswith(text[:SHOWN_TEXT])
    assert message["text"].endswith(f"… ({len(text) - SHOWN_TEXT} more characters)")
    assert size < 100_000


async def test_of_ten_thousand_messages_the_newest_of_each_chat_are_drawn(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    for n in range(10_000):
        portal.post(2001, 28, f"сообщение {n}")
    await say(http, sandbox, author_id=27, to="chat1157", text="в другом чате")
    messages = (await state(http, sandbox))["messages"]
    group = [m["text"] for m in messages if m["chat_id"] == 2001]
    assert group == [f"сообщение {n}" for n in range(10_000 - SHOWN_MESSAGES, 10_000)]
    assert "в другом чате" in [m["text"] for m in messages if m["chat_id"] == 1157]


async def test_at_most_max_streams_pages_are_open_and_a_closed_one_frees_its_place(
    http: aiohttp.ClientSession, sandbox: TestServer
) -> None:
    url = sandbox.make_url("/_sandbox/stream")
    streams = [await http.get(url) for _ in range(MAX_STREAMS)]
    assert [await next_state(s) is not None for s in streams] == [True] * MAX_STREAMS
    async with http.get(url) as one_more:
        assert one_more.status == 503
        assert "close one" in await one_more.text()
    for stream in streams:
        stream.close()  # the reader goes away without a word, as a closed tab does
    reopened: list[aiohttp.ClientResponse] = []
    deadline = asyncio.get_running_loop().time() + 60  # a gone reader is noticed at a heartbeat
    while len(reopened) < MAX_STREAMS and asyncio.get_running_loop().time() < deadline:
        again = await http.get(url)
        if again.status == 200:
            reopened.append(again)
        else:
            again.close()
            await asyncio.sleep(0.5)
    assert len(reopened) == MAX_STREAMS, "every closed page gave its place back"
    for stream in reopened:
        stream.close()


async def test_a_reader_who_stops_reading_is_dropped_and_holds_nothing(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    for n in range(SHOWN_MESSAGES):  # every push is then most of a megabyte
        portal.post(2001, 28, f"{n} " + "текст " * (SHOWN_TEXT // 6))
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)  # noqa: FBT003 - the socket API
    await asyncio.get_running_loop().sock_connect(raw, (sandbox.host, sandbox.port))
    reader, writer = await asyncio.open_connection(sock=raw, limit=4096)
    writer.write(f"GET /_sandbox/stream HTTP/1.1\r\nHost: {sandbox.host}\r\n\r\n".encode())
    for n in range(12):  # a change a push apart, each pushed into buffers nobody empties
        await say(http, sandbox, author_id=27, to="chat1157", text=f"ещё {n}")
        await asyncio.sleep(0.3)
    await asyncio.sleep(STALLED + 5)  # the reader stays away past the bound
    # Dropped: what reached the buffers, then the end. Before, the stream simply went on.
    async with asyncio.timeout(60):
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
    writer.close()


# What any web page open in the same browser may send to 127.0.0.1 without asking first.
FORGED: Final = (
    ("/_sandbox/events/message", {"author_id": 27, "to": "chat2001", "text": "подделка"}),
    ("/_sandbox/events/click", {"user_id": 27, "button": 0}),
    ("/_sandbox/telegram/type", {"user_id": 5001, "chat_id": -2001, "text": "подделка"}),
    ("/_sandbox/faults", {"method": "imopenlines.session.head.vote", "error": "ACCESS_DENIED"}),
)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
@pytest.mark.parametrize(("path", "body"), FORGED)
async def test_a_request_a_foreign_page_may_send_unasked_is_refused(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    path: str,
    body: dict[str, Any],
    content_type: str,
) -> None:
    before = await state(http, sandbox)
    forged = json.dumps(body)
    headers = {"Content-Type": content_type, "Origin": "https://evil.example"}
    async with http.post(sandbox.make_url(path), data=forged, headers=headers) as answer:
        assert answer.status == 415
        assert "application/json" in await answer.text()
    after = await state(http, sandbox)
    assert after["messages"] == before["messages"]
    assert after["telegram"]["messages"] == before["telegram"]["messages"]
    assert portal.faults == []
