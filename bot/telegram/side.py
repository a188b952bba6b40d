"""The Telegram side of the service: aiogram's Bot and Dispatcher in the app's lifetime.

`install_telegram(app, tuning)` is the one entry the composition root calls, after the Bitrix24
side (whose core, storage and workers, this side feeds). Without TELEGRAM_BOT_TOKEN it does
nothing. TELEGRAM_MODE=polling runs aiogram's polling as a tracked task (ecosystem notes §3.3);
`webhook` serves aiogram's aiohttp handler at /telegram/webhook (§3.2). Neither blocks the
Bitrix24 side: the Bot API's own failures (unreachable, 409, 429) are retried in the
background with backoff and shown by `TelegramSide.status()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import structlog
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramConflictError
from aiogram.methods import GetUpdates, TelegramMethod
from aiogram.methods.base import Response, TelegramType
from aiogram.types import BotCommand, BotCommandScopeAllGroupChats, BotCommandScopeAllPrivateChats
from aiogram.utils.backoff import BackoffConfig
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web
from pydantic import ValidationError

from bot.config import Settings
from bot.links import StoredLinks, link_key
from bot.state import CORE, SETTINGS
from bot.telegram.intake import NotStored, UpdateIntake, build_router
from bot.telegram.replies import TelegramReplies
from bot.telegram.updates import Chats, LinkOf
from bot.texts import render

log = structlog.get_logger(__name__)

T = TypeVar("T")

WEBHOOK_PATH: Final = "/telegram/webhook"
# The command menus: rating in the groups, linking in the private chat with the bot.
_MENUS: Final = (
    (BotCommandScopeAllGroupChats(), ("rate", "help")),
    (BotCommandScopeAllPrivateChats(), ("link", "unlink", "help")),
)
_STOP_WAIT: Final = 2.0  # seconds for polling to end by its stop signal, then cancelled


@dataclass(frozen=True)
class TelegramTuning:
    """Internal knobs (not settings): tests shorten the waits."""

    polling_timeout: int = 25  # seconds a getUpdates long poll waits
    backoff: BackoffConfig = field(
        default_factory=lambda: BackoffConfig(
            min_delay=1.0, max_delay=60.0, factor=1.5, jitter=0.1
        )
    )
    queue_size: int = 10_000  # the same bounds as Bitrix24's events (bot/app.py Tuning)
    user_share: int = 50
    conflict_hold: float = 90.0  # seconds without a 409 before a conflict counts as over
    longest_hold: float = 300.0  # a chat told to wait (429) waits at most the queue's longest
    send_timeout: int = 10  # seconds a reply's Bot API call may take (bot/telegram/replies.py)


class TelegramSide:
    """The bot, its dispatcher, who it is (getMe) and how its transport is doing."""

    def __init__(self, settings: Settings, tuning: TelegramTuning) -> None:
        assert settings.telegram_bot_token is not None  # noqa: S101 - checked by install
        self.settings, self.tuning = settings, tuning
        session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
        session.middleware(_PollingWatch(self))
        self.bot = Bot(settings.telegram_bot_token.get_secret_value(), session=session)
        self.dispatcher = Dispatcher()
        self.replies = TelegramReplies(self.bot, tuning.longest_hold, tuning.send_timeout)
        self.link_of: LinkOf | None = None  # None: the stored links (bot/links.py)
        self.username: str | None = None  # the bot's username, for `t.me/<bot>?start=` links
        self.state = "starting"  # starting, polling, webhook, conflict, failing
        self.detail: str | None = None

    def status(self) -> dict[str, Any]:
        """For /readyz: the mode, the state, and why when it is not working."""
        return {"mode": self.settings.telegram_mode, "state": self.state, "detail": self.detail}

    def chats(self) -> Chats | None:
        if self.username is None:
            return None
        return Chats(allowed=self.settings.telegram_allowed_chat_ids, username=self.username)

    def mark(self, state: str, detail: str | None = None) -> None:
        if state != self.state:
            log_ = log.warning if state in {"conflict", "failing"} else log.info
            log_("telegram.state", state=state, detail=detail)
        self.state, self.detail = state, detail

    async def introduce(self) -> None:
        """getMe and setMyCommands in ru and en, tried until they succeed (in the background:
        the Bitrix24 side never waits for Telegram)."""
        me = await _until_done(self, self.bot.get_me)
        for scope, names in _MENUS:
            for lang in ("en", "ru"):
                commands = [
                    BotCommand(command=c, description=render(f"telegram.command.{c}", lang))
                    for c in names
                ]
                set_commands = functools.partial(
                    self.bot.set_my_commands,
                    commands,
                    scope=scope,
                    language_code=None if lang == "en" else lang,  # en: everyone else
                )
                await _until_done(self, set_commands)
        self.username = me.username
        log.info("telegram.introduced", username=me.username, bot_id=me.id)

    async def poll(self) -> None:
        await self.introduce()
        await _until_done(self, lambda: self.bot.delete_webhook(drop_pending_updates=False))
        self.mark("polling")
        # Updates one by one (handle_as_tasks=False): aiogram confirms an update's offset only
        # on the next getUpdates, after its handler stored it.
        await self.dispatcher.start_polling(
            self.bot,
            polling_timeout=self.tuning.polling_timeout,
            handle_as_tasks=False,
            backoff_config=self.tuning.backoff,
            allowed_updates=self.dispatcher.resolve_used_update_types(),
            handle_signals=False,
            close_bot_session=False,
        )

    async def serve_webhook(self) -> None:
        await self.introduce()
        secret = self.settings.telegram_webhook_secret
        assert secret is not None  # noqa: S101 - required by Settings in webhook mode
        url = f"{self.settings.public_url}{WEBHOOK_PATH}"
        await _until_done(
            self,
            lambda: self.bot.set_webhook(
                url,
                secret_token=secret.get_secret_value(),
                allowed_updates=self.dispatcher.resolve_used_update_types(),
            ),
        )
        self.mark("webhook")


async def _until_done(side: TelegramSide, call: Callable[[], Awaitable[T]]) -> T:
    """A Bot API call made until it succeeds, waiting more between tries (the backoff)."""
    delay = side.tuning.backoff.min_delay
    while True:
        try:
            return await call()
        except Exception as error:  # noqa: BLE001 - whatever fails, try again later
            side.mark("failing", type(error).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * side.tuning.backoff.factor, side.tuning.backoff.max_delay)


class _PollingWatch(BaseRequestMiddleware):
    """How getUpdates fares, for /readyz and one log line per change (aiogram retries it with
    backoff and would log each failure twice: `_QuietRetries` drops those lines).

    A 409 says another process polls with the same token, or a webhook is set (another
    instance in webhook mode): reported once when it begins. Two pollers take turns, so
    getUpdates succeeds between the 409s: the conflict ends only once none came for
    `conflict_hold` seconds. An unreachable or failing Bot API is `failing` until a
    getUpdates succeeds.
    """

    def __init__(self, side: TelegramSide) -> None:
        self._side = side
        self._last_conflict = -math.inf

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        polling = isinstance(method, GetUpdates)  # not narrowing `method`: mypy
        if not polling:
            return await make_request(bot, method)
        try:
            response = await make_request(bot, method)
        except TelegramConflictError as error:
            self._last_conflict = time.monotonic()
            self._side.mark("conflict", _conflict_detail(error.message))
            raise
        except Exception as error:
            # Unreachable, 5xx, or a proxy's HTML page instead of JSON (ClientDecodeError).
            self._side.mark("failing", type(error).__name__)
            raise
        held = time.monotonic() - self._last_conflict < self._side.tuning.conflict_hold
        if not (self._side.state == "conflict" and held):
            self._side.mark("polling")
        return response


def _conflict_detail(message: str) -> str:
    if "webhook" in message.lower():
        return "a webhook is set for this bot token (another instance in webhook mode?)"
    return "another poller uses this bot token"


class _QuietRetries(logging.Filter):
    """aiogram logs every failed getUpdates and its backoff sleep (an error and a warning a
    try, for as long as the Bot API is down or a second poller runs); `_PollingWatch` says it
    once, as a state change."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_RETRY_LINES)


