"""Batch syntax in user text is text: it never reaches `batch`, where Bitrix24 would rewrite it,
and it can never stop the service's REST calls (issue 8 item 1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.bitrix.batch import BatchCall, BatchRef, command_text, needs_direct
from bot.bitrix.client import BitrixClient
from bot.bitrix.form import unflatten_form
from bot.errors import BitrixMethodError
from bot.sandbox.batch import rewrite_batch_syntax
from bot.sandbox.portal import Message, Portal
from tests.harness import Service, ServiceFactory, eventually

ClientFactory = Callable[..., BitrixClient]

HISTORY = "imopenlines.session.history.get"
VOTE = "imopenlines.session.head.vote"

# Everything Bitrix24 rewrites inside a batch value (CRestUtil::processBatchElement), and
# what merely looks like it.
HOSTILE_COMMENTS = [
    "$result[vote] $result_error[x] $result_total[y]",
    "цена $result[before][sessionCommentHead]",
    "$RESULT[vote]",
    "$error[vote][error] $next[a] $time[b] $total[c]",
    "$result[vote]",
    "a$result[vote]b",
    "%24result%5Bvote%5D",
    "$ 5",
]


def requests(portal: Portal, method: str) -> list[Any]:
    return [c for c in portal.calls if c.method == method and c.batch_of is None]


@pytest.mark.parametrize(
    ("params", "direct"),
    [
        ({"SESSION_ID": 494, "RATING": 5, "COMMENT": "Молодец"}, False),
        ({"COMMENT": BatchRef("before", ("sessionCommentHead",))}, False),  # our own reference
        ({"COMMENT": "$result[vote]"}, True),
        ({"COMMENT": "цена 5$"}, True),
        ({"KEYBOARD": {"BUTTONS": [{"TEXT": "$result[x]"}]}}, True),
        ({"FIELDS": {"$result[a]": "x"}}, True),
    ],
)
def test_a_call_with_a_dollar_in_its_text_goes_outside_batch(
    params: dict[str, Any], *, direct: bool
) -> None:
    assert needs_direct(BatchCall("c", "m", params)) is direct


@pytest.mark.parametrize(("key", "fields"), [("a]&X=1", ()), ("a", ("b][c",)), ("", ())])
def test_a_reference_names_only_plain_keys(key: str, fields: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="names keys and fields"):
        BatchRef(key, fields)


@pytest.mark.parametrize("comment", HOSTILE_COMMENTS)
async def test_a_comment_with_batch_syntax_reaches_head_vote_byte_for_byte(
    make_client: ClientFactory, portal: Portal, comment: str
) -> None:
    result = await make_client().batch(
        [
            BatchCall("vote", VOTE, {"SESSION_ID": 494, "RATING": 5, "COMMENT": comment}),
            BatchCall("after", HISTORY, {"SESSION_ID": 494}),
        ],
        halt=True,
    )
    assert result.value("after")["sessionCommentHead"] == comment
    assert portal.sessions[494].comment_head == comment
    # With a `$`, a request of its own (not a call inside batch), the comment as written.
    assert [c.params["COMMENT"] for c in requests(portal, VOTE)] == (
        [comment] if "$" in comment else []
    )


async def test_calls_keep_their_order_around_a_direct_call(
    make_client: ClientFactory, portal: Portal
) -> None:
    calls = [
        BatchCall("before", HISTORY, {"SESSION_ID": 494}),
        BatchCall("vote", VOTE, {"SESSION_ID": 494, "RATING": 3, "COMMENT": "$result[x]"}),
        BatchCall("after", HISTORY, {"SESSION_ID": 494}),
    ]
    result = await make_client().batch(calls)
    assert result.value("before")["sessionVoteHead"] == 0
    assert result.value("after")["sessionVoteHead"] == 3
    assert [(c.method, c.batch_of) for c in portal.calls] == [
        (HISTORY, "batch"),
        ("batch", None),
        (VOTE, None),
        (HISTORY, "batch"),
        ("batch", None),
    ]


async def test_halt_stops_at_a_failed_direct_call(
    make_client: ClientFactory, portal: Portal
) -> None:
    calls = [
        BatchCall("vote", VOTE, {"SESSION_ID": 494, "COMMENT": "$result[x]"}),
        BatchCall("bad", VOTE, {"COMMENT": "$result[x]"}),  # EMPTY_SESSION_ID
        BatchCall("after", HISTORY, {"SESSION_ID": 494}),
    ]
    result = await make_client().batch(calls, halt=True)
    assert result.value("vote") is True
    assert result.errors["bad"].code == "EMPTY_SESSION_ID"
    with pytest.raises(BitrixMethodError, match="NOT_EXECUTED"):
        result.value("after")
    assert requests(portal, "batch") == []
    assert len(requests(portal, VOTE)) == 2


async def test_without_halt_the_calls_after_a_failed_direct_call_are_made(
    make_client: ClientFactory,
) -> None:
    calls = [
        BatchCall("bad", VOTE, {"COMMENT": "$result[x]"}),
        BatchCall("after", HISTORY, {"SESSION_ID": 494}),
    ]
    result = await make_client().batch(calls)
    assert set(result.errors) == {"bad"}
    assert result.value("after")["sessionId"] == 494


async def test_a_direct_call_gets_its_references_filled_in(
    make_client: ClientFactory, portal: Portal
) -> None:
    portal.sessions[495].comment_head = "цена $result[vote]"
    calls = [
        BatchCall("before", HISTORY, {"SESSION_ID": 495}),
        BatchCall(
            "vote",
            VOTE,
            {
                "SESSION_ID": 495,
                "RATING": 2,
                "COMMENT": BatchRef("before", ("sessionCommentHead",)),
                "NOTE": "$",  # makes the call direct; head.vote ignores it
            },
        ),
    ]
    result = await make_client().batch(calls, halt=True)
    assert result.value("vote") is True
    assert portal.sessions[495].comment_head == "цена $result[vote]"
    assert requests(portal, VOTE)[0].params["COMMENT"] == "цена $result[vote]"


async def test_a_call_referring_to_a_failed_call_is_not_made(
    make_client: ClientFactory, portal: Portal
) -> None:
    calls = [
        BatchCall("before", HISTORY, {}),  # fails: no session named
        BatchCall("mark", "profile", {"NOTE": "$"}),  # a direct call: the next request is new
        BatchCall("vote", VOTE, {"SESSION_ID": 494, "COMMENT": BatchRef("before", ("x",))}),
    ]
    result = await make_client().batch(calls)
    assert "before" in result.errors
    with pytest.raises(BitrixMethodError, match="NOT_EXECUTED"):
        result.value("vote")
    assert not any(c.method == VOTE for c in portal.calls)


# --- the attack, end to end --------------------------------------------------------------


async def answer_in_private(service: Service, author_id: int, text: str) -> Message:
    """The bot's answer in its private chat with the author (others may be answered meanwhile)."""
    chat = service.portal.private_chat(author_id, service.bot_id)
    before = len(service.bot_messages(chat.id))
    await service.say(author_id, service.bot_id, text)
    answers = await eventually(lambda: service.bot_messages(chat.id)[before:])
    return answers[0]


