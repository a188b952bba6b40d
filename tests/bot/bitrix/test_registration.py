"""Registration of the bot and its commands: on start, across restarts, and from the CLI."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.bitrix.registration import handler_url
from bot.logs import configure_logging
from bot.sandbox.portal import Bot, Fault, Portal
from bot.state import BITRIX
from tests.harness import Service, ServiceFactory, eventually, webhook_url


def client_id(service: Service) -> str:
    assert service.settings.b24_client_id is not None
    return service.settings.b24_client_id.get_secret_value()


async def test_the_bot_is_registered_on_start_for_open_lines(service: Service) -> None:
    portal = service.portal
    [bot] = portal.bots.values()
    url = f"{handler_url(service.settings)}?CLIENT_ID={client_id(service)}"
    assert (bot.code, bot.name, bot.openline) == ("rating_bot", "Оценка диалогов", True)
    assert set(bot.handlers.values()) == {url}
    assert handler_url(service.settings).startswith(f"{service.settings.public_url}/b24/events/")
    commands = {c.command: c for c in portal.commands.values()}
    assert set(commands) == {"rate", "help"}
    for command in commands.values():
        assert (command.bot_id, command.common, command.hidden, command.handler) == (
            bot.id,
            True,
            False,
            url,
        )
        assert {item["LANGUAGE_ID"] for item in command.lang} == {"ru", "en", "de"}
    rate_titles = {item["LANGUAGE_ID"]: item["PARAMS"] for item in commands["rate"].lang}
    assert rate_titles["ru"] == "сессия оценка комментарий"
    # `scope` first: the webhook's scopes, logged when one is missing (bot/upkeep.py).
    calls = [c.method for c in portal.calls if c.batch_of is None]
    assert calls == ["scope", "imbot.bot.list", "batch"]


async def test_a_restart_finds_the_bot_and_duplicates_nothing(
    start_service: ServiceFactory, portal: Portal
) -> None:
    first = await start_service()
    ids = (set(portal.bots), set(portal.commands))
    second = await start_service()
    assert (set(portal.bots), set(portal.commands)) == ids
    assert second.bot_id == first.bot_id
    assert sum(1 for c in portal.calls if c.method == "imbot.register") == 1
    assert sum(1 for c in portal.calls if c.method == "imbot.update") == 1


async def test_a_new_public_url_is_written_to_the_existing_bot_and_commands(
    start_service: ServiceFactory, portal: Portal
) -> None:
    await start_service()
    moved = await start_service(BOT_PUBLIC_URL="https://rating-bot.example.com")
    url = f"https://rating-bot.example.com{moved.settings.b24_handler_path()}?CLIENT_ID={client_id(moved)}"
    [bot] = portal.bots.values()
    assert set(bot.handlers.values()) == {url}
    assert {c.handler for c in portal.commands.values()} == {url}


async def test_a_portal_down_at_start_is_retried_and_the_service_serves_meanwhile(
    start_service: ServiceFactory, portal: Portal, http: aiohttp.ClientSession
) -> None:
    portal.faults.append(Fault(method="imbot.bot.list", status=502, times=-1))
    service = await start_service(registered=False)
    await asyncio.sleep(0.3)  # several attempts fail meanwhile
    async with http.get(service.server.make_url("/healthz")) as answer:
        assert answer.status == 200
    async with http.get(service.server.make_url("/readyz")) as answer:
        assert (answer.status, (await answer.json())["portal"]) == (503, "not registered")
    assert portal.bots == {}
    portal.faults.clear()
    await asyncio.wait_for(service.server.app[BITRIX].registered.wait(), 5)
    assert service.bot_id in portal.bots


@pytest.mark.parametrize(
    "answer",
    [
        '{"result": [{"CODE": "rating_bot"}]}',  # a bot without an ID
        '{"result": [{"CODE": "rating_bot", "ID": "five"}]}',
    ],
)
async def test_an_answer_registration_cannot_read_is_retried_not_the_end_of_it(
    start_service: ServiceFactory, portal: Portal, answer: str
) -> None:
    """The attack: the portal (or a proxy in front of it) answers imbot.bot.list with
    something registration cannot read. Registration must go on trying, not end for good
    with the bot unregistered until a restart."""
    portal.faults.append(
        Fault(method="imbot.bot.list", body=answer, content_type="application/json", times=2)
    )
    service = await start_service(registered=False)
    await asyncio.wait_for(service.server.app[BITRIX].registered.wait(), 10)
    assert service.bot_id in portal.bots


FOREIGN_HANDLER = "https://other.example.com/hook?CLIENT_ID=theirs"


def foreign_bot(portal: Portal) -> Bot:
    """Another application's bot that happens to have our code (§00 item 8)."""
    bot = Bot(portal.new_id(), "rating_bot", "customtheirs", "Чужой бот", openline=True)
    bot.handlers = dict.fromkeys(("EVENT_MESSAGE_ADD", "EVENT_WELCOME_MESSAGE"), FOREIGN_HANDLER)
    portal.bots[bot.id] = bot
    return bot


@pytest.fixture
def log_lines(reset_logging: None) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream)
    return stream


# How the foreign bot shows: in imbot.bot.list (as Bitrix24 lists every bot), or only as the
# answer of imbot.register with our code (a listing that missed it).
HOW_FOUND = {
    "listed": [],
    "only registering finds it": [
        Fault(
            method="imbot.bot.list",
            status=200,
            body='{"result": []}',
            content_type="application/json",
        )
    ],
}


