"""The composition root: `create_app(settings)` builds the aiohttp application."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from bot.config import Settings

SETTINGS = web.AppKey("settings", Settings)

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# A request id from a reverse proxy is kept only when it is short and plain: it goes to logs.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@web.middleware
async def bind_request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give every log line of a request the same request_id (structlog contextvars)."""
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex[:16]
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    response = await handler(request)
    response.headers["X-Request-ID"] = request_id
    return response


class AccessLogger(AbstractAccessLogger):
    """One structured line per HTTP request; the path only, since a query may carry secrets."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        log.info(
            "http.request",
            method=request.method,
            path=request.path,
            status=response.status,
            duration_ms=round(time * 1000, 1),
            remote=request.remote,
        )

    @property
    def enabled(self) -> bool:
        return True


async def healthz(_request: web.Request) -> web.Response:
    """Liveness: the process is up and serving."""
    return web.json_response({"status": "ok"})


def create_app(settings: Settings) -> web.Application:
    """Build the service; nothing is read from the environment here."""
    app = web.Application(middlewares=[bind_request_context])
    app[SETTINGS] = settings
    app.router.add_get("/healthz", healthz)
    app.on_startup.append(_log_startup)
    return app


async def _log_startup(app: web.Application) -> None:
    settings = app[SETTINGS]
    log.info(
        "service.started",
        public_url=settings.public_url,
        webhook_mode=settings.b24_webhook_url is not None,
        telegram=settings.telegram_bot_token is not None,
    )
