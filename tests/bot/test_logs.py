"""Logs: JSON or console, contextvars, stdlib loggers in the same pipeline, and no secret ever."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
import structlog

from bot.config import LogFormat
from bot.logs import MASK, configure_logging

WEBHOOK_CODE = "k3yc0de5ecret77"
ACCESS_TOKEN = "be4ca0690000071b006e2cf200050b0077317605eb83b25d2bd6"
APPLICATION_TOKEN = "8e3ab48a764a9b02700e759d59e91125"
TELEGRAM_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw0"
PATH_SECRET = "Zq8fW2nRt5yLp0Xv"  # a configured secret of no particular shape
CLIENT_SECRET = "LJSl0lNB76B5YY6u0YVQ3AW0DrVADcRTwVr4y99PXU1BWQybWK"  # settings/oauth docs
AUTH_CODE = "avmocpghblyi01m3h42bljvqtyd19sw1"
REFRESH_TOKEN = "nfhxkzk3gvrg375wl7u7xex9awz6o3k8"
TOKEN_URL = (
    "https://oauth.bitrix.info/oauth/token/?grant_type=authorization_code"
    f"&client_id=local.573ad8a0346747.09223434&client_secret={CLIENT_SECRET}&code={AUTH_CODE}"
)


class Capture(io.StringIO):
    """A log stream; `tty` makes it look like a terminal."""

    def __init__(self, *, tty: bool = False) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.getvalue().splitlines()]


@pytest.fixture
def logs(reset_logging: None) -> Capture:
    stream = Capture()
    configure_logging(level="debug", fmt="json", secrets=[PATH_SECRET], stream=stream)
    return stream


log = structlog.get_logger("tests")


def _raise_with_secret() -> None:
    try:
        raise RuntimeError(f"POST https://p.bitrix24.ru/rest/1/{WEBHOOK_CODE}/batch failed")
    except RuntimeError:
        log.exception("rest.failed")


LEAKS: list[tuple[str, str, Callable[[], None]]] = [
    (
        "webhook url as a field",
        WEBHOOK_CODE,
        lambda: log.info("x", url=f"https://p.bitrix24.ru/rest/1/{WEBHOOK_CODE}/"),
    ),
    (
        "webhook url in the event",
        WEBHOOK_CODE,
        lambda: log.info(f"calling https://p/rest/27/{WEBHOOK_CODE}/profile.json"),
    ),
    ("a secret-named field", ACCESS_TOKEN, lambda: log.info("x", access_token=ACCESS_TOKEN)),
    (
        "a secret-named field, any case",
        APPLICATION_TOKEN,
        lambda: log.info("x", Application_Token=APPLICATION_TOKEN),
    ),
    (
        "nested auth block",
        ACCESS_TOKEN,
        lambda: log.info("x", data={"auth": {"access_token": ACCESS_TOKEN, "domain": "p"}}),
    ),
    (
        "tokens in a list",
        APPLICATION_TOKEN,
        lambda: log.info("x", items=[{"application_token": APPLICATION_TOKEN}]),
    ),
    (
        "php form body",
        APPLICATION_TOKEN,
        lambda: log.info(
            "x", body=f"event=ONIMCOMMANDADD&auth[application_token]={APPLICATION_TOKEN}&ts=1"
        ),
    ),
    (
        "url-encoded form body",
        ACCESS_TOKEN,
        lambda: log.info("x", body=f"auth%5Baccess_token%5D={ACCESS_TOKEN}&ts=1"),
    ),
    (
        "json text",
        ACCESS_TOKEN,
        lambda: log.info("x", body=json.dumps({"refresh_token": ACCESS_TOKEN})),
    ),
    ("python repr", ACCESS_TOKEN, lambda: log.info("x", params=str({"auth": ACCESS_TOKEN}))),
    (
        "query string",
        ACCESS_TOKEN,
        lambda: log.info("x", url=f"https://p/rest/profile?auth={ACCESS_TOKEN}&x=1"),
    ),
    (
        "telegram token in a url",
        TELEGRAM_TOKEN,
        lambda: log.info("x", url=f"https://api.telegram.org/bot{TELEGRAM_TOKEN}/getMe"),
    ),
    (
        "a configured literal",
        PATH_SECRET,
        lambda: log.info("x", path=f"/b24/events/{PATH_SECRET}"),
    ),
    (
        "an object's repr",
        WEBHOOK_CODE,
        lambda: log.info("x", error=ValueError(f"/rest/1/{WEBHOOK_CODE}/")),
    ),
    ("an exception traceback", WEBHOOK_CODE, _raise_with_secret),
    ("the token request's url: its secret", CLIENT_SECRET, lambda: log.info("x", url=TOKEN_URL)),
    ("the token request's url: its code", AUTH_CODE, lambda: log.info("x", url=TOKEN_URL)),
    (
        "the callback's url",
        AUTH_CODE,
        lambda: log.info(f"GET /b24/oauth/callback?code={AUTH_CODE}&state=n&domain=p"),
    ),
    (
        "a refresh request's parameters",
        REFRESH_TOKEN,
        lambda: log.info(
            "x", params={"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN}
        ),
    ),
    (
        "a code request's parameters",
        AUTH_CODE,
        lambda: log.info("x", params={"grant_type": "authorization_code", "code": AUTH_CODE}),
    ),
    (
        "the client secret as a field",
        CLIENT_SECRET,
        lambda: log.info("x", client_secret=CLIENT_SECRET),
    ),
    (
        "an aiohttp access log line",
        CLIENT_SECRET,
        lambda: logging.getLogger("aiohttp.access").info('"GET %s HTTP/1.1" 200', TOKEN_URL[26:]),
    ),
    (
        "a stdlib logger",
        ACCESS_TOKEN,
        lambda: logging.getLogger("aiohttp.client").warning("auth=%s", ACCESS_TOKEN),
    ),
    (
        "a stdlib logger's url",
        WEBHOOK_CODE,
        lambda: logging.getLogger("aiogram").error("GET https://p/rest/1/%s/x", WEBHOOK_CODE),
    ),
]


@pytest.mark.parametrize(
    ("secret", "emit"), [(s, e) for _, s, e in LEAKS], ids=[i for i, _, _ in LEAKS]
)
@pytest.mark.parametrize("fmt", ["json", "console"])
@pytest.mark.usefixtures("reset_logging")
def test_secrets_are_masked(secret: str, emit: Callable[[], None], fmt: LogFormat) -> None:
    stream = Capture()
    configure_logging(level="info", fmt=fmt, secrets=[PATH_SECRET], stream=stream)
    emit()
    output = stream.getvalue()
    assert output
    assert secret not in output
    assert MASK in output


def test_masking_keeps_what_is_not_secret(logs: Capture) -> None:
    log.info(
        "rest.called",
        url="https://p.bitrix24.ru/rest/1/k3yc0de5ecret77/imbot.register",
        auth={"access_token": ACCESS_TOKEN, "domain": "p.bitrix24.ru"},
        session_id=494,
        comment="Молодец",
        token="",
    )
    [record] = logs.records()
    assert record["url"] == f"https://p.bitrix24.ru/rest/1/{MASK}/imbot.register"
    assert record["auth"] == {"access_token": MASK, "domain": "p.bitrix24.ru"}
    assert (record["session_id"], record["comment"], record["token"]) == (494, "Молодец", "")


def test_json_lines_carry_level_logger_and_utc_time(logs: Capture) -> None:
    log.warning("queue.full", size=100)
    [record] = logs.records()
    assert record["event"] == "queue.full"
    assert record["level"] == "warning"
    assert record["logger"] == "tests"
    assert record["timestamp"].endswith("Z")
    assert record["size"] == 100


def test_context_variables_reach_every_line(logs: Capture) -> None:
    structlog.contextvars.bind_contextvars(request_id="r-1")
    log.info("first")
    logging.getLogger("aiogram.dispatcher").info("second")
    structlog.contextvars.clear_contextvars()
    log.info("third")
    first, second, third = logs.records()
    assert first["request_id"] == second["request_id"] == "r-1"
    assert "request_id" not in third


def test_stdlib_loggers_share_the_pipeline(logs: Capture) -> None:
    logging.getLogger("aiohttp.server").error("Error handling request %s", "/x")
    [record] = logs.records()
    assert record["event"] == "Error handling request /x"
    assert (record["level"], record["logger"]) == ("error", "aiohttp.server")


@pytest.mark.usefixtures("reset_logging")
def test_level_filters_both_kinds_of_logger() -> None:
    stream = Capture()
    configure_logging(level="warning", fmt="json", stream=stream)
    log.info("dropped")
    logging.getLogger("aiohttp").info("dropped too")
    log.warning("kept")
    assert [r["event"] for r in stream.records()] == ["kept"]


@pytest.mark.parametrize(
    ("fmt", "tty", "is_json"),
    [(None, False, True), (None, True, False), ("json", True, True), ("console", False, False)],
)
@pytest.mark.usefixtures("reset_logging")
def test_format_is_json_off_a_terminal_unless_chosen(
    fmt: LogFormat | None, tty: bool, is_json: bool
) -> None:
    stream = Capture(tty=tty)
    configure_logging(fmt=fmt, stream=stream)
    log.info("hello", n=1)
    line = stream.getvalue().strip()
    assert line.startswith("{") is is_json
    assert "hello" in line


@pytest.mark.usefixtures("reset_logging")
def test_configuring_again_does_not_duplicate_lines() -> None:
    stream = Capture()
    for _ in range(3):
        configure_logging(fmt="json", stream=stream)
    logging.getLogger("aiohttp").warning("once")
    assert len(stream.records()) == 1


def test_an_error_code_is_not_taken_for_an_authorization_code(logs: Capture) -> None:
    """`code` outside a query or a token request's parameters is a Bitrix24 error code,
    which the logs must show."""
    log.info("bitrix.call", code="ACCESS_DENIED", text="code=ACCESS_DENIED", grant={"code": 1})
    [record] = logs.records()
    assert (record["code"], record["text"], record["grant"]) == (
        "ACCESS_DENIED",
        "code=ACCESS_DENIED",
        {"code": 1},
    )
