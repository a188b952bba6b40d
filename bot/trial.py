"""`python -m bot try` (what `make run` runs) when no portal is configured: the sandbox.

The sandbox portal, its fake Telegram and its chat page are served on their own thread and
event loop (a server of their own, as a real portal is), and the service is given the settings
that wire it to them, a throw-away database, and loopback addresses only. Only this module, and
only for `try`, loads the sandbox: `python -m bot` / `serve` never does (architecture doc).
"""

from __future__ import annotations

import asyncio
import atexit
import difflib
import re
import secrets
import shutil
import tempfile
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiohttp import web
from dotenv import dotenv_values

from bot.config import OAUTH_CALLBACK_PATH, Settings, env_name
from bot.sandbox.app import create_sandbox_app
from bot.sandbox.oauth import create_app
from bot.sandbox.seed import add_dialogs, seeded_portal
from bot.sandbox.telegram.seed import seeded_world
from bot.sandbox.wiring import service_env
from bot.serving import bind_failure

LOOPBACK: Final = "127.0.0.1"
# Settings the sandbox may take from the person (it overrides BOT_HOST with loopback): what
# a newcomer sets to try it. Any other setting of ours means a set-up for a real portal.
_HARMLESS: Final = frozenset(
    {
        "BOT_HOST",
        "BOT_PORT",
        "BOT_LOG_LEVEL",
        "BOT_LOG_FORMAT",
        "BOT_SHUTDOWN_TIMEOUT",
        "BOT_JOB_LEASE",
    }
)
_OURS: Final = re.compile(r"(?:B24|TELEGRAM|BOT)_", re.IGNORECASE)
_RULE: Final = "=" * 78
# `try --app` with a portal configured: that portal's application mode is its own settings.
APP_NEEDS_SETTINGS: Final = (
    "--app (make run APP=1) is for the sandbox: with a portal configured, application mode "
    "is on when B24_APP_CLIENT_ID, B24_APP_CLIENT_SECRET and BOT_SECRET_KEY (or "
    "BOT_SECRET_KEY_FILE) are set."
)


class SandboxUnavailable(Exception):
    """The sandbox could not start (its port is taken): the message says what to do."""


def is_configured(settings: Settings) -> bool:
    """A real portal or a real Telegram bot is set up (in the environment or ./.env)."""
    return settings.b24_webhook_url is not None or settings.telegram_bot_token is not None


def real_set_up(environ: Mapping[str, str], env_file: Path = Path(".env")) -> list[str]:
    """Why this machine looks set up for a real portal although none is configured: each
    setting of ours that only a real set-up has (set even empty), and each name that looks
    like ours but is none (`B24_WEBHOOK_ULR`). Empty when the sandbox may start: a typo on a
    production box must not turn the service into a sandbox that loses every event."""
    known = {env_name(field) for field in Settings.model_fields}
    found = {name.upper(): "the environment" for name in environ}
    if env_file.is_file():
        found |= {name.upper(): f"./{env_file.name}" for name in dotenv_values(env_file)}
    reasons = []
    for name, where in sorted(found.items()):
        if not _OURS.match(name) or name in _HARMLESS:
            continue
        if name in known:
            reasons.append(f"{name} is set ({where}; empty counts)")
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f": did you mean {close[0]}?" if close else ""
        reasons.append(f"{name} ({where}) is not a setting{hint}")
    return reasons


def refusal(reasons: list[str]) -> str:
    return "\n".join(
        (
            "Not starting the sandbox: no portal is configured (B24_WEBHOOK_URL or",
            "TELEGRAM_BOT_TOKEN), yet this looks like a set-up for a real one:",
            *(f"  - {reason}" for reason in reasons),
            "Fix the set-up (`python -m bot --help` lists the settings), or try the sandbox",
            "where none of these is set.",
        )
    )


@dataclass(frozen=True)
class RunningSandbox:
    url: str
    env: dict[str, str]  # the settings that wire the service to it
    app_mode: bool = False  # its local application is in `env`: votes cast as the supervisor


def callback_url(settings: Settings) -> str:
    """Where the sandboxed service takes OAuth callbacks: its loopback address (the sandbox
    refuses a BOT_PUBLIC_URL, so the service's public URL is this one too)."""
    return f"http://{LOOPBACK}:{settings.bot_port}{OAUTH_CALLBACK_PATH}"


