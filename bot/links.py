"""Linked accounts (issue 10): Telegram users act as the Bitrix24 user they are linked to.

A link is made with a one-time code: `/link` in Bitrix24 issues it, `/start <code>` or
`/link <code>` in a private chat with the Telegram bot redeems it. A code is
- 10 characters of Crockford's base32 (no I, L, O, U; read case-insensitively, with the
  lookalikes O→0 and I/L→1 folded): 50 bits, typed from a phone without ambiguity;
- live for 10 minutes, used once, at most `CODES_KEPT` outstanding per Bitrix24 user;
- stored only as HMAC-SHA256 under a server-side key (the composition root passes one that is
  not in the database): whoever reads the database file or a backup cannot redeem a live
  code, and cannot search the 2^50 codes offline without that key;
- guessed at most `MAX_FAILURES` times per Telegram user in `FAILURE_WINDOW` (then refused
  until the window passes): with 50 bits a guess succeeds with odds of about 2^-48. The wrong
  codes are counted in the database, so a restart does not reset the count and a flood of
  accounts costs no memory; a code presented in a refused attempt (too many wrong ones, or a
  link the administrator set) is voided all the same.
TELEGRAM_USER_MAP adds static links, which win over stored ones and which only the
administrator changes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Final

from bot.errors import LinkAttemptsExceeded, LinkCodeInvalid, LinkSetByAdmin
from bot.storage import Storage

ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32
CODE_LENGTH: Final = 10
CODE_TTL: Final = 600.0  # seconds
CODES_KEPT: Final = 3
MAX_FAILURES: Final = 5
FAILURE_WINDOW: Final = 600.0
_FOLDED: Final = str.maketrans({"O": "0", "I": "1", "L": "1"})


def link_key(secret: str) -> bytes:
    """The key codes are hashed under, derived from a secret the service holds outside the
    database (the composition root passes TELEGRAM_BOT_TOKEN): a key of its own, so the
    secret itself is never used for anything else. A new token voids the codes outstanding,
    which live 10 minutes anyway."""
    return hmac.new(secret.encode(), b"rating-bot link codes", hashlib.sha256).digest()


def normalise_code(text: str) -> str:
    """A code as typed (any case, lookalikes, spaces or dashes between groups) as issued."""
    return "".join(text.split()).replace("-", "").upper().translate(_FOLDED)


class StoredLinks:
    """The Links port over Storage, with TELEGRAM_USER_MAP's static links on top."""

    def __init__(
        self,
        storage: Storage,
        *,
        key: bytes,
        static: Mapping[int, int],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._storage, self._key, self._clock = storage, key, clock
        self._static = dict(static)
        self._static_b24 = set(static.values())

    async def issue(self, b24_user_id: int) -> str:
        code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
        now = self._clock()
        await self._storage.add_link_code(
            self._digest(code), b24_user_id, expires_at=now + CODE_TTL, now=now, keep=CODES_KEPT
        )
        return code

    async def redeem(self, tg_user_id: int, code: str) -> int:
        now = self._clock()
        if tg_user_id in self._static:
            await self.void(code)  # presented to the bot and refused: nobody uses it any more
            raise LinkSetByAdmin
        if await self._storage.link_failures(tg_user_id, since=now - FAILURE_WINDOW) >= (
            MAX_FAILURES
        ):
            await self.void(code)  # a guesser who hit the right code gains nothing later
            raise LinkAttemptsExceeded(minutes=round(FAILURE_WINDOW / 60))
        normal = normalise_code(code)
        b24_user_id = None
        if _well_formed(normal):
            b24_user_id = await self._storage.redeem_link_code(
                self._digest(normal), tg_user_id, now=now
            )
        if b24_user_id is None:
            await self._storage.add_link_failure(
                tg_user_id, now=now, forget_before=now - FAILURE_WINDOW
            )
            raise LinkCodeInvalid
        return b24_user_id

    async def void(self, code: str) -> None:
        normal = normalise_code(code)
        if _well_formed(normal):
            await self._storage.void_link_code(self._digest(normal))

    async def linked(self, tg_user_id: int) -> int | None:
        if tg_user_id in self._static:
            return self._static[tg_user_id]
        return await self._storage.linked_b24_user(tg_user_id)

    async def unlink_telegram(self, tg_user_id: int) -> bool:
        if tg_user_id in self._static:
            raise LinkSetByAdmin
        return await self._storage.unlink(tg_user_id=tg_user_id)

    async def unlink_bitrix(self, b24_user_id: int) -> bool:
        if await self._storage.unlink(b24_user_id=b24_user_id):
            return True
        if b24_user_id in self._static_b24:  # nothing stored to undo, and a static link stays
            raise LinkSetByAdmin
        return False

    def _digest(self, code: str) -> str:
        return hmac.new(self._key, code.encode(), hashlib.sha256).hexdigest()


def _well_formed(normal: str) -> bool:
    return len(normal) == CODE_LENGTH and set(normal) <= set(ALPHABET)
