"""What the service says at start about its webhook, in its log and on /readyz: the same
hints as `python -m bot check`, in words, never the webhook's code."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.logs import configure_logging
from bot.sandbox.portal import Portal
from tests.harness import WEBHOOK_CODE, ServiceFactory, webhook_url


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
