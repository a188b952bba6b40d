"""The composition root: `create_app(settings)` builds the aiohttp application."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

import aiohttp
import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from pydantic import SecretStr

from bot.bitrix.accounts import Portal, SupervisorAccounts
from bot.bitrix.client import BitrixClient, PortalLimiters, RetryPolicy, WebhookAuth
from bot.bitrix.coalesce import ActsAs, Coalescer, RestCaller
from bot.bitrix.fetch import FetchPoller, PollTuning
from bot.bitrix.oauth import OAuthClient
from bot.bitrix.oauth_callback import OAuthCallback, not_ready_page
from bot.bitrix.people import BitrixPeople
from bot.bitrix.reach import add_reach_probe, path_secret
from bot.bitrix.replies import ANSWER_WINDOW, BitrixReplies
from bot.bitrix.replies_v2 import BitrixV2Replies
from bot.bitrix.votes import BitrixSessionVotes
from bot.bitrix.webhook import INTAKE, MAX_EVENT_BYTES, EventIntake, receive_event
from bot.config import OAUTH_CALLBACK_PATH, PUBLIC_URL_HINT, Settings
from bot.dispatch import Handled, Services, run_command
from bot.jobs import JobRunner, RetryRules, session_of
from bot.links import StoredLinks, link_key
from bot.metrics import Metrics
from bot.models import IncomingCommand
from bot.probes import NOT_CONFIGURED, healthz, metrics, readyz
from bot.routing import ReplyRouter
from bot.secretbox import SecretBox
from bot.state import (
    BITRIX,
    COALESCER,
    CORE,
    METRICS,
    OAUTH_CALLBACK,
    POLLER,
    SETTINGS,
    STOPPING,
    BitrixState,
    Core,
    Stopping,
)
from bot.storage import Storage, open_storage
from bot.telegram.side import TELEGRAM, TelegramTuning, install_telegram
from bot.upkeep import keep_pruning, keep_registered, keep_tokens_fresh

# What closing the portal session and the database takes at most, kept out of the workers'
# share of BOT_SHUTDOWN_TIMEOUT.
_CLOSE_RESERVE = 1.0

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


@dataclass(frozen=True)
class Tuning:
    """Internal knobs (not settings): tests shorten the waits."""

    # Enough concurrent commands for coalescing to fill batch requests (a vote is 2-3 calls
    # and its reply 1; 50 calls fit in one request). Workers are coroutines: cheap.
    workers: int = 32
    queue_size: int = 10_000  # unfinished jobs at most; beyond it events are refused
    # Unfinished jobs of one user at most, so that nobody alone can fill the queue and refuse
    # everyone else's events: a supervisor rating by hand stays far below it.
    user_share: int = 50
    shutdown_grace: float = 10.0  # at most; BOT_SHUTDOWN_TIMEOUT bounds the whole stop
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    jobs: RetryRules = field(default_factory=RetryRules)
    answer_window: float = ANSWER_WINDOW
    registration_backoff: float = 60.0  # the longest wait between registration attempts
    coalesce: bool = True  # merge queued REST calls into batch requests (off: the naive mode)
    retention: float = 7 * 24 * 3600.0  # de-dup keys of finished jobs are kept this long
    prune_every: float = 3600.0
    poll: PollTuning = field(default_factory=PollTuning)  # fetch mode; the settings fill in
    # the rate, the budget share and the answer target


def create_app(settings: Settings, *, tuning: Tuning | None = None) -> web.Application:
    """Build the service; nothing is read from the environment here."""
    app = web.Application(middlewares=[bind_request_context], client_max_size=MAX_EVENT_BYTES)
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app[STOPPING] = Stopping()
    app.on_startup.append(_log_startup)
    app.on_shutdown.append(_stop_begins)
    if settings.b24_webhook_url is not None:
        app[BITRIX] = BitrixState()
        if settings.b24_event_mode == "webhook":
            app.router.add_post("/b24/events/{secret}", receive_event)
            add_reach_probe(app, path_secret(settings))  # for `python -m bot check`
        if settings.app is not None:
            app.router.add_get(OAUTH_CALLBACK_PATH, _oauth_callback)
        app.cleanup_ctx.append(_bitrix_side(tuning or Tuning()))
        # Nothing without TELEGRAM_BOT_TOKEN; it reads the core on start.
        longest = (tuning or Tuning()).jobs.longest_wait
        install_telegram(app, TelegramTuning(longest_hold=longest))
    app.on_cleanup.append(_log_stopped)  # after every cleanup context has closed
    return app


def _bitrix_side(
    tuning: Tuning,
) -> Callable[[web.Application], contextlib.AbstractAsyncContextManager[None]]:
    """The portal's client, the core (storage, workers) and the transport B24_EVENT_MODE
    chooses: the webhook handler's intake, or the poller."""

    @contextlib.asynccontextmanager
    async def context(app: web.Application) -> AsyncIterator[None]:
        settings, state = app[SETTINGS], app[BITRIX]
        assert settings.b24_webhook_url is not None  # noqa: S101 - checked by create_app
        async with aiohttp.ClientSession() as session:
            auth = WebhookAuth(settings.b24_webhook_url)
            limiters = PortalLimiters(rate=settings.b24_rate_limit, burst=settings.b24_rate_burst)
            client = BitrixClient(
                session, auth, limiters, retry=tuning.retry, observer=app[METRICS]
            )
            coalescer = Coalescer(client, client.limiter) if tuning.coalesce else None
            if coalescer is not None:
                app[COALESCER] = coalescer
            caller: RestCaller = coalescer or client
            storage = await open_storage(
                settings.bot_database_url, session_of=session_of, lease=settings.bot_job_lease
            )
            accounts = _accounts(settings, session, storage, coalescer or client)
            runner = _runner(app, caller, storage, tuning, accounts)
            app[CORE] = Core(storage, runner)
            if accounts is not None:
                app[OAUTH_CALLBACK] = _callback(accounts, storage, runner, tuning)
            background = [
                asyncio.create_task(
                    keep_registered(client, settings, state, backoff=tuning.registration_backoff)
                ),
                asyncio.create_task(
                    keep_pruning(storage, retention=tuning.retention, every=tuning.prune_every)
                ),
            ]
            if accounts is not None:
                background.append(asyncio.create_task(keep_tokens_fresh(accounts)))
            if settings.b24_event_mode == "webhook":
                app[INTAKE] = _intake(app, core=app[CORE], tuning=tuning)
            else:
                app[POLLER] = _poller(app, caller, app[CORE], tuning)
                background.append(asyncio.create_task(app[POLLER].run(), name="fetch-poller"))
            try:
                yield
            finally:
                # Fetching stops first: what it stored waits in storage for the next start.
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
                stopping = app[STOPPING]
                left = settings.bot_shutdown_timeout - stopping.elapsed() - _CLOSE_RESERVE
                await runner.stop(max(0.0, min(tuning.shutdown_grace, left)))
                if coalescer is not None:
                    await coalescer.close()
                stopping.jobs_left = await _unfinished_or_none(storage)
                await storage.close()

    return context


