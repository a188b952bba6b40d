"""The SQLite storage: jobs that survive the process, de-dup keys, the audit log; each user's
fair share of the queue, one session's commands in arrival order, claims with an owner and a
lease."""

from __future__ import annotations

import gc
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from bot.jobs import session_of
from bot.models import BitrixRoute, IncomingCommand, Reply
from bot.storage import AuditEntry, Storage, open_storage
from bot.storage.sqlite import CLAIM, MIGRATIONS
from tests.harness import eventually, write_locked

LEASE = 60.0


def job(key: str, text: str = "/rate 494 5", author: int = 27) -> IncomingCommand:
    route = BitrixRoute(dialog_id=str(author), author_dialog_id=str(author))
    return IncomingCommand(
        key=key, source="bitrix", author_id=author, text=text, received_at=time.time(), route=route
    )


async def opened(path: Path) -> Storage:
    """Another process opening the same file (each open is its own claim owner)."""
    return await open_storage(f"sqlite:///{path}", session_of=session_of, lease=LEASE)


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


async def test_opening_creates_the_file_in_wal_mode_at_the_latest_schema(
    storage: Storage, path: Path
) -> None:
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


async def test_a_key_is_stored_once(storage: Storage) -> None:
    assert await storage.enqueue([job("a"), job("b")], limit=10, user_limit=10) == ["a", "b"]
    assert await storage.enqueue([job("b"), job("c")], limit=10, user_limit=10) == ["c"]
    assert await storage.unfinished() == 3


async def test_beyond_the_limit_nothing_is_stored(storage: Storage) -> None:
    assert await storage.enqueue([job("a")], limit=2, user_limit=10) == ["a"]
    assert await storage.enqueue([job("b"), job("c")], limit=2, user_limit=10) == "queue_full"
    assert await storage.unfinished() == 1
    assert await storage.enqueue([job("a"), job("b")], limit=2, user_limit=10) == ["b"]  # a: dup


async def test_jobs_are_claimed_once_oldest_first_and_only_when_due(storage: Storage) -> None:
    await storage.enqueue([job("a")], limit=10, user_limit=10)
    await storage.enqueue([job("b", "/rate 495 5")], limit=10, user_limit=10)
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
    first = await opened(path)
    await first.enqueue([job("a")], limit=10, user_limit=10)
    assert await first.claim(time.time()) is not None
    await first.decide("a", Reply(text="✅ Сохранено"), "saved")
    assert await first.claim(time.time()) is None  # still its worker's
    second = await opened(path)  # the first process died: its lease runs out
    again = await second.claim(time.time() + LEASE + 1)
    await second.close()
    await first.close()
    assert again is not None
    assert (again.reply, again.outcome) == (Reply(text="✅ Сохранено"), "saved")


async def test_another_process_leaves_a_live_claim_alone_and_takes_it_when_the_lease_runs_out(
    path: Path,
) -> None:
    first = await opened(path)
    await first.enqueue([job("a")], limit=10, user_limit=10)
    now = time.time()
    assert await first.claim(now) is not None
    second = await opened(path)  # `audit`, or a second instance started by mistake
    assert await second.claim(now + 1) is None
    assert await first.renew(["a"], now + LEASE / 2) == 1  # the heartbeat of a live process
    assert await second.claim(now + LEASE + 1) is None
    taken = await second.claim(now + LEASE * 2)  # no heartbeat since: the first process died
    assert taken is not None
    assert (taken.key, taken.attempts) == ("a", 2)
    assert await first.renew(["a"], now + LEASE * 2) == 0  # it is no longer the first's
    await first.postpone("a", until=now, error="late")  # nor may the first put it back
    assert await second.claim(now + LEASE * 2) is None
    await second.close()
    await first.close()


