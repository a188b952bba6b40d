"""`check` against the sandbox portal and the fake Telegram over HTTP, each set-up broken in
turn: the broken row, and only it, is a ✗, with a fix that names what to do."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer

from bot.bitrix.client import BitrixClient
from bot.bitrix.registration_v2 import register_for_mode
from bot.checks import World, failed, render, run_checks
from bot.checks.findings import Finding
from bot.config import Settings
from bot.sandbox.portal import Bot, Fault, Portal
from bot.sandbox.telegram.seed import FEED, SUPERVISORS_GROUP, TOKEN
from bot.sandbox.telegram.world import TelegramWorld
from tests.harness import (
    WEBHOOK_CODE,
    free_port,
    telegram_api_url,
    webhook_url,
    write_locked,
)

PUBLIC_HOST = "rating-bot.example.com"


class TableResolver(AbstractResolver):
    """DNS for the test: the names it knows lead to loopback; any other does not resolve."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.names:
            raise OSError(f"{host} does not resolve")
        address = self.names[host]
        found: ResolveResult = {
            "hostname": host,
            "host": address,
            "port": port,
            "family": family,
            "proto": 0,
            "flags": socket.AI_NUMERICHOST,
        }
        return [found]

    async def close(self) -> None:
        return None


WORLD = World(resolver=TableResolver({PUBLIC_HOST: "127.0.0.1", "localhost": "127.0.0.1"}))


@dataclass
class SetUp:
    """The settings of one set-up, over the sandbox, and how it is broken. Webhook mode's
    public URL is plain http on loopback (allowed beside a portal on loopback), served by
    `check` itself on BOT_PORT."""

    sandbox: TestServer
    portal: Portal
    telegram: TelegramWorld
    tmp_path: Path
    stack: contextlib.ExitStack
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)

    def settings(self) -> Settings:
        values = {
            "B24_WEBHOOK_URL": webhook_url(self.sandbox),
            "BOT_HOST": "127.0.0.1",
            "BOT_PORT": str(self.port),
            "BOT_PUBLIC_URL": f"http://localhost:{self.port}",
            "BOT_DATABASE_URL": f"sqlite:///{self.tmp_path / 'data' / 'bot.sqlite3'}",
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_URL": telegram_api_url(self.sandbox),
            "TELEGRAM_ALLOWED_CHAT_IDS": str(SUPERVISORS_GROUP),
            "TELEGRAM_FEED_CHAT_ID": str(FEED),
        }
        return Settings.from_sources(values | self.env, env_file=None)


@pytest.fixture
def setup(
    sandbox: TestServer, portal: Portal, telegram_world: TelegramWorld, tmp_path: Path
) -> Iterator[SetUp]:
    with contextlib.ExitStack() as stack:
        yield SetUp(sandbox, portal, telegram_world, tmp_path, stack)


async def registered(setup: SetUp, make_client: Callable[..., BitrixClient], **env: str) -> None:
    """`python -m bot register` in a mode, before the set-up is broken."""
    settings = Settings.from_sources(
        {"B24_WEBHOOK_URL": webhook_url(setup.sandbox), "BOT_PUBLIC_URL": "http://127.0.0.1:1"}
        | env,
        env_file=None,
    )
    await register_for_mode(make_client(), settings)


def rows(findings: list[Finding], status: str) -> dict[str, Finding]:
    return {f.name: f for f in findings if f.status == status}


FETCH_ROWS = [
    "portal reachable",
    "webhook code accepted",
    "webhook scopes",
    "Chatbots 2.0 (fetch mode)",
    "bot registered and ours",
    "bot commands",
    "database writable",
    "Telegram token",
    "Telegram webhook state",
    f"TELEGRAM_ALLOWED_CHAT_IDS {SUPERVISORS_GROUP}",
    f"TELEGRAM_FEED_CHAT_ID {FEED}",
]
WEBHOOK_ROWS = [
    *FETCH_ROWS[:3],
    *FETCH_ROWS[4:6],
    "BOT_PUBLIC_URL is https",
    "BOT_PUBLIC_URL resolves",
    "BOT_PUBLIC_URL reaches this service",
    *FETCH_ROWS[6:],
]


@pytest.mark.parametrize(("mode", "expected"), [("fetch", FETCH_ROWS), ("webhook", WEBHOOK_ROWS)])
async def test_a_sound_set_up_holds_in_every_row(
    setup: SetUp, make_client: Callable[..., BitrixClient], mode: str, expected: list[str]
) -> None:
    await registered(setup, make_client, B24_EVENT_MODE=mode)
    setup.env["B24_EVENT_MODE"] = mode
    findings = await run_checks(setup.settings(), WORLD)
    assert [(f.name, f.status) for f in findings] == [(name, "ok") for name in expected]
    assert not failed(findings)


