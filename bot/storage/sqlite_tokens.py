"""Supervisors' OAuth link attempts and tokens in the SQLite engine (issue 12).

Link attempts (`oauth_states`): the nonce travels in the authorize link and comes back as the
callback's `state`; only its SHA-256 is stored. A nonce has 256 random bits, so unlike a link
code (bot/links.py) its digest needs no key: nobody can search for it. Taking an attempt
deletes it in the statement that reads it, so of two callbacks with one nonce exactly one
gets it, whatever the number of processes.

Tokens (`user_tokens`): sealed (bot/secretbox.py) and bound to their row and field. Every
write draws its version from one counter, so a compare-and-swap never mistakes a row dropped
and linked again for the one read before (no ABA).

The SQL is kept in the constants below and is standard (INSERT ... ON CONFLICT, DELETE and
UPDATE ... RETURNING): a PostgreSQL engine would change the placeholders and the statement
that begins a transaction, not the logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, Final

import aiosqlite
import structlog
from pydantic import SecretStr, ValidationError

from bot.errors import SealKeyChanged, SealUnreadable
from bot.models import IncomingCommand
from bot.ports import PendingLink, StoredTokens, UserTokens
from bot.secretbox import SecretBox

log = structlog.get_logger(__name__)

STATES_KEPT: Final = 5  # live link attempts per user: a new one drops the oldest
NONCE_BYTES: Final = 32  # 256 bits; the brief's floor is 128

NEW_STATE: Final = """
INSERT INTO oauth_states (digest, portal, user_id, waiting, created_at, expires_at)
VALUES (:digest, :portal, :user_id, :waiting, :now, :expires_at)
"""
KEEP_NEWEST_STATES: Final = """
DELETE FROM oauth_states WHERE portal = :portal AND user_id = :user_id AND seq NOT IN (
    SELECT seq FROM oauth_states WHERE portal = :portal AND user_id = :user_id
    ORDER BY seq DESC LIMIT :keep
)
"""
PURGE_STATES: Final = "DELETE FROM oauth_states WHERE expires_at <= :now"
DROP_USER_STATES: Final = "DELETE FROM oauth_states WHERE portal = :portal AND user_id = :user_id"
TAKE_STATE: Final = """
DELETE FROM oauth_states WHERE digest = :digest
RETURNING portal, user_id, waiting, expires_at
"""

NEXT_VERSION: Final = """
UPDATE counters SET value = value + 1 WHERE name = 'user_tokens' RETURNING value
"""
LINK_TOKENS: Final = """
INSERT INTO user_tokens (portal, user_id, key_id, access_token, refresh_token,
    access_expires_at, refresh_issued_at, member_id, client_endpoint, server, scope, version)
VALUES (:portal, :user_id, :key_id, :access_token, :refresh_token,
    :access_expires_at, :refresh_issued_at, :member_id, :client_endpoint, :server, :scope,
    :version)
ON CONFLICT (portal, user_id) DO UPDATE SET key_id = excluded.key_id,
    access_token = excluded.access_token, refresh_token = excluded.refresh_token,
    access_expires_at = excluded.access_expires_at,
    refresh_issued_at = excluded.refresh_issued_at, member_id = excluded.member_id,
    client_endpoint = excluded.client_endpoint, server = excluded.server,
    scope = excluded.scope, version = excluded.version
"""
REPLACE_TOKENS: Final = """
UPDATE user_tokens SET key_id = :key_id, access_token = :access_token,
    refresh_token = :refresh_token, access_expires_at = :access_expires_at,
    refresh_issued_at = :refresh_issued_at, member_id = :member_id,
    client_endpoint = :client_endpoint, server = :server, scope = :scope, version = :version
WHERE portal = :portal AND user_id = :user_id AND version = :replaces
"""
_SELECT_ROWS: Final = """
SELECT portal, user_id, key_id, access_token, refresh_token, access_expires_at,
    refresh_issued_at, member_id, client_endpoint, server, scope, version
