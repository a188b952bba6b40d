"""Supervisors' tokens kept alive ahead of time: a pair whose refresh token nears the end of its
life is refreshed by upkeep (bot/bitrix/accounts.py), one at a time per supervisor, and a
re-created application drops every pair. Against the sandbox's OAuth server over HTTP."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.bitrix.accounts import REFRESH_AGEING, Portal, SupervisorAccounts, user_tokens
from bot.bitrix.client import BitrixClient
from bot.jobs import session_of
from bot.sandbox.oauth import create_app
from bot.sandbox.portal import Portal as SandboxPortal
from bot.secretbox import SecretBox
from bot.storage import Storage, open_storage
from tests.oauthed import base_url, consent, local_app, oauth_client

DAY = 24 * 3600.0


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    opened = await open_storage(f"sqlite:///{tmp_path / 'bot.sqlite3'}", session_of=session_of)
    yield opened
    await opened.close()


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def accounts(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: SandboxPortal,
    storage: Storage,
    make_client: Callable[..., BitrixClient],
    clock: Clock,
) -> SupervisorAccounts:
    """The service's accounts against the sandbox's local application, on `clock`, with 27
    and 28 linked (what the callback stores after their consent)."""
    app = local_app(portal)
    oauth = oauth_client(http, app, base_url(sandbox))
    accounts = SupervisorAccounts(
        Portal(base_url(sandbox)),
        storage.oauth_states(),
        storage.user_tokens(SecretBox(b"k" * 32)),
        oauth,
        make_client(),
        clock=clock,
    )
    for user_id in (27, 28):
        query = await consent(http, sandbox, app.client_id, user_id=user_id)
        grant = await oauth.exchange_code(query["code"], query["server_domain"])
        tokens = user_tokens(grant, issued_at=clock.now)
        await accounts.store.put(accounts.portal.key, user_id, tokens, replaces=None)
    return accounts


async def test_pairs_whose_refresh_token_ages_are_renewed_once_and_young_ones_left_alone(
    accounts: SupervisorAccounts, portal: SandboxPortal, clock: Clock
) -> None:
    assert await accounts.refresh_ageing() == 0  # young: Bitrix24 asks for no timer refresh
    clock.now += REFRESH_AGEING + DAY
    assert await accounts.refresh_ageing() == 2
    refreshes = [r for r in portal.oauth.requests if r.params["grant_type"] == "refresh_token"]
    assert len(refreshes) == 2
    assert await accounts.refresh_ageing() == 0  # renewed: young again
    stored = await accounts.store.get(accounts.portal.key, 27)
    assert stored is not None
    assert stored.tokens.refresh_issued_at == clock.now
    assert await accounts.votes_of(27) is not None


async def test_a_re_created_application_met_by_the_renewal_drops_every_pair(
    accounts: SupervisorAccounts, portal: SandboxPortal, clock: Clock
) -> None:
    assert portal.oauth.app is not None
    create_app(portal, portal.oauth.app.handler_url)  # the service keeps the old id and secret
    clock.now += REFRESH_AGEING + DAY
    assert await accounts.refresh_ageing() == 0
    assert await accounts.votes_of(27) is None
    assert await accounts.votes_of(28) is None
