"""The REST client against the sandbox portal, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
from collections.abc import Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from bot.bitrix.batch import BatchCall, BatchRef
from bot.bitrix.client import BitrixClient, PortalLimiters, RetryPolicy, TokenAuth, WebhookAuth
from bot.errors import (
    BitrixAccessDenied,
    BitrixAuthError,
    BitrixBadResponse,
    BitrixError,
    BitrixMethodError,
    BitrixMethodNotFound,
    BitrixRateLimited,
    BitrixServerError,
    BitrixUnavailable,
)
from bot.logs import configure_logging
from bot.sandbox.portal import Fault, Portal, Webhook
from tests.harness import WEBHOOK_CODE, webhook_url

ClientFactory = Callable[..., BitrixClient]


def calls_to(portal: Portal, method: str) -> int:
    return sum(1 for call in portal.calls if call.method == method and call.batch_of is None)


async def test_a_call_returns_its_result(make_client: ClientFactory) -> None:
    profile = await make_client().call("profile")
    assert profile["ID"] == "1"


async def test_parameter_keys_are_sent_upper_case(
    make_client: ClientFactory, portal: Portal
) -> None:
    """Legacy methods read SESSION_ID/RATING/COMMENT case-sensitively (protocol notes §3.2)."""
    client = make_client()
    assert await client.call("imopenlines.session.head.vote", {"session_id": 494, "Rating": 5})
    assert portal.calls[-1].params == {"SESSION_ID": 494, "RATING": 5}
    assert portal.sessions[494].vote_head == 5


async def test_the_envelope_s_time_is_returned(make_client: ClientFactory) -> None:
    response = await make_client().call_full("profile")
    assert response.time["operating"] >= 0
    assert "operating_reset_at" in response.time


async def test_token_auth_sends_the_token_to_the_pinned_endpoint(
    make_client: ClientFactory, sandbox: TestServer, portal: Portal
) -> None:
    portal.tokens["t0ken-of-svetlana"] = 27
    endpoint = str(sandbox.make_url("/rest/"))
    client = make_client(TokenAuth(endpoint, SecretStr("t0ken-of-svetlana")))
    assert (await client.call("profile"))["ID"] == "27"
    assert portal.calls[-1].auth == "token"


ERRORS = [
    ("wrong webhook code", BitrixAuthError, "NO_AUTH_FOUND", 401),
    ("unknown token", BitrixAuthError, "expired_token", 401),
    ("scope not granted", BitrixAccessDenied, "insufficient_scope", 403),
    ("unknown method", BitrixMethodNotFound, "ERROR_METHOD_NOT_FOUND", 404),
    ("a method's own error", BitrixMethodError, "EMPTY_SESSION_ID", 400),
    ("access denied", BitrixAccessDenied, "ACCESS_DENIED", 400),
]


@pytest.mark.parametrize(("case", "error", "code", "status"), ERRORS, ids=[e[0] for e in ERRORS])
async def test_errors_are_typed_and_not_retried(
    make_client: ClientFactory,
    sandbox: TestServer,
    portal: Portal,
    case: str,
    error: type[BitrixError],
    code: str,
    status: int,
) -> None:
    portal.webhooks.append(Webhook(27, "n0sc0pes", frozenset()))
    client, method, params = make_client(), "imopenlines.session.head.vote", {}
    if case == "wrong webhook code":
        client = make_client(WebhookAuth(SecretStr(webhook_url(sandbox, code="wrong"))))
    elif case == "unknown token":
        client = make_client(TokenAuth(str(sandbox.make_url("/rest/")), SecretStr("nope")))
    elif case == "scope not granted":
        client = make_client(WebhookAuth(SecretStr(webhook_url(sandbox, 27, "n0sc0pes"))))
    elif case == "unknown method":
        method = "imopenlines.session.nothing"
    elif case == "access denied":
        client = make_client(WebhookAuth(SecretStr(webhook_url(sandbox, 27, "n0sc0pes"))))
        method, portal.webhooks[-1].scopes = (
            "imopenlines.session.history.get",
            frozenset({"imopenlines"}),
        )
        params = {"SESSION_ID": 496}
    with pytest.raises(BitrixError) as caught:
        await client.call(method, params)
    assert type(caught.value) is error
    assert (caught.value.code, caught.value.status, caught.value.method) == (code, status, method)
    assert caught.value.description  # Bitrix24's text is kept for logs
    assert len(portal.calls) == 1


FAULTS = [
    ("rate limit", Fault(status=503, error="QUERY_LIMIT_EXCEEDED"), BitrixRateLimited),
    ("operation time limit", Fault(status=429, error="OPERATION_TIME_LIMIT"), BitrixRateLimited),
    ("overload", Fault(status=503, error="OVERLOAD_LIMIT"), BitrixRateLimited),
    ("server error", Fault(status=500, error="INTERNAL_SERVER_ERROR"), BitrixServerError),
    ("bare 502", Fault(status=502), BitrixServerError),
    ("proxy html page", Fault(status=502, body="<html>Bad Gateway</html>"), BitrixBadResponse),
]


@pytest.mark.parametrize(("case", "fault", "error"), FAULTS, ids=[f[0] for f in FAULTS])
async def test_transient_errors_are_retried_then_succeed(
    make_client: ClientFactory, portal: Portal, case: str, fault: Fault, error: type[BitrixError]
) -> None:
    fault.times = 2
    portal.faults.append(fault)
    assert (await make_client().call("profile"))["ID"] == "1"
    assert calls_to(portal, "profile") == 1  # the two faulty answers came before the method


@pytest.mark.parametrize(("case", "fault", "error"), FAULTS, ids=[f[0] for f in FAULTS])
async def test_transient_errors_are_retried_a_bounded_number_of_times(
    make_client: ClientFactory, portal: Portal, case: str, fault: Fault, error: type[BitrixError]
) -> None:
    fault.times = -1
    portal.faults.append(fault)
    client = make_client(
        retry=RetryPolicy(attempts=3, deadline=10, initial_wait=0.01, max_wait=0.02)
    )
    with pytest.raises(error) as caught:
        await client.call("profile")
    assert caught.value.retryable
    assert portal.faults[0].times == -1
    assert len(portal.calls) == 0  # faults answer before the method runs


async def test_an_html_page_with_200_is_a_bad_response_and_not_retried(
    make_client: ClientFactory, portal: Portal
) -> None:
    portal.faults.append(Fault(status=200, body="<html>login</html>", times=-1))
    with pytest.raises(BitrixBadResponse) as caught:
        await make_client().call("profile")
    assert (caught.value.status, caught.value.description) == (200, "text/html")
    assert not caught.value.retryable


@pytest.mark.parametrize(
    "body",
    [
        '{"nothing": 1}',
        "[1, 2]",
        '"result"',
        "{broken json",
        "\xff\xfe",
        "[" * 100_000 + "]" * 100_000,  # deeper than the decoder's recursion limit
        '{"result": ' + "9" * 5000 + "}",  # past Python's 4300-digit limit for ints
    ],
    ids=lambda body: repr(body[:20]),
)
async def test_json_that_is_not_the_envelope_is_a_bad_response(
    make_client: ClientFactory, portal: Portal, body: str
) -> None:
    portal.faults.append(Fault(status=200, body=body, content_type="application/json"))
    with pytest.raises(BitrixBadResponse):
        await make_client().call("profile")


async def test_a_hanging_portal_times_out(make_client: ClientFactory, portal: Portal) -> None:
    portal.faults.append(Fault(hang=True, times=-1))
    client = make_client(
        retry=RetryPolicy(attempts=2, deadline=5, initial_wait=0.01, max_wait=0.02),
        timeout=aiohttp.ClientTimeout(total=0.2),
    )
    with pytest.raises(BitrixUnavailable) as caught:
        await client.call("profile")
    assert caught.value.code == "TIMEOUT"
    assert caught.value.__cause__ is None


async def test_an_unreachable_portal_is_unavailable(http: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    auth = WebhookAuth(SecretStr(f"http://127.0.0.1:{port}/rest/1/{WEBHOOK_CODE}/"))
    retry = RetryPolicy(attempts=2, deadline=5, initial_wait=0.01, max_wait=0.02)
    client = BitrixClient(http, auth, PortalLimiters(rate=100, burst=10), retry=retry)
    with pytest.raises(BitrixUnavailable) as caught:
        await client.call("profile")
    assert caught.value.code == "ClientConnectorError"
    assert WEBHOOK_CODE not in str(caught.value)


async def test_a_delay_is_waited_for(make_client: ClientFactory, portal: Portal) -> None:
    """A slow portal is waited for, not retried: one call, answered after the delay."""
    portal.faults.append(Fault(delay=0.2))
    started = time.monotonic()
    assert (await make_client().call("profile"))["ID"] == "1"
    assert time.monotonic() - started >= 0.2
    assert calls_to(portal, "profile") == 1


@pytest.mark.parametrize("bucket", [(20.0, 5)])
async def test_concurrent_calls_share_the_bucket_and_get_no_503(
    make_client: ClientFactory, portal: Portal
) -> None:
    """25 calls at once through a 5-deep bucket draining 20/s: all admitted, none refused."""
    client = make_client(retry=RetryPolicy(attempts=1))
    results = await asyncio.gather(*(client.call("profile") for _ in range(25)))
    assert len(results) == 25
    assert all(call.status == 200 for call in portal.calls)


@pytest.mark.parametrize("bucket", [(20.0, 5)])
async def test_clients_of_one_portal_share_one_bucket(
    make_client: ClientFactory, sandbox: TestServer, portal: Portal
) -> None:
    portal.tokens["tok-27"] = 27
    by_webhook = make_client(retry=RetryPolicy(attempts=1))
    by_token = make_client(
        TokenAuth(str(sandbox.make_url("/rest/")), SecretStr("tok-27")),
        retry=RetryPolicy(attempts=1),
    )
    await asyncio.gather(*(c.call("profile") for c in [by_webhook, by_token] * 10))
    assert [call.status for call in portal.calls] == [200] * 20


@pytest.mark.parametrize("bucket", [(20.0, 5)])
async def test_a_portal_full_from_elsewhere_is_waited_out_with_backoff(
    make_client: ClientFactory, sandbox: TestServer, http: aiohttp.ClientSession, portal: Portal
) -> None:
    """Another application on the same address filled the bucket: 503, then a retry succeeds."""
    for _ in range(5):
        async with http.post(webhook_url(sandbox) + "profile") as answer:
            assert answer.status == 200
    client = make_client(
        retry=RetryPolicy(attempts=6, deadline=10, initial_wait=0.05, max_wait=0.2)
    )
    assert (await client.call("profile"))["ID"] == "1"


async def test_batch_returns_per_call_results_and_errors(
    make_client: ClientFactory, portal: Portal
) -> None:
    result = await make_client().batch(
        [
            BatchCall("vote", "imopenlines.session.head.vote", {"session_id": 494, "rating": 4}),
            BatchCall("read", "imopenlines.session.history.get", {"SESSION_ID": 494}),
            BatchCall("bad", "imopenlines.session.head.vote", {"SESSION_ID": 494}),
            BatchCall("me", "profile"),
        ]
    )
    assert result.value("vote") is True
    assert result.value("read")["sessionVoteHead"] == 4
    assert result.value("me")["ID"] == "1"
    assert set(result.errors) == {"bad"}
    error = result.errors["bad"]
    assert (type(error), error.code, error.method, error.status) == (
        BitrixMethodError,
        "EMPTY_VOTE_PARAMS",
        "imopenlines.session.head.vote",
        None,
    )
    with pytest.raises(BitrixMethodError):
        result.value("bad")
    assert calls_to(portal, "batch") == 1


async def test_batch_passes_result_references_through(make_client: ClientFactory) -> None:
    result = await make_client().batch(
        [
            BatchCall("dialog", "imopenlines.dialog.get", {"SESSION_ID": 495}),
            BatchCall(
                "history",
                "imopenlines.session.history.get",
                {"CHAT_ID": BatchRef("dialog", ("id",))},
            ),
        ]
    )
    assert result.value("history")["sessionId"] == 495


async def test_batch_splits_long_lists_into_requests_of_50(
    make_client: ClientFactory, portal: Portal
) -> None:
    calls = [BatchCall(f"p{i}", "profile") for i in range(120)]
    result = await make_client().batch(calls)
    assert len(result.results) == 120
    assert calls_to(portal, "batch") == 3
    assert sum(1 for call in portal.calls if call.batch_of == "batch") == 120


async def test_batch_halt_stops_at_the_first_error(make_client: ClientFactory) -> None:
    calls = [
        BatchCall("ok", "profile"),
        BatchCall("bad", "nope.method"),
        BatchCall("after", "profile"),
    ]
    result = await make_client().batch(calls, halt=True)
    assert set(result.results) == {"ok"}
    assert type(result.errors["bad"]) is BitrixMethodNotFound
    with pytest.raises(BitrixMethodError) as caught:
        result.value("after")
    assert caught.value.code == "NOT_EXECUTED"


async def test_a_reference_to_a_call_of_an_earlier_request_is_filled_in(
    make_client: ClientFactory, portal: Portal
) -> None:
    calls = [BatchCall(f"p{i}", "profile") for i in range(49)]
    calls.append(BatchCall("dialog", "imopenlines.dialog.get", {"SESSION_ID": 495}))
    calls.append(
        BatchCall(
            "late", "imopenlines.session.history.get", {"CHAT_ID": BatchRef("dialog", ("id",))}
        )
    )
    result = await make_client().batch(calls)
    assert result.value("late")["sessionId"] == 495
    assert calls_to(portal, "batch") == 2


async def test_a_reference_to_a_later_call_is_a_programming_error(
    make_client: ClientFactory,
) -> None:
    calls = [
        BatchCall("early", "imopenlines.dialog.get", {"CHAT_ID": BatchRef("late", ("ID",))}),
        BatchCall("late", "profile"),
    ]
    with pytest.raises(ValueError, match="not an earlier call"):
        await make_client().batch(calls)


async def test_batch_keys_must_be_unique(make_client: ClientFactory) -> None:
    with pytest.raises(ValueError, match="unique"):
        await make_client().batch([BatchCall("a", "profile"), BatchCall("a", "profile")])


@pytest.mark.parametrize(
    "url",
    ["http://portal.example.com/rest/1/code/", "ftp://portal/rest/1/code/", "portal/rest/1/code/"],
)
def test_plain_http_is_refused_except_for_loopback(url: str) -> None:
    with pytest.raises(ValueError, match="https") as caught:
        WebhookAuth(SecretStr(url))
    assert "code" not in str(caught.value)
    with pytest.raises(ValueError, match="https"):
        TokenAuth(url.replace("/1/code/", "/"), SecretStr("t"))


@pytest.mark.usefixtures("reset_logging")
async def test_no_secret_in_errors_or_logs_and_operating_time_is_logged(
    make_client: ClientFactory, sandbox: TestServer, portal: Portal
) -> None:
    stream = io.StringIO()
    configure_logging(level="debug", fmt="json", stream=stream)
    await make_client().call("profile")
    portal.faults.append(Fault(status=503, error="QUERY_LIMIT_EXCEEDED", times=1))
    await make_client().call("profile")
    bad = make_client(WebhookAuth(SecretStr(webhook_url(sandbox, code="wr0ngc0de"))))
    with pytest.raises(BitrixAuthError) as caught:
        await bad.call("profile")
    for text in (
        str(caught.value),
        repr(caught.value),
        repr(caught.value.args),
        stream.getvalue(),
    ):
        assert WEBHOOK_CODE not in text
        assert "wr0ngc0de" not in text
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    calls = [line for line in lines if line["event"] == "bitrix.call"]
    assert [c["outcome"] for c in calls] == ["ok", "QUERY_LIMIT_EXCEEDED", "ok", "NO_AUTH_FOUND"]
    assert isinstance(calls[0]["operating"], float)
    assert [line["attempt"] for line in lines if line["event"] == "bitrix.retry"] == [1]