async def test_application_mode_shows_what_to_compare_with_the_application_s_card(
    setup: SetUp, make_client: Callable[..., BitrixClient]
) -> None:
    await registered(setup, make_client)
    setup.env |= {
        "B24_APP_CLIENT_ID": "local.57df90751da540.63746010",
        "B24_APP_CLIENT_SECRET": "app-secret-0123456789abcdef",
        "BOT_SECRET_KEY": "key-0123456789abcdef0123456789abcdef",
    }
    findings = await run_checks(setup.settings(), WORLD)
    [row] = [f for f in findings if f.name == "application mode"]
    assert row.status == "ok"
    assert row.detail == (
        "client local.57df90751da540.63746010; OAuth servers oauth.bitrix.info, "
        f"oauth.bitrix24.tech; handler http://localhost:{setup.port}/b24/oauth/callback"
    )
    assert "app-secret" not in render(findings)
    assert "key-0123" not in render(findings)


def foreign_bot(portal: Portal) -> None:
    """Another application's bot with our code, and none of ours (§00 item 8)."""
    unregistered(portal)
    bot = Bot(portal.new_id(), "rating_bot", "customtheirs", "Чужой бот", event_mode="fetch")
    portal.bots[bot.id] = bot


def unregistered(portal: Portal) -> None:
    portal.bots.clear()
    portal.commands.clear()


def drop_command(portal: Portal, name: str) -> None:
    [command] = [c for c in portal.commands.values() if c.command == name]
    del portal.commands[command.id]


def narrow_command(portal: Portal, name: str) -> None:
    [command] = [c for c in portal.commands.values() if c.command == name]
    command.common = False


def lock_database(setup: SetUp) -> None:
    """Another process holds the database's write lock (a backup, a second instance)."""
    url = f"sqlite:///{setup.tmp_path / 'locked.sqlite3'}"
    setup.env["BOT_DATABASE_URL"] = url
    setup.stack.enter_context(write_locked(url))


def database_under_a_file(setup: SetUp) -> None:
    (setup.tmp_path / "afile").write_text("not a folder")
    setup.env["BOT_DATABASE_URL"] = f"sqlite:///{setup.tmp_path / 'afile' / 'bot.sqlite3'}"


def plain_http(setup: SetUp) -> None:
    """A public name (the test's DNS leads it here), in plain http."""
    setup.env["BOT_PUBLIC_URL"] = f"http://{PUBLIC_HOST}:{setup.port}"


def nothing_listens(setup: SetUp) -> None:
    setup.env["BOT_PUBLIC_URL"] = f"http://localhost:{free_port()}"


def another_server(setup: SetUp) -> None:
    """The public address leads to another HTTP server (here: the sandbox portal's)."""
    setup.env["BOT_PUBLIC_URL"] = f"http://localhost:{setup.sandbox.port}"


Break = Callable[[SetUp], object]