async def test_a_process_that_lost_its_claim_neither_decides_nor_finishes_the_job(
    path: Path,
) -> None:
    """The attack: the first process stalls past its lease (its renewals failing on a locked
    database) while its vote `/rate 494 1 OLD` is in flight, and a second takes the job over.
    The stalled one then records its reply and finishes. Neither may touch the job the second
    now runs: `/rate 494 5 NEW` would be claimed while OLD is still being written (and end
    overwritten by it), and the owner's reply and audit entry would be another's."""
    first, second = await opened(path), await opened(path)
    try:
        jobs = [job("a", "/rate 494 1 OLD"), job("b", "/rate 494 5 NEW")]
        await first.enqueue(jobs, limit=10, user_limit=10)
        now = time.time()
        assert (taken := await first.claim(now)) is not None
        assert taken.key == "a"
        assert (taken := await second.claim(now + LEASE + 1)) is not None
        assert taken.key == "a"
        await first.decide("a", Reply(text="stale"), "saved")
        await first.finish("a", entry("a", now))
        assert await second.claim(now + LEASE + 2) is None  # NEW waits: OLD still runs
        assert await second.audit() == []
        await second.postpone("a", until=now, error="HTTP_503")
        assert (again := await second.claim(now + LEASE + 2)) is not None
        assert (again.key, again.reply) == ("a", None)  # its own work, not the stale reply
    finally:
        await second.close()
        await first.close()


async def test_a_claim_left_without_renewal_is_due_again_for_its_own_process_too(
    storage: Storage,
) -> None:
    """A worker that could not record a crash leaves its job claimed: it must not be stuck
    there (holding back its session) until the next start."""
    await storage.enqueue([job("a")], limit=10, user_limit=10)
    now = time.time()
    assert await storage.claim(now) is not None
    assert await storage.claim(now + LEASE + 1) is not None


async def test_closing_puts_the_jobs_still_held_back_in_the_queue(path: Path) -> None:
    """A shutdown that cancelled running jobs: the next start runs them at once."""
    first = await opened(path)
    await first.enqueue([job("a")], limit=10, user_limit=10)
    assert await first.claim(time.time()) is not None
    await first.close()
    second = await opened(path)
    again = await second.claim(time.time())
    await second.close()
    assert again is not None
    assert again.key == "a"


@pytest.mark.parametrize(
    ("held", "new", "refusal"),
    [
        ({27: 3}, (27, 1), "user_share"),  # a user's share is full
        ({27: 3}, (28, 3), None),  # ...and another user still has room
        ({27: 2}, (27, 2), "user_share"),  # an event is refused whole, never in part
        ({27: 3, 28: 3}, (29, 1), "queue_full"),  # the queue is full, nobody's share is
        ({27: 3, 28: 3}, (27, 1), "user_share"),  # both: the user is told it is theirs
    ],
)
async def test_one_user_holds_at_most_a_fair_share_of_the_queue(
    storage: Storage, held: dict[int, int], new: tuple[int, int], refusal: str | None
) -> None:
    for author, count in held.items():
        jobs = [job(f"{author}-{n}", author=author) for n in range(count)]
        assert await storage.enqueue(jobs, limit=6, user_limit=3) == [j.key for j in jobs]
    author, count = new
    jobs = [job(f"new-{n}", author=author) for n in range(count)]
    expected = refusal or [j.key for j in jobs]
    assert await storage.enqueue(jobs, limit=6, user_limit=3) == expected


async def test_a_share_is_freed_by_finishing_and_counted_again_after_a_restart(
    path: Path,
) -> None:
    first = await opened(path)
    await first.enqueue([job("a"), job("b")], limit=10, user_limit=2)
    assert await first.enqueue([job("a")], limit=10, user_limit=2) == []  # a duplicate: no refusal
    assert await first.enqueue([job("c")], limit=10, user_limit=2) == "user_share"
    assert await first.claim(time.time())
    await first.finish("a", entry("a", time.time()))
    assert await first.enqueue([job("c")], limit=10, user_limit=2) == ["c"]
    await first.close()
    second = await opened(path)
    assert await second.enqueue([job("d")], limit=10, user_limit=2) == "user_share"
    assert await second.enqueue([job("e", author=28)], limit=10, user_limit=2) == ["e"]
    await second.close()


