"""Registration through Chatbots 2.0 (fetch mode), migration both ways, and ownership.

Everything runs over HTTP against the sandbox portal; the events a user's message causes are
fetched with imbot.v2.Event.get, as the poller will.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from aiohttp.test_utils import TestServer

from bot.bitrix.client import BitrixClient
from bot.bitrix.registration import Registration, register
from bot.bitrix.registration_v2 import register_for_mode, unregister_v2
from bot.config import Settings
from bot.errors import BotCodeTaken, ChatbotsV2Unavailable
from bot.logs import configure_logging
from bot.sandbox.app import EVENTS
from bot.sandbox.events import QUEUED, Delivery
from bot.sandbox.portal import Bot, Portal
from tests.bot.bitrix.test_registration import FOREIGN_HANDLER, foreign_bot
from tests.harness import webhook_url

# Distinctive, so a leak into a log line or an error text is found by a plain search.
TOKEN = "t0kenL3akCanary_9f8e7d6c5b4a"
TITLES = {"ru", "en", "de"}

Client = Callable[..., BitrixClient]


def settings_for(sandbox: TestServer, mode: str = "fetch", **env: str) -> Settings:
    values = {"B24_WEBHOOK_URL": webhook_url(sandbox), "B24_EVENT_MODE": mode}
    return Settings.from_sources(values | env, env_file=None)


async def registered(
    make_client: Client, sandbox: TestServer, mode: str = "fetch", **env: str
) -> Registration:
    return await register_for_mode(make_client(), settings_for(sandbox, mode, **env))


def token_of(settings: Settings) -> str:
    assert settings.b24_bot_token is not None
    return settings.b24_bot_token.get_secret_value()


async def fetched(client: BitrixClient, settings: Settings, bot_id: int) -> list[str]:
    """The types of the events waiting in the bot's fetch queue."""
    answer = await client.call(
        "imbot.v2.Event.get", {"botId": bot_id, "botToken": token_of(settings), "limit": 100}
    )
    return [event["type"] for event in answer["events"]]


async def typed(sandbox: TestServer, author: int, to: int | str, text: str) -> list[Delivery]:
    deliveries: list[Delivery] = await sandbox.app[EVENTS].send_message(author, to, text)
    return deliveries


def the_bot(portal: Portal) -> Bot:
    [bot] = portal.bots.values()
    return bot


def titles(portal: Portal, command_id: int) -> set[str]:
    return {item["LANGUAGE_ID"] for item in portal.commands[command_id].lang}


def queued_only(deliveries: list[Delivery]) -> bool:
    """Every event went into a fetch queue as ONIMBOTV2*: nothing was POSTed anywhere."""
    return bool(deliveries) and all(
        d.url.startswith(QUEUED) and d.event.startswith("ONIMBOTV2") for d in deliveries
    )


async def assert_fetches_commands(
    sandbox: TestServer,
    portal: Portal,
    make_client: Client,
    registration: Registration,
    **env: str,
) -> None:
    """A message and a `/rate` to the bot, and a `/rate` in an open-line chat, land in its
    queue as v2 events; no v1 event is posted anywhere."""
    bot = portal.bots[registration.bot_id]
    assert (bot.event_mode, bot.openline, portal.speaks_v2(bot)) == ("fetch", True, True)
    assert queued_only(await typed(sandbox, 27, bot.id, "Привет"))
    assert queued_only(await typed(sandbox, 27, bot.id, "/rate 494 5 Молодец"))
    assert queued_only(await typed(sandbox, 27, "chat1157", "/rate 5 Вежливо"))
    settings = settings_for(sandbox, **env)
    assert await fetched(make_client(), settings, bot.id) == [
        "ONIMBOTV2MESSAGEADD",
        "ONIMBOTV2COMMANDADD",
        "ONIMBOTV2COMMANDADD",
    ]