# (the set-up broken, the mode, how it is broken, the row that fails, what the row says)
BROKEN: dict[str, tuple[str, Break, str, str]] = {
    "a wrong webhook code": (
        "fetch",
        lambda s: s.env.update(B24_WEBHOOK_URL=webhook_url(s.sandbox, code="wr0ngc0de")),
        "webhook code accepted",
        "does not accept the webhook code in B24_WEBHOOK_URL",
    ),
    "a webhook deleted (current builds say INVALID_CREDENTIALS)": (
        "fetch",
        lambda s: s.portal.faults.append(
            Fault(method="scope", status=401, error="INVALID_CREDENTIALS", times=-1)
        ),
        "webhook code accepted",
        "no active webhook has this user id and code",
    ),
    "a plan without REST": (
        "fetch",
        lambda s: s.portal.faults.append(
            Fault(method="scope", status=401, error="ACCESS_DENIED", times=-1)
        ),
        "webhook code accepted",
        "commercial plan",
    ),
    "no portal at the address": (
        "fetch",
        lambda s: s.env.update(
            B24_WEBHOOK_URL=f"http://127.0.0.1:{free_port()}/rest/1/{WEBHOOK_CODE}/"
        ),
        "portal reachable",
        "cannot be reached",
    ),
    "an address that is not Bitrix24": (
        "fetch",
        lambda s: s.portal.faults.append(
            Fault(method="scope", status=200, body="<html>Welcome</html>", times=-1)
        ),
        "portal reachable",
        "not as Bitrix24's REST API",
    ),
    "a webhook without imopenlines": (
        "fetch",
        lambda s: setattr(s.portal.webhooks[0], "scopes", frozenset({"imbot", "im"})),
        "webhook scopes",
        "missing imopenlines",
    ),
    "a webhook without imbot": (
        "webhook",
        lambda s: setattr(s.portal.webhooks[0], "scopes", frozenset({"imopenlines", "im"})),
        "webhook scopes",
        "tick imbot, imopenlines, im",
    ),
    "a portal without Chatbots 2.0": (
        "fetch",
        lambda s: setattr(s.portal, "chatbots_v2", False),
        "Chatbots 2.0 (fetch mode)",
        "B24_EVENT_MODE=webhook",
    ),
    "no bot registered": (
        "fetch",
        lambda s: unregistered(s.portal),
        "bot registered and ours",
        "python -m bot register",
    ),
    "a foreign bot with our code (fetch mode)": (
        "fetch",
        lambda s: foreign_bot(s.portal),
        "bot registered and ours",
        "set B24_BOT_CODE to a code of your own",
    ),
    "a foreign bot with our code (webhook mode)": (
        "webhook",
        lambda s: foreign_bot(s.portal),
        "bot registered and ours",
        "another application",
    ),
    "a classic bot of ours in fetch mode": (
        "fetch",
        lambda _: None,  # registered as a classic bot (below)
        "bot registered and ours",
        "pushes its events",
    ),
    "a command missing": (
        "fetch",
        lambda s: drop_command(s.portal, "help"),
        "bot commands",
        "missing /help",
    ),
    "a command only where the bot is a member": (
        "webhook",
        lambda s: narrow_command(s.portal, "rate"),
        "bot commands",
        "/rate only where the bot is a member",
    ),
    "BOT_PUBLIC_URL in plain http": (
        "webhook",
        plain_http,
        "BOT_PUBLIC_URL is https",
        "deploy/ has an nginx example",
    ),
    "BOT_PUBLIC_URL that does not resolve": (
        "webhook",
        lambda s: s.env.update(BOT_PUBLIC_URL="https://nowhere.example.org"),
        "BOT_PUBLIC_URL resolves",
        "publish a DNS record for nowhere.example.org",
    ),
    "BOT_PUBLIC_URL where nothing listens": (
        "webhook",
        nothing_listens,
        "BOT_PUBLIC_URL reaches this service",
        "make the reverse proxy",
    ),
    "BOT_PUBLIC_URL leading to another server": (
        "webhook",
        another_server,
        "BOT_PUBLIC_URL reaches this service",
        "HTTP 404",
    ),
    "a database path under a file": (
        "fetch",
        database_under_a_file,
        "database writable",
        "is a file, not a folder",
    ),
    "a database another process holds": (
        "fetch",
        lock_database,
        "database writable",
        "another process holds its write lock",
    ),
    "a wrong Telegram token": (
        "fetch",
        lambda s: s.env.update(
            TELEGRAM_BOT_TOKEN="7000000001:AAFwrong-token-0123456789abcdefghij"
        ),
        "Telegram token",
        "@BotFather",
    ),
    "a Telegram webhook set while polling": (
        "fetch",
        lambda s: setattr(s.telegram.webhook, "url", "https://other.example.net/tg/s3cr3tpath"),
        "Telegram webhook state",
        "a webhook to other.example.net is set",
    ),
    "Telegram webhook mode before the webhook is set": (
        "fetch",
        lambda s: s.env.update(TELEGRAM_MODE="webhook", TELEGRAM_WEBHOOK_SECRET="s3cret-value"),
        "Telegram webhook state",
        "not set",
    ),
    "the bot removed from an allowed chat": (
        "fetch",
        lambda s: s.telegram.remove_bot(SUPERVISORS_GROUP),
        f"TELEGRAM_ALLOWED_CHAT_IDS {SUPERVISORS_GROUP}",
        "no longer in this chat",
    ),
    "a feed chat the bot does not know": (
        "fetch",
        lambda s: s.env.update(TELEGRAM_FEED_CHAT_ID="-777"),
        "TELEGRAM_FEED_CHAT_ID -777",
        "add @SandboxRatingBot to the chat",
    ),
}


@pytest.mark.parametrize("case", BROKEN)
async def test_each_broken_set_up_is_the_one_failing_row_with_its_fix(
    setup: SetUp, make_client: Callable[..., BitrixClient], case: str
) -> None:
    mode, breaking, row, says = BROKEN[case]
    # The classic bot is registered in webhook mode, then checked in fetch mode.
    registered_mode = "webhook" if case == "a classic bot of ours in fetch mode" else mode
    await registered(setup, make_client, B24_EVENT_MODE=registered_mode)
    setup.env["B24_EVENT_MODE"] = mode
    breaking(setup)
    findings = await run_checks(setup.settings(), WORLD)
    failing = rows(findings, "fail")
    assert list(failing) == [row], render(findings)
    assert says in failing[row].detail + " " + failing[row].fix
    assert failed(findings)