@pytest.mark.parametrize(("limit", "user_limit"), [(10, 2), (2, 10)])
async def test_jobs_another_instance_finished_free_the_share_and_the_queue(
    path: Path, limit: int, user_limit: int
) -> None:
    """The attack: a second instance on the same file (started by mistake, or taking over a
    dead one's claims) finishes the jobs the first accepted. The first must not go on counting
    them, or the author's every event (with a full queue: everyone's) is refused until a
    restart."""
    first, second = await opened(path), await opened(path)
    try:
        jobs = [job("a"), job("b", "/rate 495 5")]
        assert await first.enqueue(jobs, limit=limit, user_limit=user_limit) == ["a", "b"]
        for _ in jobs:
            claimed = await second.claim(time.time())
            assert claimed is not None
            await second.finish(claimed.key, entry(claimed.key, time.time()))
        assert await first.enqueue([job("c")], limit=limit, user_limit=user_limit) == ["c"]
    finally:
        await second.close()
        await first.close()


async def _put_first_job_in(storage: Storage, state: str) -> None:
    """The first job, `/rate 494 1 OLD`, claimed, postponed (due later) or finished."""
    first = await storage.claim(time.time())
    assert first is not None
    assert first.key == "first"
    if state == "postponed":
        await storage.postpone("first", until=time.time() + 600, error="HTTP_503")
    elif state == "finished":
        await storage.finish("first", entry("first", time.time()))


@pytest.mark.parametrize(
    ("first_is", "second_text", "second_may_run"),
    [
        ("claimed", "/rate 494 5 NEW", False),
        ("postponed", "/rate 494 5 NEW", False),
        ("finished", "/rate 494 5 NEW", True),
        ("claimed", "/rate #494 NEW", False),  # a comment alone is on the same session
        ("claimed", "/rate 495 5 NEW", True),  # another session is not held back
        ("postponed", "/rate 495 5 NEW", True),
        ("claimed", "/help", True),  # no session: no order to keep
        ("claimed", "/rate 494 9", True),  # a parse error acts on no session
    ],
)
async def test_commands_on_one_session_run_in_the_order_they_arrived(
    storage: Storage, first_is: str, second_text: str, *, second_may_run: bool
) -> None:
    first, second = job("first", "/rate 494 1 OLD"), job("second", second_text)
    assert await storage.enqueue([first, second], limit=10, user_limit=10) == ["first", "second"]
    await _put_first_job_in(storage, first_is)
    taken = await storage.claim(time.time() + 1)
    assert (taken.key if taken else None) == ("second" if second_may_run else None)


async def test_a_held_back_job_does_not_hold_back_the_jobs_behind_it(storage: Storage) -> None:
    jobs = [job("first", "/rate 494 1"), job("second", "/rate 494 5"), job("other", "/rate 495 5")]
    await storage.enqueue(jobs, limit=10, user_limit=10)
    await _put_first_job_in(storage, "postponed")
    taken = await storage.claim(time.time() + 1)
    assert taken is not None
    assert taken.key == "other"
    await storage.finish("other", entry("other", time.time()))
    assert await storage.claim(time.time() + 1) is None
    again = await storage.claim(time.time() + 601)  # the first is due again: first in line
    assert again is not None
    assert again.key == "first"


async def test_claiming_looks_jobs_up_by_index_however_long_the_queue(
    storage: Storage, path: Path
) -> None:
    db = sqlite3.connect(path)
    try:
        plan = db.execute(
            f"EXPLAIN QUERY PLAN {CLAIM}", {"owner": "o", "lease_until": 1.0, "now": 0.0}
        ).fetchall()
    finally:
        db.close()
    steps = [str(step[3]) for step in plan]
    assert [s for s in steps if s.startswith("SCAN")] == []
    assert any("USING INDEX jobs_due" in s for s in steps)
    assert any("USING INDEX jobs_session" in s for s in steps)


