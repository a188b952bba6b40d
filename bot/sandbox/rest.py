"""The sandbox's REST endpoint, as Bitrix24 serves it (protocol notes §3-§4).

`/rest/<user>/<code>/<method>` (incoming webhook) and `/rest/<method>` with `auth=<token>`;
parameters as JSON, PHP-style form, multipart or query; method names case-insensitive with an
optional `.json`; the leaky bucket; the `{"result", "time"}` / `{"error", …}` envelope.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from aiolimiter import AsyncLimiter

from bot.bitrix.form import FormError, unflatten_form
from bot.sandbox import oauth, operating
from bot.sandbox.portal import Call, Fault, Portal, RestError

MethodImpl = Callable[["CallContext", dict[str, Any]], Awaitable[Any]]

# The scopes that open each method family (any one will do); `profile` and `batch` need none
# (protocol notes §7.5, §6); user.current answers with any user scope (its doc page).
_SCOPES: Final = (
    ("imbot.", frozenset({"imbot"})),
    ("imopenlines.", frozenset({"imopenlines"})),
    ("im.", frozenset({"im"})),
    ("user.", frozenset({"user", "user_basic", "user_brief"})),
)
_HANG_SECONDS: Final = 600.0


@dataclass(frozen=True)
class CallContext:
    """Who is calling: the user behind the webhook or token, and how they authenticated."""

    portal: Portal
    user_id: int
    auth: str  # "webhook" or "token"
    scopes: frozenset[str] | None  # None: an OAuth token (its app's scopes are not modelled)
    methods: Mapping[str, MethodImpl]
    batch_of: str | None = None


class BucketGauge:
    """The leaky bucket's level for people to watch (the chat page): the same leak as the
    bucket's, which AsyncLimiter keeps to itself."""

    def __init__(self, rate: float, capacity: int) -> None:
        self.rate, self.capacity = rate, capacity
        self._level, self._at = 0.0, time.monotonic()

    def level(self) -> float:
        return max(0.0, self._level - self.rate * (time.monotonic() - self._at))

    def add(self) -> None:
        self._level, self._at = self.level() + 1, time.monotonic()


class RestServer:
    """Serves one portal's REST API; `methods` maps lower-case method names to coroutines."""

    def __init__(
        self, portal: Portal, methods: Mapping[str, MethodImpl], *, rate: float, burst: int
    ) -> None:
        self.portal = portal
        self.methods = methods
        self.bucket = AsyncLimiter(burst, burst / rate)
        self.gauge = BucketGauge(rate, burst)

    async def handle(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        tail = request.match_info["tail"].strip("/").split("/")
        method = tail[-1].lower().removesuffix(".json")
        # Bitrix24 counts every request against the bucket, a batch once (§4.1).
        if not self.bucket.has_capacity():
            self.portal.refused += 1
            return _error(RestError("QUERY_LIMIT_EXCEEDED", "Too many requests", 503))
        await self.bucket.acquire()
        self.gauge.add()
        fault = self.portal.take_fault(method)
        if fault is not None and not fault.after:
            injected = await _injected(fault)
            if injected is not None:
                return injected
        try:
            params = await _read_params(request)
            context = self._authenticate(tail, params)
        except RestError as error:
            self._record(method, {}, "none", None, error)
            return _error(error)
        try:
            result = await call_method(context, method, params)
        except RestError as error:
            self._record(method, params, context.auth, context.user_id, error)
            return _error(error)
        self._record(method, params, context.auth, context.user_id, None)
        if fault is not None and fault.after:
            injected = await _injected(fault)
            if injected is not None:
                return injected
        duration = time.monotonic() - started
        answer_time = operating.time_block(self.portal, method, self.portal.now(), duration)
        return web.json_response({"result": result, "time": answer_time})

    def _authenticate(self, tail: list[str], params: dict[str, Any]) -> CallContext:
        if len(tail) == 3:  # noqa: PLR2004 - <user>/<code>/<method>
            user, code = tail[0], tail[1]
            for hook in self.portal.webhooks:
                if str(hook.user_id) == user and hook.code == code:
                    return CallContext(
                        self.portal, hook.user_id, "webhook", hook.scopes, self.methods
                    )
            raise RestError("NO_AUTH_FOUND", "Wrong authorization data", 401)
        if len(tail) == 1:
            token = params.pop("auth", None)
            if isinstance(token, str) and token in self.portal.tokens:
                return CallContext(
                    self.portal, self.portal.tokens[token], "token", None, self.methods
                )
            grant = oauth.grant_of(self.portal, token) if isinstance(token, str) else None
            if grant is not None:
                refusal = oauth.token_auth_error(self.portal, grant)
                if refusal is not None:
                    raise RestError(*refusal, 401)
                scopes = frozenset(grant.scopes)
                return CallContext(self.portal, grant.user_id, "token", scopes, self.methods)
            if token:
                raise RestError("expired_token", "The access token provided has expired.", 401)
            raise RestError("NO_AUTH_FOUND", "Wrong authorization data", 401)
        raise RestError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)

    def _record(
        self,
        method: str,
        params: dict[str, Any],
        auth: str,
        user_id: int | None,
        error: RestError | None,
    ) -> None:
        status = error.status if error else 200
        code = error.code if error else None
        call = Call(method, params, auth, user_id, status, code, level=self.gauge.level())
        self.portal.calls.append(call)


