"""Event intake: forged events are refused, garbage never makes a 500, a full queue says 503,
and so does a user's full share of it."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import itertools
import json
import sqlite3
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.bitrix.events import MAX_MESSAGE_CHARS
from bot.bitrix.form import flatten_form
from bot.bitrix.registration import handler_url
from bot.bitrix.webhook import INTAKE, MAX_EVENT_BYTES
from bot.jobs import RetryRules
from bot.logs import configure_logging
from bot.sandbox.portal import Fault
from bot.state import METRICS
from tests.bot.bitrix.test_events import EVIL_IDS
from tests.harness import FAST, Service, ServiceFactory, drained, eventually, post_form


def client_id(service: Service) -> str:
    assert service.settings.b24_client_id is not None
    return service.settings.b24_client_id.get_secret_value()


def event_url(service: Service) -> str:
    return f"{handler_url(service.settings)}?CLIENT_ID={client_id(service)}"


def command_form(service: Service, text: str = "/rate 494 5") -> dict[str, Any]:
    portal = service.portal
    chat = portal.private_chat(27, service.bot_id)
    message = portal.post(chat.id, 27, text, via="user")
    command = next(c for c in portal.commands.values() if c.command == "rate")
    return service.events.command_form(
        message, portal.users[27], chat, [(command, text[6:], "TEXTAREA")]
    )


@pytest.mark.parametrize(
    ("url_of", "status"),
    [
        (
            lambda s: (
                handler_url(s.settings).rsplit("/", 1)[0] + f"/guessed?CLIENT_ID={client_id(s)}"
            ),
            404,
        ),
        (lambda s: handler_url(s.settings), 403),
        (lambda s: handler_url(s.settings) + "?CLIENT_ID=someone_else", 403),
        (lambda s: handler_url(s.settings) + f"?CLIENT_ID={client_id(s)}x", 403),
    ],
    ids=["wrong path secret", "no CLIENT_ID", "another CLIENT_ID", "a longer CLIENT_ID"],
)
async def test_forged_events_are_refused_and_nothing_runs(
    service: Service, http: aiohttp.ClientSession, url_of: Any, status: int
) -> None:
    form = command_form(service)
    assert (await service.events.post(url_of(service), form)).status == status
    await asyncio.sleep(0.05)
    assert service.votes() == 0
    assert service.bot_messages() == []


def _message(**params: str) -> dict[str, str]:
    """A flat ONIMBOTMESSAGEADD body, its fields replaced by `params`."""
    fields = {"MESSAGE": "/help", "MESSAGE_ID": "7", "DIALOG_ID": "27", "FROM_USER_ID": "27"}
    return {"event": "ONIMBOTMESSAGEADD"} | {
        f"data[PARAMS][{k}]": v for k, v in (fields | params).items()
    }


GARBAGE: list[tuple[str, dict[str, Any], int]] = [
    (
        "empty body",
        {"data": b"", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        400,
    ),
    (
        "binary",
        {
            "data": bytes(range(256)) * 4,
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
        400,
    ),
    ("json", {"json": {"event": "ONIMCOMMANDADD", "data": {}}}, 415),
    ("no content type", {"data": b"event=ONIMCOMMANDADD", "headers": {"Content-Type": ""}}, 415),
    (
        "plain text",
        {"data": "event=ONIMCOMMANDADD", "headers": {"Content-Type": "text/plain"}},
        415,
    ),
    ("absurd nesting", {"data": {"event": "ONIMCOMMANDADD", "data" + "[x]" * 40: "1"}}, 400),
    (
        "invalid utf-8",
        {
            "data": b"event=ONIMCOMMANDADD&data[PARAMS][MESSAGE]=\xff\xfe",
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
        400,
    ),
    (
        "percent-encoded invalid utf-8",
        {
            "data": b"event=ONIMBOTMESSAGEADD&data%5BPARAMS%5D%5BMESSAGE%5D=%FF",
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
        400,
    ),
    ("unknown event", {"data": {"event": "ONIMBOTMESSAGEUPDATE", "data[PARAMS][ID]": "1"}}, 200),
    ("no event at all", {"data": {"hello": "world"}}, 400),
    ("an event that is a table", {"data": {"event[0]": "ONIMCOMMANDADD"}}, 400),
    ("an event name with a space", {"data": {"event": "ONIMBOTMESSAGEADD x"}}, 400),
    (
        "a message id in other digits",
        {"data": _message(MESSAGE_ID="１２３")},
        400,
    ),
    ("a user id past 2^31", {"data": _message(FROM_USER_ID="2147483648")}, 400),
    ("a dialog in other digits", {"data": _message(DIALOG_ID="chat٥")}, 400),
    ("a message past the bound", {"data": _message(MESSAGE="ж" * (MAX_MESSAGE_CHARS + 1))}, 400),
    ("a bot id in other digits", {"data": {"event": "ONIMBOTDELETE", "data[BOT_ID]": "٥"}}, 400),
    ("a known event without its data", {"data": {"event": "ONIMCOMMANDADD"}}, 400),
    (
        "ids that are not numbers",
        {
            "data": {
                "event": "ONIMBOTMESSAGEADD",
                "data[PARAMS][MESSAGE_ID]": "x",
                "data[PARAMS][DIALOG_ID]": "1",
                "data[PARAMS][FROM_USER_ID]": "1",
            }
        },
        400,
    ),
    (
        "a scalar where a table belongs",
        {"data": {"event": "ONIMCOMMANDADD", "data[COMMAND]": "rate", "data[PARAMS]": "x"}},
        400,
    ),
    (
        "multipart with a file",
        {"data": aiohttp.FormData({"event": "ONIMBOTJOINCHAT"}, default_to_multipart=True)},
        400,
    ),
]


@pytest.mark.parametrize(
    ("case", "request_kwargs", "status"), GARBAGE, ids=[g[0] for g in GARBAGE]
)
async def test_bad_bodies_get_4xx_or_a_logged_ignore_and_the_service_keeps_serving(
    service: Service,
    http: aiohttp.ClientSession,
    case: str,
    request_kwargs: dict[str, Any],
    status: int,
) -> None:
    assert await post_form(http, event_url(service), **request_kwargs) == status
    reply = await service.reply_to(27, service.bot_id, "/rate 494 5")
    assert reply.text.startswith("✅")


async def test_a_huge_body_is_refused_with_413(
    service: Service, http: aiohttp.ClientSession
) -> None:
    body = urlencode({"event": "ONIMCOMMANDADD", "data[PARAMS][MESSAGE]": "ж" * MAX_EVENT_BYTES})
    status = await post_form(
        http,
        event_url(service),
        data=io.BytesIO(body.encode()),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 413


async def test_an_oversized_message_inside_the_limit_is_answered_not_dropped(
    service: Service,
) -> None:
    reply = await service.reply_to(27, service.bot_id, "/rate 494 5 " + "ж" * 10_001)
    assert reply.text.startswith("Комментарий слишком длинный: 10\u00a0001 символов")


async def test_a_bot_or_system_message_is_not_obeyed(service: Service) -> None:
    form = command_form(service)
    form["data"]["USER"]["IS_BOT"] = "Y"
    assert (await service.events.post(event_url(service), form)).status == 200
    form = command_form(service)
    form["data"]["PARAMS"]["SYSTEM"] = "Y"
    assert (await service.events.post(event_url(service), form)).status == 200
    await asyncio.sleep(0.05)
    assert service.votes() == 0


async def test_a_full_queue_refuses_with_503_and_what_was_accepted_still_runs(
    start_service: ServiceFactory,
) -> None:
    """Room for two unfinished jobs: the third event is refused, not held."""
    service = await start_service(tuning=dataclasses.replace(FAST, workers=1, queue_size=2))
    service.portal.faults.append(Fault(method="batch", delay=1.0))  # the worker is busy 1 s
    first, second, third = (command_form(service, f"/rate {s} 5") for s in (494, 495, 496))
    assert (await service.events.post(event_url(service), first)).status == 200
    assert (await service.events.post(event_url(service), second)).status == 200
    assert (await service.events.post(event_url(service), third)).status == 503
    await eventually(lambda: len(service.bot_messages()) == 2)
    assert [service.portal.sessions[s].vote_head for s in (494, 495, 496)] == [5, 5, 0]
    # Refused, so not remembered: the same event sent again is accepted and runs.
    assert (await service.events.post(event_url(service), third)).status == 200
    await eventually(lambda: service.portal.sessions[496].vote_head == 5)


async def test_one_user_cannot_fill_the_queue_and_a_supervisor_is_still_heard(
    start_service: ServiceFactory,
) -> None:
    """Room for six unfinished jobs, four of them one user's: a flood from user 28 is refused
    once it holds its share, and supervisor 27's vote is accepted and saved."""
    rules = RetryRules(first_wait=0.05, longest_wait=0.2, give_up_after=60.0)
    tuning = dataclasses.replace(FAST, queue_size=6, user_share=4, jobs=rules)
    service = await start_service(tuning=tuning)
    service.portal.faults.append(Fault(status=503, times=-1))  # the portal is down: no job ends
    flood = [await service.events.send_message(28, service.bot_id, "/help") for _ in range(6)]
    assert [(d.status, json.loads(d.body)["status"]) for [d] in flood] == [
        *[(200, "ok")] * 4,
        *[(503, "rejected")] * 2,
    ]
    assert {json.loads(d.body)["reason"] for [d] in flood[4:]} == {"user_share"}
    await service.say(27, service.bot_id, "/rate 494 5 Молодец")  # accepted: 200
    service.portal.faults.clear()
    await eventually(lambda: service.portal.sessions[494].vote_head == 5, within=10)
    samples = {
        (s.name, s.labels.get("reason")): s.value
        for metric in service.server.app[METRICS].registry.collect()
        for s in metric.samples
    }
    assert samples[("bot_events_rejected_total", "user_share")] == 2


