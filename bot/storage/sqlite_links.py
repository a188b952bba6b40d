"""Linked Telegram accounts in the SQLite engine: the links, the link codes outstanding, and
the wrong codes lately typed.

A code is stored only as its keyed hash (bot/links.py); redeeming deletes it in the same
statement that reads it, so a code links once however many workers redeem it at once.
"""

from __future__ import annotations

import asyncio

import aiosqlite


class SqliteLinks:
    """The link tables of SqliteStorage; every operation is one transaction."""

    _db: aiosqlite.Connection
    _lock: asyncio.Lock

    async def add_link_code(
        self, digest: str, b24_user_id: int, *, expires_at: float, now: float, keep: int
    ) -> None:
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                await self._db.execute("DELETE FROM link_codes WHERE expires_at <= ?", (now,))
                await self._db.execute(
                    "INSERT OR REPLACE INTO link_codes (digest, b24_user_id, expires_at) "
                    "VALUES (?, ?, ?)",
                    (digest, b24_user_id, expires_at),
                )
                # At most `keep` outstanding per user: a new code voids the oldest.
                await self._db.execute(
                    "DELETE FROM link_codes WHERE b24_user_id = ? AND digest NOT IN ("
                    "SELECT digest FROM link_codes WHERE b24_user_id = ? "
                    "ORDER BY expires_at DESC LIMIT ?)",
                    (b24_user_id, b24_user_id, keep),
                )
                await self._db.execute("COMMIT")
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise

    async def redeem_link_code(self, digest: str, tg_user_id: int, *, now: float) -> int | None:
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = await self._db.execute_fetchall(
                    "DELETE FROM link_codes WHERE digest = ? RETURNING b24_user_id, expires_at",
                    (digest,),
                )
                b24_user_id = next((int(user) for user, until in rows if until > now), None)
                if b24_user_id is not None:
                    # One link each way: whatever either account was linked to is undone.
                    await self._db.execute(
                        "DELETE FROM links WHERE tg_user_id = ? OR b24_user_id = ?",
                        (tg_user_id, b24_user_id),
                    )
                    await self._db.execute(
                        "INSERT INTO links (tg_user_id, b24_user_id, linked_at) VALUES (?, ?, ?)",
                        (tg_user_id, b24_user_id, now),
                    )
                    # Linked: the wrong codes typed before no longer count against them.
                    await self._db.execute(
                        "DELETE FROM link_failures WHERE tg_user_id = ?", (tg_user_id,)
                    )
                await self._db.execute("COMMIT")
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            return b24_user_id

    async def void_link_code(self, digest: str) -> None:
        async with self._lock:
            await self._db.execute("DELETE FROM link_codes WHERE digest = ?", (digest,))

    async def add_link_failure(self, tg_user_id: int, *, now: float, forget_before: float) -> None:
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                await self._db.execute("DELETE FROM link_failures WHERE at <= ?", (forget_before,))
                await self._db.execute(
                    "INSERT INTO link_failures (tg_user_id, at) VALUES (?, ?)", (tg_user_id, now)
                )
                await self._db.execute("COMMIT")
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise

    async def link_failures(self, tg_user_id: int, *, since: float) -> int:
        async with self._lock:
            rows = await self._db.execute_fetchall(
                "SELECT count(*) FROM link_failures WHERE tg_user_id = ? AND at > ?",
                (tg_user_id, since),
            )
            return int(next(iter(rows))[0])

    async def linked_b24_user(self, tg_user_id: int) -> int | None:
        async with self._lock:
            rows = await self._db.execute_fetchall(
                "SELECT b24_user_id FROM links WHERE tg_user_id = ?", (tg_user_id,)
            )
            return int(next(iter(rows))[0]) if rows else None

    async def unlink(
        self, *, tg_user_id: int | None = None, b24_user_id: int | None = None
    ) -> bool:
        async with self._lock:
            cursor = await self._db.execute(
                "DELETE FROM links WHERE tg_user_id = ? OR b24_user_id = ?",
                (tg_user_id, b24_user_id),
            )
            return cursor.rowcount > 0
