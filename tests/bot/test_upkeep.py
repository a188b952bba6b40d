"""What the service says at start about its webhook, in its log and on /readyz: the same
hints as `python -m bot check`, in words, never the webhook's code; and what pruning clears."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.jobs import session_of
from bot.logs import configure_logging
from bot.sandbox.portal import Portal
from bot.storage import open_storage
from bot.upkeep import keep_pruning
from tests.harness import WEBHOOK_CODE, ServiceFactory, eventually, webhook_url


@pytest.fixture
def log_lines(reset_logging: None) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream)
    return stream


def logged(stream: io.StringIO, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [line for line in lines if line["event"] == event]


async def readyz(http: aiohttp.ClientSession, server: TestServer) -> tuple[int, dict[str, Any]]:
    async with http.get(server.make_url("/readyz")) as answer:
        return answer.status, await answer.json()


async def test_a_wrong_webhook_code_is_said_in_words_in_the_log_and_on_readyz(
    start_service: ServiceFactory,
    sandbox: TestServer,
    http: aiohttp.ClientSession,
    log_lines: io.StringIO,
) -> None:
    wrong = webhook_url(sandbox, code="wr0ngc0de")
    service = await start_service(registered=False, B24_WEBHOOK_URL=wrong)
    deadline = asyncio.get_running_loop().time() + 5
    while not logged(log_lines, "bitrix.registration_failed"):
        assert asyncio.get_running_loop().time() < deadline, "registration never failed"
        await asyncio.sleep(0.02)
    [refused] = logged(log_lines, "config.webhook_refused")
    failure = logged(log_lines, "bitrix.registration_failed")[0]
    for line in (refused, failure):
        assert line["code"] == "NO_AUTH_FOUND"
        assert "does not accept the webhook code in B24_WEBHOOK_URL" in line["hint"]
    status, body = await readyz(http, service.server)
    assert status == 503
    assert body["portal"].startswith("not registered: Bitrix24 does not accept the webhook code")
    assert "wr0ngc0de" not in log_lines.getvalue() + json.dumps(body)
    assert WEBHOOK_CODE not in log_lines.getvalue()


@pytest.mark.parametrize(
    ("scopes", "missing"),
    [({"imbot", "im"}, ["imopenlines"]), ({"imbot"}, ["imopenlines", "im"])],
)
async def test_a_missing_scope_is_logged_at_start_with_what_to_tick(
    start_service: ServiceFactory,
    portal: Portal,
    log_lines: io.StringIO,
    scopes: set[str],
    missing: list[str],
) -> None:
    portal.webhooks[0].scopes = frozenset(scopes)
    await start_service()  # registration needs only imbot: the service starts
    [line] = logged(log_lines, "config.webhook_scopes_missing")
    assert (line["level"], line["missing"]) == ("error", missing)
    assert "tick imbot, imopenlines, im" in line["hint"]


async def test_a_sound_webhook_logs_no_hint(
    start_service: ServiceFactory, log_lines: io.StringIO
) -> None:
    await start_service()
    events = {json.loads(line)["event"] for line in log_lines.getvalue().splitlines()}
    assert not events & {"config.webhook_refused", "config.webhook_scopes_missing"}


async def test_pruning_purges_expired_link_attempts_and_keeps_live_ones(tmp_path: Path) -> None:
    storage = await open_storage(f"sqlite:///{tmp_path / 'bot.sqlite3'}", session_of=session_of)
    states = storage.oauth_states()
    now = time.time()
    expired = await states.new_state("portal.example", 27, None, 60.0, now - 120)
    live = await states.new_state("portal.example", 28, None, 600.0, now)
    pruning = asyncio.create_task(keep_pruning(storage, retention=86400.0, every=0.01))

    def attempts() -> bool:
        with sqlite3.connect(tmp_path / "bot.sqlite3") as db:
            rows = db.execute("SELECT user_id FROM oauth_states").fetchall()
        db.close()
        return rows == [(28,)]

    try:
        await eventually(attempts)
        assert await states.take_state(expired, now - 119) is None  # gone, not merely expired
        assert await states.take_state(live, time.time()) is not None
    finally:
        pruning.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pruning
        await storage.close()