async def test_batch_syntax_from_anyone_never_stops_the_service(
    service: Service, http: aiohttp.ClientSession
) -> None:
    """Eight `/rat$result[a1]` from an operator (more than the coalescer's four senders),
    then a supervisor's vote: it is saved and answered, and every hostile message answered."""
    for _ in range(8):
        await service.say(101, service.bot_id, "/rat$result[a1]")
    reply = await answer_in_private(service, 27, "/rate 494 5 Молодец")
    assert reply.text.startswith("✅")
    session = service.portal.sessions[494]
    assert (session.vote_head, session.comment_head) == (5, "Молодец")
    chat = service.portal.private_chat(101, service.bot_id)
    await eventually(lambda: len(service.bot_messages(chat.id)) == 8)
    assert all("rat$result" in m.text for m in service.bot_messages(chat.id))
    async with http.get(service.server.make_url("/readyz")) as answer:
        assert (answer.status, (await answer.json())["senders"]) == (200, "ok")


@pytest.mark.parametrize("comment", HOSTILE_COMMENTS[:4])
async def test_a_supervisor_s_comment_with_batch_syntax_is_stored_verbatim(
    service: Service, comment: str
) -> None:
    reply = await answer_in_private(service, 27, f"/rate 494 5 {comment}")
    assert reply.text.startswith("✅")
    assert service.portal.sessions[494].comment_head == comment