FROM user_tokens
"""
GET_TOKENS: Final = _SELECT_ROWS + "WHERE portal = :portal AND user_id = :user_id"
DUE_TOKENS: Final = (
    _SELECT_ROWS + "WHERE refresh_issued_at < :issued_before AND key_id = :key_id "
    "ORDER BY refresh_issued_at LIMIT :limit"
)
DROP_TOKENS: Final = "DELETE FROM user_tokens WHERE portal = :portal AND user_id = :user_id"
DROP_PORTAL_TOKENS: Final = "DELETE FROM user_tokens WHERE portal = :portal"


def state_digest(nonce: str) -> str:
    """What is stored of a nonce."""
    return hashlib.sha256(nonce.encode()).hexdigest()


@contextlib.asynccontextmanager
async def _transaction(db: aiosqlite.Connection) -> AsyncIterator[None]:
    await db.execute("BEGIN IMMEDIATE")
    try:
        yield
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise


class SqliteOAuthStates:
    """The OAuthStates port on SqliteStorage's connection."""

    def __init__(
        self, db: aiosqlite.Connection, lock: asyncio.Lock, *, keep: int = STATES_KEPT
    ) -> None:
        self._db, self._lock, self._keep = db, lock, keep

    async def new_state(
        self, portal: str, user_id: int, waiting: IncomingCommand | None, ttl: float, now: float
    ) -> str:
        nonce = secrets.token_urlsafe(NONCE_BYTES)
        values = {
            "digest": state_digest(nonce),
            "portal": portal,
            "user_id": user_id,
            "waiting": waiting.model_dump_json() if waiting is not None else None,
            "now": now,
            "expires_at": now + ttl,
            "keep": self._keep,
        }
        async with self._lock, _transaction(self._db):
            await self._db.execute(PURGE_STATES, values)
            await self._db.execute(NEW_STATE, values)
            await self._db.execute(KEEP_NEWEST_STATES, values)
        return nonce

    async def take_state(self, nonce: str, now: float) -> PendingLink | None:
        async with self._lock:
            rows = list(
                await self._db.execute_fetchall(TAKE_STATE, {"digest": state_digest(nonce)})
            )
        if not rows:
            return None
        portal, user_id, waiting, expires_at = rows[0]
        if expires_at <= now:
            return None  # deleted all the same: an expired attempt is never good again
        return PendingLink(
            portal=portal,
            user_id=user_id,
            waiting=_waiting_command(waiting, portal=portal, user_id=user_id),
            expires_at=expires_at,
        )

    async def purge(self, now: float) -> int:
        async with self._lock:
            cursor = await self._db.execute(PURGE_STATES, {"now": now})
            return cursor.rowcount

    async def drop_states(self, portal: str, user_id: int) -> int:
        async with self._lock:
            cursor = await self._db.execute(
                DROP_USER_STATES, {"portal": portal, "user_id": user_id}
            )
            return cursor.rowcount


def _waiting_command(payload: str | None, *, portal: str, user_id: int) -> IncomingCommand | None:
    """The command an attempt waits to complete; one that no longer parses (a downgrade, a
    hand edit) is lost, not the link: the user sends it again."""
    if payload is None:
        return None
    try:
        return IncomingCommand.model_validate_json(payload)
    except ValidationError as error:
        log.warning(
            "oauth.waiting_unreadable", portal=portal, user_id=user_id, errors=error.error_count()
        )
        return None


