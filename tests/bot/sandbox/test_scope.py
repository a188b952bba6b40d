"""The `scope` method in the sandbox (common/system/scope.md): the webhook's own scopes, or with
`full` every scope of the portal."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.sandbox.portal import Portal
from tests.bot.sandbox.test_rest import rest
from tests.harness import webhook_url


@pytest.mark.parametrize(
    ("granted", "body", "expected"),
    [
        ({"imbot", "imopenlines", "im"}, {}, ["im", "imbot", "imopenlines"]),
        ({"imbot"}, {}, ["imbot"]),
        (set(), {}, []),
        ({"imbot"}, {"full": True}, ["crm", "im", "imbot", "imopenlines", "user"]),
        ({"imbot"}, {"full": 0}, ["imbot"]),
    ],
)
async def test_scope_tells_the_webhook_s_scopes(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    granted: set[str],
    body: dict[str, Any],
    expected: list[str],
) -> None:
    portal.webhooks[0].scopes = frozenset(granted)
    status, answer = await rest(http, webhook_url(sandbox) + "scope", json=body)
    assert (status, answer["result"]) == (200, expected)


async def test_a_form_encoded_false_asks_for_the_full_list(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    """ "When passed in form-data, the string `false` enables the full list" (scope.md)."""
    portal.webhooks[0].scopes = frozenset({"imbot"})
    status, answer = await rest(http, webhook_url(sandbox) + "scope", data={"full": "false"})
    assert (status, len(answer["result"])) == (200, 5)
