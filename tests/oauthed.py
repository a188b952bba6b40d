"""Helpers for application mode's tests: the sandbox's local application, a user's consent
over HTTP (the callback's parameters), REST under a user's access token, and a foreign
loopback server standing for an OAuth host nobody pinned."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from bot.bitrix.oauth import OAuthClient
from bot.config import OAUTH_CALLBACK_PATH, PinnedServer
from bot.sandbox.oauth import LocalApp, create_app
from bot.sandbox.portal import Portal

SERVICE_URL = "http://127.0.0.1:8080"  # the service's BOT_PUBLIC_URL the application assumes


def base_url(server: TestServer) -> str:
    """`http://127.0.0.1:<port>`: the sandbox's (or any loopback server's) base URL."""
    return f"http://{server.host}:{server.port}"


def local_app(portal: Portal) -> LocalApp:
    return create_app(portal, SERVICE_URL + OAUTH_CALLBACK_PATH)


def oauth_client(
    http: aiohttp.ClientSession,
    app: LocalApp,
    *servers: str,
    secret: str | None = None,
    timeout: float = 10,
) -> OAuthClient:
    return OAuthClient(
        http,
        app.client_id,
        SecretStr(secret or app.client_secret),
        [PinnedServer.parse(url) for url in servers],
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


async def consent(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    client_id: str,
    *,
    user_id: int = 27,
    state: str = "st4te",
) -> dict[str, str]:
    """User `user_id` agrees on the portal's consent page: the callback's query parameters."""
    url = sandbox.make_url("/oauth/authorize/")
    query = {"client_id": client_id, "state": state, "sandbox_user": str(user_id)}
    async with http.get(url, params=query, allow_redirects=False) as answer:
        assert answer.status == 302, await answer.text()
        location = answer.headers["Location"]
    assert location.startswith(SERVICE_URL + OAUTH_CALLBACK_PATH + "?")
    return dict(parse_qsl(urlsplit(location).query))


async def rest_as(
    http: aiohttp.ClientSession, sandbox: TestServer, token: str, method: str, **params: Any
) -> tuple[int, dict[str, Any]]:
    """A REST call with `auth=<access token>`, as the service makes it under a user's token."""
    url = sandbox.make_url(f"/rest/{method}")
    async with http.post(url, json={**params, "auth": token}) as answer:
        return answer.status, await answer.json(content_type=None)


@dataclass
class Scripted:
    """A loopback HTTP server answering every request the same way; it records the requests."""

    status: int = 200
    body: str = "{}"
    content_type: str = "application/json"
    delay: float = 0.0
    seen: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(request.path_qs)
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.status, text=self.body, content_type=self.content_type)


ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


async def scripted_server(aiohttp_server: ServerFactory, script: Scripted) -> TestServer:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", script.handle)
    return await aiohttp_server(app)
