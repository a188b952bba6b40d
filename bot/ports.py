"""The ports the use-cases talk to; adapters in bot/bitrix (later bot/telegram) implement them."""

from __future__ import annotations

from typing import Protocol

from pydantic import SecretStr

from bot.models import AuthorKind, Frozen, IncomingCommand


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


class PendingLink(Frozen):
    """A link attempt taken back at the OAuth callback: who asked, on which portal, and the
    command that was refused for want of a token (completed once the link is made)."""

    portal: str
    user_id: int  # the Bitrix24 user the token must belong to
    waiting: IncomingCommand | None
    expires_at: float


class OAuthStates(Protocol):
    """Link attempts outstanding (issue 12): the OAuth `state` nonces, stored only hashed."""

    async def new_state(
        self, portal: str, user_id: int, waiting: IncomingCommand | None, ttl: float, now: float
    ) -> str:
        """A fresh nonce for this user on this portal, live for `ttl` seconds from `now`; the
        user's oldest attempts beyond a few, and every expired one, are dropped."""
        ...

    async def take_state(self, nonce: str, now: float) -> PendingLink | None:
        """Use a nonce up: its link attempt, or None (unknown, used, or expired). Of any
        number of concurrent takes of one nonce, exactly one gets it."""
        ...

    async def purge(self, now: float) -> int:
        """Drop the expired attempts; how many."""
        ...

    async def drop_states(self, portal: str, user_id: int) -> int:
        """Void every outstanding attempt of this user (`/logout`): how many."""
        ...


class UserTokens(Frozen):
    """A supervisor's OAuth tokens and where they work (Bitrix24's token answer, §5)."""

    access_token: SecretStr
    refresh_token: SecretStr
    access_expires_at: float  # unix time
    refresh_issued_at: float  # when this refresh token was issued (it ages out: §5)
    member_id: str  # the portal's id: a token from another portal is told apart
    client_endpoint: str  # https://<portal>/rest/
    server: str  # the OAuth server that issued the pair, and the only one to refresh it at
    scope: str  # as Bitrix24 says it, comma-separated


class StoredTokens(Frozen):
    """Tokens as stored: `version` changes at every write (compare-and-swap in `put`)."""

    portal: str
    user_id: int
    tokens: UserTokens
    version: int


class TokenStore(Protocol):
    """Supervisors' tokens per (portal, Bitrix24 user), sealed at rest (bot/secretbox.py)."""

    async def get(self, portal: str, user_id: int) -> StoredTokens | None:
        """The user's tokens, or None: none stored, or stored under another key or changed
        (logged once as `oauth.token_unreadable`)."""
        ...

    async def put(
        self, portal: str, user_id: int, tokens: UserTokens, replaces: int | None
    ) -> bool:
        """Store the user's tokens. `replaces`: the version read before a refresh; the pair
        is stored only if it is still the stored one (False: another writer stored first,
        and its pair must be used, as a refresh token may work only once). None: a new link,
        stored whatever was there."""
        ...

    async def drop(self, portal: str, user_id: int) -> bool:
        """Forget the user's tokens (`/logout`, a deactivated user): whether there were any."""
        ...

    async def drop_portal(self, portal: str) -> int:
        """Forget every user's tokens on the portal (the application was re-created)."""
        ...

    async def due_for_refresh(self, issued_before: float, limit: int) -> list[StoredTokens]:
        """Up to `limit` readable tokens whose refresh token was issued before
        `issued_before`, oldest first: to refresh before it ages out."""
        ...


class OwnAccounts(Protocol):
    """Supervisors' own Bitrix24 authorisations (application mode, issue 12): votes cast as
    the supervisor, so that Bitrix24 checks their right to rate and names them as the voter."""

    async def votes_of(self, user_id: int) -> SessionVotes | None:
        """Session votes acting as this Bitrix24 user; None when they have no stored token.
        Its calls raise RelinkNeeded when Bitrix24 no longer accepts the token."""
        ...

    async def link_url(self, user_id: int, waiting: IncomingCommand | None) -> str:
        """A fresh address that lets this user authorise the service once; after the
        callback, `waiting` (the command that asked) is run again and answered."""
        ...

    async def forget(self, user_id: int) -> bool:
        """Drop this user's token and void their outstanding links: whether there was a
        token."""
        ...
