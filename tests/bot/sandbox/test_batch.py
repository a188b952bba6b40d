"""The sandbox's `batch` rewrites batch syntax the way Bitrix24 does (CRestUtil::
processBatchElement): after decoding a command, in every value, so percent-encoding protects
nothing. The client's tests rely on it to catch user text sent through batch."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.sandbox.portal import Portal
from tests.harness import webhook_url

READ = "imopenlines.session.history.get?SESSION_ID=495"


async def comment_sent_as(
    http: aiohttp.ClientSession, sandbox: TestServer, encoded_comment: str
) -> Any:
    """Run `read`, then a vote whose COMMENT is `encoded_comment` (as it stands in the
    command's query); what head.vote received as COMMENT."""
    cmd = {
        "read": READ,
        "vote": f"imopenlines.session.head.vote?SESSION_ID=494&RATING=3&COMMENT={encoded_comment}",
    }
    async with http.post(webhook_url(sandbox) + "batch", json={"cmd": cmd}) as answer:
        assert answer.status == 200
        body = await answer.json()
    assert body["result"]["result_error"] == [], body
    return body


@pytest.mark.parametrize(
    ("encoded", "stored"),
    [
        ("$result[read][sessionCommentHead]", "Вежливо"),
        ("%24result%5Bread%5D%5BsessionCommentHead%5D", "Вежливо"),  # encoding does not help
        ("x%20%24result%5Bread%5D%5BsessionVoteHead%5D%20y", "x 4 y"),
        ("%24result_error%5Bread%5D%5BsessionCommentHead%5D", "Вежливо"),  # `$result` + tail
        ("%24RESULT%5Bread%5D%5BsessionCommentHead%5D", ""),  # matched, found nothing
        ("%24time%5Bread%5D", ""),  # a table the sandbox keeps empty
        ("%24result%20%5Bread%5D", "$result [read]"),  # whitespace ends the reference
        ("price%205%24", "price 5$"),
    ],
)
async def test_batch_syntax_is_rewritten_after_decoding_in_values(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal, encoded: str, stored: str
) -> None:
    await comment_sent_as(http, sandbox, encoded)
    assert portal.sessions[494].comment_head == stored


async def test_a_reference_to_a_missing_field_inside_text_is_left_as_written(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    await comment_sent_as(http, sandbox, "a%20%24result%5Bread%5D%5Bnope%5D")
    assert portal.sessions[494].comment_head == "a $result[read][nope]"


async def test_every_call_inside_batch_is_recorded_the_refused_ones_too(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    """Tests read `portal.calls` to see what reached the portal: a call a batch ran and the
    method refused must be there with its error, not only the batch request."""
    cmd = {"ok": READ, "refused": "imopenlines.session.history.get?SESSION_ID=999999"}
    async with http.post(webhook_url(sandbox) + "batch", json={"cmd": cmd}) as answer:
        assert answer.status == 200
    inner = [(c.params.get("SESSION_ID"), c.error, c.batch_of) for c in portal.calls[-3:]]
    assert inner[:2] == [("495", None, "batch"), ("999999", "ACCESS_DENIED", "batch")]