@pytest.mark.parametrize(
    ("sent", "status"), [("t0k3n-expected", 200), ("t0k3n-other", 403), (None, 403)]
)
async def test_a_configured_application_token_is_checked(
    service: Service, sent: str | None, status: int
) -> None:
    """Application mode (later) configures the token; the intake already checks it when set."""
    service.server.app[INTAKE].application_token = "t0k3n-expected"
    form = command_form(service)
    if sent is None:
        del form["auth"]["application_token"]
    else:
        form["auth"]["application_token"] = sent
    assert (await service.events.post(event_url(service), form)).status == status
    if status == 200:
        await eventually(service.bot_messages)
    else:
        await asyncio.sleep(0.05)
        assert service.bot_messages() == []


def _lock_the_database(db: sqlite3.Connection) -> None:
    db.execute("BEGIN EXCLUSIVE")  # as a second process writing would


def _refuse_inserts(db: sqlite3.Connection) -> None:
    db.execute("CREATE TRIGGER refuse BEFORE INSERT ON jobs BEGIN SELECT RAISE(FAIL, 'full'); END")


@pytest.mark.usefixtures("reset_logging")
@pytest.mark.parametrize(
    "fault",
    [_lock_the_database, _refuse_inserts],
    ids=["another process holds the write lock", "the database refuses the insert"],
)
async def test_a_storage_error_while_accepting_is_a_logged_503_never_a_500(
    service: Service, http: aiohttp.ClientSession, fault: Callable[[sqlite3.Connection], None]
) -> None:
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream)
    path = service.settings.bot_database_url.removeprefix("sqlite:///")
    db = sqlite3.connect(path, isolation_level=None)
    try:
        fault(db)
        form = command_form(service)
        # Posted with a long timeout: behind the lock, the event may wait for a worker's claim
        # and then for its own write, each up to SQLite's 5 s busy timeout.
        async with http.post(
            event_url(service), data=flatten_form(form), timeout=aiohttp.ClientTimeout(total=30)
        ) as refused:
            assert (refused.status, await refused.json()) == (
                503,
                {"status": "rejected", "reason": "storage_error"},
            )
    finally:
        db.execute("DROP TRIGGER IF EXISTS refuse")
        if db.in_transaction:
            db.execute("ROLLBACK")
        db.close()
    [line] = [json.loads(x) for x in stream.getvalue().splitlines() if "event.rejected" in x]
    assert (line["status"], line["reason"], line["level"]) == (503, "storage_error", "warning")
    async with http.get(service.server.make_url("/metrics")) as answer:
        assert 'bot_events_rejected_total{reason="storage_error"} 1.0' in await answer.text()
    # Refused, so not remembered: once the database writes again, the same event is accepted.
    assert (await service.events.post(event_url(service), form)).status == 200