def start_sandbox(port: int, *, app_handler: str | None = None) -> RunningSandbox:
    """Serve the seeded sandbox on 127.0.0.1:`port` until the process exits; with
    `app_handler` (the service's OAuth callback), with its local application too."""
    portal, world = seeded_portal(), seeded_world()
    add_dialogs(portal)
    if app_handler is not None:
        create_app(portal, app_handler)  # before its thread serves: nothing reads it yet
    runner = web.AppRunner(
        create_sandbox_app(portal, telegram=world), access_log=None, handler_cancellation=True
    )
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failed: list[OSError] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, LOOPBACK, port).start())
        except OSError as error:
            failed.append(error)
            # Its startup ran (the fake Telegram's delivery task, client sessions): end it,
            # so the refusal below is all the person reads.
            loop.run_until_complete(runner.cleanup())
            loop.close()
            return
        finally:
            started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=serve, name="sandbox", daemon=True)
    thread.start()
    started.wait()
    if failed:
        raise SandboxUnavailable(
            f"The sandbox cannot listen on {LOOPBACK}:{port} ({bind_failure(failed[0])}): "
            "stop what uses that port, or choose another with `make run SANDBOX_PORT=8091`."
        )

    def stop() -> None:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)

    atexit.register(stop)
    url = f"http://{LOOPBACK}:{port}"
    app_mode = app_handler is not None
    return RunningSandbox(url, service_env(url, portal, world, app_mode=app_mode), app_mode)


def sandboxed_settings(environ: Mapping[str, str], sandbox: RunningSandbox) -> Settings:
    """The service's settings: the person's own (port, log level, ...) with the sandbox's
    wiring over them, a database in a temporary folder, and the loopback address (the
    sandbox listens only there too)."""
    folder = Path(tempfile.mkdtemp(prefix="rating-bot-sandbox-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    wiring = sandbox.env | {
        "BOT_HOST": LOOPBACK,
        "B24_EVENT_MODE": "fetch",
        "TELEGRAM_MODE": "polling",
        "BOT_DATABASE_URL": f"sqlite:///{folder / 'bot.sqlite3'}",
    }
    if sandbox.app_mode:
        wiring |= {
            # Bitrix24 (here the sandbox) checks each supervisor's own right to rate on the
            # line: no list of ours, so Пётр (28) meets the portal's refusal (issue 12).
            "B24_SUPERVISOR_IDS": "",
            # Seals the tokens in a database thrown away at exit: a new key for each run.
            "BOT_SECRET_KEY": secrets.token_urlsafe(32),
        }
    return Settings.from_sources(dict(environ) | wiring)


def banner(
    sandbox: RunningSandbox, settings: Settings, given: Collection[str] = frozenset()
) -> str:
    """The loud notice that this is the sandbox; `given` are the fields the person set (in the
    environment or ./.env): a half-filled .env is named, so nobody takes the sandbox's answers
    for their portal's."""
    return "\n".join(
        (
            _RULE,
            "  SANDBOX: no portal is configured, so this is a pretend Bitrix24 portal and a",
            "  pretend Telegram, both on this machine. Nothing real is touched.",
            "",
            f"  Open the chat page:  {sandbox.url}/",
            f"  The service:         http://{settings.bot_host}:{settings.bot_port}/readyz",
            "",
            "  To serve a real portal instead, set B24_WEBHOOK_URL (an incoming webhook",
            "  https://<portal>/rest/<user>/<code>/ with the scopes imbot, imopenlines, im)",
            "  in the environment or in ./.env, and run `make run` again.",
            *application_mode(settings),
            *half_configured(given),
            _RULE,
        )
    )


def application_mode(settings: Settings) -> tuple[str, ...]:
    """The banner's lines for `make run APP=1`: what application mode is, and what to try."""
    if settings.app is None:
        return ()
    return (
        "",
        "  APPLICATION MODE: each supervisor allows the bot once, through the portal's local",
        "  application, and their votes are cast as them: the portal checks their right.",
        '  Try it on the chat page: choose "You are: Светлана", open the chat with the bot',
        '  and send  /rate 494 5 Молодец  ; press the button "Разрешить в Битрикс24": a new',
        "  tab passes the portal's consent (allowed at once here) and the bot's page says",
        '  "Готово"; back in the chat the waiting vote is saved, as hers. As Пётр the same',
        "  is refused by the portal: he may not rate on line 1.",
    )


def half_configured(given: Collection[str]) -> tuple[str, ...]:
    """The banner's lines for portal or Telegram settings set without a portal to use them."""
    portal = sorted(env_name(f) for f in given if f.startswith(("b24_", "telegram_")))
    if not portal:
        return ()
    return (
        "",
        f"  Note: {', '.join(portal)} set, but B24_WEBHOOK_URL is not (or is empty),",
        "  so this is the sandbox, not your portal.",
    )
