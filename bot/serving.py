"""Serving the app: a bounded number of connections, a deadline for request heads, a bounded stop.

`web.run_app` keeps a connection that sends nothing, or half a request head, for as long as the
client likes (aiohttp 3.13 starts its keep-alive timer only after a first response), accepts
connections until the process runs out of file descriptors, and waits up to 60 s on stop. This
is the small piece around `AppRunner` that bounds all three (issue 8 items 14 and 15).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_protocol import RequestHandler

from bot.errors import CannotListen
from bot.state import STOPPING

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Of the stop bound, what the HTTP server may spend letting requests in flight finish (event
# intake answers within milliseconds); the rest is the job runner's (bot/app.py).
_HTTP_SHARE: Final = 0.25
_HTTP_SHARE_MAX: Final = 2.0
_REFUSALS_LOGGED_EVERY: Final = 10.0  # seconds: a flood of refusals is one line per period
_REFUSAL: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
)


@dataclass(frozen=True)
class Limits:
    """What one process accepts at most. systemd's LimitNOFILE (deploy/) leaves room above
    `max_connections` for the database, the portal connections and the log."""

    max_connections: int = 1000
    head_timeout: float = 10.0  # a new connection has this long to send a whole request head
    keepalive_timeout: float = 15.0  # an idle kept-alive connection is closed after this
    # A peer that stops reading its answers ("slow read") is cut after this: an answer
    # waiting on a full socket buffer is outside both timeouts above.
    write_timeout: float = 30.0
    backlog: int = 128


class ConnectionGuard:
    """The protocol factory the listening socket uses, in front of aiohttp's.

    Beyond `max_connections` a new connection gets a 503 and is closed at once, so connections
    already open finish their requests. A connection that has not sent a whole request head
    within `head_timeout` is closed: the first middleware of the app reports each head.
    """

    def __init__(self, limits: Limits) -> None:
        self.server: web.Server | None = None  # aiohttp's, once the runner is set up
        self._limits = limits
        self._awaiting_head: dict[RequestHandler, asyncio.TimerHandle] = {}
        self.refused = 0
        self._refusals_logged_at = -_REFUSALS_LOGGED_EVERY
        self._refused_since_log = 0

    def __call__(self) -> asyncio.BaseProtocol:
        assert self.server is not None  # noqa: S101 - set before the site starts
        if len(self.server.connections) >= self._limits.max_connections:
            self._refuse()
            return _Refuse()
        handler = self.server()
        loop = asyncio.get_running_loop()
        self._awaiting_head[handler] = loop.call_later(
            self._limits.head_timeout, self._expire, handler
        )
        return _WriteWatched(handler, self._limits.write_timeout)

    def _refuse(self) -> None:
        self.refused += 1
        self._refused_since_log += 1
        now = time.monotonic()
        if now - self._refusals_logged_at >= _REFUSALS_LOGGED_EVERY:
            log.warning(
                "http.connections_refused",
                refused=self._refused_since_log,
                max_connections=self._limits.max_connections,
            )
            self._refusals_logged_at, self._refused_since_log = now, 0

    def head_received(self, handler: RequestHandler) -> None:
        timer = self._awaiting_head.pop(handler, None)
        if timer is not None:
            timer.cancel()

    def _expire(self, handler: RequestHandler) -> None:
        if self._awaiting_head.pop(handler, None) is not None:
            handler.force_close()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """A request reached the app, so its connection sent a whole head in time."""
        self.head_received(request.protocol)
        return await handler(request)


class _WriteWatched(asyncio.Protocol):
    """aiohttp's protocol for one connection, cut (aborted: closing would wait for the full
    buffer to drain) when its writing stays paused for `timeout` seconds, as it does while
    the peer reads nothing."""

    def __init__(self, inner: RequestHandler, timeout: float) -> None:
        self._inner, self._timeout = inner, timeout
        self._transport: asyncio.BaseTransport | None = None
        self._cut: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        self._inner.eof_received()
        return None

    def pause_writing(self) -> None:
        self._inner.pause_writing()
        if self._cut is None and isinstance(self._transport, asyncio.WriteTransport):
            loop = asyncio.get_running_loop()
            self._cut = loop.call_later(self._timeout, self._transport.abort)

    def resume_writing(self) -> None:
        self._stop_watching()
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_watching()
        self._inner.connection_lost(exc)

    def _stop_watching(self) -> None:
        if self._cut is not None:
            self._cut.cancel()
            self._cut = None


class _Refuse(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)  # noqa: S101 - a TCP transport
        transport.write(_REFUSAL)
        transport.close()


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a ConnectionGuard."""

    __slots__ = ("_guard", "_host", "_port")

    def __init__(
        self, runner: web.AppRunner, host: str, port: int, guard: ConnectionGuard, backlog: int
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host, self._port, self._guard = host, port, guard

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard, self._host, self._port, backlog=self._backlog, reuse_address=True
        )

    @property
    def port(self) -> int:
        """The bound port (the one asked for, or the one the system chose for 0)."""
        assert isinstance(self._server, asyncio.Server)  # noqa: S101 - after start
        port: int = self._server.sockets[0].getsockname()[1]
        return port