def _runner(
    app: web.Application,
    caller: RestCaller,
    storage: Storage,
    tuning: Tuning,
    accounts: SupervisorAccounts | None,
) -> JobRunner:
    """The workers: every command through dispatch, every reply back by the mode's API."""
    settings, state = app[SETTINGS], app[BITRIX]
    telegram = app.get(TELEGRAM)
    services = Services(
        BitrixSessionVotes(caller),
        settings.may_rate,
        BitrixPeople(caller),
        links=_links(settings, storage) if telegram else None,
        telegram_username=(lambda: telegram.username) if telegram else (lambda: None),
        feed_chat_id=settings.telegram_feed_chat_id if telegram else None,
        accounts=accounts,
    )
    replies: BitrixReplies | BitrixV2Replies
    if settings.b24_event_mode == "webhook":
        replies = BitrixReplies(
            caller, secret(settings.b24_client_id), answer_window=tuning.answer_window
        )
    else:
        replies = BitrixV2Replies(
            caller,
            secret(settings.b24_bot_token),
            state.bot_id,
            answer_window=tuning.answer_window,
        )

    async def execute(job: IncomingCommand, may_retry: bool) -> Handled:  # noqa: FBT001
        return await run_command(job, services, may_retry=may_retry)

    return JobRunner(
        storage,
        execute,
        ReplyRouter(replies.send, telegram.replies.send if telegram else None).send,
        workers=tuning.workers,
        rules=tuning.jobs,
        metrics=app[METRICS],
    )


def _accounts(
    settings: Settings, session: aiohttp.ClientSession, storage: Storage, calls: ActsAs
) -> SupervisorAccounts | None:
    """Application mode: supervisors' own tokens (None when the mode is off)."""
    app_settings = settings.app
    if app_settings is None:
        return None
    assert settings.b24_webhook_url is not None  # noqa: S101 - checked by create_app
    parts = urlsplit(settings.b24_webhook_url.get_secret_value())
    oauth = OAuthClient(
        session, app_settings.client_id, app_settings.client_secret, app_settings.servers
    )
    return SupervisorAccounts(
        Portal(f"{parts.scheme}://{parts.netloc}"),
        storage.oauth_states(),
        storage.user_tokens(SecretBox(app_settings.key())),
        oauth,
        calls,
    )


