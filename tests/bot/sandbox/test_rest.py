"""The sandbox's REST transport, checked with plain HTTP requests against protocol notes §3-§4."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.sandbox.portal import Fault, Portal
from tests.harness import WEBHOOK_CODE, webhook_url


async def rest(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    async with http.post(url, **kwargs) as answer:
        return answer.status, await answer.json(content_type=None)


async def test_webhook_auth_runs_as_the_webhook_owner(
    http: aiohttp.ClientSession, sandbox: TestServer
) -> None:
    status, body = await rest(http, webhook_url(sandbox) + "profile")
    assert (status, body["result"]["ID"]) == (200, "1")
    assert set(body["time"]) >= {"start", "finish", "duration", "operating", "operating_reset_at"}


@pytest.mark.parametrize(
    "path", ["/rest/1/wrong/profile", f"/rest/27/{WEBHOOK_CODE}/profile", "/rest/profile"]
)
async def test_wrong_credentials_are_401_no_auth_found(
    http: aiohttp.ClientSession, sandbox: TestServer, path: str
) -> None:
    status, body = await rest(http, str(sandbox.make_url(path)))
    assert (status, body["error"]) == (401, "NO_AUTH_FOUND")
    assert body["error_description"]


async def test_token_auth_runs_as_the_token_s_user(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    portal.tokens["tok"] = 27
    status, body = await rest(http, str(sandbox.make_url("/rest/profile")), json={"auth": "tok"})
    assert (status, body["result"]["ID"]) == (200, "27")
    status, body = await rest(http, str(sandbox.make_url("/rest/profile?auth=tok")))
    assert (status, body["result"]["ID"]) == (200, "27")
    status, body = await rest(http, str(sandbox.make_url("/rest/profile")), json={"auth": "old"})
    assert (status, body["error"]) == (401, "expired_token")


@pytest.mark.parametrize("method", ["PROFILE", "Profile.json", "profile.json"])
async def test_method_names_are_case_insensitive_with_optional_json(
    http: aiohttp.ClientSession, sandbox: TestServer, method: str
) -> None:
    status, _ = await rest(http, webhook_url(sandbox) + method)
    assert status == 200


async def test_an_unknown_method_is_404(http: aiohttp.ClientSession, sandbox: TestServer) -> None:
    status, body = await rest(http, webhook_url(sandbox) + "crm.deal.nothing")
    assert (status, body["error"]) == (404, "ERROR_METHOD_NOT_FOUND")


ENCODINGS: dict[str, dict[str, Any]] = {
    "json": {"json": {"SESSION_ID": 494, "RATING": 3, "COMMENT": "Хорошо"}},
    "form": {"data": {"SESSION_ID": "494", "RATING": "3", "COMMENT": "Хорошо"}},
    "multipart": {
        "data": aiohttp.FormData(
            {"SESSION_ID": "494", "RATING": "3", "COMMENT": "Хорошо"}, default_to_multipart=True
        )
    },
    "query": {"params": {"SESSION_ID": "494", "RATING": "3", "COMMENT": "Хорошо"}},
}


@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_parameters_arrive_in_every_encoding(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal, encoding: str
) -> None:
    status, body = await rest(
        http, webhook_url(sandbox) + "imopenlines.session.head.vote", **ENCODINGS[encoding]
    )
    assert (status, body["result"]) == (200, True)
    assert (portal.sessions[494].vote_head, portal.sessions[494].comment_head) == (3, "Хорошо")


async def test_php_style_nested_form_keys_are_read(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    form = {
        "CODE": "nested",
        "EVENT_HANDLER": "http://127.0.0.1:1/h",
        "PROPERTIES[NAME]": "Бот",
        "CLIENT_ID": "c1",
    }
    status, body = await rest(http, webhook_url(sandbox) + "imbot.register", data=form)
    assert status == 200
    assert portal.bots[body["result"]].name == "Бот"


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        (
            {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
            "INVALID_REQUEST",
        ),
        ({"json": [1, 2]}, "INVALID_REQUEST"),
        ({"data": {"a" + "[x]" * 30: "1"}}, "INVALID_REQUEST"),
    ],
)
async def test_unreadable_bodies_are_400(
    http: aiohttp.ClientSession, sandbox: TestServer, kwargs: dict[str, Any], code: str
) -> None:
    status, body = await rest(http, webhook_url(sandbox) + "profile", **kwargs)
    assert (status, body["error"]) == (400, code)


@pytest.mark.parametrize("bucket", [(2.0, 5)])
async def test_the_leaky_bucket_refuses_with_503_past_its_capacity(
    http: aiohttp.ClientSession, sandbox: TestServer
) -> None:
    statuses = [(await rest(http, webhook_url(sandbox) + "profile"))[0] for _ in range(7)]
    assert statuses == [200] * 5 + [503] * 2
    _, body = await rest(http, webhook_url(sandbox) + "profile")
    assert body == {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
    await asyncio.sleep(0.6)  # drains 2 per second: one request's worth
    assert (await rest(http, webhook_url(sandbox) + "profile"))[0] == 200


@pytest.mark.parametrize("bucket", [(2.0, 2)])
async def test_a_batch_counts_once_in_the_bucket(
    http: aiohttp.ClientSession, sandbox: TestServer
) -> None:
    cmd = {f"p{i}": "profile" for i in range(50)}
    status, body = await rest(http, webhook_url(sandbox) + "batch", json={"cmd": cmd})
    assert status == 200
    assert len(body["result"]["result"]) == 50
    assert (await rest(http, webhook_url(sandbox) + "profile"))[0] == 200
    assert (await rest(http, webhook_url(sandbox) + "profile"))[0] == 503


FAULTS: list[tuple[Fault, int, str | None]] = [
    (Fault(status=503, error="QUERY_LIMIT_EXCEEDED"), 503, "QUERY_LIMIT_EXCEEDED"),
    (Fault(status=500), 500, "HTTP_500"),
    (Fault(error="ACCESS_DENIED", description="no"), 400, "ACCESS_DENIED"),
    (Fault(status=502, body="<html>Bad Gateway</html>"), 502, None),
]


@pytest.mark.parametrize(("fault", "status", "code"), FAULTS)
async def test_injected_faults_answer_once_then_the_portal_is_itself_again(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    fault: Fault,
    status: int,
    code: str | None,
) -> None:
    portal.faults.append(fault)
    async with http.post(webhook_url(sandbox) + "profile") as answer:
        assert answer.status == status
        if code is None:
            assert answer.content_type == "text/html"
        else:
            assert (await answer.json())["error"] == code
    assert (await rest(http, webhook_url(sandbox) + "profile"))[0] == 200


async def test_faults_can_target_one_method_and_repeat(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    portal.faults.append(Fault(method="imopenlines.session.head.vote", status=500, times=2))
    assert (await rest(http, webhook_url(sandbox) + "profile"))[0] == 200
    url = webhook_url(sandbox) + "imopenlines.session.head.vote"
    statuses = [
        (await rest(http, url, json={"SESSION_ID": 494, "RATING": 5}))[0] for _ in range(3)
    ]
    assert statuses == [500, 500, 200]


async def test_a_hang_is_a_request_that_never_answers(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    portal.faults.append(Fault(hang=True))
    with pytest.raises(TimeoutError):
        await rest(
            http, webhook_url(sandbox) + "profile", timeout=aiohttp.ClientTimeout(total=0.3)
        )


async def test_every_call_is_recorded_for_inspection(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    await rest(
        http, webhook_url(sandbox) + "imopenlines.session.head.vote", json={"SESSION_ID": 494}
    )
    await rest(http, str(sandbox.make_url("/rest/1/bad/profile")))
    async with http.get(sandbox.make_url("/_sandbox/calls")) as answer:
        calls = await answer.json()
    assert [(c["method"], c["status"], c["error"], c["auth"]) for c in calls] == [
        ("imopenlines.session.head.vote", 400, "EMPTY_VOTE_PARAMS", "webhook"),
        ("profile", 401, "NO_AUTH_FOUND", "none"),
    ]
    assert calls[0]["params"] == {"SESSION_ID": 494}


async def test_inspection_api_shows_sessions_and_takes_faults_and_time(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    async with http.get(sandbox.make_url("/_sandbox/sessions/495")) as answer:
        assert (await answer.json())["comment_head"] == "Вежливо"
    async with http.get(sandbox.make_url("/_sandbox/sessions/1")) as answer:
        assert answer.status == 404
    async with http.post(sandbox.make_url("/_sandbox/faults"), json={"status": 500, "times": 1}):
        pass
    assert (await rest(http, webhook_url(sandbox) + "profile"))[0] == 500
    before = portal.now()
    async with http.post(sandbox.make_url("/_sandbox/clock"), json={"advance": 600}):
        pass
    assert portal.now() - before >= 600


async def test_a_fault_inside_batch_fails_that_call_alone_and_spares_direct_calls(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    portal.faults.append(Fault(method="profile", error="INTERNAL_SERVER_ERROR", inside_batch=True))
    assert (await rest(http, webhook_url(sandbox) + "profile"))[0] == 200  # a direct call
    body = {"cmd": {"a": "profile", "b": "imbot.v2.Revision.get"}}
    status, answer = await rest(http, webhook_url(sandbox) + "batch", json=body)
    assert status == 200
    assert answer["result"]["result_error"]["a"]["error"] == "INTERNAL_SERVER_ERROR"
    assert "b" in answer["result"]["result"]
    assert portal.faults == []  # used up