_RETRY_LINES: Final = ("Failed to fetch updates", "Sleep for", "Connection established")


class _WebhookHandler(SimpleRequestHandler):
    """aiogram's handler, answering only once the update's commands are stored: a 503 when
    they could not be (Telegram delivers it again), a 400 for a body that is no update."""

    def verify_secret(self, telegram_secret_token: str, bot: Bot) -> bool:  # noqa: ARG002
        # Bytes: compare_digest raises on a str with non-ASCII characters (a 500).
        expected = (self.secret_token or "").encode()
        return secrets.compare_digest(telegram_secret_token.encode(errors="replace"), expected)

    async def _handle_request(self, bot: Bot, request: web.Request) -> web.Response:
        try:
            body = await request.json(loads=bot.session.json_loads)
        except ValueError:
            return web.json_response({"status": "unreadable_body"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"status": "no_update"}, status=400)
        try:
            await self.dispatcher.feed_webhook_update(bot, body, **self.data)
        except ValidationError as error:
            log.warning("telegram.malformed_update", errors=error.error_count())
            return web.json_response({"status": "malformed_update"}, status=400)
        except NotStored as error:
            return web.json_response({"status": str(error)}, status=503)
        except Exception as error:
            log.warning("telegram.update_failed", error=type(error).__name__, exc_info=True)
            return web.json_response({"status": "not_stored"}, status=503)
        return web.json_response({})


