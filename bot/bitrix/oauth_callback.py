"""`GET /b24/oauth/callback`: where Bitrix24 sends a supervisor's browser after they allowed
the local application (settings/oauth/index.md: `code`, `state`, `domain`, `member_id`,
`scope`, `server_domain`).

The state is taken first (single-use: a replayed or forged callback finds nothing and sends
nothing); the callback must name this portal and a pinned OAuth server before the code goes
anywhere; the code is exchanged at once (it lives 30 s); `user.current` under the new token, at
this portal's own REST address, must be the user the state was made for. Only then is the pair
stored and the command that was waiting for it queued again; the browser gets a plain page.
"""

from __future__ import annotations

import html
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import structlog
from aiohttp import web

from bot.bitrix.accounts import SupervisorAccounts, user_tokens
from bot.bitrix.client import TokenAuth
from bot.bitrix.oauth import TokenGrant
from bot.errors import BitrixError, OAuthError
from bot.models import IncomingCommand
from bot.ports import PendingLink
from bot.texts import Lang, render

log = structlog.get_logger(__name__)

_LONGEST_VALUE: Final = 1024  # characters of any one query value that are looked at
# The page is ours alone: nothing loads, nothing frames it, and the address (which holds the
# code and the state) is never sent on as a referrer nor cached.
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}

Enqueue = Callable[[IncomingCommand], Awaitable[bool]]


class Refused(Exception):
    """The callback is not obeyed: `reason` for the log, `page` for the browser."""

    def __init__(self, reason: str, page: str = "oauth.page.refused", status: int = 400) -> None:
        super().__init__(reason)
        self.reason, self.page, self.status = reason, page, status


@dataclass(frozen=True)
class OAuthCallback:
    """The callback's collaborators, assembled by the composition root."""

    accounts: SupervisorAccounts  # its states, token store and OAuth client
    enqueue: Enqueue  # queue a waiting command again: False when the queue refused it
    clock: Callable[[], float] = time.time

    async def handle(self, request: web.Request) -> web.Response:
        try:
            return await self._handle(request)
        except Exception as error:  # noqa: BLE001 - whatever the storage raises, never a 500
            # The database or the queue failed (a backup holding the write lock): the browser
            # is told to come back, never shown a 500. No traceback in the log either: its
            # frames hold the code and the state.
            log.warning("oauth.callback_failed", error=type(error).__name__)
            return not_ready_page()

    async def _handle(self, request: web.Request) -> web.Response:
        query = {k: v[:_LONGEST_VALUE] for k, v in request.query.items()}
        lang: Lang = "ru"
        try:
            pending = await self._take_state(query)
            if pending.waiting is not None:
                lang = pending.waiting.language
            user_id = await self._link(pending, query)
        except Refused as refused:
            log.warning("oauth.callback_refused", reason=refused.reason)
            return _page(refused.page, lang, refused.status)
        queued = await self._complete(pending.waiting)
        log.info("oauth.linked", user_id=user_id, waiting=pending.waiting is not None)
        page = "oauth.page.linked_waiting" if queued else "oauth.page.linked"
        return _page(page, lang, 200)

    async def _take_state(self, query: dict[str, str]) -> PendingLink:
        state = query.get("state", "")
        pending = await self.accounts.states.take_state(state, self.clock()) if state else None
        if pending is None:
            raise Refused("state_unknown", "oauth.page.expired")
        if "error" in query:  # the supervisor did not allow it
            raise Refused("declined", "oauth.page.declined")
        return pending

    async def _link(self, pending: PendingLink, query: dict[str, str]) -> int:
        portal = self.accounts.portal
        if pending.portal != portal.key or query.get("domain", "").lower() != portal.key:
            raise Refused("foreign_portal")
        oauth, server_domain = self.accounts.oauth, query.get("server_domain", "")
        try:
            # exchange_code checks the server is pinned before anything is sent
            grant = await oauth.exchange_code(query.get("code", ""), server_domain)
        except OAuthError as error:
            status = 503 if error.retryable else 400
            page = "oauth.page.unavailable" if error.retryable else "oauth.page.refused"
            raise Refused(f"oauth:{error.code}", page, status) from None
        await self._check_owner(grant, pending, query.get("member_id", ""))
        tokens = user_tokens(grant, issued_at=self.clock())
        await self.accounts.store.put(portal.key, pending.user_id, tokens, replaces=None)
        return pending.user_id

    async def _check_owner(self, grant: TokenGrant, pending: PendingLink, member_id: str) -> None:
        """The pair must be for this portal and for the user the state was made for."""
        portal = self.accounts.portal
        if not portal.serves(grant.client_endpoint) or grant.member_id != member_id:
            raise Refused("foreign_portal")
        try:
            caller = self.accounts.caller_for(TokenAuth(portal.rest, grant.access_token))
            me = await caller.call("user.current")
        except BitrixError as error:
            raise Refused(f"user_current:{error.code}", "oauth.page.unavailable", 503) from None
        owner = me.get("ID") if isinstance(me, dict) else None
        if str(owner) != str(pending.user_id):
            raise Refused("another_user")

    async def _complete(self, waiting: IncomingCommand | None) -> bool:
        if waiting is None:
            return False
        again = waiting.model_copy(update={"key": f"{waiting.key}:authorised"})
        return await self.enqueue(again)


def not_ready_page() -> web.Response:
    """Before the core is up (or while it is down), a callback is told to come back later."""
    return _page("oauth.page.unavailable", "ru", 503)


def _page(key: str, lang: Lang, status: int) -> web.Response:
    """A plain page saying what happened (never a trace): our own text, escaped anyway."""
    title = html.escape(render("oauth.page.title", lang))
    body = html.escape(render(key, lang))
    text = (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        f"<title>{title}</title></head><body><h1>{title}</h1><p>{body}</p></body></html>"
    )
    return web.Response(status=status, text=text, content_type="text/html", headers=_PAGE_HEADERS)