class SqliteUserTokens:
    """The TokenStore port on SqliteStorage's connection, sealing with `box`."""

    def __init__(self, db: aiosqlite.Connection, lock: asyncio.Lock, box: SecretBox) -> None:
        self._db, self._lock, self._box = db, lock, box
        # Rows already logged as unreadable, by version: a row is logged once, not at every
        # command of its user; a new link (a new version) that fails again is logged again.
        self._logged: set[tuple[str, int, int]] = set()

    async def get(self, portal: str, user_id: int) -> StoredTokens | None:
        async with self._lock:
            rows = await self._db.execute_fetchall(
                GET_TOKENS, {"portal": portal, "user_id": user_id}
            )
        return next(self._readable(rows), None)

    async def put(
        self, portal: str, user_id: int, tokens: UserTokens, replaces: int | None
    ) -> bool:
        values = self._sealed(portal, user_id, tokens)
        async with self._lock, _transaction(self._db):
            rows = await self._db.execute_fetchall(NEXT_VERSION)
            values |= {"version": next(iter(rows))[0], "replaces": replaces}
            if replaces is None:
                await self._db.execute(LINK_TOKENS, values)
                return True
            cursor = await self._db.execute(REPLACE_TOKENS, values)
            return cursor.rowcount > 0

    async def drop(self, portal: str, user_id: int) -> bool:
        async with self._lock:
            cursor = await self._db.execute(DROP_TOKENS, {"portal": portal, "user_id": user_id})
            return cursor.rowcount > 0

    async def drop_portal(self, portal: str) -> int:
        async with self._lock:
            cursor = await self._db.execute(DROP_PORTAL_TOKENS, {"portal": portal})
            return cursor.rowcount

    async def due_for_refresh(self, issued_before: float, limit: int) -> list[StoredTokens]:
        # Rows sealed under another key cannot be refreshed: not due (SQL filters them out).
        values = {"issued_before": issued_before, "key_id": self._box.key_id, "limit": limit}
        async with self._lock:
            rows = await self._db.execute_fetchall(DUE_TOKENS, values)
        return list(self._readable(rows))

    def _sealed(self, portal: str, user_id: int, tokens: UserTokens) -> dict[str, Any]:
        def seal(field: str, secret: SecretStr) -> bytes:
            return self._box.seal(secret.get_secret_value(), _context(portal, user_id, field))

        return {
            "portal": portal,
            "user_id": user_id,
            "key_id": self._box.key_id,
            "access_token": seal("access", tokens.access_token),
            "refresh_token": seal("refresh", tokens.refresh_token),
            "access_expires_at": tokens.access_expires_at,
            "refresh_issued_at": tokens.refresh_issued_at,
            "member_id": tokens.member_id,
            "client_endpoint": tokens.client_endpoint,
            "server": tokens.server,
            "scope": tokens.scope,
        }

    def _readable(self, rows: Iterable[Any]) -> Iterator[StoredTokens]:
        """The rows that open with the current key; the others are logged once each."""
        for row in rows:
            (portal, user_id, key_id, access, refresh, *plain, version) = row
            try:
                access_token, refresh_token = (
                    self._box.open(sealed, _context(portal, user_id, field), key_id=key_id)
                    for field, sealed in (("access", access), ("refresh", refresh))
                )
            except SealUnreadable as error:
                self._log_unreadable(portal, user_id, version, error)
                continue
            expires_at, issued_at, member_id, client_endpoint, server, scope = plain
            tokens = UserTokens(
                access_token=SecretStr(access_token),
                refresh_token=SecretStr(refresh_token),
                access_expires_at=expires_at,
                refresh_issued_at=issued_at,
                member_id=member_id,
                client_endpoint=client_endpoint,
                server=server,
                scope=scope,
            )
            yield StoredTokens(portal=portal, user_id=user_id, tokens=tokens, version=version)

    def _log_unreadable(
        self, portal: str, user_id: int, version: int, error: SealUnreadable
    ) -> None:
        if (portal, user_id, version) in self._logged:
            return
        self._logged.add((portal, user_id, version))
        reason = "key_changed" if isinstance(error, SealKeyChanged) else "tampered"
        log.error("oauth.token_unreadable", portal=portal, user_id=user_id, reason=reason)


def _context(portal: str, user_id: int, field: str) -> tuple[str | int, ...]:
    return ("user_tokens", portal, user_id, field)
