"""Shared fixtures. Nothing here reads the developer's environment or reaches past loopback."""

from __future__ import annotations

import faulthandler
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import settings as hypothesis_settings

from bot.config import Settings

# No per-example deadline: speed is shown by benchmarks, never asserted by timing in tests.
hypothesis_settings.register_profile("bot", deadline=None)
hypothesis_settings.load_profile("bot")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """A thread that is not a daemon and still runs keeps the process from exiting after the
    summary (an aiosqlite connection nobody closed, say), and CI would wait until its timeout.
    Collect what is garbage, give the rest a moment, then say which threads and where they
    are, and end the run as a failure."""
    gc.collect()
    deadline = time.monotonic() + 10.0
    while (left := _threads_left()) and time.monotonic() < deadline:
        time.sleep(0.1)
    if left:
        sys.stderr.write(f"\nthreads left running after the tests: {sorted(left)}\n")
        faulthandler.dump_traceback(all_threads=True)
        sys.stderr.flush()
        os._exit(3)


def _threads_left() -> set[str]:
    main = threading.main_thread()
    return {t.name for t in threading.enumerate() if t is not main and not t.daemon}


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
