"""What the composition root (bot/app.py) builds and the probes (bot/probes.py) read, under
typed application keys."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from aiohttp import web

from bot.bitrix.coalesce import Coalescer
from bot.bitrix.fetch import FetchPoller
from bot.bitrix.oauth_callback import OAuthCallback
from bot.bitrix.registration import Registration
from bot.config import Settings
from bot.jobs import JobRunner
from bot.metrics import Metrics
from bot.storage import Storage


@dataclass
class BitrixState:
    """What the service knows about its bot in the portal."""

    registration: Registration | None = None
    registered: asyncio.Event = field(default_factory=asyncio.Event)
    lost: asyncio.Event = field(default_factory=asyncio.Event)  # set: register again
    # Why registration stopped for good (a setting to fix), for /readyz.
    refused: str | None = None
    # What the last failed registration says about the settings (a refused webhook code), for
    # /readyz while registration keeps trying.
    problem: str | None = None

    def forget(self, bot_id: int) -> None:
        if self.registration is not None and self.registration.bot_id == bot_id:
            self.registration = None
            self.registered.clear()
            self.lost.set()

    def bot_id(self) -> int | None:
        return self.registration.bot_id if self.registration is not None else None


@dataclass(frozen=True)
class Core:
    """The one job queue every transport feeds, and the workers that run it."""

    storage: Storage
    runner: JobRunner


@dataclass
class Stopping:
    """The stop in progress: when it began, and what it left for the next start."""

    began: float | None = None  # time.monotonic()
    jobs_left: int | None = None

    def elapsed(self) -> float:
        return 0.0 if self.began is None else time.monotonic() - self.began


SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
STOPPING = web.AppKey("stopping", Stopping)
BITRIX = web.AppKey("bitrix_state", BitrixState)
COALESCER = web.AppKey("coalescer", Coalescer)
CORE = web.AppKey("core", Core)
POLLER = web.AppKey("fetch_poller", FetchPoller)
OAUTH_CALLBACK = web.AppKey("oauth_callback", OAuthCallback)
