"""Storage: durable jobs, the de-dup memory and the audit log, behind one port.

SQLite through aiosqlite is the engine today (`sqlite:///<path>`); another engine is another
module implementing `Storage`, chosen by `open_storage` from BOT_DATABASE_URL.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Literal, Protocol

from bot.models import Frozen, IncomingCommand, Reply
from bot.ports import OAuthStates, TokenStore
from bot.secretbox import SecretBox

# Why `enqueue` stored nothing: the author already holds their fair share of unfinished jobs,
# or the queue as a whole is full.
Refusal = Literal["user_share", "queue_full"]

# The open-line session a command acts on (None: it acts on none, so it is run in any order).
SessionOf = Callable[[IncomingCommand], int | None]


class Job(Frozen):
    """A claimed job: the command, and its reply once decided (then only the reply is left)."""

    key: str
    incoming: IncomingCommand
    reply: Reply | None
    outcome: str | None
    attempts: int  # claims, this one included
    crashes: int  # runs that crashed before this claim (postponements are no crashes)
    created_at: float


class Decided(Frozen):
    """A job queued with its reply already decided: only sending it is left (a vote's line
    in the feed chat)."""

    incoming: IncomingCommand
    reply: Reply
    outcome: str


class AuditEntry(Frozen):
    """What one command did, for `python -m bot audit`."""

    at: float
    key: str
    source: str
    user_id: int  # the author: a Bitrix24 user id, or a Telegram user id
    b24_user_id: int | None = None  # Telegram: the linked Bitrix24 user the command acted as
    text: str
    command: str | None
    session_id: int | None
    rating: int | None
    outcome: str
    reply: str
    # Whose rights Bitrix24 checked: "webhook" (its owner) or "own" (the supervisor's own
    # token, application mode); None: nothing was asked in anyone's name.
    acted_as: str | None = None


class Storage(Protocol):
    lease: float  # seconds a claim lasts unless its holder renews it

    async def enqueue(
        self,
        jobs: Sequence[IncomingCommand],
        *,
        limit: int,
        user_limit: int,
        brief: bool = False,
    ) -> list[str] | Refusal:
        """Commit new jobs; the keys that were new (the rest are duplicates), or why nothing
        was stored: they would give one author more than `user_limit` unfinished jobs, or the
        queue more than `limit`. `brief`: wait for a database another process holds only
        briefly, for a caller that can have the jobs again (fetch mode: the page stays in
        the portal until acknowledged)."""
        ...

    async def claim(self, now: float) -> Job | None:
        """Take the oldest due job, or None; this instance holds it for `lease` seconds
        unless it renews the lease. Jobs on one session are taken in the order they arrived:
        never while an earlier one of that session is unfinished (queued, even for later,
        or claimed). A claim whose lease has passed (its process died, or lost track of it)
        is due again."""
        ...

    async def renew(self, keys: Collection[str], now: float) -> int:
        """Renew the lease of these jobs (to `now` + `lease`) where this instance still holds
        them; how many."""
        ...

    async def decide(
        self, key: str, reply: Reply, outcome: str, follow_ups: Sequence[Decided] = ()
    ) -> None:
        """Record the reply of a claimed job whose work is done: if the process dies before
        the reply is sent, the job is claimed again with it and only the reply is sent.
        `follow_ups` are queued in the same transaction (keys already queued are skipped)."""
        ...

    async def postpone(self, key: str, *, until: float, error: str, crashed: bool = False) -> None:
        """Put a job this instance holds back, due at `until`; `crashed` counts a crash."""
        ...

    async def finish(self, key: str, entry: AuditEntry) -> None:
        """Mark a job done and write its audit entry, in one transaction."""
        ...

    async def hold(self, name: str, *, now: float, lease: float) -> bool:
        """Acquire or renew the lease on `name` (one consumer of a bot's events) until
        `now` + `lease`, atomically: whether this instance holds it now. Another holder's
        lease is taken over only once it has run out."""
        ...

    async def let_go(self, name: str) -> None:
        """Release the lease on `name` if this instance holds it."""
        ...

    async def check(self) -> None:
        """Raise unless the storage can take a write now (readiness)."""
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

    async def add_link_code(
        self, digest: str, b24_user_id: int, *, expires_at: float, now: float, keep: int
    ) -> None:
        """Store a link code's digest for a Bitrix24 user; the user's oldest codes beyond
        `keep` and every expired code are dropped."""
        ...

    async def redeem_link_code(self, digest: str, tg_user_id: int, *, now: float) -> int | None:
        """Use up a code and link the Telegram user to its Bitrix24 user (undoing either
        side's earlier link, and forgetting the user's wrong codes): that Bitrix24 user, or
        None for no live code."""
        ...

    async def void_link_code(self, digest: str) -> None:
        """Drop a code without using it (it was shown where others could read it)."""
        ...

    async def add_link_failure(self, tg_user_id: int, *, now: float, forget_before: float) -> None:
        """Record a wrong link code typed by a Telegram user; every record from before
        `forget_before` is dropped."""
        ...

    async def link_failures(self, tg_user_id: int, *, since: float) -> int:
        """How many wrong link codes the Telegram user typed after `since`."""
        ...

    async def linked_b24_user(self, tg_user_id: int) -> int | None:
        """The Bitrix24 user a Telegram user is linked to (stored links only)."""
        ...

    async def unlink(
        self, *, tg_user_id: int | None = None, b24_user_id: int | None = None
    ) -> bool:
        """Undo the stored link of either side: whether there was one."""
        ...

    def oauth_states(self) -> OAuthStates:
        """Supervisors' OAuth link attempts, in this storage (issue 12)."""
        ...

    def user_tokens(self, box: SecretBox) -> TokenStore:
        """Supervisors' OAuth tokens, in this storage, sealed with `box` (issue 12)."""
        ...

    async def close(self) -> None:
        """Put the jobs this instance still holds back in the queue, and close."""
        ...


async def open_storage(url: str, *, session_of: SessionOf, lease: float = 60.0) -> Storage:
    """The storage for BOT_DATABASE_URL (`sqlite:///<path>`), opened and migrated.

    `session_of` tells which session a job acts on, so that jobs on one session keep their
    order; a claim lasts `lease` seconds unless renewed (BOT_JOB_LEASE)."""
    from bot.storage.sqlite import SqliteStorage  # noqa: PLC0415 - engines load on demand

    path = url.removeprefix("sqlite:///")
    return await SqliteStorage.open(path, session_of=session_of, lease=lease)


async def open_storage_read_only(url: str) -> Storage:
    """The storage for BOT_DATABASE_URL opened for reading only (`python -m bot audit`): it
    changes nothing, not even a claim of a running service. Raises StorageMissing when there
    is no database there (none is created)."""
    from bot.storage.sqlite import SqliteStorage  # noqa: PLC0415 - engines load on demand

    return await SqliteStorage.open_read_only(url.removeprefix("sqlite:///"))