@dataclass
class Served:
    runner: web.AppRunner
    site: GuardedSite
    guard: ConnectionGuard

    @property
    def port(self) -> int:
        return self.site.port

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish, run the app's cleanup."""
        await self.runner.cleanup()


async def start_serving(
    app: web.Application,
    *,
    host: str,
    port: int,
    limits: Limits,
    stop_timeout: float,
    access_log_class: type[AbstractAccessLogger],
) -> Served:
    """Start the app on host:port behind a ConnectionGuard."""
    guard = ConnectionGuard(limits)
    app.middlewares.insert(0, guard.middleware)
    runner = web.AppRunner(
        app,
        access_log_class=access_log_class,
        keepalive_timeout=limits.keepalive_timeout,
        shutdown_timeout=min(stop_timeout * _HTTP_SHARE, _HTTP_SHARE_MAX),
    )
    await runner.setup()
    guard.server = runner.server
    site = GuardedSite(runner, host, port, guard, limits.backlog)
    try:
        await site.start()
    except OSError as error:
        # The app has started (its registration, poller and workers): stop them, so the
        # process ends with one sentence instead of a traceback and unclosed sessions.
        await runner.cleanup()
        raise CannotListen(host, port, bind_failure(error)) from error
    return Served(runner, site, guard)


def bind_failure(error: OSError) -> str:
    """Why a listening socket could not be opened, in the system's words ("address already in
    use"), without asyncio's repetition of the address."""
    return os.strerror(error.errno).lower() if error.errno else str(error)


async def serve_until_signalled(served: Served, *, stop_timeout: float) -> None:
    """Serve until SIGTERM or SIGINT, then stop within `stop_timeout` seconds."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    served.runner.app[STOPPING].began = time.monotonic()
    try:
        # The cleanup keeps to the bound by itself; this is the net under it.
        await asyncio.wait_for(served.stop(), stop_timeout + 1)
    except TimeoutError:
        log.error("service.stop_overran", bound_s=stop_timeout)  # noqa: TRY400


class RateLimited(logging.Filter):
    """Lets `burst` records of one kind (logger and message) through per `period` seconds.

    Out of file descriptors, asyncio logs a failed accept() every second per listening socket,
    and aiohttp one "Error handling request" per failing request: a flood would fill the disk
    when the disk is what is needed. The first record after a quiet period says how many were
    dropped.
    """

    def __init__(self, *, burst: int = 5, period: float = 60.0) -> None:
        super().__init__()
        self._burst, self._period = burst, period
        self._windows: dict[tuple[str, str], tuple[float, int, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        kind = (record.name, str(record.msg)[:200])
        now = time.monotonic()
        start, passed, dropped = self._windows.get(kind, (now, 0, 0))
        if now - start >= self._period:
            start, passed = now, 0
        if passed >= self._burst:
            self._windows[kind] = (start, passed, dropped + 1)
            return False
        if dropped:
            record.msg = f"{record.msg} ({dropped} like it dropped)"
        if len(self._windows) > 1000:  # noqa: PLR2004 - kinds are few; never unbounded
            self._windows.clear()
        self._windows[kind] = (start, passed + 1, 0)
        return True


def rate_limit_server_errors(filter_: logging.Filter | None = None) -> logging.Filter:
    """Attach one RateLimited filter to the loggers that log per connection or request."""
    limiter = filter_ or RateLimited()
    for name in ("asyncio", "aiohttp.server", "aiohttp.web"):
        logging.getLogger(name).addFilter(limiter)
    return limiter
