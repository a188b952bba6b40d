"""The ports the use-cases talk to; adapters in bot/bitrix (later bot/telegram) implement them."""

from __future__ import annotations

from typing import Protocol

from bot.models import AuthorKind, Frozen


class SessionVote(Frozen):
    """A session's head vote as Bitrix24 stores it, and whether the caller may change it."""

    session_id: int
    rating: int  # 0: not rated
    comment: str  # "": no comment
    can_vote: bool


class VoteResult(Frozen):
    """The stored vote after a vote call, and before it when it had to be read first."""

    before: SessionVote | None
    after: SessionVote


class SessionVotes(Protocol):
    """Reading and writing open-line sessions' head votes."""

    async def read(self, session_id: int) -> SessionVote:
        """The current vote; raises SessionNotFound or SessionNotVisible."""
        ...

    async def vote(
        self, session_id: int, *, rating: int | None, comment: str | None
    ) -> VoteResult:
        """Store a rating and/or a comment; the other one is kept as it is.

        Raises VoteRefused when Bitrix24 refuses the vote, SessionNotFound or
        SessionNotVisible when the session cannot be read."""
        ...


class People(Protocol):
    """Who a platform user is, for authors an event does not describe."""

    async def kind(self, user_id: int) -> AuthorKind:
        """Staff, extranet or customer; "unverified" when the platform will not say (then the
        author may not rate)."""
        ...


class Links(Protocol):
    """Telegram accounts linked to Bitrix24 users, one to one (issue 10)."""

    async def issue(self, b24_user_id: int) -> str:
        """A one-time link code for this Bitrix24 user, as the user types it."""
        ...

    async def redeem(self, tg_user_id: int, code: str) -> int:
        """Link the Telegram user to the code's Bitrix24 user: that user. Raises
        LinkCodeInvalid (wrong, used or expired), LinkAttemptsExceeded (too many wrong codes
        lately) or LinkSetByAdmin (the Telegram user is linked in TELEGRAM_USER_MAP)."""
        ...

    async def void(self, code: str) -> None:
        """Make a code useless without linking anyone (it was shown in a shared chat)."""
        ...

    async def linked(self, tg_user_id: int) -> int | None:
        """The Bitrix24 user this Telegram user is linked to, or None."""
        ...

    async def unlink_telegram(self, tg_user_id: int) -> bool:
        """Undo a Telegram user's link: whether there was one. Raises LinkSetByAdmin for a
        static link."""
        ...

    async def unlink_bitrix(self, b24_user_id: int) -> bool:
        """Undo a Bitrix24 user's link: whether there was one. Raises LinkSetByAdmin for a
        static link."""
        ...
