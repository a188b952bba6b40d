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