@pytest.mark.parametrize("how", HOW_FOUND)
async def test_a_foreign_bot_with_our_code_is_never_adopted(
    start_service: ServiceFactory,
    portal: Portal,
    http: aiohttp.ClientSession,
    log_lines: io.StringIO,
    how: str,
) -> None:
    theirs = foreign_bot(portal)
    portal.faults.extend(HOW_FOUND[how])
    service = await start_service(registered=False)
    readyz = service.server.make_url("/readyz")

    async def refused() -> dict[str, str] | None:
        async with http.get(readyz) as answer:
            body: dict[str, str] = await answer.json()
            return body if answer.status == 503 and "B24_BOT_CODE" in body["portal"] else None

    deadline = asyncio.get_running_loop().time() + 5
    while (body := await refused()) is None:
        assert asyncio.get_running_loop().time() < deadline, "readyz never said why"
        await asyncio.sleep(0.02)
    assert body["portal"] == "not registered: B24_BOT_CODE 'rating_bot' is another app's bot"
    async with http.get(service.server.make_url("/healthz")) as answer:
        assert answer.status == 200
    [line] = [json.loads(x) for x in log_lines.getvalue().splitlines() if "bot_code_taken" in x]
    assert (line["level"], line["setting"], line["code"], line["bot_id"]) == (
        "error",
        "B24_BOT_CODE",
        "rating_bot",
        theirs.id,
    )
    # Their bot is untouched and nothing of ours hangs off it.
    assert list(portal.bots.values()) == [theirs]
    assert set(theirs.handlers.values()) == {FOREIGN_HANDLER}
    assert portal.commands == {}


async def test_a_bot_deleted_in_the_portal_is_forgotten_and_registered_again(
    service: Service,
) -> None:
    old_id = service.bot_id
    await service.events.delete_bot(old_id)
    state = service.server.app[BITRIX]
    new_id = await eventually(lambda: state.bot_id() not in (None, old_id) and state.bot_id())
    assert [b.id for b in service.portal.bots.values()] == [new_id]
    reply = await service.reply_to(27, new_id, "/rate 494 5")
    assert reply.text.startswith("✅")


def _cli_env(sandbox: TestServer, **extra: str) -> dict[str, str]:
    return {
        "PYTHONIOENCODING": "utf-8",
        "B24_EVENT_MODE": "webhook",  # the classic path; fetch mode: tests/bot/test_main.py
        "B24_WEBHOOK_URL": webhook_url(sandbox),
        **extra,
    }


async def _run_cli(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_cli_register_then_unregister(
    sandbox: TestServer, portal: Portal, tmp_path: Path
) -> None:
    env = _cli_env(
        sandbox, BOT_PUBLIC_URL="https://rating-bot.example.com", BOT_LOG_LEVEL="warning"
    )
    code, out, err = await _run_cli(["register"], env, tmp_path)
    assert (code, err) == (0, "")
    [bot] = portal.bots.values()
    assert out.startswith(f"Registered bot {bot.id} with commands /rate, /help;")
    code, out, _ = await _run_cli(["register"], env, tmp_path)
    assert code == 0
    assert len(portal.bots) == 1
    assert len(portal.commands) == 2
    code, out, _ = await _run_cli(["unregister"], env, tmp_path)
    assert (code, out.strip()) == (0, f"Removed bot {bot.id}.")
    assert (portal.bots, portal.commands) == ({}, {})
    code, out, _ = await _run_cli(["unregister"], env, tmp_path)
    assert (code, out.strip()) == (0, "No bot to remove.")


@pytest.mark.parametrize("command", ["register", "unregister"])
async def test_cli_refuses_a_foreign_bot_with_our_code_naming_the_setting(
    sandbox: TestServer, portal: Portal, tmp_path: Path, command: str
) -> None:
    theirs = foreign_bot(portal)
    env = _cli_env(sandbox, BOT_LOG_LEVEL="critical")
    status, out, err = await _run_cli([command], env, tmp_path)
    assert status == 1
    assert err.strip() == (
        f"The bot code 'rating_bot' is taken: bot {theirs.id} of another application has it. "
        "Set B24_BOT_CODE to a code of our own (or remove that bot in Bitrix24)."
    )
    assert "Traceback" not in out + err
    assert list(portal.bots.values()) == [theirs]
    assert portal.commands == {}


@pytest.mark.parametrize(
    ("env", "code", "message"),
    [
        ({"B24_WEBHOOK_URL": ""}, 2, "B24_WEBHOOK_URL is not set"),
        (
            {"BOT_LOG_LEVEL": "critical"},
            1,
            "Bitrix24 refused: NO_AUTH_FOUND in imbot.bot.list.",
        ),
    ],
)
async def test_cli_failures_are_one_clear_line(
    sandbox: TestServer, tmp_path: Path, env: dict[str, str], code: int, message: str
) -> None:
    if code == 1:  # a webhook code the portal does not know
        env = env | {"B24_WEBHOOK_URL": webhook_url(sandbox, code="n0tth3c0de")}
    status, out, err = await _run_cli(["register"], _cli_env(sandbox) | env, tmp_path)
    assert status == code
    assert message in err
    assert "Traceback" not in out + err
    assert "n0tth3c0de" not in out + err
