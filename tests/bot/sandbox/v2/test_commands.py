"""imbot.v2.Command.update in the sandbox, as command-update.md gives it."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.sandbox.portal import Portal
from tests.bot.sandbox.v2.test_methods import TOKEN, register_rate, register_v2, v2


def titles(portal: Portal, command_id: int) -> dict[str, tuple[str, str]]:
    return {t["LANGUAGE_ID"]: (t["TITLE"], t["PARAMS"]) for t in portal.commands[command_id].lang}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # a string updates a language, an absent key keeps it, null removes it
        ({"title": {"en": "Rate it"}}, {"ru": ("Оценить", ""), "en": ("Rate it", "")}),
        ({"title": {"de": "Bewerten"}, "params": {"de": "Sitzung"}}, None),
        ({"title": {"en": None}}, {"ru": ("Оценить", "")}),
        # params apply only to the languages given in title
        ({"params": {"ru": "сессия"}}, {"ru": ("Оценить", ""), "en": ("Rate", "")}),
    ],
)
async def test_update_changes_titles_per_language(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    fields: dict[str, Any],
    expected: dict[str, tuple[str, str]] | None,
) -> None:
    bot_id = await register_v2(http, sandbox)
    command_id = await register_rate(http, sandbox, bot_id)
    status, answer = await v2(
        http,
        sandbox,
        "Command.update",
        botId=bot_id,
        botToken=TOKEN,
        commandId=command_id,
        fields=fields,
    )
    assert (status, answer["result"]["command"]["id"]) == (200, command_id)
    if expected is None:
        expected = {"ru": ("Оценить", ""), "en": ("Rate", ""), "de": ("Bewerten", "Sitzung")}
    assert titles(portal, command_id) == expected


async def test_update_sets_common_and_hidden_as_y_or_n(
    http: aiohttp.ClientSession, sandbox: TestServer, portal: Portal
) -> None:
    bot_id = await register_v2(http, sandbox)
    command_id = await register_rate(http, sandbox, bot_id)
    status, _ = await v2(
        http,
        sandbox,
        "Command.update",
        botId=bot_id,
        botToken=TOKEN,
        commandId=command_id,
        fields={"common": "N", "hidden": "Y"},
    )
    command = portal.commands[command_id]
    assert (status, command.common, command.hidden) == (200, False, True)


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        ({"commandId": 999999}, 400, "COMMAND_NOT_FOUND"),
        ({"fields": {"command": " "}}, 400, "COMMAND_NAME_EMPTY"),
        ({"fields": {"command": "rate now"}}, 400, "COMMAND_NAME_INVALID"),
        ({"fields": {"command": "help"}}, 400, "COMMAND_ALREADY_EXISTS"),
        ({"botToken": "another-application"}, 403, "BOT_OWNERSHIP_ERROR"),
    ],
)
async def test_an_update_the_docs_refuse_changes_nothing(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    change: dict[str, Any],
    status: int,
    error: str,
) -> None:
    bot_id = await register_v2(http, sandbox)
    command_id = await register_rate(http, sandbox, bot_id)
    await register_rate(http, sandbox, bot_id, command="help")
    before = titles(portal, command_id)
    params = {"botId": bot_id, "botToken": TOKEN, "commandId": command_id, "fields": {}} | change
    answer_status, answer = await v2(http, sandbox, "Command.update", **params)
    assert (answer_status, answer["error"]) == (status, error)
    assert (portal.commands[command_id].command, titles(portal, command_id)) == ("rate", before)