def _schema_1_database(path: Path, jobs: dict[str, tuple[str, str]]) -> None:
    """A database as the first release left it: key -> (state, text)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.executescript(f"BEGIN; {MIGRATIONS[0]}; PRAGMA user_version = 1; COMMIT;")
    for key, (state, text) in jobs.items():
        db.execute(
            "INSERT INTO jobs (key, payload, state, due_at, created_at, updated_at) "
            "VALUES (?, ?, ?, 0, 0, 0)",
            (key, job(key, text).model_dump_json(), state),
        )
    db.commit()
    db.close()


async def test_an_older_database_keeps_its_jobs_in_order_with_their_sessions(path: Path) -> None:
    _schema_1_database(
        path,
        {
            "old": ("claimed", "/rate 494 1 OLD"),  # its process had no lease: due again
            "new": ("queued", "/rate 494 5 NEW"),
            "done": ("done", "/rate 494 3"),
        },
    )
    storage = await opened(path)
    assert await storage.unfinished() == 2
    taken = await storage.claim(time.time())
    assert taken is not None
    assert taken.key == "old"
    assert await storage.claim(time.time()) is None  # "new" waits for "old", same session
    assert await storage.enqueue([job("x")], limit=10, user_limit=2) == "user_share"
    await storage.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


async def test_finishing_writes_the_audit_and_pruning_forgets_old_keys(storage: Storage) -> None:
    await storage.enqueue([job("old"), job("new")], limit=10, user_limit=10)
    for key in ("old", "new"):
        assert await storage.claim(time.time())
        await storage.finish(key, entry(key, time.time()))
    assert await storage.unfinished() == 0
    assert [e.key for e in await storage.audit()] == ["old", "new"]
    assert await storage.prune(before=time.time() + 1) == 2
    assert await storage.enqueue([job("old")], limit=10, user_limit=10) == [
        "old"
    ]  # forgotten: new again
    assert len(await storage.audit()) == 2  # the audit log is not pruned


async def test_the_audit_can_start_from_a_time(storage: Storage) -> None:
    for key, at in (("a", 100.0), ("b", 200.0)):
        await storage.enqueue([job(key)], limit=10, user_limit=10)
        await storage.claim(time.time())
        await storage.finish(key, entry(key, at))
    assert [e.key for e in await storage.audit(since=150)] == ["b"]


async def test_a_job_that_cannot_be_read_is_set_aside_and_the_next_one_is_claimed(
    storage: Storage, path: Path
) -> None:
    """The attack: a row that no longer parses (written by a newer version before a
    downgrade, or edited by hand). Claiming it failed at every lease, forever: it stayed
    unfinished, counted against the queue, and its worker backed off instead of working."""
    await storage.enqueue([job("a")], limit=10, user_limit=10)
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO jobs (key, payload, author, state, due_at, created_at, updated_at) "
            "VALUES ('poison', '{\"not\": \"a command\"}', 'bitrix:0', 'queued', 0, 0, 0)"
        )
    taken = await storage.claim(time.time())
    assert taken is not None
    assert taken.key == "a"
    await storage.finish("a", entry("a", time.time()))
    assert await storage.claim(time.time() + LEASE * 2) is None  # the poison is not due again
    assert await storage.unfinished() == 0
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT state, outcome FROM jobs WHERE key = 'poison'").fetchone()
    assert row == ("done", "unreadable")


def _first_release_payload(key: str, text: str, author: int, dialog_id: str) -> str:
    """A job as the first release wrote it: its route had no `author_dialog_id`."""
    route = {"kind": "bitrix", "dialog_id": dialog_id, "command_id": 5001, "message_id": 10}
    return json.dumps(
        {"key": key, "source": "bitrix", "author_id": author, "text": text,
         "chat_session_id": None, "language": "ru", "received_at": 0.0,
         "route": route | {"openline": False}}
    )  # fmt: skip


@pytest.mark.parametrize("dialog_id", ["27", "chat2001"])
async def test_a_job_the_first_release_queued_survives_the_upgrade(
    path: Path, dialog_id: str
) -> None:
    """The attack: upgrade while a command is queued. The first release's route has no
    `author_dialog_id`, so the migration could not read the row and the service did not
    start; and a second start set the command aside as unreadable: a command lost."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.executescript(f"BEGIN; {MIGRATIONS[0]}; PRAGMA user_version = 1; COMMIT;")
        db.execute(
            "INSERT INTO jobs (key, payload, state, due_at, created_at, updated_at) "
            "VALUES ('old', ?, 'queued', 0, 0, 0)",
            (_first_release_payload("old", "/rate 494 5", 27, dialog_id),),
        )
    db.close()
    storage = await opened(path)
    taken = await storage.claim(time.time())
    assert taken is not None
    assert (taken.key, taken.incoming.text) == ("old", "/rate 494 5")
    assert taken.incoming.bitrix_route.dialog_id == dialog_id
    assert taken.incoming.bitrix_route.author_dialog_id == "27"  # the private chat with the author
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT session_id FROM jobs").fetchall() == [(494,)]
    db.close()
    await storage.close()


