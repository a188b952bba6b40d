"""The service and the sandbox portal, both over real HTTP on loopback, for end-to-end tests.

Its fixtures (the sandbox portal, an HTTP session, a REST client, the service) are registered
for every test in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr
from pytest_aiohttp import AiohttpServer

from bot.app import Tuning, create_app
from bot.bitrix.client import BitrixClient, PortalLimiters, RestAuth, RetryPolicy, WebhookAuth
from bot.bitrix.fetch import PollTuning
from bot.config import Settings
from bot.jobs import RetryRules
from bot.sandbox.app import EVENTS, create_sandbox_app
from bot.sandbox.events import Delivery, EventSender
from bot.sandbox.portal import Message, Portal
from bot.sandbox.seed import seeded_portal
from bot.sandbox.telegram.seed import seeded_world
from bot.sandbox.telegram.server import PREFIX as TELEGRAM_PREFIX
from bot.sandbox.telegram.world import TelegramWorld
from bot.state import BITRIX, CORE

WEBHOOK_CODE = "s4ndb0xh00kc0de"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def portal() -> Portal:
    """The seeded sandbox portal (see bot/sandbox/seed.py); user 1 owns the main webhook."""
    return seeded_portal(webhook_code=WEBHOOK_CODE)


@pytest.fixture
def bucket() -> tuple[float, int]:
    """The sandbox's leaky bucket (drain per second, capacity); overridden where it matters."""
    return (50.0, 50)


@pytest.fixture
def telegram_world() -> TelegramWorld:
    """The fake Telegram's seeded world (see bot/sandbox/telegram/seed.py), served by the
    `sandbox` fixture's server at `telegram_api_url(sandbox)`."""
    return seeded_world()


@pytest.fixture
async def sandbox(
    aiohttp_server: AiohttpServer,
    portal: Portal,
    bucket: tuple[float, int],
    telegram_world: TelegramWorld,
) -> TestServer:
    """The sandbox portal (and the fake Telegram Bot API) served over real HTTP on loopback."""
    rate, burst = bucket
    app = create_sandbox_app(portal, rate=rate, burst=burst, telegram=telegram_world)
    server: TestServer = await aiohttp_server(app)
    return server


def telegram_api_url(server: TestServer) -> str:
    """TELEGRAM_API_URL for the sandbox's fake Telegram (aiogram's TelegramAPIServer base)."""
    return str(server.make_url(TELEGRAM_PREFIX))


def webhook_url(server: TestServer, user_id: int = 1, code: str = WEBHOOK_CODE) -> str:
    return str(server.make_url(f"/rest/{user_id}/{code}/"))


