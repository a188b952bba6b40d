"""Replies into Telegram: the star keyboard, a press settled or refused, text a user wrote kept
inert, and Telegram's own failures (429, 403, 5xx) handled by the durable queue."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from bot.sandbox.telegram.world import TelegramWorld, TgFault, TgMessage
from bot.state import CORE, SETTINGS
from bot.storage import AuditEntry
from bot.telegram.replies import MAX_CALLBACK_DATA
from tests.bot.telegram.conftest import GROUP, LINKED, STRANGER, Service, Start, from_bot
from tests.harness import eventually, job_rows


async def star_prompt(start: Start, world: TelegramWorld) -> tuple[Service, TgMessage]:
    """The service up and its star keyboard for session 494 in the group."""
    service = await start()
    world.type(LINKED, GROUP, "/rate 494")
    (prompt,) = await eventually(lambda: from_bot(world, GROUP))
    return service, prompt


async def test_the_star_keyboard_is_an_inline_keyboard_with_short_callback_data(
    start: Start, telegram_world: TelegramWorld
) -> None:
    _, prompt = await star_prompt(start, telegram_world)
    assert prompt.reply_markup is not None
    (row,) = prompt.reply_markup["inline_keyboard"]
    assert [b["callback_data"] for b in row] == [f"/rate 494 {n}" for n in range(1, 6)]
    assert all(len(b["callback_data"].encode()) <= MAX_CALLBACK_DATA for b in row)


async def test_the_authors_press_saves_and_turns_the_keyboard_into_the_result(
    start: Start, telegram_world: TelegramWorld
) -> None:
    service, prompt = await star_prompt(start, telegram_world)
    press = telegram_world.press(LINKED, GROUP, prompt.message_id, "/rate 494 5")
    assert press is not None
    query_id = press["callback_query"]["id"]
    await eventually(lambda: prompt.edit_date)
    # The keyboard is gone; Telegram trims the text's trailing space.
    assert (prompt.text, prompt.reply_markup) == ("✅ Saved. 494: 5", None)
    answer = await eventually(lambda: telegram_world.callback_queries[query_id]["answer"])
    assert answer["show_alert"] is False
    assert len(from_bot(telegram_world, GROUP)) == 1  # edited, nothing new sent
    job = service.core.seen[-1]
    assert (job.key, job.author_id, job.b24_user_id) == (f"tg:cb:{query_id}", LINKED, 27)


async def test_a_strangers_press_is_refused_to_them_alone_and_the_keyboard_stays(
    start: Start, telegram_world: TelegramWorld
) -> None:
    service, prompt = await star_prompt(start, telegram_world)
    keyboard = prompt.reply_markup
    press = telegram_world.press(STRANGER, GROUP, prompt.message_id, "/rate 494 1")
    assert press is not None
    query = telegram_world.callback_queries[press["callback_query"]["id"]]
    answer = await eventually(lambda: query["answer"])
    assert answer == {"text": "You may not rate.", "show_alert": True}
    assert (prompt.edit_date, prompt.reply_markup) == (None, keyboard)
    assert len(from_bot(telegram_world, GROUP)) == 1
    assert service.core.seen[-1].author_id == STRANGER


async def test_a_press_delivered_twice_is_one_vote(
    start: Start, telegram_world: TelegramWorld
) -> None:
    service, prompt = await star_prompt(start, telegram_world)
    press = telegram_world.press(LINKED, GROUP, prompt.message_id, "/rate 494 5")
    assert press is not None
    await eventually(lambda: prompt.edit_date)
    telegram_world.add_update("callback_query", press["callback_query"])  # same query id
    marker = telegram_world.type(LINKED, GROUP, "/help")
    assert marker is not None
    await eventually(
        lambda: any(j.key == f"tg:{marker['update_id']}:0" for j in service.core.seen)
    )
    assert [j.text for j in service.core.seen] == ["/rate 494", "/rate 494 5", "/help"]


@pytest.mark.parametrize(
    "comment",
    [
        "<b>bold</b>",
        "&amp; &lt;",
        '<a href="https://evil.example">click</a>',
        "[b]loud[/b] [URL=https://evil.example]x[/URL]",
        "*stars* _under_ `code`",
    ],
)
async def test_what_a_user_wrote_reaches_telegram_as_plain_text(
    start: Start, telegram_world: TelegramWorld, comment: str
) -> None:
    await start()
    telegram_world.type(LINKED, GROUP, f"/rate 494 5 {comment}")
    (sent,) = await eventually(lambda: from_bot(telegram_world, GROUP))
    # Telegram reads no markup: every character as typed, no formatting entity.
    assert (sent.parse_mode, sent.entities) == (None, [])
    assert sent.text.replace("\u2060", "") == f"✅ Saved. 494: 5 {comment}"


async def test_a_429_is_waited_out_by_the_queue_and_the_reply_then_goes(
    start: Start, telegram_world: TelegramWorld
) -> None:
    telegram_world.faults.append(TgFault("sendMessage", status=429, retry_after=1))
    service = await start()
    telegram_world.type(LINKED, GROUP, "/rate 494 5")
    (sent,) = await eventually(lambda: from_bot(telegram_world, GROUP), within=10)
    assert sent.text == "✅ Saved. 494: 5"  # Telegram trims the text
    assert telegram_world.faults == []  # the first try met the 429
    assert len(service.core.seen) == 1  # the vote ran once; only its reply was postponed
    (entry,) = await audited(service)
    assert entry.outcome == "saved"


@pytest.mark.parametrize(
    ("retry_after", "least", "most"),
    [
        (3, 3.0, 3.5),  # Telegram's wait, not the queue's first 0.05 s
        (86_400, 4.0, 6.5),  # a day: bounded by the queue's longest wait (5 s here)
    ],
)
async def test_a_429_postpones_the_reply_by_telegrams_wait_within_bounds(
    start: Start, telegram_world: TelegramWorld, retry_after: int, least: float, most: float
) -> None:
    telegram_world.faults.append(TgFault("sendMessage", status=429, retry_after=retry_after))
    service = await start()
    before = time.time()
    telegram_world.type(LINKED, GROUP, "/rate 494 5")
    row = await eventually(lambda: due_of(service, "too_many_requests"))
    assert before + least <= row <= time.time() + most


@pytest.mark.parametrize(
    ("status", "description"),
    [(502, "Bad Gateway"), (500, "Internal Server Error")],
)
async def test_a_failing_bot_api_is_tried_again_by_the_queue(
    start: Start, telegram_world: TelegramWorld, status: int, description: str
) -> None:
    telegram_world.faults.append(TgFault("sendMessage", status=status, description=description))
    service = await start()
    telegram_world.type(LINKED, GROUP, "/rate 494 5")
    (entry,) = await audited(service)
    assert entry.outcome == "saved"
    assert telegram_world.faults == []  # the failed try, then the one that went
    assert len(from_bot(telegram_world, GROUP)) == 1
    assert len(service.core.seen) == 1


async def test_a_bot_removed_from_the_chat_is_not_retried(
    start: Start, telegram_world: TelegramWorld
) -> None:
    fault = TgFault("sendMessage", times=2, status=403)  # the fake's "bot was kicked"
    telegram_world.faults.append(fault)
    service = await start()
    telegram_world.type(LINKED, GROUP, "/rate 494 5")
    (entry,) = await audited(service)
    assert entry.outcome == "saved"  # the vote stands; its reply could not go
    assert fault.times == 1  # tried once, never again
    assert from_bot(telegram_world, GROUP) == []
    [(_, state, _, attempts)] = job_rows(service.app[SETTINGS].bot_database_url)
    assert (state, attempts) == ("done", 1)


async def audited(service: Service, within: float = 10.0) -> list[AuditEntry]:
    """The audit log once a job has finished."""
    deadline = time.monotonic() + within
    while not (entries := await service.app[CORE].storage.audit()):
        assert time.monotonic() < deadline, "no job finished in time"
        await asyncio.sleep(0.02)
    return entries


def due_of(service: Service, error: str) -> float | None:
    """When the postponed job is due again, read from the database as it is."""
    url = service.app[SETTINGS].bot_database_url
    db = sqlite3.connect(f"{Path(url.removeprefix('sqlite:///')).as_uri()}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT due_at FROM jobs WHERE last_error = ?", (error,)).fetchone()
    finally:
        db.close()
    return float(row[0]) if row else None
