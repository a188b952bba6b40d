"""Fetch mode attacked (issue 9): hostile messages and odd pages from the portal, over HTTP
against the sandbox, with real SQLite. The rig is test_fetch.py's; the service is the real one
in fetch mode (test_fetch_mode.py's settings).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import MutableMapping
from typing import Any

import aiohttp
import pytest

from bot.bitrix.fetch import EVENT_GET
from bot.intake import MAX_COMMANDS_PER_MESSAGE
from bot.metrics import Metrics
from bot.sandbox.portal import Fault
from bot.sandbox.v2.queue import QueuedEvent
from bot.state import BITRIX, POLLER
from bot.texts import render
from tests.bbcodes import live_markup
from tests.bot.bitrix.test_fetch import FAST_POLL, GROUP, Rig, logs, rig, sample, texts
from tests.bot.bitrix.test_fetch_mode import FETCH, queued
from tests.harness import WEBHOOK_CODE, ServiceFactory, drained, eventually

__all__ = ["logs", "rig"]  # the fixtures, shared with test_fetch.py

SMALL_PAGES = dataclasses.replace(FAST_POLL, page_limit=7)


@pytest.mark.parametrize(
    ("author", "jobs"),
    [
        # a supervisor: MAX_COMMANDS_PER_MESSAGE commands and one notice, across every page
        (27, MAX_COMMANDS_PER_MESSAGE + 1),
        (101, 1),  # an operator, who may not rate: one reply for the message, not one per page
        (301, 1),  # an extranet user: the same
    ],
)
async def test_a_message_whose_command_events_span_pages_is_bounded_as_one_message(
    rig: Rig, author: int, jobs: int
) -> None:
    """v2 sends one event per command line: 30 `/help` lines are 30 events, over 5 pages of 7.
    The bound is the message's, not each page's."""
    rig.start(rig.poller(await rig.storage(), tuning=SMALL_PAGES))
    await rig.say(author, GROUP, "\n".join(["/help"] * 30))
    await eventually(lambda: texts(rig) and not rig.unacknowledged(), within=20)
    assert len(texts(rig)) == jobs


@pytest.mark.parametrize(
    "odd_id",
    [
        2**53,  # past what JSON holds exactly: the event is malformed, the page is not
        2**62,
    ],
)
async def test_an_event_with_an_odd_id_is_skipped_and_does_not_stall_the_queue(
    rig: Rig, odd_id: int
) -> None:
    assert rig.bot_id is not None
    await rig.say(27, GROUP, "/rate 494 5")
    queue = rig.portal.queue_of(rig.bot_id)
    queue.push(dataclasses.replace(queue.events[-1], event_id=odd_id))
    metrics = Metrics()
    rig.start(rig.poller(await rig.storage(), metrics=metrics))
    await eventually(lambda: texts(rig) and not rig.unacknowledged())
    assert texts(rig) == ["/rate 494 5"]
    assert sample(metrics, "bot_events_rejected_total", reason="malformed_event") == 1


HOSTILE = [
    "/rate 494 5 [URL=https://evil.example]жми[/URL] [USER=1]всем[/USER]",
    "/rate 494 [SEND=/rate 494 1]x[/SEND] 5",
    "/rate 494 5 $result[vote][x] $result_error[b]",
    "/help [b]\n/rate 495 [COLOR=red]4[/COLOR]\n>>цитата",
    "/rate 494 5 " + "[b]ж" * 5000,  # 20,000 characters
    "\n".join(f"/rate {494 + n % 3} {n % 5 + 1} [USER={n}]" for n in range(300)),
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize(
    ("author", "where"),
    [
        (27, "bot"),  # a supervisor, privately
        (27, "chat1157"),  # a supervisor, inside an open line
        (28, "chat2001"),  # someone who may not rate, in a group chat
        (301, "bot"),  # an extranet user
        (1211, "chat1157"),  # the open line's customer
    ],
)
async def test_hostile_text_in_fetch_mode_writes_no_live_markup_and_reaches_no_customer(
    start_service: ServiceFactory,
    http: aiohttp.ClientSession,
    text: str,
    author: int,
    where: str,
) -> None:
    service = await start_service(**FETCH)
    await service.say(author, service.bot_id if where == "bot" else where, text)
    await eventually(lambda: queued(service.portal, service.bot_id) == 0, within=20)
    await drained(service, within=60)
    written = service.bot_messages()
    ours = (render("help", "ru"), render("help", "en"))
    for message in written:
        assert live_markup(_without(message.text, ours)) == [], message.text
        assert not message.to_customer, message.text
    assert len(written) <= (MAX_COMMANDS_PER_MESSAGE + 1 if author == 27 else 1)
    if author == 1211:
        assert written == []
    if author == 27:
        assert written  # answered: the text was fetched, not lost
    async with http.get(service.server.make_url("/readyz")) as ready:
        assert ready.status == 200, await ready.text()


def _without(text: str, templates: tuple[str, ...]) -> str:
    """Our own help text is the one reply with markup of ours ([b])."""
    for template in templates:
        text = text.replace(template, "")
    return text


def _page(events: list[dict[str, Any]], next_offset: int, *, has_more: bool) -> str:
    return json.dumps(
        {"result": {"events": events, "nextOffset": next_offset, "hasMore": has_more}}
    )


_REACTION = {"eventId": 5, "type": "ONIMBOTV2REACTIONCHANGE", "date": "", "data": {}}


@pytest.mark.parametrize(
    "body",
    [
        _page([], 0, has_more=True),  # "more", yet nothing, and the cursor back at 0
        _page([_REACTION], 6, has_more=True),  # the same page again and again
        json.dumps({"result": {"events": "many", "nextOffset": 1}}),  # an unexpected shape
        json.dumps({"result": []}),
    ],
    ids=["empty_more", "stuck_more", "events_not_a_list", "result_a_list"],
)
async def test_a_page_that_does_not_move_the_cursor_keeps_the_poller_within_its_budget(
    rig: Rig, body: str
) -> None:
    fault = Fault(
        method=EVENT_GET.lower(), times=10_000, body=body, content_type="application/json"
    )
    rig.portal.faults.append(fault)
    poller = rig.poller(await rig.storage())
    rig.start(poller)
    await eventually(lambda: fault.times < 10_000)
    loop = asyncio.get_running_loop()
    started, before = loop.time(), fault.times
    await asyncio.sleep(1.5)
    window, polls = loop.time() - started, before - fault.times
    # An upper bound only (a slow machine polls less): no more than an idle poller's share.
    assert polls <= window * FAST_POLL.rate * FAST_POLL.budget_share + 2


BOT_TOKEN = "tok-Distinctive_4c1d9e-secret"


# In the service, Event.get travels inside `batch` (bot/bitrix/coalesce.py): a fault on the
# whole request, or on the Event.get call inside it.
def _in_batch(error: str) -> Fault:
    return Fault(EVENT_GET.lower(), error=error, inside_batch=True)


@pytest.mark.parametrize(
    ("fault", "problem"),
    [
        (Fault("batch", status=503, error="QUERY_LIMIT_EXCEEDED"), "QUERY_LIMIT_EXCEEDED"),
        (Fault("batch", status=429, error="OPERATION_TIME_LIMIT"), "OPERATION_TIME_LIMIT"),
        (Fault("batch", status=502, body="<html>Bad Gateway</html>"), None),  # a proxy
        (_in_batch("OPERATION_TIME_LIMIT"), "OPERATION_TIME_LIMIT"),
        (_in_batch("INTERNAL_SERVER_ERROR"), "INTERNAL_SERVER_ERROR"),
    ],
    ids=["503", "429", "502_html", "429_inside_batch", "500_inside_batch"],
)
async def test_event_get_failing_is_told_by_readyz_and_metrics_without_a_secret(
    start_service: ServiceFactory,
    http: aiohttp.ClientSession,
    logs: list[MutableMapping[str, Any]],
    fault: Fault,
    problem: str | None,
) -> None:
    service = await start_service(**FETCH, B24_BOT_TOKEN=BOT_TOKEN)
    await eventually(lambda: service.server.app[POLLER].status().state == "active")
    service.portal.faults.append(dataclasses.replace(fault, times=-1))
    await service.say(27, service.bot_id, "/rate 494 5 Молодец")
    await eventually(lambda: service.server.app[POLLER].status().problem)
    async with http.get(service.server.make_url("/readyz")) as ready:
        shown = await ready.json()
        assert ready.status == 503
    assert shown["events"] != "ok"
    if problem:
        assert shown["poller"]["problem"] == problem
    async with http.get(service.server.make_url("/metrics")) as scraped:
        metrics = await scraped.text()
    service.portal.faults.clear()  # the portal is back: nothing was lost
    await eventually(lambda: service.portal.sessions[494].vote_head == 5, within=60)
    for text in (json.dumps(shown), metrics, repr(logs)):
        assert BOT_TOKEN not in text
        assert WEBHOOK_CODE not in text


async def test_a_second_instance_with_another_bot_token_takes_nothing_and_says_why(
    start_service: ServiceFactory, http: aiohttp.ClientSession
) -> None:
    """The first instance's bot (its botToken derived from the webhook, like the CLIENT_ID)
    is not another application's to remove: the second one refuses and says why."""
    first = await start_service(**FETCH)
    await first.say(27, first.bot_id, "/rate 495 5 Пока второй стартует")
    # another application: its own token, the same webhook
    second = await start_service(**FETCH, B24_BOT_TOKEN=BOT_TOKEN, registered=False)
    await eventually(lambda: second.server.app[BITRIX].refused)
    async with http.get(second.server.make_url("/readyz")) as ready:
        shown = await ready.text()
        assert ready.status == 503
    assert "another B24_BOT_TOKEN's bot" in json.loads(shown)["portal"]
    assert BOT_TOKEN not in shown
    assert [b.id for b in first.portal.bots.values() if b.code == "rating_bot"] == [first.bot_id]
    reply = await first.reply_to(27, first.bot_id, "/rate 494 5 Один")
    assert reply.via == "imbot.v2.Command.answer"
    await drained(first)
    assert (first.portal.sessions[494].vote_head, first.portal.sessions[495].vote_head) == (5, 5)