TELEGRAM = web.AppKey("telegram", TelegramSide)


def install_telegram(
    app: web.Application, tuning: TelegramTuning | None = None, *, link_of: LinkOf | None = None
) -> None:
    """Add the Telegram side to the app (before it starts): nothing without a bot token.

    Call it after the Bitrix24 side is added (its cleanup context sets CORE, which this one
    reads on start). `link_of` finds the Bitrix24 user a Telegram user is linked to; without
    it, the links stored with the jobs and TELEGRAM_USER_MAP's (bot/links.py). The JobRunner's
    ReplyRouter takes `app[TELEGRAM].replies.send`; /readyz can show its `status()`.
    """
    settings = app[SETTINGS]
    if settings.telegram_bot_token is None:
        return
    side = TelegramSide(settings, tuning or TelegramTuning())
    _quiet_aiogram_retries()
    side.link_of = link_of
    app[TELEGRAM] = side
    if settings.telegram_mode == "webhook":
        secret = settings.telegram_webhook_secret
        assert secret is not None  # noqa: S101 - required by Settings in webhook mode
        handler = _WebhookHandler(
            side.dispatcher,
            side.bot,
            handle_in_background=False,
            secret_token=secret.get_secret_value(),
        )
        app.router.add_post(WEBHOOK_PATH, handler.handle)
    app.cleanup_ctx.append(_lifetime)
    # The session closes after every cleanup context (on_cleanup runs them first): the
    # workers' last replies, sent while the Bitrix24 side stops them, still go out.
    app.on_cleanup.append(_close_session)


def _quiet_aiogram_retries() -> None:
    dispatcher_log = logging.getLogger("aiogram.dispatcher")
    if not any(isinstance(f, _QuietRetries) for f in dispatcher_log.filters):
        dispatcher_log.addFilter(_QuietRetries())


async def _close_session(app: web.Application) -> None:
    await app[TELEGRAM].bot.session.close()


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    side, core = app[TELEGRAM], app[CORE]
    token = side.bot.token
    links = StoredLinks(core.storage, key=link_key(token), static=side.settings.telegram_user_map)
    intake = UpdateIntake(
        chats=side.chats,
        link_of=side.link_of or links.linked,
        supervisors=side.settings.may_rate,
        core=core,
        queue_limit=side.tuning.queue_size,
        user_share=side.tuning.user_share,
        patient=side.settings.telegram_mode == "polling",
        clock=time.time,
    )
    side.dispatcher.include_router(build_router(intake))
    run = side.poll if side.settings.telegram_mode == "polling" else side.serve_webhook
    task = asyncio.create_task(run(), name=f"telegram-{side.settings.telegram_mode}")
    try:
        yield
    finally:
        # Cancelling start_polling's task would leave aiogram's own polling task running:
        # its stop signal ends both. Before polling began there is only our task to cancel.
        with contextlib.suppress(RuntimeError):  # "Polling is not started"
            await side.dispatcher.stop_polling()
        _, running = await asyncio.wait({task}, timeout=_STOP_WAIT)
        if running:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
