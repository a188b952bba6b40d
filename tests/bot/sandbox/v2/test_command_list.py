"""imbot.v2.Command.list in the sandbox, as command-list.md gives it: the owner's bot's
commands, with a slash, title and params in the portal's language; another application's bot
refused."""

from __future__ import annotations

import aiohttp
from aiohttp.test_utils import TestServer

from tests.bot.sandbox.v2.test_methods import TOKEN, register_rate, register_v2, v2


async def test_the_owner_lists_its_bot_s_commands(
    http: aiohttp.ClientSession, sandbox: TestServer
) -> None:
    bot_id = await register_v2(http, sandbox)
    command_id = await register_rate(http, sandbox, bot_id, params={"ru": "сессия оценка"})
    status, answer = await v2(http, sandbox, "Command.list", botId=bot_id, botToken=TOKEN)
    assert status == 200
    [command] = answer["result"]["commands"]
    assert {k: command[k] for k in ("id", "botId", "command", "common", "hidden")} == {
        "id": command_id,
        "botId": bot_id,
        "command": "/rate",
        "common": True,
        "hidden": False,
    }
    assert (command["title"], command["params"]) == ("Оценить", "сессия оценка")


async def test_another_application_is_refused(
    http: aiohttp.ClientSession, sandbox: TestServer
) -> None:
    bot_id = await register_v2(http, sandbox)
    status, answer = await v2(http, sandbox, "Command.list", botId=bot_id, botToken="theirs-123")
    assert (status, answer["error"]) == (403, "BOT_OWNERSHIP_ERROR")
