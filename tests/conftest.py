"""Shared fixtures. Nothing here reads the developer's environment or reaches past loopback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator

import aiohttp
import pytest
import structlog
from aiohttp.test_utils import TestServer
from hypothesis import settings as hypothesis_settings
from pydantic import SecretStr
from pytest_aiohttp import AiohttpServer

from bot.bitrix.client import BitrixClient, PortalLimiters, RestAuth, RetryPolicy, WebhookAuth
from bot.config import Settings
from bot.sandbox.app import create_sandbox_app
from bot.sandbox.portal import Portal
from bot.sandbox.seed import seeded_portal

# No per-example deadline: speed is shown by benchmarks, never asserted by timing in tests.
hypothesis_settings.register_profile("bot", deadline=None)
hypothesis_settings.load_profile("bot")


@pytest.fixture
def settings() -> Settings:
    """Settings from an empty environment and no .env: only the defaults."""
    return Settings.from_sources({}, env_file=None)


@pytest.fixture
def reset_logging() -> Iterator[None]:
    """Undo `configure_logging` after a test."""
    yield
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "bot"]:
        root.removeHandler(handler)


WEBHOOK_CODE = "s4ndb0xh00kc0de"


@pytest.fixture
def portal() -> Portal:
    """The seeded sandbox portal (see bot/sandbox/seed.py); user 1 owns the main webhook."""
    return seeded_portal(webhook_code=WEBHOOK_CODE)


@pytest.fixture
def bucket() -> tuple[float, int]:
    """The sandbox's leaky bucket (drain per second, capacity); overridden where it matters."""
    return (50.0, 50)


@pytest.fixture
async def sandbox(
    aiohttp_server: AiohttpServer, portal: Portal, bucket: tuple[float, int]
) -> TestServer:
    """The sandbox portal served over real HTTP on loopback."""
    rate, burst = bucket
    server: TestServer = await aiohttp_server(create_sandbox_app(portal, rate=rate, burst=burst))
    return server


def webhook_url(server: TestServer, user_id: int = 1, code: str = WEBHOOK_CODE) -> str:
    return str(server.make_url(f"/rest/{user_id}/{code}/"))


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


# The service-and-sandbox harness (tests/harness.py) provides these fixtures to every test.
from tests.harness import service, start_service  # noqa: E402, F401