def _callback(
    accounts: SupervisorAccounts, storage: Storage, runner: JobRunner, tuning: Tuning
) -> OAuthCallback:
    """The OAuth callback, queueing the command that waited for the link like any other."""

    async def enqueue(waiting: IncomingCommand) -> bool:
        stored = await storage.enqueue(
            [waiting], limit=tuning.queue_size, user_limit=tuning.user_share
        )
        if not isinstance(stored, list):
            log.warning("oauth.waiting_not_queued", reason=stored)
            return False
        runner.wake()
        return True

    return OAuthCallback(accounts, enqueue)


async def _oauth_callback(request: web.Request) -> web.Response:
    callback = request.app.get(OAUTH_CALLBACK)
    if callback is None:  # the core is not up yet
        return not_ready_page()
    return await callback.handle(request)


def _links(settings: Settings, storage: Storage) -> StoredLinks:
    """Telegram accounts linked to Bitrix24 users: stored, and TELEGRAM_USER_MAP's."""
    key = link_key(secret(settings.telegram_bot_token))
    return StoredLinks(storage, key=key, static=settings.telegram_user_map)


def _intake(app: web.Application, *, core: Core, tuning: Tuning) -> EventIntake:
    """Webhook mode: what the event handler checks and where it puts commands."""
    settings = app[SETTINGS]
    return EventIntake(
        path_secret=path_secret(settings),
        client_id=secret(settings.b24_client_id),
        application_token=None,
        storage=core.storage,
        runner=core.runner,
        supervisors=settings.may_rate,
        queue_limit=tuning.queue_size,
        user_share=tuning.user_share,
        metrics=app[METRICS],
        clock=time.time,
        on_bot_deleted=app[BITRIX].forget,
    )


def _poller(app: web.Application, caller: RestCaller, core: Core, tuning: Tuning) -> FetchPoller:
    """Fetch mode: the one consumer of the bot's events (Chatbots 2.0, protocol notes §00 9)."""
    settings, state = app[SETTINGS], app[BITRIX]
    assert settings.b24_webhook_url is not None  # noqa: S101 - checked by create_app
    portal = urlsplit(settings.b24_webhook_url.get_secret_value()).hostname or ""
    return FetchPoller(
        caller,
        bot_token=secret(settings.b24_bot_token),
        bot_id=state.bot_id,
        storage=core.storage,
        wake=core.runner.wake,
        may_rate=settings.may_rate.allows,
        queue_limit=tuning.queue_size,
        user_share=tuning.user_share,
        metrics=app[METRICS],
        clock=time.time,
        on_bot_missing=state.forget,
        consumer=f"b24:{portal}:{settings.b24_bot_code}",
        tuning=replace(
            tuning.poll,
            rate=settings.b24_rate_limit,
            budget_share=settings.b24_poll_budget,
            answer_target=settings.b24_answer_target,
            # After a kill -9 the restarted service waits this long to consume again: no
            # longer than it waits for the dead process's jobs.
            lease=min(tuning.poll.lease, settings.bot_job_lease),
        ),
        accepting=lambda: core.runner.accepting,
    )


def secret(value: SecretStr | None) -> str:
    """A secret setting that validation has filled in (derived when not set)."""
    assert value is not None  # noqa: S101 - derived with the webhook by Settings
    return value.get_secret_value()


async def _unfinished_or_none(storage: Storage) -> int | None:
    try:
        return await storage.unfinished()
    except Exception:
        log.warning("storage.failing", exc_info=True)
        return None


async def _stop_begins(app: web.Application) -> None:
    if app[STOPPING].began is None:
        app[STOPPING].began = time.monotonic()


async def _log_stopped(app: web.Application) -> None:
    stopping = app[STOPPING]
    log.info(
        "service.stopped",
        duration_s=round(stopping.elapsed(), 2),
        jobs_left=stopping.jobs_left,
    )


async def _log_startup(app: web.Application) -> None:
    settings = app[SETTINGS]
    if settings.public_url_is_local():
        log.warning("config.public_url_is_local", hint=PUBLIC_URL_HINT)
    if settings.b24_webhook_url is None:
        log.warning("config.nothing_configured", hint=NOT_CONFIGURED)
    log.info(
        "service.started",
        public_url=settings.public_url,
        bitrix24=settings.b24_webhook_url is not None,
        event_mode=settings.b24_event_mode,
        telegram=settings.telegram_bot_token is not None,
    )