_EVIL = (
    st.sampled_from(["", "0", "27", "-1", *EVIL_IDS])
    | st.sampled_from(
        ["chat1157", "chat2001", "L", "LINES", "LIVECHAT", "Y", "KEYBOARD", "livechat|1|1373|27"]
    )
    | st.sampled_from(
        ["Y|LEAD|1209|N|N|٥|1", "/rate 494 5\n/rate 495 1", "/help\n" * 30, "[USER=1]x[/USER]"]
    )
)
_FIELDS = st.sampled_from(
    [
        "data[PARAMS][MESSAGE]",
        "data[PARAMS][MESSAGE_ID]",
        "data[PARAMS][DIALOG_ID]",
        "data[PARAMS][FROM_USER_ID]",
        "data[PARAMS][CHAT_TYPE]",
        "data[PARAMS][CHAT_ENTITY_TYPE]",
        "data[PARAMS][CHAT_ENTITY_ID]",
        "data[PARAMS][CHAT_ENTITY_DATA_1]",
        "data[PARAMS][SYSTEM]",
        "data[USER][ID]",
        "data[USER][IS_CONNECTOR]",
        "data[USER][IS_EXTRANET]",
        "data[COMMAND][9][COMMAND]",
        "data[COMMAND][9][COMMAND_ID]",
        "data[COMMAND][9][COMMAND_CONTEXT]",
        "data[COMMAND][9][COMMAND_PARAMS]",
        "data[COMMAND][9][MESSAGE_ID]",
        "data[PARAMS][BOT_IN_CHAT][1]",
    ]
)
_MESSAGE_IDS = itertools.count(100_000)
_BASES = {
    "ONIMCOMMANDADD": {
        "data[COMMAND][9][COMMAND]": "rate",
        "data[COMMAND][9][COMMAND_ID]": "9",
        "data[COMMAND][9][MESSAGE_ID]": "7",
    },
    "ONIMBOTMESSAGEADD": {},
    "ONIMBOTJOINCHAT": {"data[PARAMS][USER_ID]": "27"},
}


