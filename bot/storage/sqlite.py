"""The SQLite engine (aiosqlite, WAL). Schema migrations run on open, tracked by user_version."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import aiosqlite

from bot.models import IncomingCommand, Reply
from bot.storage import AuditEntry, Job

# Each entry moves the schema one version up; never edit one that has shipped.
MIGRATIONS: Final = (
    """
    CREATE TABLE jobs (
        key TEXT PRIMARY KEY,
        payload TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued', 'claimed', 'done')),
        reply TEXT,
        outcome TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        due_at REAL NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        last_error TEXT
    );
    CREATE INDEX jobs_due ON jobs (state, due_at);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        key TEXT NOT NULL UNIQUE,
        source TEXT NOT NULL,
        user_id INTEGER NOT NULL,
        text TEXT NOT NULL,
        command TEXT,
        session_id INTEGER,
        rating INTEGER,
        outcome TEXT NOT NULL,
        reply TEXT NOT NULL
    );
    """,
)


class SqliteStorage:
    """Jobs, de-dup keys (the jobs' own keys) and the audit log in one SQLite file."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        # One connection serves every task: a transaction must not interleave with another
        # task's statements, so each operation holds the connection for its whole duration.
        self._lock = asyncio.Lock()
        self._unfinished = 0

    @classmethod
    async def open(cls, path: str) -> SqliteStorage:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        await db.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: a commit survives a crash of the process (kill -9); only a power
        # loss may lose the last transactions.
        await db.execute("PRAGMA synchronous = NORMAL")
        await db.execute("PRAGMA busy_timeout = 5000")
        storage = cls(db)
        await storage._migrate()
        # Jobs claimed by a process that died were never finished: they are due again.
        await db.execute("UPDATE jobs SET state = 'queued' WHERE state = 'claimed'")
        storage._unfinished = await storage.unfinished()
        return storage

    async def _migrate(self) -> None:
        async with self._db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        version = row[0] if row else 0
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await self._db.executescript(
                f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;"
            )

    async def enqueue(self, jobs: Sequence[IncomingCommand], *, limit: int) -> list[str] | None:
        # One statement (so one trip to the database thread) on the hot path of the event
        # handler: the unfinished count is kept in memory, and duplicates are skipped by the
        # primary key rather than looked up first.
        if not jobs:
            return []
        async with self._lock:
            if self._unfinished + len(jobs) > limit:
                known = await self._known([job.key for job in jobs])
                if self._unfinished + sum(job.key not in known for job in jobs) > limit:
                    return None
            now = time.time()
            values = ", ".join(["(?, ?, 'queued', ?, ?, ?)"] * len(jobs))  # placeholders only
            rows = await self._db.execute_fetchall(
                "INSERT INTO jobs (key, payload, state, due_at, created_at, updated_at) "  # noqa: S608
                f"VALUES {values} ON CONFLICT (key) DO NOTHING RETURNING key",
                [v for job in jobs for v in (job.key, job.model_dump_json(), now, now, now)],
            )
            inserted = {row[0] for row in rows}
            self._unfinished += len(inserted)
            return [job.key for job in jobs if job.key in inserted]

    async def _known(self, keys: list[str]) -> set[str]:
        if not keys:
            return set()
        marks = ",".join("?" * len(keys))
        query = f"SELECT key FROM jobs WHERE key IN ({marks})"  # noqa: S608 - placeholders only
        async with self._db.execute(query, keys) as cursor:
            return {row[0] async for row in cursor}

    async def claim(self, now: float) -> Job | None:
        async with self._lock:
            async with self._db.execute(
                "UPDATE jobs SET state = 'claimed', attempts = attempts + 1, updated_at = ? "
                "WHERE key = (SELECT key FROM jobs WHERE state = 'queued' AND due_at <= ? "
                "ORDER BY due_at, created_at LIMIT 1) "
                "RETURNING key, payload, reply, outcome, attempts, created_at",
                (now, now),
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:
                return None
            key, payload, reply, outcome, attempts, created_at = row
            return Job(
                key=key,
                incoming=IncomingCommand.model_validate_json(payload),
                reply=Reply.model_validate_json(reply) if reply else None,
                outcome=outcome,
                attempts=attempts,
                created_at=created_at,
            )

    async def decide(self, key: str, reply: Reply, outcome: str) -> None:
        async with self._lock:
            await self._db.execute(
                "UPDATE jobs SET reply = ?, outcome = ?, updated_at = ? WHERE key = ?",
                (reply.model_dump_json(), outcome, time.time(), key),
            )

    async def postpone(self, key: str, *, until: float, error: str) -> None:
        async with self._lock:
            await self._db.execute(
                "UPDATE jobs SET state = 'queued', due_at = ?, last_error = ?, updated_at = ? "
                "WHERE key = ?",
                (until, error, time.time(), key),
            )

    async def finish(self, key: str, entry: AuditEntry) -> None:
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                finished = await self._db.execute(
                    "UPDATE jobs SET state = 'done', updated_at = ? WHERE key = ? "
                    "AND state != 'done'",
                    (entry.at, key),
                )
                self._unfinished -= finished.rowcount
                await self._db.execute(
                    "INSERT OR IGNORE INTO audit (at, key, source, user_id, text, command, "
                    "session_id, rating, outcome, reply) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        entry.at,
                        entry.key,
                        entry.source,
                        entry.user_id,
                        entry.text,
                        entry.command,
                        entry.session_id,
                        entry.rating,
                        entry.outcome,
                        entry.reply,
                    ),
                )
                await self._db.execute("COMMIT")
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise

    async def unfinished(self) -> int:
        async with self._lock:
            async with self._db.execute(
                "SELECT count(*) FROM jobs WHERE state != 'done'"
            ) as cursor:
                row = await cursor.fetchone()
            return int(row[0]) if row else 0

    async def prune(self, *, before: float) -> int:
        async with self._lock:
            cursor = await self._db.execute(
                "DELETE FROM jobs WHERE state = 'done' AND updated_at < ?", (before,)
            )
            return cursor.rowcount

    async def audit(self, *, since: float = 0) -> list[AuditEntry]:
        async with self._lock:
            async with self._db.execute(
                "SELECT at, key, source, user_id, text, command, session_id, rating, outcome, "
                "reply FROM audit WHERE at >= ? ORDER BY id",
                (since,),
            ) as cursor:
                rows = await cursor.fetchall()
            names = (
                "at",
                "key",
                "source",
                "user_id",
                "text",
                "command",
                "session_id",
                "rating",
                "outcome",
                "reply",
            )
            return [AuditEntry.model_validate(dict(zip(names, row, strict=True))) for row in rows]

    async def close(self) -> None:
        await self._db.close()
