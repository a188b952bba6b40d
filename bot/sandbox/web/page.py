"""The chat page's server side: the page itself at `/`, its static files, the portal's state as
the page draws it (`/_sandbox/state`), and the same state pushed live (`/_sandbox/stream`,
server-sent events). What a person does on the page goes through the sandbox's own event
sender (`/_sandbox/events/message`, `/_sandbox/events/click`), as a test's would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Hashable
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from bot.sandbox.keyboard import action_of, buttons_of
from bot.sandbox.portal import Call, Chat, Message, Portal, User
from bot.sandbox.rest import BucketGauge
from bot.sandbox.telegram.world import TelegramWorld
from bot.sandbox.web.bbcode import render
from bot.sandbox.web.bounds import cut, newest_per_chat
from bot.sandbox.web.telegram_view import telegram_mark, telegram_snapshot

STATIC: Final = Path(__file__).parent / "static"
SHOWN_CALLS: Final = 200  # the newest REST calls the page lists
# Pages open at once: each is a task that looks for changes four times a second.
MAX_STREAMS: Final = 32
# Seconds a push may wait for a reader who stopped reading before its stream is ended (its
# socket buffers full), so that it holds no place among MAX_STREAMS and no task.
STALLED: Final = 10.0
_TICK: Final = 0.25  # seconds between looks for a change to push
# Seconds between comments that keep a quiet stream open (and notice a reader who left).
_HEARTBEAT: Final = 10.0
# The page's own files only, no inline script or style: [color]/[size] are set by chat.js
# through the DOM (data-color, data-size), which a policy without 'unsafe-inline' allows.
_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


class PageState:
    """What the page shows of one sandbox portal (and its fake Telegram), and whether it
    changed since a look."""

    def __init__(self, portal: Portal, gauge: BucketGauge, world: TelegramWorld) -> None:
        self.portal, self.gauge, self.world = portal, gauge, world
        self.closing = asyncio.Event()
        self.streams = 0  # open /_sandbox/stream responses
        self._encoded: tuple[Hashable, bytes] | None = None

    def encoded(self, mark: Hashable) -> bytes:
        """The snapshot as JSON, made once per change however many pages are open."""
        if self._encoded is None or self._encoded[0] != mark:
            data = json.dumps(self.snapshot(), ensure_ascii=False).encode()
            self._encoded = (mark, data)
        return self._encoded[1]

    def mark(self) -> Hashable:
        """Changes whenever anything the page shows does (every change is a REST call or a
        message; the bucket drains by itself)."""
        portal = self.portal
        level = round(self.gauge.level())
        seen = (len(portal.calls), len(portal.messages), portal.refused, len(portal.bots), level)
        return (seen, telegram_mark(self.world))

    def snapshot(self) -> dict[str, Any]:
        portal = self.portal
        bot = min(portal.bots.values(), key=lambda b: b.id, default=None)
        first = max(0, len(portal.calls) - SHOWN_CALLS)
        return {
            "bot": None if bot is None else {"id": bot.id, "name": bot.name, "code": bot.code},
            "people": [self._person(u) for u in sorted(self._staff(), key=self._rank)],
            "chats": [self._chat(c) for c in portal.chats.values()],
            "messages": [self._message(m) for m in newest_per_chat(portal.messages.values())],
            "sessions": [self._session(i) for i in sorted(portal.sessions)],
            "calls": [_call(n, c) for n, c in enumerate(portal.calls[first:], first)],
            "bucket": {
                "level": round(self.gauge.level(), 1),
                "capacity": self.gauge.capacity,
                "rate": self.gauge.rate,
                "refused": portal.refused,
            },
            "telegram": telegram_snapshot(self.world),
        }

    def _staff(self) -> list[User]:
        return [u for u in self.portal.users.values() if not (u.connector or u.extranet)]

    def _rank(self, user: User) -> tuple[int, int]:
        """Those the page is for first: a head who may rate, a supervisor who may not, an
        operator; then the administrator and the rest."""
        lines = self.portal.lines.values()
        if user.is_admin:
            return (3, user.id)
        for rank, members in enumerate(("heads", "supervisors", "operators")):
            if any(user.id in getattr(line, members) for line in lines):
                return (rank, user.id)
        return (4, user.id)

    def _person(self, user: User) -> dict[str, Any]:
        lines = self.portal.lines.values()
        heads = [line.name for line in lines if user.id in line.heads]
        watches = [line.name for line in lines if user.id in line.supervisors]
        answers = [line.name for line in lines if user.id in line.operators]
        if user.is_admin:
            role = "administrator"
        elif heads:
            role = "supervisor, may rate (" + ", ".join(heads) + ")"
        elif watches:
            role = "supervisor, may not rate (" + ", ".join(watches) + ")"
        elif answers:
            role = "operator (" + ", ".join(answers) + ")"
        else:
            role = "user"
        return {"id": user.id, "name": user.name, "position": user.work_position, "role": role}

    def _chat(self, chat: Chat) -> dict[str, Any]:
        session = self.portal.session_of_chat(chat.id)
        line = self.portal.lines.get(session.line_id) if session else None
        staff = (line.heads | line.supervisors | line.operators) if line else set()
        customers = [m for m in chat.members if self._is_customer(m)]
        return {
            "id": chat.id,
            "dialog": chat.dialog_id,
            "title": chat.title,
            "type": chat.type,
            "members": sorted(chat.members),
            "staff": sorted(staff | {u.id for u in self.portal.users.values() if u.is_admin})
            if line
            else [],
            "session": session.id if session else None,
            "line": line.name if line else None,
            "customer": customers[0] if customers else None,
        }

    def _is_customer(self, user_id: int) -> bool:
        user = self.portal.users.get(user_id)
        return user is not None and user.connector

    def _message(self, message: Message) -> dict[str, Any]:
        return {
            "id": message.id,
            "chat_id": message.chat_id,
            "author_id": message.author_id,
            "author": self._name(message.author_id),
            "text": cut(message.text),
            "html": _rendered(cut(message.text)),
            "system": message.system,
            "to_customer": message.to_customer,
            "keyboard": _buttons(message),
            "at": message.posted_at,
        }

    def _name(self, user_id: int) -> str:
        if user_id in self.portal.bots:
            return self.portal.bots[user_id].name
        user = self.portal.users.get(user_id)
        return user.name if user else f"#{user_id}"

    def _session(self, session_id: int) -> dict[str, Any]:
        session = self.portal.sessions[session_id]
        line = self.portal.lines.get(session.line_id)
        return {
            "id": session.id,
            "line": line.name if line else str(session.line_id),
            "chat_id": session.chat_id,
            "operator": self._name(session.operator_id),
            "vote_head": session.vote_head,
            "comment_head": session.comment_head,
        }


@lru_cache(maxsize=4096)
def _rendered(text: str) -> str:
    """Each text rendered once, not on every change (a snapshot renders every message)."""
    return render(text)


def _buttons(message: Message) -> list[dict[str, Any]]:
    """A keyboard as the page draws it: each button with its position, which is what a click
    names (`/_sandbox/events/click`); a NEWLINE starts a new row. A link button carries its
    `link`, which the page opens itself (a click on it tells the bot nothing)."""
    return [
        {
            "index": n,
            "newline": b.get("TYPE") == "NEWLINE",
            "text": str(b.get("TEXT", "")),
            "link": _link(b, message.author_id),
        }
        for n, b in enumerate(buttons_of(message.keyboard))
        if isinstance(b, dict)
    ]


def _link(button: dict[str, Any], author_id: int) -> str | None:
    """A link button's LINK: `http(s)://...` or a path `/...` (what Bitrix24 keeps as one);
    anything else (a `javascript:` link posted past the portal's checks) is no link."""
    return str(button["LINK"]) if action_of(button, author_id) == "LINK" else None


def _call(number: int, call: Call) -> dict[str, Any]:
    return {
        "n": number + 1,
        "method": call.method,
        "status": call.status,
        "error": call.error,
        "user_id": call.user_id,
        "batch_of": call.batch_of,
        "level": None if call.level is None else round(call.level, 1),
    }


PAGE: Final = web.AppKey("page", PageState)


def mount(app: web.Application, portal: Portal, gauge: BucketGauge, world: TelegramWorld) -> None:
    """Serve the chat page for `portal` and `world` at `/` of the sandbox's application."""
    app[PAGE] = PageState(portal, gauge, world)
    app.router.add_get("/", _index)
    app.router.add_get("/_sandbox/state", _state)
    app.router.add_get("/_sandbox/stream", _stream)
    app.router.add_static("/_sandbox/static/", STATIC)
    app.on_shutdown.append(_end_streams)


async def _index(request: web.Request) -> web.FileResponse:
    del request
    return web.FileResponse(
        STATIC / "index.html",
        headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store"},
    )


async def _state(request: web.Request) -> web.Response:
    page = request.app[PAGE]
    body = page.encoded(page.mark())
    return web.Response(body=body, content_type="application/json", charset="utf-8")


async def _stream(request: web.Request) -> web.StreamResponse:
    """The state as server-sent events: once at once, then on every change. At most
    MAX_STREAMS at a time; one whose reader stopped reading ends after STALLED seconds."""
    page = request.app[PAGE]
    if page.streams >= MAX_STREAMS:
        raise web.HTTPServiceUnavailable(
            text=f"{MAX_STREAMS} chat pages are open already: close one and reload.",
            headers={"Retry-After": "10"},
        )
    page.streams += 1
    try:
        return await _push(request, page)
    finally:
        page.streams -= 1


async def _push(request: web.Request, page: PageState) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    seen: Hashable = None
    quiet = 0.0
    with contextlib.suppress(ConnectionError, TimeoutError):
        while not page.closing.is_set():
            mark = page.mark()
            if mark != seen:
                seen, quiet = mark, 0.0
                data = page.encoded(mark)
                await asyncio.wait_for(response.write(b"data: " + data + b"\n\n"), STALLED)
            elif quiet >= _HEARTBEAT:
                quiet = 0.0
                await asyncio.wait_for(response.write(b": still here\n\n"), STALLED)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(page.closing.wait(), _TICK)
            quiet += _TICK
    return response


async def _end_streams(app: web.Application) -> None:
    app[PAGE].closing.set()
