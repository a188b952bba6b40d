"""Replies into Telegram: the star keyboard, a press settled or refused, text a user wrote kept
inert, and Telegram's own failures (429, 403) handled by the durable queue."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from bot.state import CORE, SETTINGS
from bot.storage import AuditEntry
from bot.telegram.replies import MAX_CALLBACK_DATA
from tests.bot.telegram.conftest import GROUP, LINKED, STRANGER, Service, Start
from tests.bot.telegram.fakebot import FakeBotApi
from tests.harness import eventually


async def test_the_star_keyboard_is_an_inline_keyboard_with_short_callback_data(
    start: Start, fake: FakeBotApi
) -> None:
    await start()
    fake.type(GROUP, LINKED, "/rate 494")
    (prompt,) = await eventually(lambda: fake.sent("sendMessage"))
    (row,) = prompt["reply_markup"]["inline_keyboard"]
    assert [b["callback_data"] for b in row] == [f"/rate 494 {n}" for n in range(1, 6)]
    assert all(len(b["callback_data"].encode()) <= MAX_CALLBACK_DATA for b in row)


async def test_the_authors_press_saves_and_turns_the_keyboard_into_the_result(
    start: Start, fake: FakeBotApi
) -> None:
    service = await start()
    press = fake.press(GROUP, LINKED, message_id=77, data="/rate 494 5")
    (edit,) = await eventually(lambda: fake.sent("editMessageText"))
    assert (edit["chat_id"], edit["message_id"]) == (str(GROUP), "77")
    assert edit["text"] == "✅ Saved. 494: 5 "
    (answer,) = fake.sent("answerCallbackQuery")
    assert answer["callback_query_id"] == press["callback_query"]["id"]
    assert "show_alert" not in answer or answer["show_alert"] in {"false", "False"}
    assert fake.sent("sendMessage") == []
    (job,) = service.core.seen
    assert (job.key, job.author_id, job.b24_user_id) == (
        f"tg:cb:{press['callback_query']['id']}",
        LINKED,
        27,
    )


async def test_a_strangers_press_is_refused_to_them_alone_and_the_keyboard_stays(
    start: Start, fake: FakeBotApi
) -> None:
    service = await start()
    fake.press(GROUP, STRANGER, message_id=77, data="/rate 494 1")
    (answer,) = await eventually(lambda: fake.sent("answerCallbackQuery"))
    assert answer["text"] == "You may not rate."
    assert answer["show_alert"] in {"true", "True"}
    assert fake.sent("editMessageText") == fake.sent("sendMessage") == []
    assert service.core.seen[0].author_id == STRANGER


async def test_a_press_delivered_twice_is_one_vote(start: Start, fake: FakeBotApi) -> None:
    service = await start()
    press = fake.press(GROUP, LINKED, message_id=77, data="/rate 494 5")
    await eventually(lambda: fake.sent("editMessageText"))
    fake.updates.append(press | {"update_id": press["update_id"] + 1000})  # same query id
    marker = fake.type(GROUP, LINKED, "/help")
    await eventually(
        lambda: any(j.key == f"tg:{marker['update_id']}:0" for j in service.core.seen)
    )
    assert [j.text for j in service.core.seen] == ["/rate 494 5", "/help"]


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
    start: Start, fake: FakeBotApi, comment: str
) -> None:
    await start()
    fake.type(GROUP, LINKED, f"/rate 494 5 {comment}")
    (sent,) = await eventually(lambda: fake.sent("sendMessage"))
    assert "parse_mode" not in sent  # Telegram reads no markup: every character as typed
    assert sent["text"].replace("\u2060", "") == f"✅ Saved. 494: 5 {comment}"


async def test_a_429_is_waited_out_by_the_queue_and_the_reply_then_goes(
    start: Start, fake: FakeBotApi
) -> None:
    fake.fail("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    service = await start()
    fake.type(GROUP, LINKED, "/rate 494 5")
    sent = await eventually(lambda: fake.sent("sendMessage")[1:], within=10)
    assert sent[0]["text"] == "✅ Saved. 494: 5 "
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
    start: Start, fake: FakeBotApi, retry_after: int, least: float, most: float
) -> None:
    fake.fail("sendMessage", 429, "Too Many Requests", retry_after=retry_after)
    service = await start()
    before = time.time()
    fake.type(GROUP, LINKED, "/rate 494 5")
    row = await eventually(lambda: due_of(service, "too_many_requests"))
    assert before + least <= row <= time.time() + most


@pytest.mark.parametrize(
    ("status", "description"),
    [(502, "Bad Gateway"), (500, "Internal Server Error")],
)
async def test_a_failing_bot_api_is_tried_again_by_the_queue(
    start: Start, fake: FakeBotApi, status: int, description: str
) -> None:
    fake.fail("sendMessage", status, description)
    service = await start()
    fake.type(GROUP, LINKED, "/rate 494 5")
    (entry,) = await audited(service)
    assert entry.outcome == "saved"
    assert len(fake.sent("sendMessage")) == 2  # the failed one, then the one that went
    assert len(service.core.seen) == 1


async def test_a_bot_removed_from_the_chat_is_not_retried(start: Start, fake: FakeBotApi) -> None:
    fake.fail("sendMessage", 403, "Forbidden: bot was kicked from the supergroup chat")
    service = await start()
    fake.type(GROUP, LINKED, "/rate 494 5")
    (entry,) = await audited(service)
    assert entry.outcome == "saved"  # the vote stands; its reply could not go
    assert len(fake.sent("sendMessage")) == 1


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
