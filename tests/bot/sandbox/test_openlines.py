"""The open-line methods and every quirk of head.vote (protocol notes §7), as a table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.sandbox.openlines import COMMENT_LIMIT
from bot.sandbox.portal import Portal, Webhook
from tests.bot.sandbox.test_rest import rest
from tests.harness import webhook_url

VOTE = "imopenlines.session.head.vote"

# Session 495 starts rated 4 with the comment "Вежливо" (seed data).
VOTES: list[tuple[str, dict[str, Any], int, str]] = [
    ("rating and comment", {"SESSION_ID": 495, "RATING": 5, "COMMENT": "Молодец"}, 5, "Молодец"),
    ("rating only wipes the comment", {"SESSION_ID": 495, "RATING": 3}, 3, ""),
    ("comment only keeps the rating", {"SESSION_ID": 495, "COMMENT": "Долго"}, 4, "Долго"),
    ("above 5 is stored as 0", {"SESSION_ID": 495, "RATING": 7, "COMMENT": "x"}, 0, "x"),
    ("a zero passes with a comment", {"SESSION_ID": 495, "RATING": "0", "COMMENT": "x"}, 0, "x"),
    ("negatives pass", {"SESSION_ID": 495, "RATING": -1}, -1, ""),
    ("fractions keep their integer part", {"SESSION_ID": 495, "RATING": "3.7"}, 3, ""),
    ("a word is stored as 0", {"SESSION_ID": 495, "RATING": "five"}, 0, ""),
    ("a numeric string session", {"SESSION_ID": "495", "RATING": "2"}, 2, ""),
    ("comment '0' is empty to PHP", {"SESSION_ID": 495, "RATING": 5, "COMMENT": "0"}, 5, ""),
]


@pytest.mark.parametrize(("case", "params", "vote", "comment"), VOTES, ids=[v[0] for v in VOTES])
async def test_head_vote_stores(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    case: str,
    params: dict[str, Any],
    vote: int,
    comment: str,
) -> None:
    status, body = await rest(http, webhook_url(sandbox) + VOTE, json=params)
    assert (status, body["result"]) == (200, True)
    session = portal.sessions[495]
    assert (session.vote_head, session.comment_head) == (vote, comment)


async def test_a_long_comment_is_cut_over_http(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    params = {"SESSION_ID": 494, "RATING": 5, "COMMENT": "ж" * (COMMENT_LIMIT + 1)}
    await rest(http, webhook_url(sandbox) + VOTE, json=params)
    assert portal.sessions[494].comment_head == "ж" * COMMENT_LIMIT + "..."


def _no_right(portal: Portal) -> None:
    portal.lines[1].heads.discard(1)
    portal.lines[1].supervisors.add(1)


def _no_feature(portal: Portal) -> None:
    portal.can_use_vote_head = False


# Session::voteAsHead stores nothing for these; session 495 keeps 4 "Вежливо".
NOTHING_SAVED: list[tuple[str, int, Callable[[Portal], None]]] = [
    ("no such session", 999, lambda _: None),
    ("no right to vote on the line", 495, _no_right),
    ("a plan without the feature", 495, _no_feature),
]
# What head.vote answers then: current builds refuse (§00 item 1), legacy ones say true.
BUILDS: list[tuple[Literal["current", "legacy"], int, dict[str, Any]]] = [
    (
        "current",
        400,
        {
            "error": "ACCESS_DENIED",
            "error_description": "You cannot open this conversation as you do not have "
            "sufficient rights",
        },
    ),
    ("legacy", 200, {"result": True}),
]


@pytest.mark.parametrize(("build", "status", "answer"), BUILDS, ids=[b[0] for b in BUILDS])
@pytest.mark.parametrize(
    ("case", "session", "arrange"), NOTHING_SAVED, ids=[n[0] for n in NOTHING_SAVED]
)
async def test_when_head_vote_stores_nothing(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    case: str,
    session: int,
    arrange: Callable[[Portal], None],
    build: Literal["current", "legacy"],
    status: int,
    answer: dict[str, Any],
) -> None:
    portal.head_vote = build
    arrange(portal)
    got_status, body = await rest(
        http, webhook_url(sandbox) + VOTE, json={"SESSION_ID": session, "RATING": 5}
    )
    assert (got_status, {k: body[k] for k in answer}) == (status, answer)
    assert (portal.sessions[495].vote_head, portal.sessions[495].comment_head) == (4, "Вежливо")
    assert portal.notifications == []


ERRORS: list[tuple[str, dict[str, Any], str]] = [
    ("no session", {"RATING": 5}, "EMPTY_SESSION_ID"),
    ("session 0", {"SESSION_ID": 0, "RATING": 5}, "EMPTY_SESSION_ID"),
    ("lower-case session key", {"session_id": 495, "RATING": 5}, "EMPTY_SESSION_ID"),
    ("neither rating nor comment", {"SESSION_ID": 495}, "EMPTY_VOTE_PARAMS"),
    ("rating 0 alone", {"SESSION_ID": 495, "RATING": 0}, "EMPTY_VOTE_PARAMS"),
    ("blank comment alone", {"SESSION_ID": 495, "COMMENT": "   "}, "EMPTY_VOTE_PARAMS"),
    (
        "lower-case keys alone",
        {"SESSION_ID": 495, "rating": 5, "comment": "x"},
        "EMPTY_VOTE_PARAMS",
    ),
]


@pytest.mark.parametrize(("case", "params", "code"), ERRORS, ids=[e[0] for e in ERRORS])
async def test_head_vote_refuses_with_400(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    case: str,
    params: dict[str, Any],
    code: str,
) -> None:
    status, body = await rest(http, webhook_url(sandbox) + VOTE, json=params)
    assert (status, body["error"]) == (400, code)
    assert portal.sessions[495].vote_head == 4


async def test_a_saved_vote_notifies_the_operator(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    await rest(
        http, webhook_url(sandbox) + VOTE, json={"SESSION_ID": 494, "RATING": 5, "COMMENT": "ok"}
    )
    assert portal.notifications == [
        {"to_user_id": 101, "from_user_id": 1, "session_id": 494, "rating": 5, "comment": "ok"}
    ]


HISTORY = "imopenlines.session.history.get"


@pytest.mark.parametrize(
    ("user", "params", "can_vote"),
    [(1, {"SESSION_ID": 495}, "Y"), (28, {"SESSION_ID": 495}, "N"), (1, {"CHAT_ID": 1158}, "Y")],
)
async def test_history_shows_the_head_vote_and_the_caller_s_right(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    user: int,
    params: dict[str, Any],
    can_vote: str,
) -> None:
    hook = next(h for h in portal.webhooks if h.user_id == user)
    status, body = await rest(http, webhook_url(sandbox, user, hook.code) + HISTORY, json=params)
    assert status == 200
    result = body["result"]
    assert (result["sessionId"], result["chatId"]) == (495, 1158)
    assert (result["sessionVoteHead"], result["sessionCommentHead"]) == (4, "Вежливо")
    assert result["canVoteHead"] == can_vote
    assert result["openlines"]["canvoteashead"] == {"1": can_vote == "Y"}


@pytest.mark.parametrize(
    ("params", "user", "code"),
    [
        ({}, 1, "MISSING_REQUIRED_PARAM"),
        ({"SESSION_ID": "", "CHAT_ID": ""}, 1, "MISSING_REQUIRED_PARAM"),
        # A missing session looks like a hidden one (§00 item 2).
        ({"SESSION_ID": 999}, 1, "ACCESS_DENIED"),
        ({"SESSION_ID": 999, "CHAT_ID": 1157}, 1, "ACCESS_DENIED"),
        ({"SESSION_ID": 496}, 27, "ACCESS_DENIED"),  # line 2 is not Svetlana's
        # Only a chat without a session, asked for by CHAT_ID alone, is INVALID_SESSION_ID.
        ({"CHAT_ID": 2001}, 1, "INVALID_SESSION_ID"),
        ({"SESSION_ID": "", "CHAT_ID": 2001}, 1, "INVALID_SESSION_ID"),
    ],
)
async def test_history_errors(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    params: dict[str, Any],
    user: int,
    code: str,
) -> None:
    portal.webhooks.append(Webhook(27, "svetlanahook", frozenset({"imopenlines"})))
    hook = next(h for h in reversed(portal.webhooks) if h.user_id == user)
    status, body = await rest(http, webhook_url(sandbox, user, hook.code) + HISTORY, json=params)
    assert (status, body["error"]) == (400, code)


@pytest.mark.parametrize(
    "params",
    [
        {"CHAT_ID": 1157},
        {"DIALOG_ID": "chat1157"},
        {"SESSION_ID": 494},
        {"USER_CODE": "livechat|1|1373|1211"},
    ],
)
async def test_dialog_get_carries_the_session_in_entity_data_1(
    http: aiohttp.ClientSession, sandbox: TestServer, params: dict[str, Any]
) -> None:
    status, body = await rest(http, webhook_url(sandbox) + "imopenlines.dialog.get", json=params)
    assert status == 200
    result = body["result"]
    assert (result["entity_type"], result["dialog_id"]) == ("LINES", "chat1157")
    assert result["entity_data_1"].split("|")[5] == "494"
    assert "session_id" not in result


async def test_dialog_get_refuses_a_chat_that_is_not_an_open_line(
    http: aiohttp.ClientSession, sandbox: TestServer
) -> None:
    status, body = await rest(
        http, webhook_url(sandbox) + "imopenlines.dialog.get", json={"CHAT_ID": 2001}
    )
    assert (status, body["error"]) == (400, "ACCESS_ERROR")
