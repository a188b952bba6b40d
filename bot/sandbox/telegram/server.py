"""The fake Telegram over HTTP: the Bot API at `<prefix>/bot<token>/<method>`, the world's
controls at `/_sandbox/telegram/...`, and the sender that POSTs updates to a set webhook.

`mount(app, world)` adds all of it to an aiohttp application (the sandbox portal's, so one
server and one `TELEGRAM_API_URL=http://127.0.0.1:8090/telegram` serve both).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final

import aiohttp
from aiohttp import web

from bot.sandbox.jsonable import answer, jsonable
from bot.sandbox.telegram.methods import ApiError, Method, Polls, methods
from bot.sandbox.telegram.world import TelegramWorld, TgCall, TgFault, WorldError

PREFIX: Final = "/telegram"
TELEGRAM: Final = web.AppKey("telegram", TelegramWorld)
_HANG_SECONDS: Final = 600.0
_DELIVERY_TIMEOUT: Final = aiohttp.ClientTimeout(total=10)


class Retry:
    """Waits between failed webhook deliveries: doubling from `first` to `longest` seconds.
    Telegram's own waits grow to minutes; the sandbox keeps them short for tests."""

    def __init__(self, first: float = 0.1, longest: float = 2.0) -> None:
        self.first, self.longest = first, longest


def mount(app: web.Application, world: TelegramWorld, *, retry: Retry | None = None) -> None:
    api = ApiServer(world)
    app[TELEGRAM] = world
    app.router.add_route("*", PREFIX + "/bot{token}/{method}", api.handle)
    controls = Controls(world)
    for verb, path, handler in controls.routes():
        app.router.add_route(verb, "/_sandbox/telegram/" + path, handler)
    app.cleanup_ctx.append(_webhook_sender(world, retry or Retry()))
    app.on_shutdown.append(_end_long_polls(world))


def _end_long_polls(world: TelegramWorld) -> Callable[[web.Application], Any]:
    async def end(app: web.Application) -> None:
        del app
        world.close()

    return end


def error_body(error: ApiError) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ok": False,
        "error_code": error.status,
        "description": error.description,
    }
    if error.parameters:
        body["parameters"] = error.parameters
    return body


class ApiServer:
    def __init__(self, world: TelegramWorld) -> None:
        self.world = world
        self.methods: Mapping[str, Method] = methods(Polls())

    async def handle(self, request: web.Request) -> web.Response:
        world = self.world
        method = request.match_info["method"].lower()
        if request.match_info["token"] != world.token:
            return _answer(ApiError(401, "Unauthorized"))
        impl = self.methods.get(method)
        if impl is None:
            return _answer(ApiError(404, "Not Found"))
        fault = world.take_fault(method)
        if fault is not None and not fault.after:
            return await _injected(fault)
        try:
            params = await read_params(request)
            result = await impl(world, params)
        except ApiError as error:
            world.calls.append(TgCall(method, {}, error.status, error.description))
            return _answer(error)
        world.calls.append(TgCall(method, params, 200))
        if fault is not None:
            return await _injected(fault)
        return web.json_response({"ok": True, "result": result})

    async def run(self, method: str, params: dict[str, Any]) -> Any:
        """A method named in a webhook's answer ("reply into webhook")."""
        impl = self.methods.get(method.lower())
        if impl is None:
            raise ApiError(404, "Not Found")
        return await impl(self.world, params)


async def read_params(request: web.Request) -> dict[str, Any]:
    """Query string, then a JSON, urlencoded or multipart body: the Bot API takes all four."""
    params: dict[str, Any] = dict(request.query)
    try:
        if request.content_type == "application/json":
            body = await request.json()
            if not isinstance(body, dict):
                raise ApiError(400, "Bad Request: invalid JSON object")  # [UNCONFIRMED]
            params.update(body)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            params.update((k, v) for k, v in form.items() if isinstance(v, str))
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as error:
        raise ApiError(400, "Bad Request: can't parse request body") from error
    return params


def _answer(error: ApiError) -> web.Response:
    return web.json_response(error_body(error), status=error.status)