def process_env(sandbox: TestServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of `python -m bot` run as a process against the sandbox, on a free port."""
    port = free_port()
    return {
        "PYTHONIOENCODING": "utf-8",
        # The tests written before fetch mode mean the classic push path; callers override.
        "B24_EVENT_MODE": "webhook",
        "B24_WEBHOOK_URL": webhook_url(sandbox),
        "BOT_HOST": "127.0.0.1",
        "BOT_PORT": str(port),
        "BOT_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "B24_SUPERVISOR_IDS": "27",
        "BOT_DATABASE_URL": f"sqlite:///{tmp_path / 'bot.sqlite3'}",
    } | extra


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


FAST_RETRIES = RetryPolicy(attempts=4, deadline=10, initial_wait=0.01, max_wait=0.05)


@pytest.fixture
def make_client(
    http: aiohttp.ClientSession, sandbox: TestServer, bucket: tuple[float, int]
) -> Callable[..., BitrixClient]:
    """A BitrixClient for the sandbox's main webhook (or other auth), with fast retries."""
    rate, burst = bucket
    limiters = PortalLimiters(rate=rate, burst=burst)

    def build(
        auth: RestAuth | None = None,
        *,
        retry: RetryPolicy = FAST_RETRIES,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> BitrixClient:
        return BitrixClient(
            http,
            auth or WebhookAuth(SecretStr(webhook_url(sandbox))),
            limiters,
            retry=retry,
            timeout=timeout or aiohttp.ClientTimeout(total=10),
        )

    return build


T = TypeVar("T")

FAST = Tuning(
    workers=2,
    retry=RetryPolicy(attempts=3, deadline=5, initial_wait=0.01, max_wait=0.05),
    jobs=RetryRules(first_wait=0.05, longest_wait=0.2, give_up_after=2.0),
    registration_backoff=0.2,
    shutdown_grace=2,
    # Fetch mode: quick rounds (the idle interval follows B24_RATE_LIMIT and B24_POLL_BUDGET).
    poll=PollTuning(
        quick=0.05,
        lease=2.0,
        wait_for_bot=0.05,
        backoff=RetryRules(first_wait=0.05, longest_wait=0.2),
    ),
)


async def eventually(probe: Callable[[], T | None], within: float = 5.0) -> T:
    """Poll until `probe` returns something truthy; the background work runs meanwhile."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the expected state did not come about in time")
        await asyncio.sleep(0.01)


@dataclass
class Service:
    """The running service, the portal it talks to, and the portal's event sender."""

    server: TestServer
    settings: Settings
    portal: Portal
    events: EventSender
    started_at_call: int  # REST calls made before this index were the registration

    @property
    def bot_id(self) -> int:
        registration = self.server.app[BITRIX].registration
        assert registration is not None
        return registration.bot_id

    def bot_messages(self, chat_id: int | None = None) -> list[Message]:
        return [
            m
            for m in self.portal.messages.values()
            if m.author_id == self.bot_id and (chat_id is None or m.chat_id == chat_id)
        ]

    async def say(self, author_id: int, to: int | str, text: str, **kw: Any) -> list[Delivery]:
        """A user writes; returns once the event was answered (the work may still run)."""
        deliveries = await self.events.send_message(author_id, to, text, **kw)
        assert all(d.status == 200 for d in deliveries), deliveries
        return deliveries

    async def reply_to(self, author_id: int, to: int | str, text: str, **kw: Any) -> Message:
        """A user writes and the bot answers: the answer."""
        before = len(self.bot_messages())
        await self.say(author_id, to, text, **kw)
        await eventually(lambda: len(self.bot_messages()) > before)
        return self.bot_messages()[-1]

    def votes(self) -> int:
        """head.vote calls (inside batch or not) since the service was up."""
        calls = self.portal.calls[self.started_at_call :]
        return sum(1 for c in calls if c.method == "imopenlines.session.head.vote")


ServiceFactory = Callable[..., Coroutine[Any, Any, Service]]


@pytest.fixture
def start_service(
    aiohttp_server: AiohttpServer, sandbox: TestServer, portal: Portal, tmp_path: Path
) -> ServiceFactory:
    """Start the service against the sandbox: `await start_service(B24_SUPERVISOR_IDS="27")`."""

    async def start(*, tuning: Tuning = FAST, registered: bool = True, **env: str) -> Service:
        port = free_port()
        values = {
            # The tests written before fetch mode mean the classic push path; callers override.
            "B24_EVENT_MODE": "webhook",
            "B24_WEBHOOK_URL": webhook_url(sandbox),
            "BOT_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "B24_SUPERVISOR_IDS": "1,27",
            "BOT_DATABASE_URL": f"sqlite:///{tmp_path / 'bot.sqlite3'}",
        }
        settings = Settings.from_sources(values | env, env_file=None)
        server: TestServer = await aiohttp_server(create_app(settings, tuning=tuning), port=port)
        if registered:
            await asyncio.wait_for(server.app[BITRIX].registered.wait(), 5)
        return Service(server, settings, portal, sandbox.app[EVENTS], len(portal.calls))

    return start


@pytest.fixture
async def service(start_service: ServiceFactory) -> Service:
    return await start_service()


async def post_form(http: aiohttp.ClientSession, url: str, **request: Any) -> int:
    """POST anything (data=, json=, headers=) and return the status."""
    async with http.post(url, **request) as answer:
        return answer.status


async def drained(service: Service, within: float = 10.0) -> None:
    """Wait until every accepted job is finished."""
    storage = service.server.app[CORE].storage
    deadline = asyncio.get_running_loop().time() + within
    while await storage.unfinished():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("a job did not finish in time")
        await asyncio.sleep(0.01)


def job_rows(database_url: str) -> list[tuple[str, str, str | None, int]]:
    """(text, state, owner, attempts) of every job in arrival order, read without disturbing
    the service that holds the database (a read-only connection)."""
    path = Path(database_url.removeprefix("sqlite:///"))
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT json_extract(payload, '$.text'), state, owner, attempts FROM jobs ORDER BY seq"
        ).fetchall()
    finally:
        db.close()
    return [(str(text), str(state), owner, int(attempts)) for text, state, owner, attempts in rows]


@contextlib.contextmanager
def write_locked(database_url: str) -> Iterator[None]:
    """Another process holds the database's write lock (a backup, a hand edit, a second
    instance): every write of the service meanwhile waits out its busy timeout and fails."""
    other = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


@contextlib.contextmanager
def sandbox_process(cwd: Path, *options: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """`python -m bot.sandbox` on a free port, as a newcomer starts it: its port and process
    (stdout readable), stopped with SIGTERM at the end."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.sandbox", "--port", str(port), *options],
        env={"PYTHONIOENCODING": "utf-8"},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield port, process
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)


def post_until_answered(url: str, within: float = 20.0) -> Any:
    """POST to a process that is still starting until it answers; its JSON `result`."""
    deadline = time.monotonic() + within
    while True:
        try:
            request = urllib.request.Request(url, method="POST")  # noqa: S310 - loopback
            with urllib.request.urlopen(request, timeout=2) as answer:  # noqa: S310
                return json.load(answer)["result"]
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