async def test_an_unreadable_job_of_an_older_database_does_not_stop_the_upgrade(
    path: Path,
) -> None:
    _schema_1_database(path, {"good": ("queued", "/rate 494 5")})
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO jobs (key, payload, state, due_at, created_at, updated_at) "
            "VALUES ('bad', '{\"key\": \"bad\"}', 'queued', 0, 0, 0), "
            "('worse', 'not json', 'queued', 0, 0, 0)"
        )
    db.close()
    storage = await opened(path)
    taken = await storage.claim(time.time())
    assert taken is not None
    assert taken.key == "good"  # "bad" is set aside, as on the current schema
    await storage.close()


@pytest.mark.parametrize(
    ("first_then", "after", "second_holds"),
    [
        ("renews", 5.0, False),  # the holder lives: nobody else takes its lease
        ("dies", 5.0, False),  # its lease has not run out yet
        ("dies", 11.0, True),  # it has: the second instance takes over
        ("lets_go", 0.0, True),  # released on close
    ],
)
async def test_one_consumer_lease_per_name_taken_over_only_when_it_runs_out(
    path: Path, first_then: str, after: float, second_holds: bool
) -> None:
    first, second = await opened(path), await opened(path)
    try:
        assert await first.hold("bot", now=0.0, lease=10.0)
        assert await first.hold("bot", now=1.0, lease=10.0)  # renewed by its holder
        assert await second.hold("other bot", now=1.0, lease=10.0)  # one lease per name
        if first_then == "renews":
            assert await first.hold("bot", now=after, lease=10.0)
        elif first_then == "lets_go":
            await first.let_go("bot")
        assert await second.hold("bot", now=after, lease=10.0) is second_holds
        assert await first.hold("bot", now=after, lease=10.0) is not second_holds
    finally:
        await first.close()
        await second.close()


def _storage_threads() -> set[threading.Thread]:
    """aiosqlite's worker threads: not daemons, so one left running keeps the process alive."""
    return {t for t in threading.enumerate() if "_connection_worker_thread" in t.name}


async def test_a_database_that_cannot_be_opened_leaves_no_thread_behind(path: Path) -> None:
    """A locked database at start fails the open; its connection is closed at once, not left
    for the garbage collector (a process exiting before it would wait for ever)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{path}"
    before = _storage_threads()
    gc.disable()  # the connection must be closed by the failed open, not collected
    try:
        with write_locked(url), pytest.raises(sqlite3.OperationalError):
            await open_storage(url, session_of=session_of, lease=60.0)
        await eventually(lambda: not (_storage_threads() - before))
    finally:
        gc.enable()