@settings(
    max_examples=150,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    event=st.sampled_from([*_BASES, "ONIMBOTDELETE", "ONAPPINSTALL", "", "ONIM BOT"]),
    changes=st.dictionaries(_FIELDS, _EVIL | st.text(max_size=30), max_size=6),
    dropped=st.sets(_FIELDS, max_size=3),
)
async def test_forged_bodies_get_4xx_or_200_and_every_accepted_job_finishes(
    service: Service, event: str, changes: dict[str, str], dropped: set[str]
) -> None:
    """A fuzz of forged bodies over HTTP: never a 5xx, and nothing accepted fails forever."""
    message_id = str(next(_MESSAGE_IDS))  # a new message each time, not a duplicate
    base = _message(MESSAGE="/rate 494 5", MESSAGE_ID=message_id) | _BASES.get(event, {})
    base = {k: message_id if k.endswith("[MESSAGE_ID]") else v for k, v in base.items()}
    body = {k: v for k, v in (base | changes | {"event": event}).items() if k not in dropped}
    delivery = await service.events.post(event_url(service), body)
    assert delivery.status is not None
    assert delivery.status < 500, delivery.body
    if delivery.status == 200:
        assert json.loads(delivery.body)["status"] in {"ok", "ignored"}
    await drained(service)
    assert all(
        entry.outcome != "crashed" for entry in await service.server.app[INTAKE].storage.audit()
    )
