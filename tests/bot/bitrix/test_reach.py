"""The reach probe at the event handler's URL (webhook mode), as `check` and a stranger call
it: only the right secret and a plain nonce get a proof; fetch mode serves no such URL."""

from __future__ import annotations

import aiohttp
import pytest

from bot.bitrix.reach import path_secret, reach_proof
from tests.harness import ServiceFactory

NONCE = "n0nce-0123456789abcdef"


@pytest.mark.parametrize(
    ("secret", "nonce", "status"),
    [
        ("right", NONCE, 200),
        ("wrong", NONCE, 404),
        ("right", "", 400),
        ("right", "short", 400),
        ("right", "x" * 65, 400),
        ("right", "<script>alert(1)</script>0123", 400),
    ],
)
async def test_only_the_handler_secret_and_a_plain_nonce_get_a_proof(
    start_service: ServiceFactory,
    http: aiohttp.ClientSession,
    secret: str,
    nonce: str,
    status: int,
) -> None:
    service = await start_service(B24_EVENT_MODE="webhook")
    right = path_secret(service.settings)
    path = f"/b24/events/{right if secret == 'right' else 'f' * 32}"
    async with http.get(service.server.make_url(path), params={"nonce": nonce}) as answer:
        assert answer.status == status
        body = await answer.json() if answer.content_type == "application/json" else None
    if status == 200:
        assert body == {"proof": reach_proof(right, nonce)}
    else:
        assert "proof" not in (body or {})


async def test_fetch_mode_serves_no_handler_url(
    start_service: ServiceFactory, http: aiohttp.ClientSession
) -> None:
    service = await start_service(B24_EVENT_MODE="fetch")
    path = service.settings.b24_handler_path()
    async with http.get(service.server.make_url(path), params={"nonce": NONCE}) as answer:
        assert answer.status == 404
