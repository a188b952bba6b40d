"""A minimal fake Telegram Bot API over real HTTP, for the adapter's tests until the sandbox's
(bot/sandbox/telegram/) lands: `POST /bot<token>/<method>`, as aiogram calls it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT = {"id": 4242, "is_bot": True, "first_name": "Rating", "username": "RatingBot"}


@dataclass
class Failure:
    status: int
    description: str
    retry_after: int | None = None


@dataclass
class FakeBotApi:
    """The Bot API's state: pending updates, what the bot sent, errors queued per method."""

    token: str = "4242:TEST-token"
    updates: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    failures: dict[str, list[Failure]] = field(default_factory=dict)
    webhook: dict[str, Any] = field(default_factory=dict)
    confirmed: int = 0  # updates below this id are confirmed (getUpdates offset)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(100))
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    # --- a person typing and pressing -------------------------------------------------
    def _add(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        update = {"update_id": next(self._ids), kind: body}
        self.updates.append(update)
        self._arrived.set()
        return update

    def type(
        self,
        chat_id: int,
        user_id: int | None,
        text: str,
        *,
        chat_type: str = "supergroup",
        lang: str = "en",
        kind: str = "message",
        sender_chat: bool = False,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": next(self._ids),
            "date": 1_700_000_000,
            "chat": {"id": chat_id, "type": chat_type, "title": "Supervisors"},
            "text": text,
        }
        if user_id is not None:
            message["from"] = {
                "id": user_id,
                "is_bot": False,
                "first_name": f"User{user_id}",
                "language_code": lang,
            }
        if sender_chat:
            message["sender_chat"] = message["chat"]
        return self._add(kind, message)

    def press(self, chat_id: int, user_id: int, message_id: int, data: str) -> dict[str, Any]:
        return self._add(
            "callback_query",
            {
                "id": f"cb{next(self._ids)}",
                "from": {"id": user_id, "is_bot": False, "first_name": "U"},
                "chat_instance": "ci",
                "data": data,
                "message": {
                    "message_id": message_id,
                    "date": 1_700_000_000,
                    "chat": {"id": chat_id, "type": "supergroup", "title": "Supervisors"},
                    "text": "prompt",
                },
            },
        )

    def fail(
        self, method: str, status: int, description: str, retry_after: int | None = None
    ) -> None:
        self.failures.setdefault(method, []).append(Failure(status, description, retry_after))

    def sent(self, method: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == method]

    # --- the API --------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        params = _decoded(dict(await request.post()))
        self.calls.append((method, params))
        failures = self.failures.get(method)
        if failures:
            failure = failures.pop(0)
            return _error(failure.status, failure.description, failure.retry_after)
        if method == "getUpdates":
            return await self._get_updates(params)
        return web.json_response({"ok": True, "result": self._result(method, params)})

    async def _get_updates(self, params: dict[str, Any]) -> web.Response:
        if self.webhook.get("url"):
            return _error(409, "Conflict: can't use getUpdates method while webhook is active")
        self.confirmed = max(self.confirmed, int(params.get("offset", 0)))
        self.updates = [u for u in self.updates if u["update_id"] >= self.confirmed]
        if not self.updates:
            self._arrived.clear()
            wait = min(float(params.get("timeout", 0)), 0.5)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), wait)
        return web.json_response({"ok": True, "result": self.updates[:100]})

    def _result(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return BOT
        if method == "setWebhook":
            self.webhook = params
        if method == "deleteWebhook":
            self.webhook = {}
        if method in {"sendMessage", "editMessageText"}:
            return {
                "message_id": int(params.get("message_id") or next(self._ids)),
                "date": 1_700_000_000,
                "chat": {"id": int(params["chat_id"]), "type": "supergroup", "title": "S"},
                "from": BOT,
                "text": params["text"],
            }
        return True


def _decoded(form: dict[str, Any]) -> dict[str, Any]:
    """aiogram posts nested values (keyboards, lists) JSON-encoded."""
    out: dict[str, Any] = {}
    for key, value in form.items():
        try:
            out[key] = json.loads(value) if value[:1] in "[{" else value
        except (TypeError, ValueError):
            out[key] = value
    return out


def _error(status: int, description: str, retry_after: int | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return web.json_response(body, status=status)


def fake_bot_app(api: FakeBotApi) -> web.Application:
    app = web.Application()
    app.router.add_post("/bot{token}/{method}", api.handle)
    return app