async def call_method(context: CallContext, method: str, params: dict[str, Any]) -> Any:
    """Run one method for an authenticated caller (also used by `batch` for its calls)."""
    impl = context.methods.get(method)
    if impl is None:
        raise RestError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
    for prefix, opening in _SCOPES:
        if (
            method.startswith(prefix)
            and context.scopes is not None
            and not opening & context.scopes
        ):
            which = "webhook token" if context.auth == "webhook" else "access token"
            raise RestError(
                "insufficient_scope",
                f"The request requires higher privileges than provided by the {which}",
                403,
            )
    try:
        operating.check(context.portal, method)
        started = time.monotonic()
        result = await impl(context, params)
    except RestError as error:  # a call inside batch is recorded refused too
        _record_inner(context, method, params, error)
        raise
    operating.charge(context.portal, method, time.monotonic() - started)
    _record_inner(context, method, params, None)
    return result


def _record_inner(
    context: CallContext, method: str, params: dict[str, Any], error: RestError | None
) -> None:
    """A call made inside `batch` (the batch request itself is recorded by the server)."""
    if context.batch_of is not None:
        status, code = (error.status, error.code) if error else (200, None)
        call = Call(method, params, context.auth, context.user_id, status, code, context.batch_of)
        context.portal.calls.append(call)


async def _read_params(request: web.Request) -> dict[str, Any]:
    """Query parameters, then the body: JSON, urlencoded or multipart form (§3.2)."""
    try:
        params: dict[str, Any] = unflatten_form(request.query.items())
        if request.content_type == "application/json":
            body = await request.json()
            if not isinstance(body, dict):
                raise RestError("INVALID_REQUEST", "Request body must be a JSON object")
            params.update(body)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            params.update(unflatten_form((k, v) for k, v in form.items() if isinstance(v, str)))
    except (json.JSONDecodeError, UnicodeDecodeError, FormError, ValueError) as error:
        raise RestError("INVALID_REQUEST", "Request could not be read") from error
    return params


async def _injected(fault: Fault) -> web.Response | None:
    if fault.hang:
        await asyncio.sleep(_HANG_SECONDS)
    if fault.delay:
        await asyncio.sleep(fault.delay)
    if fault.body is not None:
        return web.Response(
            status=fault.status or 200, text=fault.body, content_type=fault.content_type
        )
    if fault.error is not None or fault.status is not None:
        code = fault.error or f"HTTP_{fault.status}"
        return _error(RestError(code, fault.description or code, fault.status or 400))
    return None


def _error(error: RestError) -> web.Response:
    body: dict[str, Any] = {"error": error.code, "error_description": error.description}
    if error.time is not None:
        body["time"] = error.time
    return web.json_response(body, status=error.status)
