"""The OAuth client against the sandbox's OAuth side over HTTP: a code for a pair, single-use
refresh tokens, typed refusals, pinned servers only, and no secret in an error or a log."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr
from pytest_aiohttp import AiohttpServer

from bot.bitrix.oauth import OAuthClient, TokenGrant, parse_token_answer
from bot.config import Settings
from bot.errors import (
    OAuthBadAnswer,
    OAuthError,
    OAuthInvalidClient,
    OAuthInvalidGrant,
    OAuthInvalidRequest,
    OAuthInvalidScope,
    OAuthOutcomeUnknown,
    OAuthPaymentRequired,
    OAuthRefused,
    OAuthServerNotPinned,
    OAuthUnavailable,
)
from bot.logs import configure_logging
from bot.sandbox.oauth import create_app
from bot.sandbox.portal import Portal
from bot.sandbox.telegram.seed import seeded_world
from bot.sandbox.wiring import service_env
from tests.harness import free_port
from tests.oauthed import (
    SERVICE_URL,
    Scripted,
    base_url,
    consent,
    local_app,
    oauth_client,
    rest_as,
    scripted_server,
)


async def test_a_code_becomes_a_pair_that_acts_as_the_user_who_agreed(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    app = local_app(portal)
    callback = await consent(http, sandbox, app.client_id, user_id=27, state="n0nce")
    host = f"{sandbox.host}:{sandbox.port}"
    assert callback == {
        "code": callback["code"],
        "state": "n0nce",
        "domain": host,
        "member_id": portal.member_id,
        "scope": "imopenlines,user_brief",
        "server_domain": host,
    }
    grant = await oauth_client(http, app, base_url(sandbox)).exchange_code(
        callback["code"], callback["server_domain"]
    )
    assert (grant.user_id, grant.member_id) == (27, portal.member_id)
    assert grant.scope == {"imopenlines", "user_brief"}
    assert grant.client_endpoint == f"{base_url(sandbox)}/rest/"
    assert grant.server == base_url(sandbox)
    lifetime = grant.expires_at.timestamp() - portal.now()
    assert 3500 < lifetime <= 3600
    token = grant.access_token.get_secret_value()
    assert (await rest_as(http, sandbox, token, "user.current"))[1]["result"]["ID"] == "27"
    status, _ = await rest_as(
        http, sandbox, token, "imopenlines.session.head.vote", SESSION_ID=494, RATING=5
    )
    assert status == 200
    assert portal.notifications[-1]["from_user_id"] == 27  # cast as the supervisor


async def test_a_refresh_gives_a_new_pair_and_kills_the_old_one(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    app = local_app(portal)
    client = oauth_client(http, app, base_url(sandbox))
    callback = await consent(http, sandbox, app.client_id)
    first = await client.exchange_code(callback["code"], callback["server_domain"])
    second = await client.refresh(first.refresh_token, first.server)
    assert second.access_token != first.access_token
    assert second.refresh_token != first.refresh_token
    assert second.user_id == 27
    with pytest.raises(OAuthInvalidGrant):  # single-use (§5)
        await client.refresh(first.refresh_token, first.server)
    old = await rest_as(http, sandbox, first.access_token.get_secret_value(), "user.current")
    assert old[0] == 401
    new = await rest_as(http, sandbox, second.access_token.get_secret_value(), "user.current")
    assert new[0] == 200


@pytest.mark.parametrize(
    ("spoil", "error"),
    [
        ("used twice", OAuthInvalidGrant),
        ("older than 30 s", OAuthInvalidGrant),
        ("another code", OAuthInvalidGrant),
        ("empty", OAuthInvalidRequest),
        ("wrong secret", OAuthInvalidClient),
        ("application re-created", OAuthInvalidClient),
    ],
)
async def test_a_code_that_cannot_be_used_is_refused_in_its_own_type(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    spoil: str,
    error: type[OAuthError],
) -> None:
    app = local_app(portal)
    callback = await consent(http, sandbox, app.client_id)
    code, secret = callback["code"], None
    client = oauth_client(http, app, base_url(sandbox))
    if spoil == "used twice":
        await client.exchange_code(code, callback["server_domain"])
    elif spoil == "older than 30 s":
        portal.advance_clock(31)
    elif spoil == "another code":
        code = "0" * 32
    elif spoil == "empty":
        code = ""
    elif spoil == "wrong secret":
        secret = "not-the-secret"
    else:
        create_app(portal, SERVICE_URL + "/b24/oauth/callback")
    client = oauth_client(http, app, base_url(sandbox), secret=secret)
    with pytest.raises(error) as caught:
        await client.exchange_code(code, callback["server_domain"])
    assert not caught.value.retryable
    assert portal.oauth.requests[-1].error is not None


async def test_a_refresh_after_the_application_was_re_created_is_invalid_client(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    app = local_app(portal)
    callback = await consent(http, sandbox, app.client_id)
    grant = await oauth_client(http, app, base_url(sandbox)).exchange_code(
        callback["code"], callback["server_domain"]
    )
    create_app(portal, SERVICE_URL + "/b24/oauth/callback")
    with pytest.raises(OAuthInvalidClient):
        await oauth_client(http, app, base_url(sandbox)).refresh(grant.refresh_token, grant.server)


async def test_a_callback_naming_a_server_nobody_pinned_sends_nothing_anywhere(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    aiohttp_server: AiohttpServer,
) -> None:
    """The attack: a forged callback names the attacker's OAuth server, hoping the service
    sends it the client secret and the code. Nothing is sent, to it or to the pinned one."""
    foreign = Scripted()
    attacker = await scripted_server(aiohttp_server, foreign)
    app = local_app(portal)
    callback = await consent(http, sandbox, app.client_id)
    client = oauth_client(http, app, base_url(sandbox))
    for named in (
        f"{attacker.host}:{attacker.port}",
        f"127.0.0.1:{sandbox.port}.evil.example",
        "127.0.0.1",  # the pin has a port
        "oauth.bitrix.info",  # a real server, but not pinned here
        "",
    ):
        with pytest.raises(OAuthServerNotPinned):
            await client.exchange_code(callback["code"], named)
    with pytest.raises(OAuthServerNotPinned):
        await client.refresh(SecretStr("r"), base_url(attacker))
    assert foreign.seen == []
    assert portal.oauth.requests == []


async def test_the_server_domain_is_matched_case_insensitively(
    http: aiohttp.ClientSession, aiohttp_server: AiohttpServer
) -> None:
    script = Scripted(status=400, body='{"error": "invalid_grant"}')
    server = await scripted_server(aiohttp_server, script)
    app = create_app(Portal(), "http://127.0.0.1/cb")
    client = oauth_client(http, app, f"http://LocalHost:{server.port}")
    with pytest.raises(OAuthInvalidGrant):
        await client.exchange_code("c0de", f"LOCALHOST:{server.port}")
    assert len(script.seen) == 1


PAIR = {
    "access_token": "a" * 32,
    "refresh_token": "r" * 32,
    "expires_in": 3600,
    "member_id": "m" * 32,
    "client_endpoint": "https://portal.bitrix24.ru/rest/",
    "scope": "imopenlines,user_brief",
}


@pytest.mark.parametrize(
    ("status", "body", "content_type", "error", "retryable"),
    [
        (400, '{"error": "invalid_grant"}', "application/json", OAuthInvalidGrant, False),
        (401, '{"error": "invalid_client"}', "application/json", OAuthInvalidClient, False),
        (400, '{"error": "invalid_scope"}', "application/json", OAuthInvalidScope, False),
        (403, '{"error": "insufficient_scope"}', "application/json", OAuthInvalidScope, False),
        (
            200,
            '{"error": "PAYMENT_REQUIRED", "error_description": "Payment required"}',
            "application/json",
            OAuthPaymentRequired,
            False,
        ),
        (400, '{"error": "something_new"}', "application/json", OAuthRefused, False),
        (200, "<html>login</html>", "text/html", OAuthBadAnswer, False),
        (200, '{"access_token": "a"}', "application/json", OAuthBadAnswer, False),
        (200, " " * 70_000 + "{}", "application/json", OAuthBadAnswer, False),  # too long
        (502, "<html>Bad gateway</html>", "text/html", OAuthOutcomeUnknown, True),
        (500, "{}", "application/json", OAuthOutcomeUnknown, True),
    ],
)
async def test_each_answer_of_the_server_is_its_own_typed_error(
    http: aiohttp.ClientSession,
    aiohttp_server: AiohttpServer,
    status: int,
    body: str,
    content_type: str,
    error: type[OAuthError],
    retryable: bool,
) -> None:
    script = Scripted(status=status, body=body, content_type=content_type)
    server = await scripted_server(aiohttp_server, script)
    app = create_app(Portal(), "http://127.0.0.1/cb")
    with pytest.raises(error) as caught:
        await oauth_client(http, app, base_url(server)).refresh(SecretStr("r"), base_url(server))
    assert caught.value.retryable is retryable
    assert len(script.seen) == 1  # asked once, never again


async def test_a_lost_refresh_answer_is_not_retried_and_says_the_outcome_is_unknown(
    http: aiohttp.ClientSession, aiohttp_server: AiohttpServer
) -> None:
    script = Scripted(body=json.dumps(PAIR), delay=5)
    server = await scripted_server(aiohttp_server, script)
    app = create_app(Portal(), "http://127.0.0.1/cb")
    client = oauth_client(http, app, base_url(server), timeout=0.2)
    with pytest.raises(OAuthOutcomeUnknown) as caught:
        await client.refresh(SecretStr("r3fresh"), base_url(server))
    assert caught.value.retryable
    assert len(script.seen) == 1  # the refresh token may be spent: sent once only


async def test_a_server_that_cannot_be_reached_is_unavailable(
    http: aiohttp.ClientSession,
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    app = create_app(Portal(), "http://127.0.0.1/cb")
    with pytest.raises(OAuthUnavailable) as caught:
        await oauth_client(http, app, closed).refresh(SecretStr("r"), closed)
    assert caught.value.retryable


async def test_neither_errors_nor_logs_carry_a_secret(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    reset_logging: None,
) -> None:
    """Everything secret the flow touches: the client secret, the code, both tokens of both
    pairs. Logs are captured at debug, with no redactor told of any literal."""
    del reset_logging
    stream = io.StringIO()
    configure_logging(level="debug", fmt="json", stream=stream)
    app = local_app(portal)
    client = oauth_client(http, app, base_url(sandbox))
    callback = await consent(http, sandbox, app.client_id)
    first = await client.exchange_code(callback["code"], callback["server_domain"])
    second = await client.refresh(first.refresh_token, first.server)
    errors: list[OAuthError] = []
    for attempt in (
        client.exchange_code(callback["code"], callback["server_domain"]),
        client.refresh(first.refresh_token, first.server),
        oauth_client(http, app, base_url(sandbox), secret="wr0ng-secret-value").refresh(
            second.refresh_token, second.server
        ),
    ):
        with pytest.raises(OAuthError) as caught:
            await attempt
        errors.append(caught.value)
    secrets = [
        app.client_secret,
        callback["code"],
        *(p.access_token.get_secret_value() for p in (first, second)),
        *(p.refresh_token.get_secret_value() for p in (first, second)),
    ]
    shown = stream.getvalue() + "".join(f"{e!s}{e!r}{e.description}" for e in errors)
    shown += repr(first) + str(second)
    assert "oauth.token_request" in shown
    for secret in secrets:
        assert secret not in shown


# ---- the parser: garbage in, a typed error out, never a crash ---------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=15), inner),
    max_leaves=20,
)
FIELDS = st.sampled_from([*PAIR, "expires", "user_id", "error", "error_description"])


@given(
    status=st.integers(100, 599),
    body=st.one_of(
        st.binary(max_size=200),
        JSON.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(FIELDS, JSON).map(lambda d: json.dumps({**PAIR, **d}).encode()),
    ),
)
def test_any_answer_parses_to_a_pair_or_a_typed_error(status: int, body: bytes) -> None:
    try:
        grant = parse_token_answer(status, body, server="https://oauth.bitrix.info")
    except OAuthError:
        return
    assert isinstance(grant, TokenGrant)
    assert grant.expires_at.tzinfo is not None
    assert grant.client_endpoint.endswith("/rest/")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, {"user_id": None}),
        ({"user_id": "27", "expires": 2_000_000_000}, {"user_id": 27}),
        ({"user_id": 27}, {"user_id": 27}),
    ],
)
def test_the_documented_answer_parses(change: dict[str, Any], expected: dict[str, Any]) -> None:
    body = json.dumps({**PAIR, **change}).encode()
    grant = parse_token_answer(200, body, server="https://oauth.bitrix.info")
    assert grant.user_id == expected["user_id"]
    assert grant.scope == {"imopenlines", "user_brief"}
    if "expires" in change:
        assert grant.expires_at.timestamp() == change["expires"]
    else:
        assert 3500 < grant.expires_at.timestamp() - time.time() <= 3600


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://portal.bitrix24.ru/rest/",  # the access token would travel in clear
        "https://portal.bitrix24.ru/other/",
        "https://user:pw@portal.bitrix24.ru/rest/",
        "javascript:alert(1)//rest/",
    ],
)
def test_a_client_endpoint_the_token_must_not_go_to_is_a_bad_answer(endpoint: str) -> None:
    body = json.dumps({**PAIR, "client_endpoint": endpoint}).encode()
    with pytest.raises(OAuthBadAnswer):
        parse_token_answer(200, body, server="https://oauth.bitrix.info")


async def test_the_settings_the_sandbox_gives_wire_the_client_to_its_oauth_server(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    app = local_app(portal)
    env = service_env(base_url(sandbox), portal, seeded_world(), app_mode=True)
    settings = Settings.from_sources(env | {"BOT_SECRET_KEY": "k" * 32}, env_file=None)
    assert settings.app is not None
    assert settings.app.client_id == app.client_id
    client = OAuthClient(
        http, settings.app.client_id, settings.app.client_secret, settings.app.servers
    )
    callback = await consent(http, sandbox, settings.app.client_id)
    grant = await client.exchange_code(callback["code"], callback["server_domain"])
    assert grant.user_id == 27
    assert "B24_APP_CLIENT_ID" not in service_env(base_url(sandbox), portal, seeded_world())
