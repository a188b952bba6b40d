"""Application mode (issue 12): votes cast with each supervisor's own OAuth token.

`SupervisorAccounts` is the `OwnAccounts` port: a supervisor with a stored token gets session
votes whose calls run under that token (coalesced per token inside the one per-portal limit,
bot/bitrix/coalesce.py); one without gets an authorisation address holding a single-use state.

Tokens are refreshed only when Bitrix24 answers `expired_token`, and proactively before the
refresh token ages out (`refresh_ageing`), never on a timer per request: Bitrix24 asks
applications not to (settings/oauth/auto-renewal.md). A refresh token may work only once
(protocol notes §5), so refreshes are single-flight per user and the new pair is stored with
compare-and-swap before it is used: a writer that lost the race uses the winner's pair.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import structlog

from bot.bitrix.batch import BatchCall, BatchResult
from bot.bitrix.client import TokenAuth
from bot.bitrix.coalesce import ActsAs, RestCaller, call_alone
from bot.bitrix.oauth import OAuthClient, TokenGrant
from bot.bitrix.votes import BitrixSessionVotes
from bot.errors import (
    BitrixAuthError,
    BitrixError,
    BitrixUnavailable,
    OAuthError,
    OAuthInvalidClient,
    OAuthInvalidGrant,
    OAuthServerNotPinned,
    RelinkNeeded,
)
from bot.models import IncomingCommand
from bot.ports import OAuthStates, SessionVotes, StoredTokens, TokenStore, UserTokens

log = structlog.get_logger(__name__)

LINK_TTL: Final = 600.0  # seconds an authorisation address works (the texts say 10 minutes)
# Bitrix24's docs give a refresh token 180 days; older lessons say 28 days (protocol notes §5):
# a pair whose refresh token is older than this is refreshed ahead, by bot/upkeep.py.
REFRESH_AGEING: Final = 20 * 24 * 3600.0
# What Bitrix24 answers for a token of a user who may no longer log in (a dismissed
# employee) [UNCONFIRMED beyond the sandbox]: the token is dropped, never refreshed.
_USER_GONE: Final = frozenset({"authorization_error", "user_not_found"})
# REST's answer to a token of an application that is no more (rest/lib/oauth/auth.php).
_APP_GONE: Final = "application_not_found"


def user_tokens(grant: TokenGrant, *, issued_at: float) -> UserTokens:
    """The stored form of a pair the OAuth server issued."""
    return UserTokens(
        access_token=grant.access_token,
        refresh_token=grant.refresh_token,
        access_expires_at=grant.expires_at.timestamp(),
        refresh_issued_at=issued_at,
        member_id=grant.member_id,
        client_endpoint=grant.client_endpoint,
        server=grant.server,
        scope=",".join(sorted(grant.scope)),
    )


@dataclass(frozen=True)
class Portal:
    """The one portal the service serves: its address (from B24_WEBHOOK_URL) and the key its
    tokens are stored under."""

    base: str  # scheme://host[:port]

    @property
    def key(self) -> str:
        return urlsplit(self.base).netloc.lower()

    @property
    def rest(self) -> str:
        return f"{self.base}/rest/"

    def serves(self, client_endpoint: str) -> bool:
        """Whether a token's REST address is this portal's (never call another one)."""
        parts = urlsplit(client_endpoint)
        return f"{parts.scheme}://{parts.netloc}".lower() == self.base.lower()


class SupervisorAccounts:
    """Stored tokens, their refresh, and the addresses that create them."""

    def __init__(
        self,
        portal: Portal,
        states: OAuthStates,
        store: TokenStore,
        oauth: OAuthClient,
        calls: ActsAs,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.portal = portal
        self.states = states
        self.store = store
        self.oauth = oauth
        self._calls = calls
        self._clock = clock
        # One lock per user refreshing now; gone with its last holder (no unbounded growth).
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()

    async def votes_of(self, user_id: int) -> SessionVotes | None:
        stored = await self.store.get(self.portal.key, user_id)
        if stored is None:
            return None
        return BitrixSessionVotes(_OwnCaller(self, stored))

    async def link_url(self, user_id: int, waiting: IncomingCommand | None) -> str:
        nonce = await self.states.new_state(
            self.portal.key, user_id, waiting, ttl=LINK_TTL, now=self._clock()
        )
        query = urlencode({"client_id": self.oauth.client_id, "state": nonce})
        return f"{self.portal.base}/oauth/authorize/?{query}"

    async def forget(self, user_id: int) -> bool:
        """`/logout`: the token, and the links already given: one clicked later (or by a
        colleague at the supervisor's desk) must not complete a vote they walked away from."""
        voided = await self.states.drop_states(self.portal.key, user_id)
        if voided:
            log.info("oauth.links_voided", user_id=user_id, voided=voided)
        return await self.store.drop(self.portal.key, user_id)

    def caller_for(self, auth: TokenAuth) -> RestCaller:
        """REST calls under a token (through the coalescer, grouped with its other calls)."""
        return self._calls.acting_as(auth)

    def caller(self, stored: StoredTokens) -> RestCaller:
        """Calls under a stored pair, at this portal's own REST address: the pair's
        `client_endpoint` was checked to be this portal's when it was stored, and is never
        trusted as an address (nor its spelling compared with the webhook's)."""
        return self.caller_for(TokenAuth(self.portal.rest, stored.tokens.access_token))

    async def refreshed(self, stale: StoredTokens, *, why: str) -> StoredTokens:
        """A working pair for the user of `stale`: refreshed once, whoever asks at the same
        time. Raises RelinkNeeded when the OAuth server will not refresh it."""
        lock = self._locks.setdefault(stale.user_id, asyncio.Lock())
        async with lock:
            current = await self.store.get(self.portal.key, stale.user_id)
            if current is None:
                raise RelinkNeeded("token_gone")
            if current.version != stale.version:
                return current  # refreshed meanwhile (by another task or replica)
            return await self._refresh(current, why=why)

    async def _refresh(self, current: StoredTokens, *, why: str) -> StoredTokens:
        user_id = current.user_id
        try:
            grant = await self.oauth.refresh(current.tokens.refresh_token, current.tokens.server)
        except (OAuthInvalidGrant, OAuthServerNotPinned) as error:
            await self.drop(user_id, reason=error.code)
            raise RelinkNeeded(error.code) from None
        except OAuthInvalidClient as error:
            # The application was re-created (or its secret changed): no stored pair works.
            await self.drop_all(reason=error.code)
            raise RelinkNeeded(error.code) from None
        except OAuthError as error:
            # Unreachable, or the answer was lost: the stored pair stays (it may still be the
            # live one) and the command is tried again later, as for a portal outage.
            log.warning("oauth.refresh_failed", user_id=user_id, code=error.code)
            raise BitrixUnavailable("oauth.token", reason=error.code) from None
        if not self.portal.serves(grant.client_endpoint) or grant.member_id != (
            current.tokens.member_id
        ):
            await self.drop(user_id, reason="foreign_portal")
            raise RelinkNeeded("foreign_portal")
        tokens = user_tokens(grant, issued_at=self._clock())
        if await self.store.put(self.portal.key, user_id, tokens, replaces=current.version):
            log.info("oauth.refreshed", user_id=user_id, why=why)
        # Ours, with its new version; or, when another writer stored first, the winner's pair.
        stored = await self.store.get(self.portal.key, user_id)
        if stored is None:
            raise RelinkNeeded("token_gone")
        return stored

    async def drop(self, user_id: int, *, reason: str) -> None:
        """Forget a pair Bitrix24 no longer accepts; the log says why (no secret)."""
        await self.store.drop(self.portal.key, user_id)
        log.warning("oauth.token_dropped", user_id=user_id, reason=reason)

    async def drop_all(self, *, reason: str) -> None:
        """Forget every supervisor's pair: each is asked to authorise again at their next
        command (the application was re-created, or its secret changed)."""
        dropped = await self.store.drop_portal(self.portal.key)
        log.warning("oauth.tokens_dropped", dropped=dropped, reason=reason)

    async def refresh_ageing(self, *, limit: int = 20) -> int:
        """Refresh pairs whose refresh token nears its end of life: how many were renewed.
        A pair that cannot be renewed now is left for the next round or the next command."""
        due = await self.store.due_for_refresh(self._clock() - REFRESH_AGEING, limit)
        renewed = 0
        for stored in due:
            try:
                await self.refreshed(stored, why="ageing")
            except (RelinkNeeded, BitrixError):
                continue
            renewed += 1
        return renewed


class _OwnCaller:
    """A RestCaller under one supervisor's token: on `expired_token` the pair is refreshed
    once and the same calls are sent again (a 401 means none of them ran)."""

    def __init__(self, accounts: SupervisorAccounts, stored: StoredTokens) -> None:
        self._accounts = accounts
        self._stored = stored

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        return await call_alone(self, method, params)

    async def batch(self, calls: Sequence[BatchCall], *, halt: bool = False) -> BatchResult:
        try:
            return await self._send(calls, halt=halt)
        except BitrixAuthError as error:
            if error.code.lower() != "expired_token":
                raise
        self._stored = await self._accounts.refreshed(self._stored, why="expired_token")
        return await self._send(calls, halt=halt)

    async def _send(self, calls: Sequence[BatchCall], *, halt: bool) -> BatchResult:
        try:
            result: BatchResult = await self._accounts.caller(self._stored).batch(calls, halt=halt)
        except BitrixAuthError as error:
            code = error.code.lower()
            if code == _APP_GONE:  # the application was deleted or re-created: no pair works
                await self._accounts.drop_all(reason=code)
                raise RelinkNeeded(code) from None
            if code in _USER_GONE or code == "invalid_token":
                await self._accounts.drop(self._stored.user_id, reason=code)
                raise RelinkNeeded(code) from None
            raise
        return result
