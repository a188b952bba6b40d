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
from bot.bitrix.oauth import OAuthClient
from bot.jobs import session_of
from bot.sandbox.oauth import LocalApp, create_app
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


async def accounts_for(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    storage: Storage,
    app: LocalApp,
    make_client: Callable[..., BitrixClient],
    clock: Clock,
) -> SupervisorAccounts:
    return SupervisorAccounts(
        Portal(base_url(sandbox)),
        storage.oauth_states(),
        storage.user_tokens(SecretBox(b"k" * 32)),
        oauth_client(http, app, base_url(sandbox)),
        make_client(),
        clock=clock,
    )


async def link(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    accounts: SupervisorAccounts,
    oauth: OAuthClient,
    user_id: int,
) -> None:
    """What the callback stores for `user_id` after their consent."""
    app_id = oauth.client_id
    query = await consent(http, sandbox, app_id, user_id=user_id)
    grant = await oauth.exchange_code(query["code"], query["server_domain"])
    tokens = user_tokens(grant, issued_at=time.time())
    await accounts.store.put(accounts.portal.key, user_id, tokens, replaces=None)


@pytest.fixture
def app(portal: SandboxPortal) -> LocalApp:
    return local_app(portal)


async def test_pairs_whose_refresh_token_ages_are_renewed_once_and_young_ones_left_alone(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: SandboxPortal,
    storage: Storage,
    app: LocalApp,
    make_client: Callable[..., BitrixClient],
) -> None:
    clock = Clock()
    accounts = await accounts_for(http, sandbox, storage, app, make_client, clock)
    for user in (27, 28):
        await link(http, sandbox, accounts, accounts.oauth, user)
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
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: SandboxPortal,
    storage: Storage,
    app: LocalApp,
    make_client: Callable[..., BitrixClient],
) -> None:
    clock = Clock()
    accounts = await accounts_for(http, sandbox, storage, app, make_client, clock)
    for user in (27, 28):
        await link(http, sandbox, accounts, accounts.oauth, user)
    create_app(portal, app.handler_url)  # the service still holds the old id and secret
    clock.now += REFRESH_AGEING + DAY
    assert await accounts.refresh_ageing() == 0
    assert await accounts.votes_of(27) is None
    assert await accounts.votes_of(28) is None
