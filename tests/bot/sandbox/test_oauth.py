"""The sandbox's OAuth side with plain HTTP requests: the consent page, the token endpoint as
the docs shape it, REST under a user's token (expiry, a dismissed user, a re-created
application, scopes, rights to rate), and the controls tests and the chat page use."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.sandbox.oauth import create_app
from bot.sandbox.portal import Portal
from tests.oauthed import SERVICE_URL, consent, local_app, rest_as


async def token_endpoint(
    http: aiohttp.ClientSession, sandbox: TestServer, *, form: bool = False, **params: str
) -> tuple[int, dict[str, Any]]:
    url = sandbox.make_url("/oauth/token/")
    request = http.post(url, data=params) if form else http.get(url, params=params)
    async with request as answer:
        return answer.status, await answer.json()


async def pair_for(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal, user_id: int = 27
) -> dict[str, Any]:
    app = portal.oauth.app or local_app(portal)
    code = (await consent(http, sandbox, app.client_id, user_id=user_id))["code"]
    status, body = await token_endpoint(
        http,
        sandbox,
        grant_type="authorization_code",
        client_id=app.client_id,
        client_secret=app.client_secret,
        code=code,
    )
    assert status == 200, body
    return body


async def control(
    http: aiohttp.ClientSession, sandbox: TestServer, path: str, body: object
) -> tuple[int, Any]:
    async with http.post(sandbox.make_url(path), json=body) as answer:
        return answer.status, await answer.json(content_type=None) if answer.ok else None


# ---- the consent page ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "cookie", "status", "says"),
    [
        ({"client_id": "local.0.0", "sandbox_user": "27"}, None, 404, "not installed"),
        ({"client_id": "<app>"}, None, 401, "Log in first"),
        ({"client_id": "<app>", "sandbox_user": "9999"}, None, 403, "No such active user"),
        ({"client_id": "<app>", "sandbox_user": "1212"}, None, 403, "No such active user"),
    ],
    ids=["unknown application", "nobody logged in", "no such user", "a customer"],
)
async def test_the_consent_page_refuses_without_a_redirect(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    query: dict[str, str],
    cookie: str | None,
    status: int,
    says: str,
) -> None:
    app = local_app(portal)
    query = {k: app.client_id if v == "<app>" else v for k, v in query.items()}
    async with http.get(
        sandbox.make_url("/oauth/authorize/"), params=query, allow_redirects=False
    ) as answer:
        assert answer.status == status
        assert "Location" not in answer.headers
        assert says in await answer.text()
    assert portal.oauth.codes == {}


async def test_the_chat_page_s_cookie_is_the_logged_in_user_and_state_comes_back_verbatim(
    sandbox: TestServer, portal: Portal
) -> None:
    app = local_app(portal)
    state = "a b&c=d/é"
    async with (
        aiohttp.ClientSession(cookies={"sandbox_user": "28"}) as browser,
        browser.get(
            sandbox.make_url("/oauth/authorize/"),
            params={"client_id": app.client_id, "state": state},
            allow_redirects=False,
        ) as answer,
    ):
        assert answer.status == 302
        location = answer.headers["Location"]
    [issued] = portal.oauth.codes.values()
    assert issued.user_id == 28
    assert location.startswith(f"{SERVICE_URL}/b24/oauth/callback?code=")
    query = dict(parse_qsl(urlsplit(location).query))
    assert query["state"] == state
    assert "&scope=imopenlines%2Cuser_brief&" in location  # as settings/oauth/index.md shows


async def test_a_dismissed_user_cannot_agree(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    app = local_app(portal)
    assert (await control(http, sandbox, "/_sandbox/users/27", {"active": False}))[0] == 200
    query = {"client_id": app.client_id, "sandbox_user": "27"}
    async with http.get(
        sandbox.make_url("/oauth/authorize/"), params=query, allow_redirects=False
    ) as answer:
        assert answer.status == 403


# ---- the token endpoint -------------------------------------------------------------------


async def test_the_token_answer_is_shaped_as_the_docs_show(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    body = await pair_for(http, sandbox, portal)
    host = f"{sandbox.host}:{sandbox.port}"
    assert set(body) == {
        "access_token",
        "refresh_token",
        "expires",
        "expires_in",
        "member_id",
        "user_id",
        "client_endpoint",
        "server_endpoint",
        "domain",
        "scope",
        "status",
    }
    assert (body["expires_in"], body["user_id"], body["member_id"]) == (3600, 27, portal.member_id)
    assert 3598 <= body["expires"] - portal.now() <= 3600  # unix time, by the portal's clock
    assert body["client_endpoint"] == f"http://{host}/rest/"
    assert (body["domain"], body["scope"]) == (host, "imopenlines,user_brief")


CODE_GRANT = {"grant_type": "authorization_code"}
REFRESH_GRANT = {"grant_type": "refresh_token"}


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        ({}, 400, "invalid_request"),
        ({"grant_type": "password"}, 400, "invalid_request"),
        (CODE_GRANT | {"code": "x"}, 400, "invalid_request"),
        (CODE_GRANT | {"secret": "wrong", "code": "x"}, 401, "invalid_client"),
        (CODE_GRANT | {"id": "local.1.2", "code": "x"}, 401, "invalid_client"),
        (CODE_GRANT | {"secret": "<app>", "code": "x"}, 400, "invalid_grant"),
        (CODE_GRANT | {"secret": "<app>"}, 400, "invalid_request"),
        (REFRESH_GRANT | {"secret": "<app>", "refresh_token": "x"}, 400, "invalid_grant"),
    ],
)
@pytest.mark.parametrize("form", [False, True], ids=["query", "form"])
async def test_the_token_endpoint_refuses_as_error_codes_md_lists(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    params: dict[str, str],
    status: int,
    error: str,
    form: bool,
) -> None:
    app = local_app(portal)
    sent = dict(params)
    if "secret" in sent or "id" in sent:
        secret = sent.pop("secret", "<app>")
        sent["client_secret"] = app.client_secret if secret == "<app>" else secret
        sent["client_id"] = sent.pop("id", app.client_id)
    answer = await token_endpoint(http, sandbox, form=form, **sent)
    assert answer[0] == status
    assert (answer[1]["error"], bool(answer[1]["error_description"])) == (error, True)
    [recorded] = portal.oauth.requests
    assert (recorded.params, recorded.status, recorded.error) == (sent, status, error)


async def test_a_code_is_single_use_lives_30_seconds_and_belongs_to_its_application(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    app = local_app(portal)

    async def exchange(code: str, client_id: str, secret: str) -> tuple[int, dict[str, Any]]:
        return await token_endpoint(
            http,
            sandbox,
            grant_type="authorization_code",
            client_id=client_id,
            client_secret=secret,
            code=code,
        )

    code = (await consent(http, sandbox, app.client_id))["code"]
    assert (await exchange(code, app.client_id, app.client_secret))[0] == 200
    assert (await exchange(code, app.client_id, app.client_secret))[1]["error"] == "invalid_grant"
    late = (await consent(http, sandbox, app.client_id))["code"]
    portal.advance_clock(30.5)
    assert (await exchange(late, app.client_id, app.client_secret))[1]["error"] == "invalid_grant"
    orphan = (await consent(http, sandbox, app.client_id))["code"]
    new = create_app(portal, SERVICE_URL + "/b24/oauth/callback")
    assert (await exchange(orphan, app.client_id, app.client_secret))[0] == 401
    assert (await exchange(orphan, new.client_id, new.client_secret))[1][
        "error"
    ] == "invalid_grant"


# ---- REST under a user's token -------------------------------------------------------------


async def test_an_access_token_expires_after_an_hour_of_the_portal_s_clock(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    token = (await pair_for(http, sandbox, portal))["access_token"]
    portal.advance_clock(3599)
    assert (await rest_as(http, sandbox, token, "user.current"))[0] == 200
    portal.advance_clock(2)
    status, body = await rest_as(http, sandbox, token, "user.current")
    assert (status, body["error"]) == (401, "expired_token")


async def test_expiring_a_user_s_tokens_now_keeps_their_refresh_token_good(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    pair = await pair_for(http, sandbox, portal)
    other = (await pair_for(http, sandbox, portal, user_id=28))["access_token"]
    assert await control(http, sandbox, "/_sandbox/oauth/expire", {"user_id": 27}) == (
        200,
        {"expired": 1},
    )
    status, body = await rest_as(http, sandbox, pair["access_token"], "user.current")
    assert (status, body["error"]) == (401, "expired_token")
    assert (await rest_as(http, sandbox, other, "user.current"))[0] == 200
    app = portal.oauth.app
    assert app is not None
    refreshed = await token_endpoint(
        http,
        sandbox,
        grant_type="refresh_token",
        client_id=app.client_id,
        client_secret=app.client_secret,
        refresh_token=pair["refresh_token"],
    )
    assert refreshed[0] == 200
    assert (await rest_as(http, sandbox, refreshed[1]["access_token"], "user.current"))[0] == 200


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ("deactivate the user", "authorization_error"),
        ("re-create the application", "APPLICATION_NOT_FOUND"),
    ],
)
async def test_a_token_that_no_longer_authorises_is_401_with_bitrix24_s_code(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal, change: str, error: str
) -> None:
    token = (await pair_for(http, sandbox, portal))["access_token"]
    if change == "deactivate the user":
        await control(http, sandbox, "/_sandbox/users/27", {"active": False})
    else:
        assert (await control(http, sandbox, "/_sandbox/oauth/app", {"handler_url": "x"}))[
            0
        ] == 200
    status, body = await rest_as(
        http, sandbox, token, "imopenlines.session.head.vote", SESSION_ID=494, RATING=5
    )
    assert (status, body["error"]) == (401, error)
    assert portal.sessions[494].vote_head == 0


async def test_user_current_answers_the_token_s_user(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    token = (await pair_for(http, sandbox, portal, user_id=28))["access_token"]
    status, body = await rest_as(http, sandbox, token, "user.current")
    assert status == 200
    assert body["result"] | {"ID": "28", "ACTIVE": True, "NAME": "Пётр"} == body["result"]


async def test_a_token_has_its_application_s_scopes_only(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    token = (await pair_for(http, sandbox, portal))["access_token"]
    status, body = await rest_as(http, sandbox, token, "imbot.bot.list")
    assert (status, body["error"]) == (403, "insufficient_scope")
    assert "access token" in body["error_description"]


async def test_head_vote_under_a_user_s_token_follows_that_user_s_right_on_the_line(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    """User 28 sees line 1 but may not rate there, until the right is granted; revoked, the
    portal refuses again. The portal checks the supervisor, not the webhook's owner."""
    token = (await pair_for(http, sandbox, portal, user_id=28))["access_token"]

    async def vote(rating: int) -> tuple[int, dict[str, Any]]:
        return await rest_as(
            http, sandbox, token, "imopenlines.session.head.vote", SESSION_ID=494, RATING=rating
        )

    status, body = await vote(3)
    assert (status, body["error"]) == (400, "ACCESS_DENIED")
    may_rate = {"user_id": 28, "may_rate": True}
    assert (await control(http, sandbox, "/_sandbox/lines/1/heads", may_rate))[0] == 200
    assert (await vote(4))[0] == 200
    assert portal.notifications[-1] | {"from_user_id": 28, "rating": 4} == portal.notifications[-1]
    history = await rest_as(
        http, sandbox, token, "imopenlines.session.history.get", SESSION_ID=494
    )
    assert (history[1]["result"]["sessionVoteHead"], history[1]["result"]["canVoteHead"]) == (
        4,
        "Y",
    )
    await control(http, sandbox, "/_sandbox/lines/1/heads", {"user_id": 28, "may_rate": False})
    assert (await vote(5))[1]["error"] == "ACCESS_DENIED"
    assert portal.sessions[494].vote_head == 4


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/_sandbox/oauth/app", {}),
        ("/_sandbox/oauth/expire", {"user_id": "x"}),
        ("/_sandbox/users/27", {"active": "no"}),
        ("/_sandbox/users/4040", {"active": False}),
        ("/_sandbox/lines/1/heads", {"user_id": 28}),
        ("/_sandbox/lines/9/heads", {"user_id": 28, "may_rate": True}),
        ("/_sandbox/oauth/app", ["handler_url"]),
    ],
)
async def test_a_control_given_a_wrong_body_is_a_400_that_says_why(
    http: aiohttp.ClientSession, sandbox: TestServer, path: str, body: object
) -> None:
    async with http.post(sandbox.make_url(path), json=body) as answer:
        assert answer.status == 400
        assert await answer.text()


async def test_the_control_api_shows_the_application_and_the_token_log(
    http: aiohttp.ClientSession, sandbox: TestServer
) -> None:
    status, app = await control(
        http, sandbox, "/_sandbox/oauth/app", {"handler_url": SERVICE_URL + "/b24/oauth/callback"}
    )
    assert status == 200
    assert app["client_id"].startswith("local.")
    assert len(app["client_secret"]) >= 32
    assert app["scopes"] == ["imopenlines", "user_brief"]
    async with http.get(sandbox.make_url("/_sandbox/oauth")) as answer:
        shown = await answer.json()
    assert (shown["app"], shown["requests"]) == (app, [])