async def test_a_fresh_portal_gets_one_fetch_mode_bot_with_two_common_commands(
    sandbox: TestServer, portal: Portal, make_client: Client
) -> None:
    registration = await registered(make_client, sandbox)
    bot = the_bot(portal)
    assert registration.bot_id == bot.id
    assert (bot.code, bot.name, bot.registered_v2) == ("rating_bot", "Оценка диалогов", True)
    assert bot.app_id == f"custom{token_of(settings_for(sandbox))}"
    assert set(registration.command_ids) == {"rate", "help"}
    for name, command_id in registration.command_ids.items():
        command = portal.commands[command_id]
        assert (command.bot_id, command.command, command.common, command.hidden) == (
            bot.id,
            name,
            True,
            False,
        )
        assert titles(portal, command_id) == TITLES
    rate = {
        t["LANGUAGE_ID"]: t["PARAMS"]
        for t in portal.commands[registration.command_ids["rate"]].lang
    }
    assert rate["de"] == "Sitzung Bewertung Kommentar"
    assert [c.method for c in portal.calls if c.batch_of is None] == [
        "imbot.v2.bot.list",
        "imbot.v2.bot.register",
        "batch",
    ]
    await assert_fetches_commands(sandbox, portal, make_client, registration)


async def test_a_restart_finds_the_bot_updates_it_and_adds_nothing(
    sandbox: TestServer, portal: Portal, make_client: Client
) -> None:
    first = await registered(make_client, sandbox)
    bot = the_bot(portal)
    bot.name, bot.openline = "Старое имя", False
    rate = portal.commands[first.command_ids["rate"]]
    rate.lang = [{"LANGUAGE_ID": "ru", "TITLE": "старое", "PARAMS": ""}]
    before = len(portal.calls)
    again = await registered(make_client, sandbox)
    assert again == first
    assert (set(portal.bots), set(portal.commands)) == ({bot.id}, set(first.command_ids.values()))
    assert (bot.name, bot.openline) == ("Оценка диалогов", True)
    assert titles(portal, rate.id) == TITLES
    assert [c.method for c in portal.calls[before:] if c.batch_of is None] == [
        "imbot.v2.bot.list",
        "imbot.v2.bot.update",
        "batch",
    ]


@pytest.mark.parametrize("switch", [False, True], ids=["docs", "issue"])
@pytest.mark.parametrize(
    "token",
    [{}, {"B24_BOT_TOKEN": TOKEN}],
    ids=["token is the client id", "token set apart"],
)
async def test_our_classic_bot_is_replaced_by_one_that_delivers_v2_events(
    sandbox: TestServer,
    portal: Portal,
    make_client: Client,
    switch: bool,
    token: dict[str, str],
    log_lines: io.StringIO,
) -> None:
    """`Portal.classic_bots_switch`: False as migration.md says (a classic bot keeps its v1
    events), True as the issue assumed; the end state must be the same either way."""
    portal.classic_bots_switch = switch
    classic = await register(make_client(), settings_for(sandbox, "webhook"))
    registration = await registered(make_client, sandbox, **token)
    bot = the_bot(portal)
    assert (bot.id, bot.registered_v2) == (registration.bot_id, True)
    assert bot.id != classic.bot_id
    assert set(portal.commands) == set(registration.command_ids.values())
    assert {c.bot_id for c in portal.commands.values()} == {bot.id}
    assert f'"bot_id": {classic.bot_id}' in replaced_lines(log_lines)
    await assert_fetches_commands(sandbox, portal, make_client, registration, **token)


def replaced_lines(log_lines: io.StringIO) -> str:
    return "\n".join(x for x in log_lines.getvalue().splitlines() if "classic_bot_replaced" in x)


async def test_back_to_webhook_mode_a_classic_bot_gets_v1_events_again(
    sandbox: TestServer, portal: Portal, make_client: Client
) -> None:
    fetching = await registered(make_client, sandbox)
    classic = await registered(make_client, sandbox, "webhook")
    bot = the_bot(portal)
    assert (bot.id, bot.registered_v2, portal.speaks_v2(bot)) == (classic.bot_id, False, False)
    assert bot.id != fetching.bot_id
    assert set(portal.commands) == set(classic.command_ids.values())
    [delivery] = await typed(sandbox, 27, "chat1157", "/rate 5 Вежливо")
    assert delivery.event == "ONIMCOMMANDADD"
    assert delivery.url.startswith(settings_for(sandbox, "webhook").public_url + "/b24/events/")
    again = await registered(make_client, sandbox, "webhook")
    assert again == classic  # the classic path stays idempotent after the switch


