"""Shared fixtures. Nothing here reads the developer's environment or reaches past loopback."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import settings as hypothesis_settings

from bot.config import Settings

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


# The sandbox portal and the service over loopback (tests/harness.py), for every test.
from tests.harness import (  # noqa: E402
    bucket,
    http,
    make_client,
    portal,
    sandbox,
    service,
    start_service,
    telegram_world,
)

__all__ = [
    "bucket",
    "http",
    "make_client",
    "portal",
    "sandbox",
    "service",
    "start_service",
    "telegram_world",
]