@pytest.mark.parametrize("message_event_first", [False, True])
@pytest.mark.parametrize("same_page", [True, False])
async def test_a_message_and_a_command_event_for_one_message_run_its_commands_once(
    rig: Rig, *, message_event_first: bool, same_page: bool
) -> None:
    """§0 item 14 says Bitrix24 sends no message event for a message that matched a command
    [UNCONFIRMED for v2]; should it send both, each command still runs once."""
    assert rig.bot_id is not None
    poller = rig.poller(await rig.storage())
    await rig.say(27, rig.bot_id, "/rate 494 5 Молодец\n/rate 495 4")
    queue = rig.portal.queue_of(rig.bot_id)
    commands = list(queue.events)
    data = {k: v for k, v in commands[0].data.items() if k != "command"}
    message_event = QueuedEvent(
        rig.portal.new_id(), "ONIMBOTV2MESSAGEADD", commands[0].queued_at, data
    )
    first, then = (
        ([message_event], commands) if message_event_first else (commands, [message_event])
    )
    queue.events = list(first)
    if same_page:
        queue.events += then
    await poller.step()
    queue.events += [] if same_page else then
    await poller.step()
    await poller.step()
    assert sorted(texts(rig)) == ["/rate 494 5 Молодец", "/rate 495 4"]