@pytest.mark.parametrize("mode", ["fetch", "webhook"])
async def test_a_classic_bot_of_another_application_is_never_touched(
    sandbox: TestServer, portal: Portal, make_client: Client, mode: str
) -> None:
    theirs = foreign_bot(portal)
    with pytest.raises(BotCodeTaken) as caught:
        await registered(make_client, sandbox, mode)
    assert caught.value.bot_id == theirs.id
    assert (list(portal.bots.values()), portal.commands) == ([theirs], {})
    assert set(theirs.handlers.values()) == {FOREIGN_HANDLER}
    with pytest.raises(BotCodeTaken):
        await unregister_v2(make_client(), settings_for(sandbox, mode))
    assert list(portal.bots.values()) == [theirs]


@pytest.mark.parametrize("mode", ["fetch", "webhook"])
async def test_a_v2_bot_of_another_application_is_never_touched(
    sandbox: TestServer, portal: Portal, make_client: Client, mode: str
) -> None:
    await registered(make_client, sandbox, B24_BOT_TOKEN="their-own-token-0123456789")
    theirs = the_bot(portal)
    commands = {c.id: (c.command, list(c.lang)) for c in portal.commands.values()}
    with pytest.raises(BotCodeTaken):
        await registered(make_client, sandbox, mode, B24_BOT_TOKEN=TOKEN)
    assert (the_bot(portal), theirs.event_mode) == (theirs, "fetch")
    assert {c.id: (c.command, c.lang) for c in portal.commands.values()} == commands


async def test_fetch_mode_on_a_portal_without_chatbots_2_names_the_settings_to_change(
    sandbox: TestServer, portal: Portal, make_client: Client
) -> None:
    portal.chatbots_v2 = False
    with pytest.raises(ChatbotsV2Unavailable) as caught:
        await registered(make_client, sandbox)
    assert "B24_EVENT_MODE=webhook" in str(caught.value)
    assert "BOT_PUBLIC_URL" in str(caught.value)
    assert portal.bots == {}


async def test_webhook_mode_on_a_portal_without_chatbots_2_works_as_before(
    sandbox: TestServer, portal: Portal, make_client: Client
) -> None:
    portal.chatbots_v2 = False
    registration = await registered(make_client, sandbox, "webhook")
    assert (the_bot(portal).id, the_bot(portal).registered_v2) == (registration.bot_id, False)
    assert (
        await unregister_v2(make_client(), settings_for(sandbox, "webhook")) == registration.bot_id
    )
    assert portal.bots == {}


async def test_unregister_removes_our_bot_however_it_was_registered(
    sandbox: TestServer, portal: Portal, make_client: Client
) -> None:
    settings = settings_for(sandbox)
    registration = await registered(make_client, sandbox)
    assert await unregister_v2(make_client(), settings) == registration.bot_id
    assert (portal.bots, portal.commands) == ({}, {})
    assert await unregister_v2(make_client(), settings) is None


@pytest.fixture
def log_lines(reset_logging: None) -> io.StringIO:
    """Every log line, with no redactor told of the token: a leak would show."""
    stream = io.StringIO()
    configure_logging(level="debug", fmt="json", stream=stream)
    return stream


async def test_the_bot_token_never_reaches_a_log_line_or_an_error_text(
    sandbox: TestServer, portal: Portal, make_client: Client, log_lines: io.StringIO
) -> None:
    texts: list[str] = []
    await register(make_client(), settings_for(sandbox, "webhook", B24_CLIENT_ID=TOKEN))
    await registered(make_client, sandbox, B24_BOT_TOKEN=TOKEN)  # migrates: many calls
    await registered(make_client, sandbox, B24_BOT_TOKEN=TOKEN)
    await registered(make_client, sandbox, "webhook", B24_BOT_TOKEN=TOKEN)
    foreign_bot(portal).code = "other_code"
    with pytest.raises(BotCodeTaken) as taken:
        await registered(make_client, sandbox, B24_BOT_TOKEN=TOKEN, B24_BOT_CODE="other_code")
    portal.chatbots_v2 = False
    with pytest.raises(ChatbotsV2Unavailable) as missing:
        await registered(make_client, sandbox, B24_BOT_TOKEN=TOKEN)
    for error in (taken.value, missing.value):
        texts += [str(error), repr(error), repr(error.__cause__)]
    assert TOKEN not in log_lines.getvalue()
    assert "bitrix.classic_bot_replaced" in log_lines.getvalue()
    assert all(TOKEN not in text for text in texts)
