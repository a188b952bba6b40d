"""The SQLite storage: jobs that survive the process, de-dup keys, the audit log."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.models import BitrixRoute, IncomingCommand, Reply
from bot.storage import AuditEntry, Storage, open_storage
from bot.storage.sqlite import MIGRATIONS


def job(key: str, text: str = "/rate 494 5") -> IncomingCommand:
    route = BitrixRoute(dialog_id="27", author_dialog_id="27")
    return IncomingCommand(
        key=key, source="bitrix", author_id=27, text=text, received_at=time.time(), route=route
    )


def entry(key: str, at: float) -> AuditEntry:
    return AuditEntry(
        at=at,
        key=key,
        source="bitrix",
        user_id=27,
        text="/rate 494 5",
        command="rate",
        session_id=494,
        rating=5,
        outcome="saved",
        reply="✅",
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "bot.sqlite3"


@pytest.fixture
async def storage(path: Path) -> AsyncIterator[Storage]:
    opened = await open_storage(f"sqlite:///{path}")
    yield opened
    await opened.close()


async def test_opening_creates_the_file_in_wal_mode_at_the_latest_schema(
    storage: Storage, path: Path
) -> None:
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


async def test_a_key_is_stored_once(storage: Storage) -> None:
    assert await storage.enqueue([job("a"), job("b")], limit=10) == ["a", "b"]
    assert await storage.enqueue([job("b"), job("c")], limit=10) == ["c"]
    assert await storage.unfinished() == 3


async def test_beyond_the_limit_nothing_is_stored(storage: Storage) -> None:
    assert await storage.enqueue([job("a")], limit=2) == ["a"]
    assert await storage.enqueue([job("b"), job("c")], limit=2) is None
    assert await storage.unfinished() == 1
    assert await storage.enqueue([job("a"), job("b")], limit=2) == ["b"]  # a is a duplicate


async def test_jobs_are_claimed_once_oldest_first_and_only_when_due(storage: Storage) -> None:
    await storage.enqueue([job("a")], limit=10)
    await storage.enqueue([job("b")], limit=10)
    now = time.time()
    first, second = await storage.claim(now + 1), await storage.claim(now + 1)
    assert (first and first.key, second and second.key) == ("a", "b")
    assert await storage.claim(now + 1) is None
    await storage.postpone("a", until=now + 60, error="QUERY_LIMIT_EXCEEDED")
    assert await storage.claim(now + 1) is None
    again = await storage.claim(now + 61)
    assert again is not None
    assert (again.key, again.attempts, again.incoming.text) == ("a", 2, "/rate 494 5")


async def test_a_decided_reply_stays_with_its_claim_and_survives_a_crash(path: Path) -> None:
    first = await open_storage(f"sqlite:///{path}")
    await first.enqueue([job("a")], limit=10)
    assert await first.claim(time.time()) is not None
    await first.decide("a", Reply(text="✅ Сохранено"), "saved")
    assert await first.claim(time.time()) is None  # still its worker's
    second = await open_storage(f"sqlite:///{path}")  # the first process died
    again = await second.claim(time.time())
    await second.close()
    await first.close()
    assert again is not None
    assert (again.reply, again.outcome) == (Reply(text="✅ Сохранено"), "saved")


async def test_jobs_claimed_by_a_dead_process_are_due_again_on_open(path: Path) -> None:
    first = await open_storage(f"sqlite:///{path}")
    await first.enqueue([job("a")], limit=10)
    assert await first.claim(time.time()) is not None
    # The process dies without finishing (no close): the next one opens the same file.
    second = await open_storage(f"sqlite:///{path}")
    reclaimed = await second.claim(time.time())
    assert reclaimed is not None
    assert (reclaimed.key, reclaimed.attempts) == ("a", 2)
    await second.close()
    await first.close()


async def test_finishing_writes_the_audit_and_pruning_forgets_old_keys(storage: Storage) -> None:
    await storage.enqueue([job("old"), job("new")], limit=10)
    for key in ("old", "new"):
        assert await storage.claim(time.time())
        await storage.finish(key, entry(key, time.time()))
    assert await storage.unfinished() == 0
    assert [e.key for e in await storage.audit()] == ["old", "new"]
    assert await storage.prune(before=time.time() + 1) == 2
    assert await storage.enqueue([job("old")], limit=10) == ["old"]  # forgotten: new again
    assert len(await storage.audit()) == 2  # the audit log is not pruned


async def test_the_audit_can_start_from_a_time(storage: Storage) -> None:
    for key, at in (("a", 100.0), ("b", 200.0)):
        await storage.enqueue([job(key)], limit=10)
        await storage.claim(time.time())
        await storage.finish(key, entry(key, at))
    assert [e.key for e in await storage.audit(since=150)] == ["b"]
