"""`python -m bot.healthcheck`, the container's HEALTHCHECK: it finds the service on the port the
service listens on, however BOT_PORT was given, and fails when the service does not answer."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from bot.app import create_app
from bot.config import Settings
from bot.healthcheck import healthz_url
from tests.harness import free_port


async def run_healthcheck(cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """The probe as docker runs it: a process, in the service's working directory."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.healthcheck",
        cwd=cwd,
        env={"PYTHONIOENCODING": "utf-8", **env},
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stdout.decode()


async def the_service(aiohttp_server: AiohttpServer, port: int) -> TestServer:
    settings = Settings.from_sources({"BOT_PORT": str(port)}, env_file=None)
    server: TestServer = await aiohttp_server(create_app(settings), port=port)
    return server


@pytest.mark.parametrize("given_in", ["environment", ".env"])
async def test_the_probe_follows_bot_port(
    aiohttp_server: AiohttpServer, tmp_path: Path, given_in: str
) -> None:
    port = free_port()  # not 8080: the probe must not find the service by its default
    await the_service(aiohttp_server, port)
    env = {"BOT_HOST": "0.0.0.0"}  # the image's BOT_HOST, probed on loopback
    if given_in == "environment":
        env["BOT_PORT"] = str(port)
    else:
        (tmp_path / ".env").write_text(f"BOT_PORT={port}\n")
    assert await run_healthcheck(tmp_path, env) == (0, "")


async def test_the_environment_wins_over_env_file_as_for_the_service(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    port = free_port()
    await the_service(aiohttp_server, port)
    (tmp_path / ".env").write_text(f"BOT_PORT={free_port()}\n")
    assert await run_healthcheck(tmp_path, {"BOT_PORT": str(port)}) == (0, "")


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
async def test_a_proxy_in_the_environment_is_not_asked_for_the_service(
    aiohttp_server: AiohttpServer, tmp_path: Path, variable: str
) -> None:
    async def refuse(_request: web.Request) -> web.Response:
        return web.Response(status=502, text="the proxy cannot reach 127.0.0.1")

    proxy = web.Application()
    proxy.router.add_route("*", "/{tail:.*}", refuse)
    proxy_port = free_port()
    await aiohttp_server(proxy, port=proxy_port)
    port = free_port()
    await the_service(aiohttp_server, port)
    env = {"BOT_PORT": str(port), variable: f"http://127.0.0.1:{proxy_port}"}
    assert await run_healthcheck(tmp_path, env) == (0, "")


async def test_nothing_listening_is_unhealthy(tmp_path: Path) -> None:
    status, said = await run_healthcheck(tmp_path, {"BOT_PORT": str(free_port())})
    assert status == 1
    assert said.startswith("unhealthy: http://127.0.0.1:")
    assert "Connection refused" in said


async def test_a_service_not_answering_200_is_unhealthy(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    async def failing(_request: web.Request) -> web.Response:
        return web.json_response({"status": "stopping"}, status=503)

    app = web.Application()
    app.router.add_get("/healthz", failing)
    port = free_port()
    await aiohttp_server(app, port=port)
    status, said = await run_healthcheck(tmp_path, {"BOT_PORT": str(port)})
    assert (status, said.strip()) == (1, f"unhealthy: http://127.0.0.1:{port}/healthz: HTTP 503")


async def test_invalid_settings_are_unhealthy_without_a_secret(tmp_path: Path) -> None:
    env = {"BOT_PORT": "eighty", "B24_WEBHOOK_URL": "https://corp.bitrix24.ru/rest/1/s3cr3t/x"}
    status, said = await run_healthcheck(tmp_path, env)
    assert status == 1
    assert "settings are invalid" in said
    assert "s3cr3t" not in said


@pytest.mark.parametrize(
    ("bot_host", "url"),
    [
        ("0.0.0.0", "http://127.0.0.1:9000/healthz"),  # every interface
        ("::", "http://[::1]:9000/healthz"),
        ("127.0.0.2", "http://127.0.0.2:9000/healthz"),
        ("::1", "http://[::1]:9000/healthz"),
        ("localhost", "http://localhost:9000/healthz"),
    ],
)
def test_the_probe_asks_the_address_the_service_listens_on(bot_host: str, url: str) -> None:
    settings = Settings.from_sources({"BOT_HOST": bot_host, "BOT_PORT": "9000"}, env_file=None)
    assert healthz_url(settings) == url