_DEFAULT_DESCRIPTIONS: Final = {
    400: "Bad Request",
    403: "Forbidden: bot was kicked from the group chat",
    409: "Conflict",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


async def _injected(fault: TgFault) -> web.Response:
    if fault.hang:
        await asyncio.sleep(_HANG_SECONDS)
    if fault.delay:
        await asyncio.sleep(fault.delay)
    if fault.body is not None:
        return web.Response(status=fault.status, text=fault.body, content_type="text/html")
    parameters = None
    description = fault.description or _DEFAULT_DESCRIPTIONS.get(fault.status, "Error")
    if fault.status == 429:  # noqa: PLR2004
        retry_after = fault.retry_after if fault.retry_after is not None else 5
        parameters = {"retry_after": retry_after}
        description = fault.description or f"Too Many Requests: retry after {retry_after}"
    return _answer(ApiError(fault.status, description, parameters))


# -- webhook delivery -----------------------------------------------------------------------


def _webhook_sender(
    world: TelegramWorld, retry: Retry
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def run(app: web.Application) -> AsyncIterator[None]:
        del app
        async with aiohttp.ClientSession(timeout=_DELIVERY_TIMEOUT) as session:
            task = asyncio.create_task(_deliver_forever(world, session, retry))
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return run


async def _deliver_forever(
    world: TelegramWorld, session: aiohttp.ClientSession, retry: Retry
) -> None:
    """One update at a time, in order; a failed one stays pending and is tried again after a
    growing wait, as Telegram keeps retrying (it may use several connections, the sandbox one).
    """
    wait = retry.first
    while True:
        if not (world.webhook.url and world.updates):
            await world.changed(3600)
            continue
        if await deliver_one(world, session):
            wait = retry.first
            continue
        await world.changed(wait)  # a new webhook or update wakes it early
        wait = min(wait * 2, retry.longest)


async def deliver_one(world: TelegramWorld, session: aiohttp.ClientSession) -> bool:
    update, hook = world.updates[0], world.webhook
    headers = {"X-Telegram-Bot-Api-Secret-Token": hook.secret_token} if hook.secret_token else {}
    try:
        async with session.post(hook.url, json=update, headers=headers) as answer:
            body = await answer.read()
            status, reason = answer.status, answer.reason
    except (aiohttp.ClientError, TimeoutError) as error:
        _failed(world, f"Connection failed: {type(error).__name__}")
        return False
    if not 200 <= status < 300:  # noqa: PLR2004
        _failed(world, f"Wrong response from the webhook: {status} {reason}")
        return False
    if world.updates and world.updates[0] is update:
        world.confirm_below(update["update_id"] + 1)
    await _reply_in_answer(world, body)
    return True


def _failed(world: TelegramWorld, message: str) -> None:
    world.webhook.last_error_date = world.now()
    world.webhook.last_error_message = message


async def _reply_in_answer(world: TelegramWorld, body: bytes) -> None:
    """A webhook may answer with a method call (`{"method": "sendMessage", …}`); Telegram
    runs it and reports nothing back."""
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        reply = json.loads(body) if body else None
        if isinstance(reply, dict) and isinstance(reply.get("method"), str):
            params = {k: v for k, v in reply.items() if k != "method"}
            api = ApiServer(world)
            with contextlib.suppress(ApiError):
                await api.run(reply["method"], params)
                world.calls.append(TgCall(reply["method"].lower(), params, 200))


# -- /_sandbox/telegram ----------------------------------------------------------------------


Handler = Callable[[web.Request], Any]


class Controls:
    """The world's controls for tests and people: act as users, inspect, inject faults."""

    def __init__(self, world: TelegramWorld) -> None:
        self.world = world

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("POST", "type", self.type),
            ("POST", "press", self.press),
            ("POST", "channel_post", self.channel_post),
            ("POST", "remove_bot", self.remove_bot),
            ("POST", "add_bot", self.add_bot),
            ("GET", "messages", self.messages),
            ("GET", "calls", self.calls),
            ("GET", "updates", self.updates),
            ("GET", "world", self.overview),
            ("POST", "faults", self.add_fault),
            ("DELETE", "faults", self.clear_faults),
        ]

    async def _act(
        self, request: web.Request, action: Callable[[dict[str, Any]], Any]
    ) -> web.Response:
        try:
            body = await request.json()
            update = action(body)
        except (WorldError, KeyError, IndexError, TypeError, ValueError) as error:
            raise web.HTTPBadRequest(text=f"{type(error).__name__}: {error}") from error
        return answer({"update": update})

    async def type(self, request: web.Request) -> web.Response:
        return await self._act(
            request,
            lambda b: self.world.type(
                int(b["user_id"]),
                int(b["chat_id"]),
                str(b["text"]),
                reply_to=b.get("reply_to_message_id"),
                thread_id=b.get("message_thread_id"),
                as_chat=bool(b.get("as_chat", False)),
            ),
        )

    async def press(self, request: web.Request) -> web.Response:
        """`{"user_id", "chat_id", "message_id", "data"}`, or `"button"` (counting from 0
        across the rows) for the data; without `message_id`, the bot's newest message with
        buttons in the chat. A url button opens its link in the user's app and sends the bot
        nothing: `{"update": null}`."""
        return await self._act(request, self._press)

    def _press(self, body: dict[str, Any]) -> dict[str, Any] | None:
        world, chat_id = self.world, int(body["chat_id"])
        if "message_id" in body:
            message_id = int(body["message_id"])
        else:
            offered = [
                m.message_id
                for m in world.messages.values()
                if m.chat_id == chat_id and m.sender_id == world.bot.id and any(m.buttons())
            ]
            if not offered:
                raise WorldError(f"no message of the bot's with buttons in chat {chat_id}")
            message_id = max(offered)
        if "data" in body:
            data = str(body["data"])
        else:
            message = world.message(chat_id, message_id)
            if message is None:
                raise WorldError(f"no message {message_id} in chat {chat_id}")
            button = list(message.buttons())[int(body["button"])]
            if "callback_data" not in button:
                return None
            data = str(button["callback_data"])
        return world.press(int(body["user_id"]), chat_id, message_id, data)

    async def channel_post(self, request: web.Request) -> web.Response:
        return await self._act(
            request, lambda b: self.world.post_in_channel(int(b["chat_id"]), str(b["text"]))
        )

    async def remove_bot(self, request: web.Request) -> web.Response:
        return await self._act(
            request, lambda b: self.world.remove_bot(int(b["chat_id"]), b.get("by_user_id"))
        )

    async def add_bot(self, request: web.Request) -> web.Response:
        return await self._act(
            request, lambda b: self.world.add_bot(int(b["chat_id"]), b.get("by_user_id"))
        )

    async def messages(self, request: web.Request) -> web.Response:
        """Messages as the API shows them; `?chat_id=` narrows, `?from_bot=1` the bot's."""
        world = self.world
        chosen = list(world.messages.values())
        if "chat_id" in request.query:
            chosen = [m for m in chosen if m.chat_id == int(request.query["chat_id"])]
        if request.query.get("from_bot"):
            chosen = [m for m in chosen if m.sender_id == world.bot.id]
        return answer([world.message_as_api(m) | {"parse_mode": m.parse_mode} for m in chosen])

    async def calls(self, request: web.Request) -> web.Response:
        del request
        return answer(jsonable(self.world.calls))

    async def updates(self, request: web.Request) -> web.Response:
        del request
        world = self.world
        return answer({"pending": world.updates, "delivered": world.delivered})

    async def overview(self, request: web.Request) -> web.Response:
        del request
        world = self.world
        return answer(
            {
                "bot": world.bot.as_api(),
                "users": jsonable(list(world.users.values())),
                "chats": jsonable(list(world.chats.values())),
                "webhook": jsonable(world.webhook),
                "commands": [
                    {"scope": scope, "language_code": lang, "commands": commands}
                    for (scope, lang), commands in world.commands.items()
                ],
                "callback_answers": {k: v["answer"] for k, v in world.callback_queries.items()},
            }
        )

    async def add_fault(self, request: web.Request) -> web.Response:
        fields = {f.name for f in dataclasses.fields(TgFault)}
        body = await request.json()
        self.world.faults.append(TgFault(**{k: v for k, v in body.items() if k in fields}))
        return answer({"faults": len(self.world.faults)})

    async def clear_faults(self, request: web.Request) -> web.Response:
        del request
        self.world.faults.clear()
        return answer({"faults": 0})