async def test_a_rating_alone_keeps_a_stored_comment_that_looks_like_batch_syntax(
    service: Service,
) -> None:
    """The rating-only vote sends the stored comment back by reference (`BatchRef`)."""
    stored = "цена $result[vote] $result_error[x]"
    service.portal.sessions[494].comment_head = stored
    reply = await answer_in_private(service, 27, "/rate 494 3")
    assert reply.text.startswith("✅")
    assert (service.portal.sessions[494].vote_head, service.portal.sessions[494].comment_head) == (
        3,
        stored,
    )


async def test_a_rating_alone_keeps_the_stored_comment_through_a_batch_reference(
    service: Service,
) -> None:
    await answer_in_private(service, 27, "/rate 495 2")
    assert (service.portal.sessions[495].vote_head, service.portal.sessions[495].comment_head) == (
        2,
        "Вежливо",
    )
    batched = [
        c.method
        for c in service.portal.calls[service.started_at_call :]
        if c.batch_of and c.method != "im.user.get"  # who the author is, looked up first
    ]
    assert batched[:3] == [HISTORY, VOTE, HISTORY]


async def test_registration_with_batch_syntax_in_the_bot_s_name(
    start_service: ServiceFactory, portal: Portal
) -> None:
    name = "Оценки $result[bot] 100$"
    service = await start_service(B24_BOT_NAME=name)
    [bot] = portal.bots.values()
    assert bot.name == name
    assert {c.command for c in portal.commands.values()} == {"rate", "help"}
    reply = await answer_in_private(service, 27, "/rate 494 4")
    assert reply.text.startswith("✅")


_PIECES = st.sampled_from(
    ["$", "$result", "$RESULT", "$time", "$error", "_error", "[vote]", "[x]", "[", "]", " ", "%24"]
)
_BATCH_TEXT = st.lists(_PIECES | st.characters(codec="utf-8"), max_size=20).map("".join)


@given(text=_BATCH_TEXT)
def test_text_either_goes_outside_batch_or_arrives_as_written(text: str) -> None:
    """Whatever a user writes: through batch, Bitrix24's rewriting (as the sandbox does it)
    leaves it as written; or the call does not go through batch."""
    call = BatchCall("vote", VOTE, {"COMMENT": text, "FIELDS": {"NOTE": text}})
    if needs_direct(call):
        return
    query = command_text(call, [call]).partition("?")[2]
    decoded = unflatten_form(parse_qsl(query, keep_blank_values=True))
    tables = {"result": {"vote": {"x": "SUBSTITUTED"}}, "error": {}}
    assert rewrite_batch_syntax(decoded, tables) == {"COMMENT": text, "FIELDS": {"NOTE": text}}


@pytest.mark.parametrize(
    ("method", "params", "sent"),
    [
        # v1 methods read their keys in upper case (protocol notes §3.2) ...
        ("imbot.command.answer", {"command_id": 7}, "imbot.command.answer?COMMAND_ID=7"),
        # ... Chatbots 2.0 methods in camelCase, as the docs write them (§00 item 9)
        (
            "imbot.v2.Command.update",
            {"botId": 5, "commandId": BatchRef("reg", ("command", "id"))},
            "imbot.v2.Command.update?botId=5&commandId=$result[reg][command][id]",
        ),
        ("imbot.v2.Event.get", {"botId": 5, "offset": 0}, "imbot.v2.Event.get?botId=5&offset=0"),
    ],
)
def test_a_batch_call_keeps_the_key_case_its_method_reads(
    method: str, params: dict[str, Any], sent: str
) -> None:
    chunk = [BatchCall("reg", "imbot.v2.Command.register"), BatchCall("call", method, params)]
    assert command_text(chunk[1], chunk) == sent
