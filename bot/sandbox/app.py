"""The sandbox portal as an aiohttp application: REST, inspection API and event sender."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Final

import aiohttp
from aiohttp import web

from bot.sandbox import batch, im, imbot, oauth_http, openlines
from bot.sandbox.control import bad_request as _bad_request
from bot.sandbox.control import read_body as _body
from bot.sandbox.events import Delivery, EventSender
from bot.sandbox.jsonable import answer, jsonable
from bot.sandbox.portal import Fault, Portal
from bot.sandbox.rest import MethodImpl, RestServer
from bot.sandbox.telegram import server as telegram_server
from bot.sandbox.telegram.seed import seeded_world
from bot.sandbox.telegram.world import TelegramWorld
from bot.sandbox.v2 import methods as v2
from bot.sandbox.web import page

METHODS: Final[Mapping[str, MethodImpl]] = {
    "imbot.register": imbot.register,
    "imbot.update": imbot.update,
    "imbot.unregister": imbot.unregister,
    "imbot.bot.list": imbot.bot_list,
    "imbot.command.register": imbot.command_register,
    "imbot.command.update": imbot.command_update,
    "imbot.command.unregister": imbot.command_unregister,
    "imbot.command.answer": imbot.command_answer,
    "imbot.message.add": imbot.message_add,
    "imbot.message.update": imbot.message_update,
    "imopenlines.session.head.vote": openlines.head_vote,
    "imopenlines.session.history.get": openlines.history_get,
    "imopenlines.dialog.get": openlines.dialog_get,
    "imbot.v2.bot.register": v2.bot_register,
    "imbot.v2.bot.update": v2.bot_update,
    "imbot.v2.bot.unregister": v2.bot_unregister,
    "imbot.v2.bot.list": v2.bot_list,
    "imbot.v2.command.register": v2.command_register,
    "imbot.v2.command.update": v2.command_update,
    "imbot.v2.command.answer": v2.command_answer,
    "imbot.v2.command.list": v2.command_list,
    "imbot.v2.chat.message.send": v2.message_send,
    "imbot.v2.chat.message.update": v2.message_update,
    "imbot.v2.event.get": v2.event_get,
    "imbot.v2.revision.get": v2.revision_get,
    "batch": batch.batch,
    "profile": openlines.profile,
    "user.current": openlines.user_current,
    "scope": openlines.scope,
    "im.user.get": im.user_get,
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PORTAL = web.AppKey("portal", Portal)
EVENTS = web.AppKey("events", EventSender)


def create_sandbox_app(
    portal: Portal,
    *,
    rate: float = 2,
    burst: int = 50,
    telegram: TelegramWorld | None = None,
) -> web.Application:
    """The portal's REST API under /rest/, and /_sandbox/ for tests and people; beside it the
    fake Telegram Bot API under /telegram/ (the seeded world unless `telegram` is given), and
    the chat page at /."""
    app = web.Application(middlewares=[_json_only])
    world = telegram or seeded_world()
    telegram_server.mount(app, world)
    app[PORTAL] = portal
    rest = RestServer(portal, METHODS, rate=rate, burst=burst)
    app.router.add_route("*", "/rest/{tail:.+}", rest.handle)
    page.mount(app, portal, rest.gauge, world)
    oauth_http.mount(app, portal)
    app.router.add_get("/_sandbox/calls", _calls)
    app.router.add_get("/_sandbox/messages", _messages)
    app.router.add_get("/_sandbox/sessions/{id}", _session)
    app.router.add_get("/_sandbox/bots", _bots)
    app.router.add_post("/_sandbox/faults", _add_fault)
    app.router.add_delete("/_sandbox/faults", _clear_faults)
    app.router.add_post("/_sandbox/clock", _advance_clock)
    app.router.add_post("/_sandbox/events/message", _send_message)
    app.router.add_post("/_sandbox/events/click", _click)
    app.cleanup_ctx.append(_event_sender)
    return app


async def _event_sender(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession() as session:
        app[EVENTS] = EventSender(app[PORTAL], session)
        yield


async def _calls(request: web.Request) -> web.Response:
    return answer(jsonable(request.app[PORTAL].calls))


async def _messages(request: web.Request) -> web.Response:
    return answer(jsonable(list(request.app[PORTAL].messages.values())))


async def _session(request: web.Request) -> web.Response:
    session = request.app[PORTAL].sessions.get(int(request.match_info["id"]))
    if session is None:
        raise web.HTTPNotFound
    return answer(jsonable(session))


async def _bots(request: web.Request) -> web.Response:
    portal = request.app[PORTAL]
    return answer({"bots": jsonable(portal.bots), "commands": jsonable(portal.commands)})


async def _add_fault(request: web.Request) -> web.Response:
    fields = {f.name for f in dataclasses.fields(Fault)}
    body = await _body(request)
    with _bad_request():
        fault = Fault(**{k: v for k, v in body.items() if k in fields})
    request.app[PORTAL].faults.append(fault)
    return answer({"faults": len(request.app[PORTAL].faults)})


async def _clear_faults(request: web.Request) -> web.Response:
    request.app[PORTAL].faults.clear()
    return answer({"faults": 0})


async def _advance_clock(request: web.Request) -> web.Response:
    body = await _body(request)
    with _bad_request():
        request.app[PORTAL].advance_clock(float(body["advance"]))
    return answer({"now": request.app[PORTAL].now()})


async def _send_message(request: web.Request) -> web.Response:
    """`{"author_id", "to", "text"}`: `to` is a chat (`chat1157`), a user id, or a bot's id
    or code (`rating_bot`: the private chat with that bot)."""
    portal = request.app[PORTAL]
    body = await _body(request)
    with _bad_request():
        to = body["to"]
        if isinstance(to, str) and not to.startswith("chat") and not to.isdigit():
            to = _bot_by_code(portal, to)
        deliveries = await request.app[EVENTS].send_message(
            int(body["author_id"]), to, str(body["text"]), mention=body.get("mention")
        )
    return answer(_deliveries(deliveries))


async def _click(request: web.Request) -> web.Response:
    """`{"user_id", "button", "message_id"}`: `button` counts from 0 (4 is the fifth); without
    `message_id`, the newest message with a keyboard in a chat of the user's. A link button
    delivers nothing (`[]`): the link opens in the browser, the bot is not told."""
    portal = request.app[PORTAL]
    body = await _body(request)
    with _bad_request():
        user_id = int(body["user_id"])
        message_id = body.get("message_id") or _newest_keyboard(portal, user_id)
        delivery = await request.app[EVENTS].click(
            user_id, int(message_id), int(body.get("button", 0))
        )
    return answer(_deliveries([delivery] if delivery else []))


def _bot_by_code(portal: Portal, code: str) -> int:
    for bot in portal.bots.values():
        if bot.code == code:
            return bot.id
    raise web.HTTPBadRequest(text=f"no bot with the code {code!r}: is the service running?")


def _newest_keyboard(portal: Portal, user_id: int) -> int:
    shown = [
        m.id
        for m in portal.messages.values()
        if m.keyboard and user_id in portal.chats[m.chat_id].members
    ]
    if not shown:
        raise web.HTTPBadRequest(text=f"no message with a keyboard in a chat of user {user_id}")
    return max(shown)


@web.middleware
async def _json_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A POST to /_sandbox/ says it sends JSON. Any web page open in the same browser may
    send a form or text/plain to 127.0.0.1 without asking; JSON needs the browser to ask
    first (a CORS preflight), which the sandbox never grants: no site can act in it."""
    if (
        request.method == "POST"
        and request.path.startswith("/_sandbox/")
        and request.content_type != "application/json"
    ):
        raise web.HTTPUnsupportedMediaType(text="send the body as Content-Type: application/json")
    return await handler(request)


def _deliveries(deliveries: list[Delivery]) -> list[dict[str, Any]]:
    return [
        {"event": d.event, "url": d.url, "status": d.status, "body": d.body} for d in deliveries
    ]
