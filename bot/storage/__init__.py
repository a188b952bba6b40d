"""Storage: durable jobs, the de-dup memory and the audit log, behind one port.

SQLite through aiosqlite is the engine today (`sqlite:///<path>`); another engine is another
module implementing `Storage`, chosen by `open_storage` from BOT_DATABASE_URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bot.models import Frozen, IncomingCommand, Reply


class Job(Frozen):
    """A claimed job: the command, and its reply once decided (then only the reply is left)."""

    key: str
    incoming: IncomingCommand
    reply: Reply | None
    outcome: str | None
    attempts: int
    created_at: float


class AuditEntry(Frozen):
    """What one command did, for `python -m bot audit`."""

    at: float
    key: str
    source: str
    user_id: int
    text: str
    command: str | None
    session_id: int | None
    rating: int | None
    outcome: str
    reply: str


class Storage(Protocol):
    async def enqueue(self, jobs: Sequence[IncomingCommand], *, limit: int) -> list[str] | None:
        """Commit new jobs; the keys that were new (the rest are duplicates), or None when
        they would take more than `limit` unfinished jobs (then nothing is stored)."""
        ...

    async def claim(self, now: float) -> Job | None:
        """Take the oldest job that is due, or None."""
        ...

    async def decide(self, key: str, reply: Reply, outcome: str) -> None:
        """Record the reply of a claimed job whose work is done: if the process dies before
        the reply is sent, the job is claimed again with it and only the reply is sent."""
        ...

    async def postpone(self, key: str, *, until: float, error: str) -> None:
        """Put a claimed job back, due at `until`."""
        ...

    async def finish(self, key: str, entry: AuditEntry) -> None:
        """Mark a job done and write its audit entry, in one transaction."""
        ...

    async def unfinished(self) -> int:
        """Jobs accepted and not done yet."""
        ...

    async def prune(self, *, before: float) -> int:
        """Forget finished jobs (their de-dup keys) older than `before`; how many."""
        ...

    async def audit(self, *, since: float = 0) -> list[AuditEntry]:
        """The audit log, oldest first."""
        ...

    async def close(self) -> None: ...


async def open_storage(url: str) -> Storage:
    """The storage for BOT_DATABASE_URL (`sqlite:///<path>`), opened and migrated."""
    from bot.storage.sqlite import SqliteStorage  # noqa: PLC0415 - engines load on demand

    return await SqliteStorage.open(url.removeprefix("sqlite:///"))
