"""The SQLite engine (aiosqlite, WAL). Schema migrations run on open, tracked by user_version.

A claimed job belongs to the instance that claimed it (`owner`, random per open) for a lease:
while claimed, `due_at` is the lease's expiry, which the owner keeps pushing forward while it
works on the job (`renew`). So another process opening the file (`audit`, a second instance
started by mistake) leaves live claims alone, and a dead process's claims are due again once
their lease has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Collection, Sequence
from pathlib import Path
from typing import Final

import aiosqlite
import structlog
from pydantic import ValidationError

from bot.errors import StorageMissing
from bot.models import IncomingCommand, Reply
from bot.secretbox import SecretBox
from bot.storage import AuditEntry, Decided, Job, Refusal, SessionOf
from bot.storage.sqlite_links import SqliteLinks
from bot.storage.sqlite_tokens import SqliteOAuthStates, SqliteUserTokens

log = structlog.get_logger(__name__)

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
    # Arrival order (`seq`: the rowid itself, which VACUUM keeps), each job's author (for the
    # per-user share) and session (for the per-session order), and claims with an owner.
    """
    CREATE TABLE jobs_v2 (
        seq INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        payload TEXT NOT NULL,
        author TEXT NOT NULL,
        session_id INTEGER,
        state TEXT NOT NULL CHECK (state IN ('queued', 'claimed', 'done')),
        owner TEXT,
        reply TEXT,
        outcome TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        due_at REAL NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        last_error TEXT
    );
    INSERT INTO jobs_v2 (key, payload, author, state, reply, outcome, attempts, due_at,
        created_at, updated_at, last_error)
    SELECT key,
        -- The first release's routes had no author_dialog_id: the private chat with the
        -- author is the author's user id.
        CASE WHEN json_valid(payload) THEN json_set(payload, '$.route.author_dialog_id',
            coalesce(json_extract(payload, '$.route.author_dialog_id'),
                CAST(json_extract(payload, '$.author_id') AS TEXT)))
        ELSE payload END,
        -- A row that does not parse is set aside when claimed; it must not stop the upgrade.
        CASE WHEN json_valid(payload) THEN coalesce(
            json_extract(payload, '$.source') || ':' || json_extract(payload, '$.author_id'), '')
        ELSE '' END,
        -- A claim of the old schema has no owner and no lease: due again, as it used to be.
        CASE state WHEN 'claimed' THEN 'queued' ELSE state END,
        reply, outcome, attempts, due_at, created_at, updated_at, last_error
    FROM jobs ORDER BY created_at, rowid;
    DROP TABLE jobs;
    ALTER TABLE jobs_v2 RENAME TO jobs;
    CREATE INDEX jobs_due ON jobs (due_at, seq) WHERE state != 'done';
    CREATE INDEX jobs_session ON jobs (session_id, seq) WHERE state != 'done';
    CREATE INDEX jobs_done ON jobs (updated_at) WHERE state = 'done';
    CREATE INDEX jobs_claimed ON jobs (owner) WHERE state = 'claimed';
    """,
    # Crashes apart from attempts: a job that waited out an outage has many attempts and
    # no crash yet.
    """
    ALTER TABLE jobs ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0;
    """,
    # One consumer of a bot's fetched events (bot/bitrix/fetch.py): the instance holding the
    # row until `expires_at`, which it keeps pushing forward while it lives.
    """
    CREATE TABLE consumers (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires_at REAL NOT NULL
    );
    """,
    # Telegram (issue 10): accounts linked one to one, link codes outstanding (their keyed
    # hashes: bot/links.py), and the Bitrix24 user a Telegram command acted as, for the audit.
    """
    CREATE TABLE links (
        tg_user_id INTEGER PRIMARY KEY,
        b24_user_id INTEGER NOT NULL UNIQUE,
        linked_at REAL NOT NULL
    );
    CREATE TABLE link_codes (
        digest TEXT PRIMARY KEY,
        b24_user_id INTEGER NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX link_codes_user ON link_codes (b24_user_id, expires_at);
    ALTER TABLE audit ADD COLUMN b24_user_id INTEGER;
    """,
    # Wrong link codes, one row each, kept for the failure window (bot/links.py): the limit
    # on guessing holds across restarts and replicas, and costs no memory however many
    # Telegram accounts try.
    """
    CREATE TABLE link_failures (
        tg_user_id INTEGER NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX link_failures_user ON link_failures (tg_user_id, at);
    CREATE INDEX link_failures_at ON link_failures (at);
    """,
    # Votes as the supervisor (issue 12, bot/storage/sqlite_tokens.py): link attempts
    # outstanding (their nonces' digests, in the order made), each supervisor's tokens sealed
    # with the key id they were sealed under, and the counter their versions are drawn from.
    """
    CREATE TABLE oauth_states (
        seq INTEGER PRIMARY KEY,
        digest TEXT NOT NULL UNIQUE,
        portal TEXT NOT NULL,
        user_id INTEGER NOT NULL,
        waiting TEXT,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX oauth_states_user ON oauth_states (portal, user_id, seq);
    CREATE INDEX oauth_states_expiry ON oauth_states (expires_at);
    CREATE TABLE user_tokens (
        portal TEXT NOT NULL,
        user_id INTEGER NOT NULL,
        key_id TEXT NOT NULL,
        access_token BLOB NOT NULL,
        refresh_token BLOB NOT NULL,
        access_expires_at REAL NOT NULL,
        refresh_issued_at REAL NOT NULL,
        member_id TEXT NOT NULL,
        client_endpoint TEXT NOT NULL,
        server TEXT NOT NULL,
        scope TEXT NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (portal, user_id)
    );
    CREATE INDEX user_tokens_refresh ON user_tokens (refresh_issued_at);
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    INSERT INTO counters (name, value) VALUES ('user_tokens', 0);
    """,
    # 8 (issue 12): whose rights the portal checked for a command: the webhook owner's, or the
    # supervisor's own token (application mode); NULL where nobody's were.
    """
    ALTER TABLE audit ADD COLUMN acted_as TEXT;
    """,
)
_SESSION_COLUMN: Final = 2  # the schema version that added jobs.session_id
# How long a write waits for a database another process holds (SQLite's busy timeout); how
# long readiness and closing wait, which must answer or end in time.
_BUSY_WAIT_MS: Final = 5000
_CHECK_WAIT_MS: Final = 1000
_RELEASE_WAIT_MS: Final = 500
_RECOUNT_EVERY: Final = 1.0  # seconds between recounts of unfinished jobs before a refusal

# Acquire or renew in one statement: the row is ours if it is new, already ours, or its
# holder's lease has run out (its process died).
HOLD: Final = """
INSERT INTO consumers (name, owner, expires_at) VALUES (:name, :owner, :until)
ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
    WHERE consumers.owner = excluded.owner OR consumers.expires_at <= :now
RETURNING owner
"""

# The oldest due job that no earlier unfinished job of its session holds back: a queued job
# whose time has come, or a claim whose lease has passed (its owner died, or stopped working
# on it without putting it back). The partial indexes serve both lookups. An earlier job whose
# reply is decided has had its effect (the vote is cast): only its answer is left to deliver,
# and a chat that cannot take it now (Telegram's 429, a Bot API outage) holds back no vote.
CLAIM: Final = """
UPDATE jobs SET state = 'claimed', owner = :owner, due_at = :lease_until,
    attempts = attempts + 1, updated_at = :now
WHERE seq = (
    SELECT seq FROM jobs AS job
    WHERE job.state != 'done' AND job.due_at <= :now
        AND NOT EXISTS (
            SELECT 1 FROM jobs AS earlier
            WHERE earlier.session_id = job.session_id AND earlier.state != 'done'
                AND earlier.reply IS NULL AND earlier.seq < job.seq
        )
    ORDER BY job.due_at, job.seq LIMIT 1
)
RETURNING key, payload, reply, outcome, attempts, crashes, created_at
"""


def _author(job: IncomingCommand) -> str:
    return f"{job.source}:{job.author_id}"


def _read_only_uri(path: str) -> str:
    if path == ":memory:" or not Path(path).is_file():
        raise StorageMissing(path)
    return Path(path).resolve().as_uri() + "?mode=ro"


class SqliteStorage(SqliteLinks):
    """Jobs, de-dup keys (the jobs' own keys) and the audit log in one SQLite file."""

    def __init__(
        self, db: aiosqlite.Connection, *, session_of: SessionOf | None, lease: float
    ) -> None:
        self._db = db
        self.lease = lease
        # One connection serves every task: a transaction must not interleave with another
        # task's statements, so each operation holds the connection for its whole duration.
        self._lock = asyncio.Lock()
        self._session_of = session_of
        self._owner = secrets.token_hex(8)
        # Unfinished jobs, in all and by author: kept in memory, off the event handler's path.
        self._unfinished = 0
        self._by_author: Counter[str] = Counter()
        self._recounted_at = -_RECOUNT_EVERY

    @classmethod
    async def open(cls, path: str, *, session_of: SessionOf, lease: float) -> SqliteStorage:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            await db.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode: a commit survives a crash of the process (kill -9); only a
            # power loss may lose the last transactions.
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute(f"PRAGMA busy_timeout = {_BUSY_WAIT_MS}")
            storage = cls(db, session_of=session_of, lease=lease)
            await storage._migrate()
            # Claims are left alone: a live process holds them; a dead one's lease runs out.
            await storage._count_unfinished()
        except BaseException:
            # aiosqlite's worker is not a daemon thread: a connection left open keeps the
            # process from exiting (a locked database at start would hang `check` and tests).
            await db.close()
            raise
        return storage

    @classmethod
    async def open_read_only(cls, path: str) -> SqliteStorage:
        """An existing database, read only (SQLite `mode=ro`): nothing is created or changed."""
        db = await aiosqlite.connect(_read_only_uri(path), uri=True, isolation_level=None)
        try:
            await db.execute(f"PRAGMA busy_timeout = {_BUSY_WAIT_MS}")
            async with db.execute("PRAGMA user_version") as cursor:
                version = await cursor.fetchone()
        except sqlite3.DatabaseError:  # a file that is not SQLite at all
            version = None
        except BaseException:  # see `open`: never leave the worker thread behind
            await db.close()
            raise
        if version is None or version[0] == 0:  # not a database this service has written
            await db.close()
            raise StorageMissing(path)
        return cls(db, session_of=None, lease=0.0)

    def oauth_states(self) -> SqliteOAuthStates:
        return SqliteOAuthStates(self._db, self._lock)

    def user_tokens(self, box: SecretBox) -> SqliteUserTokens:
        return SqliteUserTokens(self._db, self._lock, box)

    async def _migrate(self) -> None:
        async with self._db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        version = row[0] if row else 0
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await self._db.executescript(
                f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;"
            )
        if version < _SESSION_COLUMN:
            await self._find_sessions()

    async def _find_sessions(self) -> None:
        """The sessions of jobs queued before the schema had a column for them."""
        assert self._session_of is not None  # noqa: S101 - only a writable open migrates
        rows = await self._db.execute_fetchall(
            "SELECT seq, payload FROM jobs WHERE state != 'done'"
        )
        sessions = []
        for seq, payload in rows:
            try:
                sessions.append(
                    (self._session_of(IncomingCommand.model_validate_json(payload)), seq)
                )
            except ValidationError:
                continue  # set aside when claimed (`_set_aside`), not a reason not to start
        await self._db.executemany("UPDATE jobs SET session_id = ? WHERE seq = ?", sessions)

    async def _count_unfinished(self) -> None:
        rows = await self._db.execute_fetchall(
            "SELECT author, count(*) FROM jobs WHERE state != 'done' GROUP BY author"
        )
        self._by_author = Counter({str(row[0]): int(row[1]) for row in rows})
        self._unfinished = self._by_author.total()

    async def enqueue(
        self,
        jobs: Sequence[IncomingCommand],
        *,
        limit: int,
        user_limit: int,
        brief: bool = False,
    ) -> list[str] | Refusal:
        # One statement (so one trip to the database thread) on the hot path of the event
        # handler: the unfinished counts are kept in memory, and duplicates are skipped by the
        # primary key rather than looked up first.
        if not jobs:
            return []
        async with self._lock:
            if self._refusal(jobs, limit=limit, user_limit=user_limit):
                # The counts in memory are this instance's alone: another on the same file (a
                # takeover after a crash, a second one started by mistake) may have finished
                # some of its jobs. Counted again from the file before anything is refused,
                # at most once a second, so that a flood of refused events stays cheap.
                if time.monotonic() - self._recounted_at >= _RECOUNT_EVERY:
                    self._recounted_at = time.monotonic()
                    await self._count_unfinished()
                known = await self._known([job.key for job in jobs])
                fresh = [job for job in jobs if job.key not in known]
                refusal = self._refusal(fresh, limit=limit, user_limit=user_limit)
                if refusal is not None:
                    return refusal
            now = time.time()
            values = ", ".join(["(?, ?, ?, ?, 'queued', ?, ?, ?)"] * len(jobs))  # placeholders
            async with self._waiting(_CHECK_WAIT_MS if brief else _BUSY_WAIT_MS):
                rows = await self._db.execute_fetchall(
                    "INSERT INTO jobs (key, payload, author, session_id, state, due_at, "  # noqa: S608
                    f"created_at, updated_at) VALUES {values} ON CONFLICT (key) DO NOTHING "
                    "RETURNING key",
                    [value for job in jobs for value in self._row(job, now)],
                )
            inserted = {row[0] for row in rows}
            new = {job.key: job for job in jobs if job.key in inserted}
            self._unfinished += len(new)
            self._by_author.update(_author(job) for job in new.values())
            return [job.key for job in jobs if job.key in inserted]

    def _row(self, job: IncomingCommand, now: float) -> tuple[object, ...]:
        assert self._session_of is not None  # noqa: S101 - a read-only storage queues nothing
        payload = job.model_dump_json()
        return (job.key, payload, _author(job), self._session_of(job), now, now, now)

    def _refusal(
        self, jobs: Sequence[IncomingCommand], *, limit: int, user_limit: int
    ) -> Refusal | None:
        """Whether these new jobs would break the author's share or the queue's limit."""
        authors = Counter(_author(job) for job in jobs)
        if any(self._by_author[author] + n > user_limit for author, n in authors.items()):
            return "user_share"
        if self._unfinished + len(jobs) > limit:
            return "queue_full"
        return None

    async def _known(self, keys: list[str]) -> set[str]:
        if not keys:
            return set()
        marks = ",".join("?" * len(keys))
        query = f"SELECT key FROM jobs WHERE key IN ({marks})"  # noqa: S608 - placeholders only
        async with self._db.execute(query, keys) as cursor:
            return {row[0] async for row in cursor}

    async def claim(self, now: float) -> Job | None:
        async with self._lock:
            # A read first: idle workers polling an empty queue then never take the write
            # lock, so the event handler's insert never waits behind them (busy_timeout).
            due = await self._db.execute_fetchall(
                "SELECT 1 FROM jobs WHERE state != 'done' AND due_at <= ? LIMIT 1", (now,)
            )
            if not due:
                return None
            while True:
                async with self._db.execute(
                    CLAIM, {"owner": self._owner, "lease_until": now + self.lease, "now": now}
                ) as cursor:
                    row = await cursor.fetchone()
                if row is None:
                    return None
                key, payload, reply, outcome, attempts, crashes, created_at = row
                try:
                    return Job(
                        key=key,
                        incoming=IncomingCommand.model_validate_json(payload),
                        reply=Reply.model_validate_json(reply) if reply else None,
                        outcome=outcome,
                        attempts=attempts,
                        crashes=crashes,
                        created_at=created_at,
                    )
                except ValidationError as error:
                    await self._set_aside(key, error)

    async def _set_aside(self, key: str, error: ValidationError) -> None:
        """A row that no longer parses (a downgrade, a hand edit) can never run: it is done,
        with the outcome `unreadable`, rather than claimed again at every lease."""
        log.error("job.unreadable", key=key, errors=error.error_count())
        rows = await self._db.execute_fetchall(
            "UPDATE jobs SET state = 'done', owner = NULL, outcome = 'unreadable', "
            "last_error = 'unreadable', updated_at = ? WHERE key = ? RETURNING author",
            (time.time(), key),
        )
        self._forget([author for (author,) in rows])

    def _forget(self, authors: list[str]) -> None:
        """Jobs of these authors are done: off the unfinished counts."""
        for author in authors:
            self._unfinished -= 1
            self._by_author[author] -= 1
            if self._by_author[author] <= 0:
                del self._by_author[author]

    async def renew(self, keys: Collection[str], now: float) -> int:
        if not keys:
            return 0
        marks = ",".join("?" * len(keys))
        async with self._lock:
            cursor = await self._db.execute(
                "UPDATE jobs SET due_at = ? WHERE state = 'claimed' AND owner = ? "  # noqa: S608
                f"AND key IN ({marks})",  # placeholders only
                (now + self.lease, self._owner, *keys),
            )
            return cursor.rowcount

    async def decide(
        self, key: str, reply: Reply, outcome: str, follow_ups: Sequence[Decided] = ()
    ) -> None:
        # Only while this instance holds the job: one that lost it (stalled past its lease)
        # leaves it to the instance that took it over. Its follow-ups are queued in the same
        # transaction, already decided, under keys of their own: exactly once per decision.
        now = time.time()
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = await self._db.execute(
                    "UPDATE jobs SET reply = ?, outcome = ?, updated_at = ? "
                    "WHERE key = ? AND state = 'claimed' AND owner = ?",
                    (reply.model_dump_json(), outcome, now, key, self._owner),
                )
                new = await self._queue_decided(follow_ups, now) if cursor.rowcount else []
                await self._db.execute("COMMIT")
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            self._unfinished += len(new)
            self._by_author.update(new)

    async def _queue_decided(self, jobs: Sequence[Decided], now: float) -> list[str]:
        """Queue jobs whose reply is decided (only sending it is left); their authors."""
        authors = []
        for job in jobs:
            rows = await self._db.execute_fetchall(
                "INSERT INTO jobs (key, payload, author, session_id, state, reply, outcome, "
                "due_at, created_at, updated_at) VALUES (?, ?, ?, NULL, 'queued', ?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO NOTHING RETURNING author",
                (
                    job.incoming.key,
                    job.incoming.model_dump_json(),
                    _author(job.incoming),
                    job.reply.model_dump_json(),
                    job.outcome,
                    now,
                    now,
                    now,
                ),
            )
            authors += [str(author) for (author,) in rows]
        return authors

    async def postpone(self, key: str, *, until: float, error: str, crashed: bool = False) -> None:
        async with self._lock:
            await self._db.execute(
                "UPDATE jobs SET state = 'queued', owner = NULL, due_at = ?, last_error = ?, "
                "crashes = crashes + ?, updated_at = ? "
                "WHERE key = ? AND state = 'claimed' AND owner = ?",
                (until, error, int(crashed), time.time(), key, self._owner),
            )

    async def finish(self, key: str, entry: AuditEntry) -> None:
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                finished = await self._db.execute_fetchall(
                    # A reply holding a secret (a link code) is not kept once sent.
                    "UPDATE jobs SET state = 'done', owner = NULL, updated_at = ?, reply = CASE "
                    "WHEN json_extract(reply, '$.secret') THEN NULL ELSE reply END WHERE key = ? "
                    "AND state = 'claimed' AND owner = ? RETURNING author",
                    (entry.at, key, self._owner),
                )
                if not finished:  # another instance took the job over: it finishes it
                    await self._db.execute("ROLLBACK")
                    return
                self._forget([author for (author,) in finished])
                await self._db.execute(
                    "INSERT OR IGNORE INTO audit (at, key, source, user_id, b24_user_id, text, "
                    "command, session_id, rating, outcome, reply, acted_as) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        entry.at,
                        entry.key,
                        entry.source,
                        entry.user_id,
                        entry.b24_user_id,
                        entry.text,
                        entry.command,
                        entry.session_id,
                        entry.rating,
                        entry.outcome,
                        entry.reply,
                        entry.acted_as,
                    ),
                )
                await self._db.execute("COMMIT")
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise

    async def hold(self, name: str, *, now: float, lease: float) -> bool:
        # Renewed every third of the lease: a failed renewal is tried again in time, so it
        # need not wait long, nor keep the one database thread (and a stop) waiting.
        async with self._lock, self._waiting(_CHECK_WAIT_MS):
            rows = await self._db.execute_fetchall(
                HOLD, {"name": name, "owner": self._owner, "until": now + lease, "now": now}
            )
            return bool(rows)

    async def let_go(self, name: str) -> None:
        # At a stop: a lease not let go runs out by itself, so a locked database is waited
        # for only briefly (BOT_SHUTDOWN_TIMEOUT).
        async with self._lock, self._waiting(_RELEASE_WAIT_MS):
            await self._db.execute(
                "DELETE FROM consumers WHERE name = ? AND owner = ?", (name, self._owner)
            )

    @contextlib.asynccontextmanager
    async def _waiting(self, busy_ms: int) -> AsyncIterator[None]:
        """The statements inside wait at most `busy_ms` for another process's write lock."""
        if busy_ms == _BUSY_WAIT_MS:
            yield
            return
        await self._db.execute(f"PRAGMA busy_timeout = {busy_ms}")
        try:
            yield
        finally:
            await self._db.execute(f"PRAGMA busy_timeout = {_BUSY_WAIT_MS}")

    async def check(self) -> None:
        # A write lock taken and given back: reads still answer when another process holds
        # the lock or the disk is full, while every event would be refused.
        async with self._lock, self._waiting(_CHECK_WAIT_MS):
            await self._db.execute("BEGIN IMMEDIATE")
            await self._db.execute("ROLLBACK")

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
                "SELECT at, key, source, user_id, b24_user_id, text, command, session_id, "
                "rating, outcome, reply, acted_as FROM audit WHERE at >= ? ORDER BY id",
                (since,),
            ) as cursor:
                rows = await cursor.fetchall()
            names = (
                "at",
                "key",
                "source",
                "user_id",
                "b24_user_id",
                "text",
                "command",
                "session_id",
                "rating",
                "outcome",
                "reply",
                "acted_as",
            )
            return [AuditEntry.model_validate(dict(zip(names, row, strict=True))) for row in rows]

    async def close(self) -> None:
        try:
            if self._session_of is not None:  # writable: what this instance holds is due now
                async with self._lock:
                    await self._release_claims()
        finally:
            await self._db.close()

    async def _release_claims(self) -> None:
        """Put back what this instance holds, waiting for a locked database only briefly: a
        stop keeps its bound (BOT_SHUTDOWN_TIMEOUT), and claims left behind are not lost,
        only due again once their lease has run out."""
        now = time.time()
        await self._db.execute(f"PRAGMA busy_timeout = {_RELEASE_WAIT_MS}")
        try:
            await self._db.execute(
                "UPDATE jobs SET state = 'queued', owner = NULL, due_at = ?, "
                "updated_at = ? WHERE state = 'claimed' AND owner = ?",
                (now, now, self._owner),
            )
        except sqlite3.OperationalError as error:  # locked by another process
            log.warning("storage.claims_not_released", error=str(error), lease_s=self.lease)
