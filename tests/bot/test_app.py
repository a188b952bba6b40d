"""The aiohttp application over real HTTP: health, request ids, one access line per request."""

from __future__ import annotations

import io
import json

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient, AiohttpServer

from bot.app import AccessLogger, create_app
from bot.config import Settings
from bot.logs import configure_logging
from bot.state import SETTINGS


async def test_healthz_answers_ok(aiohttp_client: AiohttpClient, settings: Settings) -> None:
    client = await aiohttp_client(create_app(settings))
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_settings_are_kept_under_a_typed_key(settings: Settings) -> None:
    assert create_app(settings)[SETTINGS] is settings


async def test_unknown_paths_are_404(aiohttp_client: AiohttpClient, settings: Settings) -> None:
    client = await aiohttp_client(create_app(settings))
    assert (await client.get("/nope")).status == 404
    assert (await client.post("/healthz")).status == 405


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("proxy-req-42", True), ("", False), ("bad id with spaces", False), ("x" * 65, False)],
)
async def test_a_plain_request_id_from_a_proxy_is_kept(
    aiohttp_client: AiohttpClient, settings: Settings, sent: str, kept: bool
) -> None:
    client = await aiohttp_client(create_app(settings))
    response = await client.get("/healthz", headers={"X-Request-ID": sent} if sent else {})
    returned = response.headers["X-Request-ID"]
    assert (returned == sent) is kept
    assert 1 <= len(returned) <= 64


@pytest.mark.usefixtures("reset_logging")
async def test_each_request_logs_one_access_line_with_its_request_id(
    aiohttp_server: AiohttpServer, settings: Settings
) -> None:
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream)
    server: TestServer = await aiohttp_server(create_app(settings), access_log_class=AccessLogger)
    async with TestClient(server) as client:
        first = await client.get("/healthz?CLIENT_ID=should-not-be-logged")
        second = await client.get("/healthz")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [line for line in lines if line["event"] == "http.request"]
    assert [a["request_id"] for a in access] == [
        first.headers["X-Request-ID"],
        second.headers["X-Request-ID"],
    ]
    assert access[0]["path"] == "/healthz"
    assert access[0]["status"] == 200
    assert access[0]["method"] == "GET"
    assert "should-not-be-logged" not in stream.getvalue()
