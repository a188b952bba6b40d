"""The Telegram side served over real HTTP, against the sandbox's fake Bot API over real HTTP
(bot/sandbox/telegram/), aiogram real; people act through `telegram_world`.

The core here is a stand-in `execute` (the real dispatch is the core's; its Telegram checks are
tested there): it records each command and answers as dispatch would shape it, so what these
tests see is the adapter: which updates become which jobs, and how replies reach Telegram.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiogram.utils.backoff import BackoffConfig
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from bot.config import Settings
from bot.dispatch import Handled
from bot.jobs import JobRunner, RetryRules, session_of
from bot.markup import neutralise
from bot.metrics import Metrics
from bot.models import IncomingCommand, Reply, ReplyButton
from bot.routing import ReplyRouter
from bot.sandbox.telegram.seed import CHANNEL, SUPERVISORS_GROUP
from bot.sandbox.telegram.world import TelegramWorld, TgMessage
from bot.state import CORE, SETTINGS, Core
from bot.storage import open_storage
from bot.telegram.side import TELEGRAM, TelegramTuning, install_telegram
from tests.harness import free_port, telegram_api_url

GROUP = SUPERVISORS_GROUP
LINKED = 5001  # Светлана: linked to Bitrix24 user 27, a supervisor
STRANGER = 5009
SECRET = "w3bh00k-s3cret"
FAST = TelegramTuning(
    polling_timeout=1,
    backoff=BackoffConfig(min_delay=0.05, max_delay=0.2, factor=1.5, jitter=0),
    conflict_hold=0.5,
    longest_hold=5.0,  # the queue's longest wait below
)


@dataclass
class FakeCore:
    """Answers like dispatch: `/rate N` a star prompt, `/rate N R …` saved (for a linked
    user) or refused, a notice its kind, anything else help."""

    seen: list[IncomingCommand] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)  # cleared: every job waits

    def __post_init__(self) -> None:
        self.gate.set()

    async def execute(self, job: IncomingCommand, may_retry: bool) -> Handled:  # noqa: ARG002
        await self.gate.wait()
        self.seen.append(job)
        if job.notice is not None:
            return Handled(Reply(text=f"Notice: {job.notice.kind}"), job.notice.kind)
        words = job.text.split(maxsplit=3)
        if words[0] != "/rate":
            return Handled(Reply(text="[b]Help[/b]"), "help")
        if len(words) == 2:
            stars = tuple(
                ReplyButton(text="★" * n, command="rate", params=f"{words[1]} {n}")
                for n in range(1, 6)
            )
            return Handled(Reply(text="Choose a rating:", buttons=stars), "prompted")
        if job.b24_user_id is None:
            return Handled(Reply(text="You may not rate."), "not_supervisor")
        comment = neutralise(words[3]) if len(words) > 3 else ""
        return Handled(
            Reply(text=f"✅ Saved. {words[1]}: {words[2]} {comment}", settled=True), "saved"
        )


@dataclass
class Service:
    server: TestServer
    core: FakeCore

    @property
    def app(self) -> web.Application:
        return self.server.app

    async def stop(self) -> None:
        await self.server.close()


Start = Callable[..., Awaitable[Service]]


def called(world: TelegramWorld, method: str) -> list[str]:
    """The Bot API methods the bot called successfully, in order (as aiogram names them)."""
    return [call.method for call in world.calls if call.method == method.lower()]


def from_bot(world: TelegramWorld, chat_id: int) -> list[TgMessage]:
    """The bot's messages in `chat_id`, oldest first, as the fake stored them."""
    return [
        m for m in world.messages.values() if m.sender_id == world.bot.id and m.chat_id == chat_id
    ]


@pytest.fixture
async def start(
    aiohttp_server: AiohttpServer,
    sandbox: TestServer,
    telegram_world: TelegramWorld,
    tmp_path: Path,
) -> AsyncIterator[Start]:
    """Start the service's Telegram side: `await start(TELEGRAM_MODE="webhook")`; each one
    is stopped before the sandbox is."""
    started: list[Service] = []

    async def run(**env: str) -> Service:
        port = free_port()
        values = {
            "TELEGRAM_BOT_TOKEN": telegram_world.token,
            "B24_WEBHOOK_URL": "https://corp.bitrix24.ru/rest/1/abc/",
            "TELEGRAM_API_URL": telegram_api_url(sandbox),
            "TELEGRAM_ALLOWED_CHAT_IDS": f"{GROUP},{CHANNEL}",
            "TELEGRAM_USER_MAP": f"{LINKED}:27",
            "TELEGRAM_WEBHOOK_SECRET": SECRET,
            "B24_SUPERVISOR_IDS": "27",
            "BOT_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "BOT_DATABASE_URL": f"sqlite:///{tmp_path / 'bot.sqlite3'}",
        }
        settings = Settings.from_sources(values | env, env_file=None)
        core = FakeCore()
        app = web.Application()
        app[SETTINGS] = settings
        app.cleanup_ctx.append(_core(core))
        install_telegram(app, FAST)
        server: TestServer = await aiohttp_server(app, port=port)
        started.append(Service(server, core))
        return started[-1]

    yield run
    for service in started:
        await service.stop()


def _core(core: FakeCore) -> Callable[[web.Application], Any]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        storage = await open_storage(settings.bot_database_url, session_of=session_of)
        router = ReplyRouter(None, app[TELEGRAM].replies.send)
        rules = RetryRules(first_wait=0.05, longest_wait=5.0, give_up_after=60.0)
        runner = JobRunner(
            storage, core.execute, router.send, workers=2, rules=rules, metrics=Metrics()
        )
        app[CORE] = Core(storage, runner)
        yield
        await runner.stop(1.0)
        await storage.close()

    return context
